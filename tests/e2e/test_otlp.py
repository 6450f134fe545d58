"""End to end: the real exporter with OTLP on, pushing over HTTP/protobuf to a real OTLP
receiver in this process (tests/otlp_receiver.py: http.server decoding the protobuf with
opentelemetry-proto). No OpenTelemetry Collector binary is available here; the receiver speaks
the same wire protocol.

The export interval comes from OTEL_METRIC_EXPORT_INTERVAL (0.5 s) while the config file says
30 s: the environment winning is what makes these tests finish in time.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ExporterProcess, free_port, named_python, value
from tests.otlp_receiver import OtlpHttpReceiver

pytestmark = pytest.mark.root

CONNECTIONS = "netsnoop.tcp.connections"
PROMETHEUS = "netsnoop_tcp_connections_total"

CONFIG = """
collectors:
  socket_traffic: {enabled: true}
  udp_sends: {enabled: false}
  packet_drops: {enabled: false}
  udp_unreachable: {enabled: false}
  listen_queue: {enabled: false}
watch: []
otlp:
  enabled: true
  protocol: http/protobuf
  endpoint: %s
  timeout_seconds: 1.0
  interval_seconds: 30.0
"""

# Accepts connections and reads each one to its end, so the client's bytes are all received.
SERVE = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=64)
print("listening", flush=True)
while True:
    connection, _ = server.accept()
    while connection.recv(65536):
        pass
    connection.close()
"""

CLIENT = """
import socket, sys
port, count, payload = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    s = socket.socket()
    status = s.connect_ex(("127.0.0.1", port))
    if status == 0 and payload:
        s.sendall(b"x" * payload)
    s.close()
    print(status, flush=True)
"""
PAYLOAD = 100


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def otlp_exporter(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpHttpReceiver
) -> Iterator[ExporterProcess]:
    with pytest.MonkeyPatch.context() as environment:  # only the exporter's environment
        environment.setenv("OTEL_METRIC_EXPORT_INTERVAL", "500")
        environment.setenv("NODE_NAME", "n7-node")
        process = ExporterProcess(CONFIG % receiver.endpoint, tmp_path_factory.mktemp("otlp"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def connect(bin_dir: Path, comm: str, port: int, count: int, payload: int = 0) -> list[int]:
    out = subprocess.run(
        [named_python(bin_dir, comm), "-c", CLIENT, str(port), str(count), str(payload)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [int(line) for line in out.split()]


def received(
    receiver: OtlpHttpReceiver, metric: str, attributes: Mapping[str, Any], target: float
) -> float:
    """Waits for ``target`` to arrive, then two more intervals to catch an overshoot."""
    deadline = time.monotonic() + 20
    while receiver.value(metric, attributes) < target and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    return receiver.value(metric, attributes)


def test_connections_arrive_with_exact_counts_and_attributes_and_survive_an_outage(
    otlp_exporter, receiver, bin_dir
):
    port, closed = free_port(), free_port()
    server = subprocess.Popen(
        [named_python(bin_dir, "n7-listen"), "-c", SERVE, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        established = {
            "netsnoop.direction": "outbound",
            "network.peer.port": port,
            "thread.name": "n7-client",
            "netsnoop.result": "established",
        }
        assert connect(bin_dir, "n7-client", port, 5, PAYLOAD) == [0] * 5
        assert connect(bin_dir, "n7-refused", closed, 3) == [111] * 3
        assert received(receiver, CONNECTIONS, established, 5) == 5

        (point,) = [
            p for p in receiver.latest(CONNECTIONS) if established.items() <= p.attributes.items()
        ]
        assert point.attributes == {
            **established,
            "network.transport": "tcp",
            "process.real_user.id": 0,
        }
        assert (point.kind, point.monotonic, point.cumulative, point.unit) == (
            "sum",
            True,
            True,
            "{connection}",
        )
        assert isinstance(point.value, int)
        assert point.description.startswith("TCP connections and connection attempts")
        refused = {"network.peer.port": closed, "thread.name": "n7-refused"}
        assert receiver.value(CONNECTIONS, refused) == 3
        assert receiver.value(CONNECTIONS, {**refused, "netsnoop.result": "refused"}) == 3
        accepted = {"network.local.port": port, "netsnoop.result": "accepted"}
        assert receiver.value(CONNECTIONS, accepted) == 5
        assert receiver.value(CONNECTIONS, {**accepted, "thread.name": "n7-listen"}) == 5
        sent = {"network.io.direction": "transmit", "thread.name": "n7-client"}
        assert receiver.value("netsnoop.socket.io", sent) >= 5 * PAYLOAD
        resource = receiver.exports[-1].resource
        assert resource["service.name"] == "netsnoop-exporter"
        assert resource["k8s.node.name"] == "n7-node"
        assert resource["host.name"] and resource["service.version"]

        # the same numbers on /metrics, now that nothing moves
        scrape = otlp_exporter.scrape()
        labels = dict(comm="n7-client", port=str(port), result="established")
        assert value(scrape, PROMETHEUS, **labels) == 5
        assert value(scrape, "netsnoop_socket_sent_bytes_total", comm="n7-client") == (
            receiver.value("netsnoop.socket.io", sent)
        )

        # the collector goes away; counting and /metrics go on
        failures_before = value(scrape, "netsnoop_otlp_export_failures_total")
        exports_before = value(scrape, "netsnoop_otlp_exports_total")
        receiver.stop()
        exports_received = len(receiver.exports)
        assert connect(bin_dir, "n7-client", port, 4, PAYLOAD) == [0] * 4
        statuses = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            statuses.append(otlp_exporter.get("/metrics", timeout=2)[0])
            failures = value(otlp_exporter.scrape(), "netsnoop_otlp_export_failures_total")
            if failures >= failures_before + 2:
                break
            time.sleep(0.1)
        down = otlp_exporter.scrape()
        assert value(down, "netsnoop_otlp_export_failures_total") >= failures_before + 2
        assert value(down, "netsnoop_otlp_exports_total") >= exports_before + 2
        assert value(down, PROMETHEUS, **labels) == 9
        assert set(statuses) == {200}
        assert len(receiver.exports) == exports_received

        # back: the cumulative count that arrives is exact, in the same stream
        receiver.start()
        assert received(receiver, CONNECTIONS, established, 9) == 9
        (after,) = [
            p for p in receiver.latest(CONNECTIONS) if established.items() <= p.attributes.items()
        ]
        assert after.start_time == point.start_time
        assert receiver.value(CONNECTIONS, accepted) == 9
        assert value(otlp_exporter.scrape(), PROMETHEUS, **labels) == 9
        assert "works again after" in otlp_exporter.log()
    finally:
        server.kill()
        server.wait()
