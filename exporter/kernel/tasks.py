"""Where the running kernel keeps a task's credentials, parent and arguments, for
watch events that describe the process at the moment of the event (bpf/watch/watch.h)."""

from __future__ import annotations

import functools
import logging

from exporter.kernel import btf

log = logging.getLogger(__name__)

# define -> (struct, member path), read with bpf_probe_read_kernel at these offsets
TASK_MEMBERS: dict[str, tuple[str, str]] = {
    "TASK_CRED_OFF": ("task_struct", "cred"),
    "CRED_EUID_OFF": ("cred", "euid"),
    "TASK_REAL_PARENT_OFF": ("task_struct", "real_parent"),
    "TASK_TGID_OFF": ("task_struct", "tgid"),
    "TASK_COMM_OFF": ("task_struct", "comm"),
    "TASK_MM_OFF": ("task_struct", "mm"),
    "MM_ARG_START_OFF": ("mm_struct", "arg_start"),
    "MM_ARG_END_OFF": ("mm_struct", "arg_end"),
}


@functools.cache
def task_fact_defines() -> dict[str, int]:
    """The offsets as defines, with WATCH_TASK_FACTS; empty without them (logged once): events
    then carry only what BPF helpers give, and euid, parent and cmdline read null."""
    offsets = btf.offset_defines(TASK_MEMBERS)
    if not offsets:
        log.warning("watch events carry no euid, parent or cmdline: no kernel BTF offsets")
        return {}
    return {"WATCH_TASK_FACTS": 1, **offsets}
