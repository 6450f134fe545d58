"""End to end: per-process bytes, UDP destinations, and watched ports with their event log and
hooks; the real exporter, real BPF, real sockets, exact deltas.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.kernel.sysctl import local_port_range
from tests.helpers import ExporterProcess, free_port, named_python, remote_host, value

pytestmark = pytest.mark.root

MIB = 1 << 20
FLOOD_ATTEMPTS = 10_000
FLOOD_RATE = 10
SETPRIV = ("setpriv", "--reuid", "4243", "--regid", "4243", "--clear-groups")


class WatchSetup:
    def __init__(self, root: Path) -> None:
        self.event_log = root / "events.jsonl"
        self.telnet_hooks = root / "telnet-hooks"
        self.flood_hooks = root / "flood-hooks"
        self.telnet_hooks.mkdir()
        self.flood_hooks.mkdir()
        self.flood_port = free_port()

    def config(self) -> str:
        hook = 'cat > "$0/$$.json"'  # one file per run: the event exactly as received
        return f"""
watch:
  - name: n3-telnet
    protocol: tcp
    direction: outbound
    ports: [23]
    rate_limit: 0
    hook: [sh, -c, '{hook}', "{self.telnet_hooks}"]
  - name: n3-flood
    protocol: tcp
    direction: outbound
    ports: [{self.flood_port}]
    rate_limit: {FLOOD_RATE}
    hook: [sh, -c, '{hook}', "{self.flood_hooks}"]
event_log:
  path: "{self.event_log}"
"""

    def events(self, **match: object) -> list[dict]:
        if not self.event_log.exists():
            return []
        records = [json.loads(line) for line in self.event_log.read_text().splitlines()]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> WatchSetup:
    return WatchSetup(tmp_path_factory.mktemp("watch"))


@pytest.fixture(scope="module")
def exporter(watch: WatchSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    process = ExporterProcess(watch.config(), tmp_path_factory.mktemp("exporter"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


UDP_SEND = """
import socket, sys
host, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if mode == "sendto":
    s.sendto(b"q", (host, 53))
elif mode == "sendmsg":
    s.sendmsg([b"q"], [], 0, (host, 53))
else:  # a connected socket, as glibc's resolver uses
    s.connect((host, 53))
    s.send(b"q")
"""


def test_short_lived_udp_senders_are_each_counted_under_their_comm_and_uid(exporter, bin_dir):
    """50 processes that send one datagram to port 53 and exit at once: exactly 50."""
    python = named_python(bin_dir, "n3-dns")
    labels = dict(port="53", comm="n3-dns", uid="4243")
    modes = ("sendto", "sendmsg", "connected")
    with remote_host() as host:
        before = value(exporter.scrape(), "netsnoop_udp_sends_total", **labels)
        for index in range(50):
            subprocess.run(
                [*SETPRIV, python, "-c", UDP_SEND, host.peer_v4, modes[index % 3]],
                check=True,
                timeout=30,
            )
        after = exporter.wait_for("netsnoop_udp_sends_total", labels, before + 50)
    assert value(after, "netsnoop_udp_sends_total", **labels) - before == 50
    assert value(after, "netsnoop_udp_sends_total", comm="n3-dns") - before == 50


UDP_SWEEP = """
import socket, sys
host, low, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(low, low + count):
    s.sendto(b"q", (host, port))
"""


def test_a_sweep_of_udp_ports_folds_in_the_kernel_into_other(tmp_path, bin_dir):
    """2,000 datagrams to 2,000 ephemeral ports the policy does not keep, with a kernel map of
    64 keys: the fold happens in BPF, before the map, so one key holds them all and every
    datagram counts, under port="other" (a fold in userspace would have overflowed the map)."""
    low, high = local_port_range()
    assert high - low > 4000
    first, count = low + 1000, 2000
    config = "collectors:\n  udp_sends:\n    map_size: 64\n"
    exporter = ExporterProcess(config, tmp_path)
    try:
        exporter.wait_ready()
        labels = dict(port="other", comm="n3-sweep")
        sweep = named_python(bin_dir, "n3-sweep")
        with remote_host() as host:
            subprocess.run(
                [sweep, "-c", UDP_SWEEP, host.peer_v4, str(first), str(count)],
                check=True,
                timeout=60,
            )
            after = exporter.wait_for("netsnoop_udp_sends_total", labels, count)
    finally:
        exporter.stop()
    assert value(after, "netsnoop_udp_sends_total", **labels) == count
    failures = value(after, "netsnoop_bpf_map_update_failures_total", map="udp_sends")
    assert failures == 0


RECEIVE = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
connection, _ = server.accept()
total = 0
while chunk := connection.recv(65536):
    total += len(chunk)
print(total, flush=True)
"""

