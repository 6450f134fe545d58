"""End to end: the event log handled the way logrotate expects. Moved and signalled with
SIGHUP (logrotate without copytruncate), or only moved, or truncated (copytruncate): every
event lands in exactly one file, and the next ones in the file at the configured path.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ExporterProcess, free_port, named_python, watch_config

pytestmark = pytest.mark.root

# Attempts to a closed local port: each is one watch event (result refused).
CONNECT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    with socket.socket() as s:
        s.connect_ex(("127.0.0.1", port))
"""


def lines(path: Path, port: int) -> int:
    if not path.exists():
        return 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return sum(
        1 for r in records if r.get("rule") == "lost-rotate" and r["remote"].endswith(f":{port}")
    )


def wait_for_lines(path: Path, port: int, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while lines(path, port) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # and nothing more arrives
    return lines(path, port)


def test_moved_signalled_or_truncated_log_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "events.jsonl"
    exporter = ExporterProcess(watch_config("lost-rotate", port, log), tmp_path)
    client = named_python(tmp_path, "nst-rotate")

    def attempts(count: int) -> None:
        subprocess.run([client, "-c", CONNECT, str(port), str(count)], check=True, timeout=60)

    try:
        exporter.wait_ready()
        attempts(3)
        assert wait_for_lines(log, port, 3) == 3
        # logrotate without copytruncate: move, then SIGHUP
        log.rename(tmp_path / "events.jsonl.1")
        exporter.process.send_signal(signal.SIGHUP)
        attempts(4)
        assert wait_for_lines(log, port, 4) == 4
        assert lines(tmp_path / "events.jsonl.1", port) == 3
        # moved without a signal: the next event notices and opens a new file
        log.rename(tmp_path / "events.jsonl.2")
        attempts(5)
        assert wait_for_lines(log, port, 5) == 5
        assert lines(tmp_path / "events.jsonl.2", port) == 4
        # copytruncate: the same file, written again from its start
        log.write_text("")
        attempts(2)
        assert wait_for_lines(log, port, 2) == 2
        assert log.read_text().startswith("{")  # no hole of NUL bytes before the new lines
    finally:
        exporter.stop()
