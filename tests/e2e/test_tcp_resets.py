"""netsnoop_tcp_resets_total: an abortive close (SO_LINGER 0) in a namespace host is one reset
sent by the server's process and one received by the client's, both on the service port; a
refused connect is not a reset of a connection and counts nothing here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    ExporterProcess,
    free_port,
    named_python,
    only_collectors,
    remote_host,
    value,
)

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_resets_total"
CONFIG = only_collectors("tcp_resets")
# Accepts `count` connections and closes each with SO_LINGER 0: an RST instead of a FIN.
ABORTING_SERVER = """
import socket, struct, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
for _ in range(int(sys.argv[3])):
    conn = s.accept()[0]
    conn.recv(1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""
CLIENT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as conn:
            conn.sendall(b"x")
            print(repr(conn.recv(1)), flush=True)
    except OSError as error:
        print(type(error).__name__, flush=True)
"""
COUNT = 3


@pytest.mark.parametrize("listener", ["after", "before"])
def test_abortive_close_is_one_sent_and_one_received_reset(tmp_path: Path, listener: str):
    """``before``: the server listens before the exporter starts, so its owner comes from the
    listeners seeded at start, not from the listen() the kernel side saw."""
    port, closed_port = free_port(), free_port()
    exporter = server = None
    with remote_host() as remote:
        try:
            if listener == "after":
                exporter = ExporterProcess(CONFIG, tmp_path)
                exporter.wait_ready()
            server_python = named_python(tmp_path, "nst-rst-srv")
            server_args = (ABORTING_SERVER, remote.peer_v4, str(port), str(COUNT))
            server = subprocess.Popen(
                ["ip", "netns", "exec", remote.name, server_python, "-c", *server_args],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "listening"
            if exporter is None:
                exporter = ExporterProcess(CONFIG, tmp_path)
                exporter.wait_ready()
            client = named_python(tmp_path, "nst-rst-cli")
            out = subprocess.run(
                [client, "-c", CLIENT, remote.peer_v4, str(port), str(COUNT)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert out.split() == ["ConnectionResetError"] * COUNT
            assert server.wait(timeout=10) == 0
            refused = subprocess.run(
                [client, "-c", CLIENT, remote.peer_v4, str(closed_port), "1"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert refused.split() == ["ConnectionRefusedError"]
            received = dict(direction="received", port=str(port), comm="nst-rst-cli", uid="0")
            sent = dict(direction="sent", port=str(port), comm="nst-rst-srv", uid="0")
            exporter.wait_for(METRIC, received, COUNT)
            after = exporter.wait_for(METRIC, sent, COUNT)
        finally:
            if server is not None and server.poll() is None:
                server.kill()
                server.wait()
            if exporter is not None:
                exporter.stop()
    assert value(after, METRIC, **received) == COUNT
    assert value(after, METRIC, **sent) == COUNT
    assert value(after, METRIC, port=str(port)) == 2 * COUNT  # nothing else, no other comm
    assert value(after, METRIC, port=str(closed_port)) == 0
    assert value(after, METRIC, comm="nst-rst-cli", direction="sent") == 0
