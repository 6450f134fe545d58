"""End to end: exact counts under a port scan with nobody scraping, and under a flood of
connects that never get an answer; at the defaults nothing is lost, and a kernel side too
small for the flood reports every attempt it could not track.

Counted are only this test's own: its scanner's and client's comms, its namespace's
addresses, and a scan range below the one other tests take their ports from (free_port).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from exporter.config import DEFAULT_KEPT_PORTS
from tests.helpers import (
    ExporterProcess,
    Series,
    filter_inbound,
    free_port,
    named_python,
    remote_host,
    value,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

METRIC = "netsnoop_tcp_connections_total"
PENDING_MAPS = ("connecting", "closing", "socket_errors")

# Ports 700-20767: at least 20,000 ports, all below where free_port() picks other tests' ports.
SCAN_LOW, SCAN_HIGH = 700, 20767

# Connects to every port of a range, WINDOW sockets in flight at a time; prints how each ended.
SCAN = """
import errno, json, resource, select, socket, sys, time
host, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
WINDOW = 2000
resource.setrlimit(resource.RLIMIT_NOFILE, (WINDOW + 100, WINDOW + 100))
results = {"refused": 0, "established": 0, "other": 0}
began = time.monotonic()
ports = list(range(low, high + 1))
for start in range(0, len(ports), WINDOW):
    poller = select.poll()
    in_flight = {}
    for port in ports[start : start + WINDOW]:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        in_flight[s.fileno()] = s
        poller.register(s, select.POLLOUT)
    while in_flight:
        ready = poller.poll(5000)
        if not ready:  # no answer at all: count as other and give up on them
            results["other"] += len(in_flight)
            for s in in_flight.values():
                s.close()
            break
        for fd, _ in ready:
            s = in_flight.pop(fd)
            poller.unregister(fd)
            error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            kind = "refused" if error == errno.ECONNREFUSED else "other"
            results["established" if error == 0 else kind] += 1
            s.close()
results["seconds"] = time.monotonic() - began
print(json.dumps(results))
"""

# Opens COUNT non-blocking connects at once, waits until all are in SYN_SENT, closes them.
# A process may hold at most RLIMIT_NOFILE's hard limit of sockets (20,000 here, and root
# without CAP_SYS_RESOURCE cannot raise it), so the flood runs in several such processes.
FLOOD = """
import resource, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sockets = []
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    sockets.append(s)
print("open", flush=True)
sys.stdin.readline()
for s in sockets:
    s.close()
"""
FLOOD_PROCESSES = 4


def flood(client: str, host: str, port: int, count: int) -> None:
    """``count`` connects in flight at the same moment, over FLOOD_PROCESSES processes."""
    assert count % FLOOD_PROCESSES == 0
    processes = [
        subprocess.Popen(
            [client, "-c", FLOOD, host, str(port), str(count // FLOOD_PROCESSES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(FLOOD_PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "open\n"
        time.sleep(1)  # every SYN is out: the whole flood is pending at once
        for process in processes:
            process.communicate("close\n", timeout=60)
            assert process.returncode == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def exporter_with(config_text: str, tmp_path: Path) -> ExporterProcess:
    process = ExporterProcess(config_text, tmp_path)
    try:
        process.wait_ready()
    except BaseException:
        process.stop()
        raise
    return process


def pending_losses(series: Series) -> float:
    """Every attempt the kernel side could not track: refused updates and swept entries."""
    failures = sum(
        value(series, "netsnoop_bpf_map_update_failures_total", map=name) for name in PENDING_MAPS
    )
    return failures + value(series, "netsnoop_bpf_map_entries_swept_total", map="connecting")


def settled(exporter: ExporterProcess, labels: dict[str, str], timeout: float = 30) -> Series:
    """Scrapes until the closed attempts were swept (counted), and none waits any more."""
    deadline = time.monotonic() + timeout
    while True:
        series = exporter.scrape()
        waiting = value(series, "netsnoop_bpf_map_entries", map="closing")
        if (value(series, METRIC, **labels) and not waiting) or time.monotonic() > deadline:
            return series
        time.sleep(0.5)


def test_unscraped_scan_of_20000_closed_ports_is_counted_exactly(tmp_path: Path) -> None:
    """A scan of 20,068 ports from a namespace, with no scrape while it runs.

    The scan range is declared the ephemeral range, so the kernel folds it to port="other"
    both ways, and refused inbound ports are not folded otherwise: other tests' refused ports
    (above the range) then never land in the series this test sums."""
    config = f"""
