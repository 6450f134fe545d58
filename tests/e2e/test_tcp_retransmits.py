"""netsnoop_tcp_retransmits_total against the kernel's own count: a namespace host drops half
of one connection's packets with nftables, and the exporter's count for that port and comm
must equal the socket's tcpi_total_retrans (``ss -ti`` retrans:x/TOTAL); a clean transfer
counts what the kernel counts for it (nothing, on a machine that keeps up)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    ExporterProcess,
    RemoteHost,
    filter_inbound,
    free_port,
    named_python,
    only_collectors,
    remote_host,
    value,
)

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_retransmits_total"
CONFIG = only_collectors("tcp_retransmits")
SINK = """
import socket, sys, threading
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
def drain(conn):
    while conn.recv(65536):
        pass
while True:
    threading.Thread(target=drain, args=(s.accept()[0],), daemon=True).start()
"""
# Sends 40 small writes (no Nagle), prints its local port, then holds the socket open until
# stdin closes, so the test can read the kernel's count for it.
SENDER = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(40):
    conn.sendall(b"x" * 500)
    time.sleep(0.01)
print(conn.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    process = ExporterProcess(CONFIG, tmp_path_factory.mktemp("retransmits"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def kernel_total_retrans(remote: RemoteHost, port: int, local_port: int) -> int:
    """tcpi_total_retrans of our socket once everything it sent is acknowledged."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ss", "-tinH", "dst", f"{remote.peer_v4}:{port}", "src", f":{local_port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fields = out.split()
        if fields and fields[2] == "0" and "unacked:" not in out:  # Send-Q empty, all acked
            found = re.search(r"\bretrans:\d+/(\d+)", out)
            return int(found.group(1)) if found else 0
        time.sleep(0.2)
    raise AssertionError(f"socket to port {port} never drained:\n{out}")


def transfer(bin_dir: Path, comm: str, remote: RemoteHost, port: int) -> int:
    """Runs a sender under ``comm``; returns the kernel's retransmit total for its socket."""
    sender = subprocess.Popen(
        [named_python(bin_dir, comm), "-c", SENDER, remote.peer_v4, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stdout is not None
        local_port = int(sender.stdout.readline())
        return kernel_total_retrans(remote, port, local_port)
    finally:
        sender.communicate("", timeout=30)


def sink(remote: RemoteHost, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        ["ip", "netns", "exec", remote.name, sys.executable, "-c", SINK, remote.peer_v4, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    return server


def test_retransmits_match_the_kernels_count_per_port_and_comm(exporter, tmp_path):
    lossy_port, clean_port = free_port(), free_port()
    with remote_host() as remote:
        servers = [sink(remote, lossy_port), sink(remote, clean_port)]
        try:
            filter_inbound(remote, lossy_port, "numgen random mod 2 0 drop")
            clean = transfer(tmp_path, "nst-rt-clean", remote, clean_port)
            lossy = transfer(tmp_path, "nst-rt-lossy", remote, lossy_port)
        finally:
            for server in servers:
                server.kill()
                server.wait()
    labels = dict(direction="outbound", port=str(lossy_port), comm="nst-rt-lossy")
    after = exporter.wait_for(METRIC, labels, lossy)
    print(f"kernel total_retrans {lossy}", {k: v for k, v in after.items() if k[0] == METRIC})
    assert lossy > 0
    assert value(after, METRIC, **labels) == lossy
    assert value(after, METRIC, **labels, kind="data") > 0
    assert value(after, METRIC, **labels, uid="0") == lossy
    # Nothing drops the clean transfer: the kernel counts 0, unless the machine stalled an ACK
    # past the RTO (a spurious retransmit), and then the exporter must count that same number.
    assert value(after, METRIC, comm="nst-rt-clean") == clean
    assert value(after, METRIC, port=str(clean_port)) == clean
