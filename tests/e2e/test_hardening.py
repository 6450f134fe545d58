"""Adversarial load on the real exporter: a port scan and process-name churn stay within the
series budget with exact sums and bounded memory; hostile process names cannot break the
exposition; the HTTP endpoint survives malformed, huge, slow and concurrent clients.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import DEFAULT_KEPT_PORTS
from tests.helpers import ExporterProcess, Series, free_port, named_python, remote_host, value

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_connections_total"
BUDGET = 2000  # the default cardinality.series_per_metric
SCALE = 5000
# What 5,000 folded label combinations may add to the exporter's resident memory: measured
# growth is a few MB (docs/security.md); this bound leaves room for allocator noise.
RSS_GROWTH_BOUND = 32 * 1024 * 1024

SCAN = """
import socket, sys
host, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
refused = 0
for port in ports:
    s = socket.socket()
    s.settimeout(5)
    refused += s.connect_ex((host, port)) == 111
    s.close()
print(refused)
"""

# One parent forks 5,000 children; each names itself, connects once and exits.
CHURN_C = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int port = atoi(argv[1]), count = atoi(argv[2]), connected = 0;
    for (int i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char name[16];
            snprintf(name, sizeof(name), "n6-c%05d", i);
            prctl(PR_SET_NAME, name, 0, 0, 0);
            struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
            inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
            int s = socket(AF_INET, SOCK_STREAM, 0);
            _exit(connect(s, (struct sockaddr *)&to, sizeof(to)) == 0 ? 0 : 1);
        }
        int status;
        waitpid(pid, &status, 0);
        connected += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    printf("%d\n", connected);
    return 0;
}
"""

HOSTILE_COMM = b'n6-"q\\\n\xff\xfe\x1b}'  # 15 bytes: quote, backslash, newline, bad UTF-8
HOSTILE = """
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])), 0, 0, 0)
socket.create_connection(("127.0.0.1", int(sys.argv[2]))).close()
"""


def rss(series: Series) -> float:
    return value(series, "process_resident_memory_bytes")


def series_of(series: Series, name: str = METRIC) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels), _ in series.items() if n == name]


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@contextlib.contextmanager
def accepting(port: int) -> Iterator[None]:
    """A listener on ``port`` that accepts and closes everything, in a thread."""
    server = socket.create_server(("127.0.0.1", port), backlog=4096)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()


def start(tmp_path: Path, config: str | None = None) -> ExporterProcess:
    exporter = ExporterProcess(config, tmp_path)
    exporter.wait_ready()
    return exporter


def test_port_scan_stays_within_the_budget_with_an_exact_sum(tmp_path: Path, bin_dir: Path):
    """A namespace host connects to 5,000 distinct closed ports: 5,000 outbound refused
    attempts (the scanner's side, each port a new label set) and 5,000 inbound refused."""
    exclude = listening_ports() | set(DEFAULT_KEPT_PORTS)
    ports = [port for port in range(12000, 20000) if port not in exclude][:SCALE]
    exporter = start(tmp_path)
    try:
        with remote_host() as remote:
            before = exporter.scrape()
            began = time.monotonic()
            scanner = named_python(bin_dir, "n6-scan")
            out = remote.run(scanner, "-c", SCAN, remote.host_v4, ",".join(map(str, ports)))
            scan_seconds = time.monotonic() - began
            assert int(out.stdout) == SCALE
            inbound = {"direction": "inbound", "result": "refused"}
            after = exporter.wait_for(METRIC, inbound, value(before, METRIC, **inbound) + SCALE)
        outbound = {"direction": "outbound", "result": "refused"}
        assert value(after, METRIC, **inbound) - value(before, METRIC, **inbound) == SCALE
        assert value(after, METRIC, **outbound) - value(before, METRIC, **outbound) == SCALE
        # the inbound side is one series, port="other"; the scanner's side spends the budget
        assert value(after, METRIC, port="other", **inbound) >= SCALE
        scanned = set(map(str, ports))
        assert not [
            s for s in series_of(after) if s["port"] in scanned and s["direction"] == "inbound"
        ]
        own = [s for s in series_of(after) if "other" not in (s["comm"], s["uid"])]
        assert len(own) <= BUDGET
        assert len(series_of(after)) - len(own) <= 10  # overflow: direction x result
        folded = value(after, "netsnoop_series_overflow_total", metric=METRIC)
        assert folded >= SCALE - BUDGET
        assert value(after, "netsnoop_bpf_map_update_failures_total") == 0
        growth = rss(after) - rss(before)
        print(
            f"\nport scan: {SCALE} ports in {scan_seconds:.1f}s; series {len(series_of(before))}"
            f" -> {len(series_of(after))} (own {len(own)}, budget {BUDGET}); folded {folded:.0f};"
            f" RSS {rss(before) / 2**20:.1f} -> {rss(after) / 2**20:.1f} MiB"
        )
        assert growth < RSS_GROWTH_BOUND
    finally:
        exporter.stop()


@pytest.fixture(scope="module")
def churn_binary(bin_dir: Path) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (build-essential)")
    source = bin_dir / "n6-churn.c"
    source.write_text(CHURN_C)
    binary = bin_dir / "n6-churn"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return str(binary)


