"""What /proc still tells about a process: its name (for listeners' owners).

Everything here may vanish between two reads (the process exits); a missing process gives
None, never an exception.
"""

from __future__ import annotations

from pathlib import Path

from exporter.kernel import hostfs


def _process(pid: int, proc: Path | None) -> Path:
    return (proc or hostfs.procfs()) / str(pid)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def parent_pid(pid: int, proc: Path | None = None) -> int | None:
    """Field 4 of /proc/<pid>/stat; the name before it may hold spaces and parentheses."""
    stat = _read(_process(pid, proc) / "stat")
    if stat is None:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def comm(pid: int, proc: Path | None = None) -> str | None:
    raw = _read(_process(pid, proc) / "comm")
    return None if raw is None else raw.rstrip(b"\n").decode(errors="replace")


def effective_uid(pid: int, proc: Path | None = None) -> int | None:
    """The second value of the ``Uid:`` line (real, effective, saved, filesystem)."""
    status = _read(_process(pid, proc) / "status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[2])
    return None


def cmdline(pid: int, proc: Path | None = None) -> list[str] | None:
    """The arguments; None for a process that is gone (or a kernel thread, which has none)."""
    raw = _read(_process(pid, proc) / "cmdline")
    if not raw:
        return None
    return [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]
