"""Checks run before any BPF is compiled, so a missing privilege or package gets a clear message."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.kernel import hostfs
from exporter.kernel.tracefs import tracefs_candidates

log = logging.getLogger(__name__)

CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
CAPABILITY_NAMES = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}
# Not needed to run, but without them a listener of another user that existed before the
# exporter started has no known owner: /proc/<pid>/fd is mode 0500 of its owner (read
# search), and its links need ptrace read access. docs/security.md has the whole set.
PROC_CAPABILITIES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE"}


# Where distributions install bcc's Python bindings (Debian's python3-bpfcc, Fedora's
# python3-bcc): only for the distribution's own interpreter.
SYSTEM_PYTHONS = ("/usr/bin/python3",)
KCONFIG_H = "include/linux/kconfig.h"  # the first header bcc includes


class EnvironmentProblem(Exception):
    """Something outside the exporter is missing; the message says what and how to fix it."""


def python_with_bcc(candidates: Sequence[str]) -> str | None:
    """The first interpreter that can import bcc (asked in a child process), if any."""
    for python in candidates:
        if not os.access(python, os.X_OK):
            continue
        probe = subprocess.run([python, "-c", "import bcc"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return python
    return None


def check_bcc(candidates: Sequence[str] = SYSTEM_PYTHONS) -> None:
    """Fails, naming the interpreter that has bcc, when this one cannot import it: a venv made
    on another Python (pyenv, a python.org build) does not see the distribution's bcc."""
    try:
        importlib.import_module("bcc")
    except ImportError as error:
        here = f"{sys.executable} (Python {platform.python_version()})"
        having = python_with_bcc(candidates)
        if having is None:
            raise EnvironmentProblem(
                f"bcc cannot be imported from {here}: {error}; install the distribution's bcc "
                "(apt-get install python3-bpfcc) and run scripts/install.sh"
            ) from None
        raise EnvironmentProblem(
            f"bcc cannot be imported from {here}: {error}; {having} has it: run the exporter "
            f"from a venv made with '{having} -m venv --system-site-packages' "
            "(scripts/install.sh makes one in .venv)"
        ) from None


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    for line in Path(status_path).read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_capabilities(effective: int) -> list[str]:
    """Names of the capabilities still needed: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN."""
    if effective & (1 << CAP_SYS_ADMIN):
        return []
    return [CAPABILITY_NAMES[cap] for cap in (CAP_BPF, CAP_PERFMON) if not effective & (1 << cap)]


def check_capabilities(status_path: str = "/proc/self/status") -> None:
    """Fails without the BPF capabilities; warns, naming them, without the /proc ones."""
    effective = effective_capabilities(status_path)
    missing = missing_capabilities(effective)
    if missing:
        raise EnvironmentProblem(
            f"missing capabilities: {', '.join(missing)} (needed to load BPF programs and attach "
            "them to tracepoints); run as root, or grant them, e.g. "
            "capsh --caps='cap_bpf,cap_perfmon+eip' or securityContext.capabilities.add"
        )
    lacking = [name for cap, name in PROC_CAPABILITIES.items() if not effective & (1 << cap)]
    if lacking:
        log.warning(
            "missing capabilities: %s: listeners of other users that existed before the "
            "exporter started will have an empty comm and uid (grant them to name those owners)",
            ", ".join(lacking),
        )


def headers_problem(release: str, modules_root: str = "/lib/modules") -> str | None:
    """None when bcc will find kernel headers for ``release``, else what to install."""
    build = Path(modules_root, release, "build")
    if build.joinpath("include").is_dir():
        # bcc includes linux/kconfig.h first, from build/ or the split source/ (Debian); a
        # tree without it makes bcc print "Unable to find kernel headers" and crash.
        if any(Path(modules_root, release, d, KCONFIG_H).is_file() for d in ("build", "source")):
            return None
        return (
            f"kernel headers for Linux {release} in {build} are incomplete (no {KCONFIG_H} "
            "there or in source/): reinstall them, or run scripts/install.sh (it replaces "
            "build and source when they are links)"
        )
    if hostfs.sysfs("kernel/kheaders.tar.xz").exists():
        return None  # CONFIG_IKHEADERS: bcc unpacks the kernel's own headers
    if os.environ.get("NETSNOOP_CONTAINER"):  # set by the Dockerfile: the image has none
        return (
            f"kernel headers for Linux {release} not found in {modules_root}/{release}/build: "
            "the container uses the host's; install them on the host (linux-headers-"
            f"{release}) and mount the host's /lib/modules and /usr/src read-only at the same "
            "paths (-v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro)"
        )
    return (
        f"kernel headers for Linux {release} not found in {modules_root}/{release}/build: "
        f"install them (apt-get install linux-headers-{release}), or run scripts/install.sh, "
        "which unpacks the nearest Debian linux-headers package (without its kernel image) "
        "when the exact one does not exist"
    )


def check_kernel_headers() -> None:
    problem = headers_problem(platform.release())
    if problem:
        raise EnvironmentProblem(problem)


def ensure_tracefs() -> None:
    """Mount tracefs when nothing is mounted (bare hosts and containers often lack it)."""
    candidates = tracefs_candidates()
    if any((candidate / "events").is_dir() for candidate in candidates):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    target = bytes(candidates[0])
    if libc.mount(b"tracefs", target, b"tracefs", 0, None) != 0:
        error = os.strerror(ctypes.get_errno())
        raise EnvironmentProblem(
            f"tracefs is not mounted and mounting it at {candidates[0]} failed ({error}): "
            f"mount it with 'mount -t tracefs tracefs {candidates[0]}' or bind-mount "
            "the host's /sys/kernel/tracing"
        )


def check_environment() -> None:
    check_bcc()
    check_capabilities()
    check_kernel_headers()
    ensure_tracefs()
