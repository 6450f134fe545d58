"""``netsnoop-exporter top --once`` against the real exporter: a process the test runs shows up
with its own bytes per second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO, ExporterProcess, named_python, only_collectors, value

pytestmark = pytest.mark.root

CONFIG = only_collectors("tcp_connections", "socket_traffic")
# Sends 16 KiB every 20 ms until its stdin closes, so it is busy throughout top's interval.
SENDER = """
import socket, sys, threading
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as conn:
    while not stop.wait(0.02):
        conn.sendall(b"x" * 16384)
"""


def sink(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        while conn.recv(1 << 16):
            pass


def test_top_once_shows_a_process_just_run(tmp_path: Path):
    process = ExporterProcess(CONFIG, tmp_path)
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=sink, args=(server,), daemon=True).start()
    comm = "nst-top-sender"
    sender = subprocess.Popen(
        [named_python(tmp_path, comm), "-c", SENDER, str(server.getsockname()[1])],
        stdin=subprocess.PIPE,
    )
    try:
        process.wait_ready()
        process.wait_for("netsnoop_socket_sent_bytes_total", {"comm": comm}, 1)
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "top", "--once", "--url", process.url + "/metrics"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        sent = value(process.scrape(), "netsnoop_socket_sent_bytes_total", comm=comm)
    finally:
        sender.communicate(b"", timeout=10)
        server.close()
        process.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:4] == ["COMM", "UID", "CONN/s", "SENT/s*"], lines
    rows = [line.split() for line in lines[2:] if line.split()[:1] == [comm]]
    assert len(rows) == 1, result.stdout
    assert rows[0][1] == str(os.getuid())
    assert rows[0][3] != "0", rows  # bytes per second while it was sending
    assert sent > 0
    assert all(len(line) <= 80 for line in lines)
