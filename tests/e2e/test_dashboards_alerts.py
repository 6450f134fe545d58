"""End to end: a real Prometheus (Debian's package) scrapes the real exporter every second and
evaluates the shipped rule files every second. A network-namespace host tries telnet and a
local short-lived process connects out to 23: the telnet alerts must fire. After a traffic
scenario that exercises every metric, every panel query of every dashboard runs through
Prometheus's HTTP API and must return data.

The shipped rule files are loaded as they are: the telnet alerts have no `for`, so they fire at
the first evaluation that sees the attempt; the other alerts' `for` durations (5-10 minutes)
are tested by promtool in tests/unit/test_dashboards.py, and here only evaluate without error.
No Grafana server can run here: the Grafana-managed rules' PromQL runs against this
Prometheus, and their file's format is checked in the unit tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.grafana import (
    DASHBOARDS,
    PROMETHEUS_RULES,
    dashboard_files,
    grafana_regex,
    grafana_rule_query,
    grafana_rules,
    load_dashboard,
    panel_queries,
    prometheus_rules,
    substitute,
)
from tests.helpers import (
    ExporterProcess,
    RemoteHost,
    drop_first_syn,
    free_port,
    named_python,
    remote_host,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (Debian)"),
]

JOB = "n5-netsnoop"
# Panels the scenario cannot fill with the bundled config (documented as empty on a quiet host).
NOT_EXERCISED = {"Series budget overflow"}  # needs a metric past its series budget
ALERT_TIMEOUT_S = 30.0

CONNECT = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.settimeout(5)
print(s.connect_ex((host, port)), flush=True)
"""

# Listeners with backlog 1 that never accept. On the first, the queue fills and it drops; the
# second defers accept (TCP_DEFER_ACCEPT) until data arrives, so silent clients stay half-open.
STUCK_LISTENERS = """
import socket, sys, time
for port, defer in ((int(sys.argv[1]), 0), (int(sys.argv[2]), 30)):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    globals()[f"listener{port}"] = s
print("listening", flush=True)
time.sleep(120)
"""

# Opens ``count`` connections to each port at once, sends nothing, holds them for a while.
FLOOD = """
import socket, sys, time
HOST, PORTS = sys.argv[1], map(int, sys.argv[2:])
held = []
for port in PORTS:
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, port))
        held.append(s)
time.sleep(3)
"""

# More telnet attempts in one second than the bundled watch rule logs (rate_limit: 100).
KNOCKS = """
import socket, sys
for _ in range(300):
    s = socket.socket()
    s.connect_ex((sys.argv[1], 23))
    s.close()
"""

UDP_SEND = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(b"n5-datagram", (host, port))
"""

# One TCP exchange over loopback: the server echoes what the client sends.
ECHO = """
import socket, sys, threading
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(8)
def serve():
    connection = server.accept()[0]
    connection.sendall(connection.recv(65536))
    connection.close()
thread = threading.Thread(target=serve)
thread.start()
client = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
client.sendall(b"x" * 4096)
received = 0
while received < 4096:
    received += len(client.recv(65536))
client.close()
thread.join()
"""

# One loopback connection the server aborts (SO_LINGER 0): a reset sent and one received.
ABORT = """
import socket, struct, sys, threading
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve():
    connection = server.accept()[0]
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
thread = threading.Thread(target=serve)
thread.start()
client = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
thread.join()
try:
    client.recv(1)
except ConnectionResetError:
    pass