def test_comm_churn_stays_within_the_budget_with_an_exact_sum(tmp_path: Path, churn_binary: str):
    """5,000 short-lived processes, each with its own comm, connect once to one port."""
    port = free_port()
    exporter = start(tmp_path, f"ports:\n  keep: [{port}]\n")
    try:
        before = exporter.scrape()
        labels = {"direction": "outbound", "port": str(port), "result": "established"}
        with accepting(port):
            began = time.monotonic()
            out = subprocess.run(
                [churn_binary, str(port), str(SCALE)], check=True, capture_output=True, text=True
            )
            churn_seconds = time.monotonic() - began
            assert int(out.stdout) == SCALE
            after = exporter.wait_for(METRIC, labels, SCALE)
        assert value(after, METRIC, **labels) == SCALE
        accepted = {"direction": "inbound", "port": str(port), "result": "accepted"}
        assert value(after, METRIC, **accepted) == SCALE
        mine = [s for s in series_of(after) if s["port"] == str(port)]
        own = [s for s in mine if s["comm"].startswith("n6-c")]
        assert len(own) <= BUDGET
        # a kept port keeps its own overflow series: comm and uid fold, the port stays
        assert value(after, METRIC, comm="other", uid="other", **labels) == SCALE - len(own)
        assert len(series_of(after)) <= BUDGET + 10
        growth = rss(after) - rss(before)
        print(
            f"\ncomm churn: {SCALE} processes in {churn_seconds:.1f}s; series "
            f"{len(series_of(before))} -> {len(series_of(after))} (own n6-c* {len(own)}); "
            f"RSS {rss(before) / 2**20:.1f} -> {rss(after) / 2**20:.1f} MiB"
        )
        assert growth < RSS_GROWTH_BOUND
    finally:
        exporter.stop()


def test_hostile_comm_cannot_break_the_exposition(exporter: ExporterProcess, bin_dir: Path):
    port = free_port()
    with accepting(port):
        subprocess.run(
            [named_python(bin_dir, "n6-hostile"), "-c", HOSTILE, HOSTILE_COMM.hex(), str(port)],
            check=True,
            timeout=30,
        )
        exporter.wait_for(METRIC, {"port": str(port), "direction": "outbound"}, 1)
    status, body = exporter.get("/metrics")
    assert status == 200
    text = body.decode("utf-8")  # always valid UTF-8
    expected_comm = HOSTILE_COMM.decode("utf-8", errors="replace")
    parsed = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("port") == str(port) and sample.labels.get("direction") == "outbound"
    ]
    assert [(s.labels["comm"], s.value) for s in parsed] == [(expected_comm, 1.0)]
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def resources(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process."""
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(payload)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
        return received


def closed_by_peer(connection: socket.socket) -> bool:
    connection.settimeout(5)
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_http_abuse_leaves_totals_right_and_nothing_leaked(exporter: ExporterProcess):
    """Malformed and huge requests, slow clients and 20 concurrent scrapers."""
    pid = exporter.process.pid
    # parallel scrapes start the render threads (a pool of fixed size, kept) before the count
    warm_up = [threading.Thread(target=exporter.scrape) for _ in range(8)]
    for thread in warm_up:
        thread.start()
    for thread in warm_up:
        thread.join()
    time.sleep(1)
    baseline = resources(pid)
    port = free_port()
    labels = {"direction": "outbound", "port": str(port), "result": "established"}
    with accepting(port):
        for _ in range(25):
            socket.create_connection(("127.0.0.1", port)).close()
        exporter.wait_for(METRIC, labels, 25)

    slow = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(8)]
    for connection in slow:
        connection.sendall(b"GET /metrics HTTP/1.1\r\n")

    def trickle() -> None:  # a byte every 2 s: never a read timeout, but past the deadline
        for _ in range(6):
            for connection in slow:
                with contextlib.suppress(OSError):
                    connection.sendall(b"X")
            time.sleep(2)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    assert raw(exporter.port, b"\x00\xff garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge_header = b"GET / HTTP/1.1\r\nX: " + b"a" * 200_000 + b"\r\n\r\n"
    assert raw(exporter.port, huge_header).startswith(b"HTTP/1.1 431 ")

    seen: list[float] = []
    errors: list[BaseException] = []

    def scrape_some() -> None:
        try:
            for _ in range(5):
                seen.append(value(exporter.scrape(), METRIC, **labels))
        except BaseException as error:  # reported below
            errors.append(error)

    scrapers = [threading.Thread(target=scrape_some) for _ in range(20)]
    for thread in scrapers:
        thread.start()
    for thread in scrapers:
        thread.join()
    assert not errors and seen == [25.0] * 100
    trickler.join()
    for connection in slow:  # all closed by the exporter at the request-head deadline
        assert closed_by_peer(connection)
        connection.close()
    deadline = time.monotonic() + 10
    while not leaked_nothing(resources(pid), baseline) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leaked_nothing(resources(pid), baseline), (resources(pid), baseline)


def leaked_nothing(now: tuple[int, int], baseline: tuple[int, int]) -> bool:
    return all(count <= before for count, before in zip(now, baseline, strict=True))