ports:
  ephemeral_range: "{SCAN_LOW}-{SCAN_HIGH}"
  fold_refused_inbound: false
"""
    exporter = exporter_with(config, tmp_path)
    try:
        with remote_host() as remote:
            before = exporter.scrape()
            scanner = named_python(tmp_path, "nst-scanner")
            out = remote.run(
                scanner, "-c", SCAN, remote.host_v4, str(SCAN_LOW), str(SCAN_HIGH), timeout=60
            ).stdout
            scan = json.loads(out)
            assert scan["seconds"] < 3, f"the scan is not at line rate: {scan}"
            assert scan["refused"] + scan["established"] + scan["other"] == 20068
            refused = scan["refused"]
            assert refused >= 20000, scan  # nearly all of the range is closed on this host
            mine = dict(direction="outbound", comm="nst-scanner", result="refused")
            after = exporter.wait_for(METRIC, mine, refused, timeout=20)
    finally:
        exporter.stop()

    def inbound_refused(series: Series) -> float:
        scanned = {str(port) for port in range(SCAN_LOW, SCAN_HIGH + 1)} | {"other"}
        return sum(
            count
            for (name, labels), count in series.items()
            if name == METRIC
            and {("direction", "inbound"), ("result", "refused")} <= labels
            and dict(labels)["port"] in scanned
        )

    assert value(after, METRIC, **mine) == refused
    # folded in the kernel: only the kept ports have their own series
    ports = {
        dict(labels)["port"]
        for name, labels in after
        if name == METRIC and set(mine.items()) <= labels
    }
    assert ports - {"other"} <= {str(port) for port in DEFAULT_KEPT_PORTS}
    assert inbound_refused(after) - inbound_refused(before) == refused
    assert value(after, "netsnoop_bpf_map_update_failures_total", map="connections") == 0
    assert value(after, "netsnoop_series_overflow_total") == 0
    series = [labels for name, labels in after if name == METRIC]
    assert len(series) <= 2000  # the default series budget


@pytest.mark.parametrize(
    ("pending_map_size", "count"),
    [(None, 20000), (1024, 3000)],
    ids=["defaults-lose-nothing", "too-small-reports-its-losses"],
)
def test_connects_that_never_get_an_answer_are_counted_or_reported_lost(
    tmp_path: Path, pending_map_size: int | None, count: int
) -> None:
    """``count`` concurrent connects to an address whose nftables rule drops every SYN; the
    client closes them while they wait, so each is an outbound error."""
    config = ""
    if pending_map_size is not None:
        config = f"collectors:\n  tcp_connections:\n    pending_map_size: {pending_map_size}\n"
    exporter = exporter_with(config, tmp_path)
    port = free_port()
    labels = dict(direction="outbound", port=str(port), comm="nst-flood")
    try:
        with remote_host() as remote:
            filter_inbound(remote, port, "drop")
            before = exporter.scrape()
            flood(named_python(tmp_path, "nst-flood"), remote.peer_v4, port, count)
            after = settled(exporter, labels)
    finally:
        exporter.stop()
    counted = value(after, METRIC, **labels)
    assert value(after, METRIC, result="error", **labels) == counted
    lost = pending_losses(after) - pending_losses(before)
    if pending_map_size is None:
        assert counted == count
        assert lost == 0
    else:
        assert counted < count
        # every attempt not counted is reported (other processes' connects while the map is
        # full may add to the losses, never take away)
        assert lost >= count - counted