"""


def in_namespace(host: RemoteHost, code: str, *args: object) -> str:
    """Runs a Python snippet on the namespace host."""
    return host.run(sys.executable, "-c", code, *map(str, args), timeout=60).stdout


class Prometheus:
    """Debian's prometheus on a free loopback port with a temporary data dir."""

    def __init__(self, tmp_path: Path, target: str, scrape: dict | None = None) -> None:
        """``scrape``: more of the scrape config, e.g. target labels and relabel_configs."""
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api/v1"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "evaluation_interval": "1s",
                    },
                    "rule_files": [str(PROMETHEUS_RULES)],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [target]}],
                            **(scrape or {}),
                        }
                    ],
                }
            )
        )
        self.log_path = tmp_path / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.api}/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        return body

    def query(self, expr: str) -> list[dict]:
        body = self.get("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def alerts(self, name: str) -> list[dict]:
        return [
            alert
            for alert in self.get("alerts")["data"]["alerts"]
            if alert["labels"]["alertname"] == name
        ]

    def wait_until_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if [r["value"][1] for r in self.query(f'up{{job="{JOB}"}}')] == ["1"]:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"prometheus never scraped the exporter:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Stack:
    exporter: ExporterProcess
    prometheus: Prometheus
    host: RemoteHost
    bin_dir: Path

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.exporter.port}"

    def run(self, comm: str, code: str, *args: object) -> str:
        """A short-lived local process named ``comm``."""
        python = named_python(self.bin_dir, comm)
        command = [python, "-c", code, *map(str, args)]
        return subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    def wait_for_alert(self, name: str, **labels: str) -> tuple[dict, float]:
        """The firing alert whose labels include ``labels``, and seconds it took to appear."""
        started = time.monotonic()
        while time.monotonic() - started < ALERT_TIMEOUT_S:
            for alert in self.prometheus.alerts(name):
                if alert["state"] == "firing" and labels.items() <= alert["labels"].items():
                    return alert, time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(
            f"{name} {labels} not firing in {ALERT_TIMEOUT_S}s: {self.prometheus.alerts(name)}"
        )


@pytest.fixture(scope="module")
def stack(exporter: ExporterProcess, tmp_path_factory, bin_dir: Path) -> Iterator[Stack]:
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{exporter.port}")
    try:
        prometheus.wait_until_up()
        with remote_host() as host:
            yield Stack(exporter, prometheus, host, bin_dir)
    finally:
        prometheus.stop()


def test_telnet_alerts_fire_on_real_attempts(stack: Stack):
    instance = stack.instance
    assert not [
        alert
        for name in ("NetsnoopTelnetInboundAttempt", "NetsnoopTelnetOutboundAttempt")
        for alert in stack.prometheus.alerts(name)
        if alert["labels"]["instance"] == instance
    ], "telnet alerts before any telnet attempt"

    # A host in a network namespace tries telnet on this host, where nothing listens on 23.
    assert in_namespace(stack.host, CONNECT, stack.host.host_v4, 23).strip() != "0"
    alert, seconds = stack.wait_for_alert(
        "NetsnoopTelnetInboundAttempt", instance=instance, result="refused", port="23"
    )
    print(f"NetsnoopTelnetInboundAttempt firing {seconds:.1f}s after the attempt")
    assert "(refused)" in alert["annotations"]["summary"]

    # A local process that lives for one connect() tries telnet on the namespace host.
    assert stack.run("n5-telnet", CONNECT, stack.host.peer_v4, 23).strip() != "0"
    alert, seconds = stack.wait_for_alert(
        "NetsnoopTelnetOutboundAttempt", instance=instance, comm="n5-telnet", result="refused"
    )
    print(f"NetsnoopTelnetOutboundAttempt firing {seconds:.1f}s after the attempt")
    uid = alert["labels"]["uid"]
    assert uid == "0"  # the test runs as root
    assert "Process n5-telnet running as uid 0" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("#netsnooptelnetoutboundattempt")


