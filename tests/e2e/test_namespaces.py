"""End to end, as on a Kubernetes node: listeners on one port in several network namespaces,
listeners handed over by socket activation, and listen queues inside a namespace. Each test
makes its own namespaces (tests/helpers.py remote_host) and counts only its own ports.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_tcp_connections import CONNECT, LISTEN
from tests.helpers import (
    ExporterProcess,
    RemoteHost,
    Series,
    free_port,
    named_python,
    remote_host,
    value,
)

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_connections_total"
LENGTH = "netsnoop_listen_queue_length"
CAPACITY = "netsnoop_listen_queue_capacity"

# Listens, prints "listening", and never accepts: connections pile up in the accept queue.
HOLD = """
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(int(sys.argv[3]))
print("listening", flush=True)
time.sleep(600)
"""

# The program systemd-socket-activate execs: serves the listening socket it was handed (fd 3).
SERVE_FD3 = """
import socket
s = socket.socket(fileno=3)
while True:
    s.accept()[0].close()
"""


def setpriv(uid: int) -> tuple[str, ...]:
    return ("setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups")


class Process:
    """A child that prints ``ready`` once set up; killed by its pid on exit."""

    def __init__(self, command: list[str], ready: str = "listening") -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if ready:
            assert self.process.stdout.readline().strip() == ready

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def listener_in(
    pod: RemoteHost, bin_dir: Path, comm: str, uid: int, port: int, code: str = LISTEN, *args: str
) -> Process:
    """A listener under ``comm`` and ``uid`` inside the pod's network namespace."""
    python = named_python(bin_dir, comm)
    in_pod = ("ip", "netns", "exec", pod.name, *setpriv(uid))
    return Process([*in_pod, python, "-c", code, "0.0.0.0", str(port), *args])


def connect(bin_dir: Path, host: str, port: int, count: int) -> None:
    """``count`` connections from this (the host's) namespace, each accepted."""
    python = named_python(bin_dir, "nsx-client")
    out = subprocess.run(
        [python, "-c", CONNECT, host, str(port), str(count)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert out.split() == ["0"] * count


def accepted(series, port: int, **labels: str) -> float:
    return value(series, METRIC, direction="inbound", port=str(port), result="accepted", **labels)


def test_pods_on_one_port_are_counted_under_their_own_listener(exporter, bin_dir):
    """Two namespaces listen on one port under different comms and uids: 5 and 2 connections
    are 5 and 2, not 7 under whichever listened last. Then one listener closes and another
    process takes the port in that namespace: its connections are its own."""
    port = free_port()
    inbound = dict(direction="inbound", port=str(port))
    with (
        remote_host() as pod_a,
        remote_host() as pod_b,
        listener_in(pod_b, bin_dir, "nsx-podb", 5002, port),
    ):
        with listener_in(pod_a, bin_dir, "nsx-poda", 5001, port):
            connect(bin_dir, pod_a.peer_v4, port, 5)
            connect(bin_dir, pod_b.peer_v4, port, 2)
            first = exporter.wait_for(METRIC, inbound, 7)
        with listener_in(pod_a, bin_dir, "nsx-podc", 5003, port):
            connect(bin_dir, pod_a.peer_v4, port, 3)
            connect(bin_dir, pod_b.peer_v4, port, 1)
            second = exporter.wait_for(METRIC, inbound, 11)
    assert accepted(first, port, comm="nsx-poda", uid="5001") == 5
    assert accepted(first, port, comm="nsx-podb", uid="5002") == 2
    assert accepted(first, port) == 7
    assert accepted(second, port, comm="nsx-poda", uid="5001") == 5
    assert accepted(second, port, comm="nsx-podc", uid="5003") == 3
    assert accepted(second, port, comm="nsx-podb", uid="5002") == 3
    assert accepted(second, port) == 11


def test_listener_in_another_namespace_started_before_the_exporter_keeps_its_owner(
    tmp_path, bin_dir
):
    port = free_port()
    with remote_host() as pod, listener_in(pod, bin_dir, "nsx-early", 5004, port):
        process = ExporterProcess(None, tmp_path)
        try:
            process.wait_ready()
            connect(bin_dir, pod.peer_v4, port, 4)
            after = process.wait_for(METRIC, dict(direction="inbound", port=str(port)), 4)
        finally:
            process.stop()
    assert accepted(after, port, comm="nsx-early", uid="5004") == 4
    assert accepted(after, port) == 4


def test_listen_queue_of_a_listener_inside_a_namespace(exporter, bin_dir):
    """A listener that never accepts, inside a pod's namespace, with backlog 8: 5 connections
    wait in its queue, under its own comm."""
    port = free_port()
    labels = dict(port=str(port), comm="nsx-hold")
    with remote_host() as pod, listener_in(pod, bin_dir, "nsx-hold", 5005, port, HOLD, "8"):
        before = exporter.scrape()
        assert value(before, CAPACITY, **labels) == 8
        assert value(before, LENGTH, **labels) == 0
        connect(bin_dir, pod.peer_v4, port, 5)
        after = exporter.wait_for(LENGTH, labels, 5)
    assert value(after, LENGTH, **labels) == value(after, LENGTH, port=str(port)) == 5
    assert value(after, CAPACITY, **labels) == 8
    assert value(after, "netsnoop_listen_namespaces", state="read") >= 2


ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    ACTIVATE is None, reason="systemd-socket-activate missing (Debian package systemd)"
)


def three_connections_through(
    exporter: ExporterProcess, bin_dir: Path, port: int, accept: bool, program: str, code: str
) -> Series:
    """systemd-socket-activate listening on ``port`` for ``program``; the series after three
    connections. The activator prints nothing on stdout: its socket showing in the listen
    queues says it listens."""
    flags = ["--accept"] if accept else []
    command = [ACTIVATE, *flags, "-l", f"127.0.0.1:{port}", named_python(bin_dir, program)]
    with Process([*command, "-c", code], ready=""):
        listening = exporter.wait_for(CAPACITY, dict(port=str(port)), 1)
        assert value(listening, CAPACITY, port=str(port)) > 0, "the activator never listened"
        connect(bin_dir, "127.0.0.1", port, 3)
        return exporter.wait_for(METRIC, dict(direction="inbound", port=str(port)), 3)


@needs_activate
def test_socket_activated_listener_is_credited_to_the_program_serving_it(exporter, bin_dir):
    """systemd-socket-activate listens, then execs the server on the first connection: the
    accepted connections, including that first one, and the listen queue name the server."""
    port = free_port()
    after = three_connections_through(exporter, bin_dir, port, False, "nsx-realsrv", SERVE_FD3)
    assert accepted(after, port, comm="nsx-realsrv") == accepted(after, port) == 3
    assert value(after, CAPACITY, port=str(port), comm="nsx-realsrv") > 0
    assert value(after, CAPACITY, port=str(port), comm="systemd-socket-") == 0


@needs_activate
def test_inetd_style_activation_is_credited_to_the_activator(exporter, bin_dir):
    """With --accept the activator accepts each connection and hands only that connection to
    a fresh child: the activator serves the listener, so both metrics name it."""
    port = free_port()
    after = three_connections_through(exporter, bin_dir, port, True, "nsx-perconn", "pass")
    assert accepted(after, port, comm="systemd-socket-") == accepted(after, port) == 3
    assert value(after, CAPACITY, port=str(port), comm="systemd-socket-") > 0
