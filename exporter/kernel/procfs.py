"""What /proc still tells about a process: its name (for listeners' owners).

Everything here may vanish between two reads (the process exits); a missing process gives
None, never an exception.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def comm(pid: int, proc: Path = PROC) -> str | None:
    raw = _read(proc / str(pid) / "comm")
    return None if raw is None else raw.rstrip(b"\n").decode(errors="replace")