@pytest.fixture(scope="module")
def scenario(stack: Stack) -> float:
    """Traffic that gives every metric series, then time for two more scrapes. Returns the
    scenario's start (Unix time) for range queries."""
    started = time.time()
    host = stack.host
    # telnet both ways (watched port, inbound refused, outbound refused, drops NO_SOCKET),
    # the inbound ones past the watch rule's rate limit (lost events)
    in_namespace(host, KNOCKS, host.host_v4)
    stack.run("n5-scan", CONNECT, host.peer_v4, 23)
    # an established loopback connection with bytes both ways (and a connect time)
    stack.run("n5-echo", ECHO, free_port())
    # a connection aborted with SO_LINGER 0: resets sent and received
    stack.run("n5-abort", ABORT, free_port())
    # a lost SYN, retransmitted, then refused by the namespace host: a retransmit
    lossy_port = free_port()
    drop_first_syn(host, lossy_port)
    stack.run("n5-lossy", CONNECT, host.peer_v4, lossy_port)
    # UDP to closed ports: sends, unreachable replies and drops on both sides
    stack.run("n5-udp", UDP_SEND, host.peer_v4, free_port(), 3)
    in_namespace(host, UDP_SEND, host.host_v4, free_port(), 3)
    # listeners that never accept, flooded from the namespace host; the exporter reads the
    # queues at scrape time, and the flood holds its connections for three scrapes
    ports = (free_port(), free_port())
    stuck = subprocess.Popen(
        [named_python(stack.bin_dir, "n5-stuck"), "-c", STUCK_LISTENERS, *map(str, ports)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stuck.stdout.readline().strip() == "listening"
        in_namespace(host, FLOOD, host.host_v4, *ports)
        time.sleep(2)  # two more scrapes after the last change
    finally:
        stuck.kill()
        stuck.wait()
    return started


def test_every_rule_evaluates_without_error(stack: Stack):
    groups = stack.prometheus.get("rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == set(prometheus_rules())
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.stem)
def test_every_panel_query_returns_data(stack: Stack, scenario: float, path: Path):
    variables = {
        "instance": grafana_regex(stack.instance),
        "node": ".*",  # "All", the allValue: no node label outside Kubernetes
        "namespace": ".*",
        "watch_ports": "23",
        "__rate_interval": "1m",
    }
    empty, errors = [], []
    for query in panel_queries(load_dashboard(path)):
        expr = substitute(query.expr, variables)
        body = stack.prometheus.get(
            "query_range", query=expr, start=str(scenario), end=str(time.time()), step="1"
        )
        if body["status"] != "success":
            errors.append(f"{query.name}: {body.get('error')}")
        elif not body["data"]["result"]:
            if query.panel in NOT_EXERCISED:
                assert query.quiet_empty, f"{query.name}: not documented as possibly empty"
            else:
                empty.append(f"{query.name}: {expr}")
    assert not errors, "\n".join(errors)
    assert not empty, "no data:\n" + "\n".join(empty)


def test_grafana_rule_queries_find_the_telnet_attempts(stack: Stack, scenario: float):
    """Each Grafana-managed rule's query, with its threshold (> 0), over this Prometheus."""
    expected = {
        "NetsnoopTelnetInboundAttempt": {"result": "refused"},
        "NetsnoopTelnetOutboundAttempt": {"comm": "n5-scan", "result": "refused"},
    }
    for rule in grafana_rules():
        series = stack.prometheus.query(grafana_rule_query(rule))
        matching = [
            s
            for s in series
            if s["metric"].get("instance") == stack.instance
            and expected[rule["title"]].items() <= s["metric"].items()
            and float(s["value"][1]) > 0
        ]
        assert matching, (rule["title"], series)


def test_resident_memory_panel_shows_the_exporters_real_rss(stack: Stack):
    """The Exporter health dashboard's RSS panel reads process_resident_memory_bytes: it must
    be the exporter's own resident set, as /proc says."""
    (panel_query,) = [
        query
        for query in panel_queries(load_dashboard(DASHBOARDS / "netsnoop-exporter-health.json"))
        if query.panel == "Resident memory"
    ]
    expr = substitute(
        panel_query.expr,
        {"instance": grafana_regex(stack.instance), "node": ".*", "__rate_interval": "1m"},
    )
    (series,) = stack.prometheus.query(expr)
    status = Path(f"/proc/{stack.exporter.process.pid}/status").read_text()
    vm_rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    # the panel shows the highest value of the last minute; RSS moves little once started
    assert 0.8 * vm_rss * 1024 <= float(series["value"][1]) <= 1.25 * vm_rss * 1024