SEND = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    s.sendall(b"x" * int(sys.argv[2]))
"""


def test_one_mib_over_tcp_counts_for_sender_and_receiver(exporter, bin_dir):
    port = free_port()
    sent = dict(protocol="tcp", comm="n3-bsend")
    received = dict(protocol="tcp", comm="n3-brecv")
    before = exporter.scrape()
    receiver = subprocess.Popen(
        [named_python(bin_dir, "n3-brecv"), "-c", RECEIVE, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "listening"
    subprocess.run(
        [named_python(bin_dir, "n3-bsend"), "-c", SEND, str(port), str(MIB)], check=True, timeout=30
    )
    assert int(receiver.stdout.readline()) == MIB
    receiver.wait(timeout=10)
    exporter.wait_for("netsnoop_socket_sent_bytes_total", sent, MIB)
    after = exporter.wait_for("netsnoop_socket_received_bytes_total", received, MIB)
    for name, labels in (
        ("netsnoop_socket_sent_bytes_total", sent),
        ("netsnoop_socket_received_bytes_total", received),
    ):
        grown = value(after, name, **labels) - value(before, name, **labels)
        assert MIB <= grown <= MIB * 1.01, (name, grown)


PARENT = """
import os, subprocess, sys
host, child = sys.argv[1], sys.argv[2:]
code = "import socket; socket.socket().connect_ex((%r, 23))" % host
spawned = subprocess.Popen([*child, "-c", code])  # setpriv execs the child in place
spawned.wait()
print(os.getpid(), spawned.pid, flush=True)
"""


def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_watched_attempt_from_a_short_lived_child_names_it_and_its_parent(exporter, watch, bin_dir):
    parent_python = named_python(bin_dir, "n3-parent")
    child_python = named_python(bin_dir, "n3-child")
    with remote_host() as host:
        parent = subprocess.run(
            [parent_python, "-c", PARENT, host.peer_v4, *SETPRIV, child_python],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert parent.returncode == 0, parent.stderr
    parent_pid, child_pid = map(int, parent.stdout.split())
    events = wait_until(lambda: watch.events(rule="n3-telnet", pid=child_pid))
    assert len(events) == 1, watch.events(rule="n3-telnet")
    event = events[0]
    assert event["comm"] == "n3-child"
    assert event["ppid"] == parent_pid
    assert event["parent_comm"] == "n3-parent"
    assert event["uid"] == 4243
    assert event["direction"] == "outbound" and event["protocol"] == "tcp"
    assert event["remote"] == f"{host.peer_v4}:23"
    assert event["result"] == "refused"
    assert event["local"].startswith(f"{host.host_v4}:")
    assert event["time"].endswith("Z")
    hooks = wait_until(
        lambda: [
            json.loads(path.read_text())
            for path in watch.telnet_hooks.glob("*.json")
            if path.stat().st_size and json.loads(path.read_text())["pid"] == child_pid
        ]
    )
    assert hooks == [event]


FLOOD = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    s = socket.socket()
    s.connect_ex(("127.0.0.1", port))
    s.close()
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_flood_of_watched_attempts_is_rate_limited_and_the_exporter_stays_responsive(
    exporter, watch, bin_dir
):
    lost = "netsnoop_watch_events_lost_total"
    before = exporter.scrape()
    cpu_before = cpu_seconds(exporter.process.pid)
    flood = subprocess.Popen(
        [named_python(bin_dir, "n3-flood"), "-c", FLOOD, str(watch.flood_port), str(FLOOD_ATTEMPTS)]
    )
    began = time.monotonic()
    scrape_seconds = []
    while flood.poll() is None:
        started = time.monotonic()
        exporter.scrape()
        scrape_seconds.append(time.monotonic() - started)
        time.sleep(0.05)
    flood_seconds = time.monotonic() - began
    assert flood.returncode == 0
    labels = dict(rule="n3-flood")
    after = exporter.wait_for("netsnoop_watch_events_total", labels, FLOOD_ATTEMPTS)
    cpu_used = cpu_seconds(exporter.process.pid) - cpu_before
    print(
        f"\nflood: {FLOOD_ATTEMPTS} attempts in {flood_seconds:.2f}s, exporter CPU "
        f"{cpu_used:.2f}s, {len(scrape_seconds)} scrapes, slowest {max(scrape_seconds):.3f}s"
    )
    assert scrape_seconds and max(scrape_seconds) < 1.0
    matched = value(after, "netsnoop_watch_events_total", **labels) - value(
        before, "netsnoop_watch_events_total", **labels
    )
    assert matched == FLOOD_ATTEMPTS
    suppressed = value(after, lost, reason="rate_limit") - value(before, lost, reason="rate_limit")
    assert value(after, lost, reason="buffer") == value(before, lost, reason="buffer")
    emitted = len(watch.events(rule="n3-flood"))
    assert suppressed + emitted == FLOOD_ATTEMPTS
    # one-second windows: at most the limit in each second the flood touched
    assert 0 < emitted <= FLOOD_RATE * (math.ceil(flood_seconds) + 1)
    hooks = wait_until(
        lambda: (runs := len(list(watch.flood_hooks.glob("*.json")))) >= emitted and runs
    )
    time.sleep(0.5)  # a hook beyond the limit would show up by now
    assert hooks == emitted == len(list(watch.flood_hooks.glob("*.json")))
