"""End to end: a watch event describes the process that made the connection, as it was at
that moment: after it exec'd another program, and after it exited.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ExporterProcess, free_port, named_python, watch_config

pytestmark = pytest.mark.root

RULE = "nst-fidelity"
SETPRIV = ("setpriv", "--reuid", "4244", "--regid", "4244", "--clear-groups")

# Connects to the watched (closed) port, then becomes `sleep 0.5`: by the time the event is
# handled the pid runs another program.
CONNECT_THEN_EXEC = """
import os, socket, sys
print(os.getpid(), flush=True)
socket.socket().connect_ex(("127.0.0.1", int(sys.argv[1])))
os.execv("/usr/bin/sleep", ["sleep", "0.5"])
"""

# Connects and exits at once, `count` times, each child with its own argv[0]; the next child
# starts only after the last one is gone, so its pid may be the one an earlier child had.
CONNECT_THEN_EXIT = """
import os, socket, subprocess, sys
port, count = sys.argv[1], int(sys.argv[2])
code = "import socket, sys; socket.socket().connect_ex(('127.0.0.1', int(sys.argv[1])))"
for index in range(count):
    child = subprocess.Popen([f"child-{index}", "-c", code, port], executable=sys.argv[3])
    print(child.pid, flush=True)
    child.wait()
"""


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ExporterProcess, int, Path]]:
    root = tmp_path_factory.mktemp("fidelity")
    port, log = free_port(), root / "events.jsonl"
    exporter = ExporterProcess(watch_config(RULE, port, log), root)
    try:
        exporter.wait_ready()
        yield exporter, port, log
    finally:
        exporter.stop()


def events(log: Path, pid: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            record
            for record in map(json.loads, log.read_text().splitlines() if log.exists() else [])
            if record["rule"] == RULE and record["pid"] == pid
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_setuid_program_that_then_execs_is_logged_as_it_was(watched, tmp_path: Path) -> None:
    """A setuid-root copy of python, run by uid 4244, connects and execs `sleep 0.5`."""
    _, port, log = watched
    suid = tmp_path / "nst-suid"
    shutil.copy(os.path.realpath(sys.executable), suid)
    suid.chmod(0o4755)
    knock = subprocess.Popen(
        [*SETPRIV, str(suid), "-c", CONNECT_THEN_EXEC, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert knock.stdout is not None
    pid = int(knock.stdout.readline())
    assert knock.wait(timeout=30) == 0
    [event] = events(log, pid)
    assert event["comm"] == "nst-suid"
    assert (event["uid"], event["euid"], event["gid"]) == (4244, 0, 4244)
    assert event["cmdline"][:2] == [str(suid), "-c"]  # not sleep's
    assert event["ppid"] == os.getpid()  # setpriv exec'd the program in place
    assert event["parent_comm"] == Path("/proc/self/comm").read_text().strip()
    assert event["result"] == "refused"


def test_processes_that_exit_at_once_keep_their_own_facts(watched, tmp_path: Path) -> None:
    _, port, log = watched
    parent = named_python(tmp_path, "nst-parent")
    child = named_python(tmp_path, "nst-child")
    out = subprocess.run(
        [parent, "-c", CONNECT_THEN_EXIT, str(port), "5", child],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for index, pid in enumerate(map(int, out.split())):
        [event] = events(log, pid)
        assert event["comm"] == "nst-child"
        assert event["parent_comm"] == "nst-parent"
        assert event["cmdline"][:2] == [f"child-{index}", "-c"]
        assert event["euid"] == event["uid"] == 0
