"""End to end: the real exporter, real BPF, real sockets; exact deltas of what each test did.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    ExporterProcess,
    filter_inbound,
    free_port,
    named_python,
    remote_host,
    value,
)

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_connections_total"

CONNECT = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
syncnt = int(sys.argv[4]) if len(sys.argv) > 4 else 0
family = socket.AF_INET6 if ":" in host else socket.AF_INET
for _ in range(count):
    s = socket.socket(family)
    if syncnt:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, syncnt)
    s.settimeout(30)
    print(s.connect_ex((host, port)), flush=True)
    s.close()
"""

LISTEN = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(128)
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""


def run_client(
    bin_dir: Path,
    comm: str,
    host: str,
    port: int,
    count: int,
    *extra: str,
    prefix: tuple[str, ...] = (),
) -> list[int]:
    python = named_python(bin_dir, comm)
    out = subprocess.run(
        [*prefix, python, "-c", CONNECT, host, str(port), str(count), *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [int(line) for line in out.split()]


class Listener:
    """A listening process under a chosen comm (and uid), in this namespace."""

    def __init__(
        self, bin_dir: Path, comm: str, host: str, port: int, prefix: tuple[str, ...] = ()
    ) -> None:
        python = named_python(bin_dir, comm)
        self.process = subprocess.Popen(
            [*prefix, python, "-c", LISTEN, host, str(port)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "listening"

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def test_outbound_established_counts_each_connect_with_comm_and_uid(exporter, bin_dir):
    port = free_port()
    labels = dict(
        direction="outbound", port=str(port), comm="nst-estab", uid="0", result="established"
    )
    with socket.create_server(("127.0.0.1", port), backlog=64):
        before = value(exporter.scrape(), METRIC, **labels)
        assert run_client(bin_dir, "nst-estab", "127.0.0.1", port, 7) == [0] * 7
        after = exporter.wait_for(METRIC, labels, before + 7)
    assert value(after, METRIC, **labels) - before == 7
    # the client's attempts are counted once, under no other result
    assert value(after, METRIC, direction="outbound", port=str(port), comm="nst-estab") == 7


def test_outbound_refused_to_a_closed_port(exporter, bin_dir):
    port = free_port()
    labels = dict(direction="outbound", port=str(port), comm="nst-refused", result="refused")
    assert run_client(bin_dir, "nst-refused", "127.0.0.1", port, 6) == [111] * 6
    after = exporter.wait_for(METRIC, labels, 6)
    assert value(after, METRIC, **labels) == 6
    assert value(after, METRIC, direction="outbound", port=str(port)) == 6


def test_client_under_another_uid_carries_that_uid(exporter, bin_dir):
    port = free_port()
    labels = dict(
        direction="outbound", port=str(port), comm="nst-uid", uid="4242", result="established"
    )
    setpriv = ("setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups")
    with socket.create_server(("127.0.0.1", port)):
        assert run_client(bin_dir, "nst-uid", "127.0.0.1", port, 3, prefix=setpriv) == [0] * 3
        after = exporter.wait_for(METRIC, labels, 3)
    assert value(after, METRIC, **labels) == 3
    assert value(after, METRIC, direction="outbound", port=str(port), uid="0") == 0


QUICK_PARENT = """
import os, subprocess, sys, time
child, port = sys.argv[1], sys.argv[2]
code = ("import os, socket; s = socket.socket(); s.connect(('127.0.0.1', %s)); os._exit(0)" % port)
began = time.monotonic()
subprocess.run([child, "-c", code], check=True)
print(time.monotonic() - began)
"""


def test_short_lived_client_keeps_its_own_comm(exporter, bin_dir):
    """A child that connects and exits at once is counted under its comm, not its parent's."""
    port = free_port()
    parent = named_python(bin_dir, "nst-parent")
    child = named_python(bin_dir, "nst-quick")
    with socket.create_server(("127.0.0.1", port)):
        subprocess.run([parent, "-c", QUICK_PARENT, child, str(port)], check=True, timeout=60)
        after = exporter.wait_for(METRIC, dict(port=str(port), comm="nst-quick"), 1)
    assert (
        value(
            after,
            METRIC,
            direction="outbound",
            port=str(port),
            comm="nst-quick",
            result="established",
        )
        == 1
    )
    assert value(after, METRIC, direction="outbound", port=str(port), comm="nst-parent") == 0


def test_remote_host_knocking_on_closed_telnet_port_is_inbound_refused(exporter):
    with remote_host() as remote:
        labels = dict(direction="inbound", port="23", result="refused", comm="", uid="")
        before = value(exporter.scrape(), METRIC, **labels)
        out = remote.python(CONNECT_INLINE.format(host=remote.host_v4, port=23, count=5))
        assert out.split() == ["111"] * 5
        after = exporter.wait_for(METRIC, labels, before + 5)
    assert value(after, METRIC, **labels) - before == 5


CONNECT_INLINE = """
import socket
for _ in range({count}):
    s = socket.socket(socket.AF_INET6 if ":" in "{host}" else socket.AF_INET)
    s.settimeout(10)
    print(s.connect_ex(("{host}", {port})), flush=True)
    s.close()
"""


def test_remote_host_connections_accepted_carry_the_listeners_comm_and_uid(exporter, bin_dir):
    port = free_port()
    setpriv = ("setpriv", "--reuid", "4343", "--regid", "4343", "--clear-groups")
    with (
        remote_host() as remote,
        Listener(bin_dir, "nst-listener", "0.0.0.0", port, prefix=setpriv),
    ):
        labels = dict(
            direction="inbound",
            port=str(port),
            result="accepted",
            comm="nst-listener",
            uid="4343",
        )
        out = remote.python(CONNECT_INLINE.format(host=remote.host_v4, port=port, count=4))
        assert out.split() == ["0"] * 4
        after = exporter.wait_for(METRIC, labels, 4)
    assert value(after, METRIC, **labels) == 4
    assert value(after, METRIC, direction="inbound", port=str(port)) == 4


def test_ipv6_outbound_and_inbound_are_counted(exporter, bin_dir):
    port = free_port()
    with remote_host() as remote:
        with Listener(bin_dir, "nst-listen6", "::", port):
            out = remote.python(CONNECT_INLINE.format(host=remote.host_v6, port=port, count=3))
            assert out.split() == ["0"] * 3
            refused = remote.python(CONNECT_INLINE.format(host=remote.host_v6, port=23, count=2))
            assert refused.split() == ["111"] * 2
        assert run_client(bin_dir, "nst-v6out", "::1", port, 2) == [111] * 2
        after = exporter.wait_for(METRIC, dict(port=str(port), comm="nst-v6out"), 2)
    assert (
        value(
            after,
            METRIC,
            direction="inbound",
            port=str(port),
            comm="nst-listen6",
            result="accepted",
        )
        == 3
    )
    assert (
        value(
            after, METRIC, direction="outbound", port=str(port), comm="nst-v6out", result="refused"
        )
        == 2
    )


def test_syn_without_answer_is_a_timeout(exporter, bin_dir):
    port = free_port()
    with remote_host() as remote:
        filter_inbound(remote, port, "drop")
        # TCP_SYNCNT=1: one retransmission, so the kernel gives up after about 3 s
        errors = run_client(bin_dir, "nst-timeout", remote.peer_v4, port, 2, "1")
        assert errors == [110, 110]
        labels = dict(direction="outbound", port=str(port), comm="nst-timeout", result="timeout")
        after = exporter.wait_for(METRIC, labels, 2)
    assert value(after, METRIC, **labels) == 2
    assert value(after, METRIC, direction="outbound", port=str(port)) == 2


def test_unreachable_peer_is_an_error(exporter, bin_dir):
    port = free_port()
    with remote_host() as remote:
        filter_inbound(remote, port, "reject with icmp host-unreachable")
        errors = run_client(bin_dir, "nst-unreach", remote.peer_v4, port, 2)
        assert errors == [113, 113]
        labels = dict(direction="outbound", port=str(port), comm="nst-unreach", result="error")
        after = exporter.wait_for(METRIC, labels, 2)
    assert value(after, METRIC, **labels) == 2
    assert value(after, METRIC, direction="outbound", port=str(port)) == 2


def test_self_metrics(exporter):
    series = exporter.scrape()
    for program in (
        "inet_sock_set_state",
        "tcp_receive_reset",
        "inet_sk_error_report",
        "tcp_send_reset",
    ):
        attached = value(
            series, "netsnoop_bpf_program_attached", collector="tcp_connections", program=program
        )
        assert attached == 1, program
    assert value(series, "netsnoop_scrape_collector_success", collector="tcp_connections") == 1
    assert value(series, "netsnoop_bpf_map_capacity", map="connections") == 65536
    assert value(series, "netsnoop_bpf_map_entries", map="connections") >= 1
    assert value(series, "netsnoop_bpf_map_update_failures_total", map="connections") == 0
    build = [lbls for (name, lbls) in series if name == "netsnoop_build_info"]
    assert len(build) == 1 and dict(build[0])["kernel"] == os.uname().release
    assert ("netsnoop_scrape_duration_seconds", frozenset()) in series
    assert not [name for (name, _) in series if name.startswith(("netsnoop_process", "python_"))]
    status, page = exporter.get("/")
    assert status == 200 and b'href="/metrics"' in page


def loaded_program_ids() -> set[int]:
    out = subprocess.run(
        ["bpftool", "prog", "show"], check=True, capture_output=True, text=True
    ).stdout
    return {int(line.split(":", 1)[0]) for line in out.splitlines() if line[:1].isdigit()}


def programs_held_by(pid: int) -> set[int]:
    """IDs of the BPF programs whose file descriptors the process holds (fdinfo prog_id)."""
    ids = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = fdinfo.read_text()
        except OSError:
            continue
        ids.update(
            int(line.split()[1]) for line in text.splitlines() if line.startswith("prog_id:")
        )
    return ids


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_detaches_everything_and_exits_zero(tmp_path, signum):
    process = ExporterProcess(None, tmp_path)
    process.wait_ready()
    ours = programs_held_by(process.process.pid)
    assert len(ours) >= 4, "the exporter's programs should be visible while it runs"
    assert ours <= loaded_program_ids()
    began = time.monotonic()
    process.process.send_signal(signum)
    status = process.process.wait(10)
    stopped_in = time.monotonic() - began
    process.stop()
    assert status == 0, process.log()
    assert stopped_in < 2.0
    assert not ours & loaded_program_ids()


ABANDON = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))  # EINPROGRESS: the SYN is out, nobody will answer
    s.close()                   # abandoned in SYN_SENT: no error report ever comes
"""


def test_connect_abandoned_in_syn_sent_is_an_error(exporter, bin_dir):
    port = free_port()
    with remote_host() as remote:
        filter_inbound(remote, port, "drop")
        python = named_python(bin_dir, "nst-abandon")
        subprocess.run([python, "-c", ABANDON, remote.peer_v4, str(port), "3"], check=True)
        labels = dict(direction="outbound", port=str(port), comm="nst-abandon", result="error")
        after = exporter.wait_for(METRIC, labels, 3, timeout=20)
    assert value(after, METRIC, **labels) == 3
    assert value(after, METRIC, direction="outbound", port=str(port)) == 3


def test_listener_opened_before_start_is_known_from_sock_diag(tmp_path, bin_dir):
    """A listener that never passes CLOSE->LISTEN while we run still gets its owner."""
    port = free_port()
    setpriv = ("setpriv", "--reuid", "4545", "--regid", "4545", "--clear-groups")
    with Listener(bin_dir, "nst-early", "127.0.0.1", port, prefix=setpriv):
        process = ExporterProcess(None, tmp_path)
        try:
            process.wait_ready()
            assert run_client(bin_dir, "nst-early-cl", "127.0.0.1", port, 2) == [0, 0]
            labels = dict(direction="inbound", port=str(port), result="accepted")
            after = process.wait_for(METRIC, labels, 2)
        finally:
            process.stop()
    assert value(after, METRIC, comm="nst-early", uid="4545", **labels) == 2


def test_unknown_tracepoint_in_the_config_disables_only_that_program(tmp_path, bin_dir):
    config = "tracepoints:\n  tcp_connections.tcp_send_reset: tcp:no_such_event\n"
    process = ExporterProcess(config, tmp_path)
    try:
        process.wait_ready()
        port = free_port()
        labels = dict(direction="outbound", port=str(port), comm="nst-partial")
        with socket.create_server(("127.0.0.1", port)):
            assert run_client(bin_dir, "nst-partial", "127.0.0.1", port, 2) == [0, 0]
            after = process.wait_for(METRIC, labels, 2)
        log = process.log()
    finally:
        process.stop()
    ours = {"collector": "tcp_connections"}
    assert value(after, "netsnoop_bpf_program_attached", **ours, program="tcp_send_reset") == 0
    for program in ("inet_sock_set_state", "tcp_receive_reset", "inet_sk_error_report"):
        assert value(after, "netsnoop_bpf_program_attached", **ours, program=program) == 1
    assert value(after, METRIC, result="established", **labels) == 2
    assert "tracepoint tcp:no_such_event not in this kernel" in log
