"""What each loaded BPF program costs: the kernel's run time and run count per program.

The kernel keeps these only while ``kernel.bpf_stats_enabled=1`` (timing every run has a cost of
its own, so it is off by default). They are read from ``/proc/self/fdinfo/<program fd>``, which
needs no struct layout and no extra privilege.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exporter.kernel import hostfs

SELF = Path("/proc/self")  # the exporter's own file descriptors, whatever --path.procfs says


@dataclass(frozen=True)
class ProgramRunStats:
    run_time_ns: int
    run_count: int


def parse_fdinfo(text: str) -> ProgramRunStats | None:
    """``run_time_ns`` and ``run_cnt`` of a BPF program's fdinfo; None when they are absent
    (not a program FD, or a kernel before 5.1)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep:
            fields[key.strip()] = rest.strip()
    try:
        return ProgramRunStats(int(fields["run_time_ns"]), int(fields["run_cnt"]))
    except (KeyError, ValueError):
        return None


def stats_enabled(proc: Path | None = None) -> bool:
    try:
        sysctl = (proc or hostfs.procfs()) / "sys/kernel/bpf_stats_enabled"
        return sysctl.read_text().strip() == "1"
    except OSError:
        return False


def program_run_stats(program_fd: int, self_dir: Path = SELF) -> ProgramRunStats | None:
    try:
        return parse_fdinfo((self_dir / "fdinfo" / str(program_fd)).read_text())
    except OSError:
        return None
