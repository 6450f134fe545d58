"""netsnoop_tcp_connect_duration_seconds: a namespace host drops the first SYN of each
connection (nftables, keyed by the client's address and port), so the kernel's SYN retransmit
lands each connect just past 1 s; clean connects to another port land under 10 ms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    ExporterProcess,
    drop_first_syn,
    free_port,
    named_python,
    only_collectors,
    remote_host,
    value,
)

pytestmark = pytest.mark.root

NAME = "netsnoop_tcp_connect_duration_seconds"
CONFIG = only_collectors(settings="tcp_connect_latency: {labels: [port, comm]}")
LISTEN = """
import socket, sys
servers = [socket.create_server((sys.argv[1], int(port))) for port in sys.argv[2:]]
print("listening", flush=True)
sys.stdin.read()
"""
CONNECT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
print("ok")
"""
SLOW, FAST = 2, 3


def connect(tmp_path: Path, host: str, port: int, count: int) -> None:
    out = subprocess.run(
        [named_python(tmp_path, "nst-lat-cli"), "-c", CONNECT, host, str(port), str(count)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "ok"


def test_connects_delayed_by_a_dropped_syn_land_past_one_second(tmp_path: Path):
    exporter = ExporterProcess(CONFIG, tmp_path)
    slow_port, fast_port = free_port(), free_port()
    try:
        exporter.wait_ready()
        with remote_host() as remote:
            listen = (LISTEN, remote.peer_v4, str(slow_port), str(fast_port))
            server = subprocess.Popen(
                ["ip", "netns", "exec", remote.name, sys.executable, "-c", *listen],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                assert server.stdout.readline().strip() == "listening"
                drop_first_syn(remote, slow_port)
                connect(tmp_path, remote.peer_v4, slow_port, SLOW)
                connect(tmp_path, remote.peer_v4, fast_port, FAST)
            finally:
                server.communicate("", timeout=10)
        slow = dict(port=str(slow_port), comm="nst-lat-cli")
        fast = dict(port=str(fast_port), comm="nst-lat-cli")
        exporter.wait_for(f"{NAME}_count", slow, SLOW)
        after = exporter.wait_for(f"{NAME}_count", fast, FAST)
    finally:
        exporter.stop()
    bucket = f"{NAME}_bucket"
    assert value(after, f"{NAME}_count", **slow) == SLOW
    assert value(after, bucket, **slow, le="1.0") == 0
    assert value(after, bucket, **slow, le="2.5") == SLOW
    assert value(after, bucket, **slow, le="+Inf") == SLOW
    assert SLOW * 1.0 < value(after, f"{NAME}_sum", **slow) < SLOW * 2.5
    assert value(after, f"{NAME}_count", **fast) == FAST
    assert value(after, bucket, **fast, le="0.01") == FAST
    assert 0 < value(after, f"{NAME}_sum", **fast) < FAST * 0.01
