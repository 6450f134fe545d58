"""End to end: a listener that never accepts, flooded from a namespace host, and handshakes
held half-open; the real exporter reads them through sock_diag.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import RemoteHost, free_port, named_python, remote_host, value

pytestmark = pytest.mark.root

LENGTH = "netsnoop_listen_queue_length"
CAPACITY = "netsnoop_listen_queue_capacity"
SYN_QUEUE = "netsnoop_listen_syn_queue_length"
DROPS = "netsnoop_listen_drops_total"

# A listener that never calls accept(); TCP_DEFER_ACCEPT keeps handshakes without data
# half-open (SYN_RECV) for its timeout.
LISTEN = """
import socket, sys, time
host, port, backlog, defer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket()
if defer:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer)
s.bind((host, port))
s.listen(backlog)
print("listening", flush=True)
time.sleep(600)
"""

# Non-blocking connects that stay open, and never send a byte.
CONNECT = """
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    held.append(s)
print("connecting", flush=True)
time.sleep(600)
"""


@contextmanager
def process(command: list[str], ready: str) -> Iterator[None]:
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == ready
        yield
    finally:
        child.kill()
        child.wait()


def listener(bin_dir: Path, comm: str, host: str, port: int, backlog: int, defer: int = 0):
    python = named_python(bin_dir, comm)
    command = [python, "-c", LISTEN, host, str(port), str(backlog), str(defer)]
    return process(command, "listening")


def clients(peer: RemoteHost, port: int, count: int):
    command = ["ip", "netns", "exec", peer.name, sys.executable, "-c", CONNECT]
    return process([*command, peer.host_v4, str(port), str(count)], "connecting")


def test_full_accept_queue_and_its_drops(exporter, bin_dir):
    """Backlog 1: the kernel queues backlog + 1 connections (it refuses only once the queue
    holds more than the backlog, as ``ss -lnt`` shows: Recv-Q 2, Send-Q 1), then drops
    every further SYN, counted by the listener."""
    port = free_port()
    labels = dict(port=str(port), comm="n9-backlog")
    with remote_host() as peer, listener(bin_dir, "n9-backlog", peer.host_v4, port, 1):
        before = exporter.scrape()
        assert value(before, CAPACITY, **labels) == 1
        assert value(before, LENGTH, **labels) == 0
        with clients(peer, port, 8):
            exporter.wait_for(LENGTH, labels, 2)
            after = exporter.wait_for(DROPS, labels, value(before, DROPS, **labels) + 1)
    assert value(after, LENGTH, **labels) == value(after, CAPACITY, **labels) + 1 == 2
    assert value(after, DROPS, **labels) > value(before, DROPS, **labels)


def test_half_open_handshakes_fill_the_syn_queue(exporter, bin_dir):
    port, count = free_port(), 3
    labels = dict(port=str(port), comm="n9-defer")
    with remote_host() as peer, listener(bin_dir, "n9-defer", peer.host_v4, port, 16, defer=30):
        assert value(exporter.scrape(), SYN_QUEUE, port=str(port)) == 0
        with clients(peer, port, count):
            after = exporter.wait_for(SYN_QUEUE, labels, count)
        assert value(after, SYN_QUEUE, **labels) == count
        assert value(after, LENGTH, **labels) == 0  # none completed into the accept queue
