"""OTLP output: settings from config and environment, the name and attribute mapping, and the
SDK pipeline against real receivers in this process (HTTP and gRPC; no OpenTelemetry Collector
binary is available here, tests/otlp_receiver.py stands in for one)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exporter.config import ConfigError, OtlpConfig, parse_config
from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.outputs.otlp import (
    OtlpOutput,
    OtlpSettingsError,
    missing_package_problem,
    observations,
    otlp_metric,
    otlp_table,
    resolve_settings,
    resource_attributes,
    sdk_modules,
)
from exporter.outputs.prometheus import Exposition
from tests.helpers import parse_logfmt, parse_metrics, value
from tests.otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver

REPO = Path(__file__).resolve().parents[2]
CONNECTION_LABELS = ("direction", "port", "comm", "uid", "result")


# --- settings -------------------------------------------------------------------------------


def test_defaults_are_off_and_point_at_a_local_grpc_collector():
    settings = resolve_settings(OtlpConfig(), {})
    assert not settings.enabled
    assert (settings.protocol, settings.endpoint) == ("grpc", "http://localhost:4317")
    assert (settings.timeout_seconds, settings.interval_seconds) == (10.0, 60.0)
    http = resolve_settings(OtlpConfig(protocol="http/protobuf"), {})
    assert http.endpoint == "http://localhost:4318/v1/metrics"


def test_config_section_is_strict():
    config = parse_config(
        "otlp:\n  enabled: true\n  endpoint: https://otel:4318\n  protocol: http/protobuf\n", "x"
    )
    assert resolve_settings(config.otlp, {}).endpoint == "https://otel:4318/v1/metrics"
    for text, reason in (
        ("otlp:\n  endpoint: otel:4317\n", "otlp.endpoint: Value error, must start with http"),
        ("otlp:\n  protocol: http/json\n", "otlp.protocol: Input should be 'grpc'"),
        ("otlp:\n  interval_seconds: 0\n", "otlp.interval_seconds: Input should be greater"),
        ("otlp:\n  insecure: true\n", "otlp.insecure: unknown key"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"x: {reason}")):
            parse_config(text, "x")


CONFIGURED = OtlpConfig(
    enabled=True,
    endpoint="http://from-config:4317",
    protocol="grpc",
    headers={"x-from": "config"},
    timeout_seconds=3.0,
    interval_seconds=30.0,
)


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({}, "endpoint", "http://from-config:4317"),  # nothing set: the file's values
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://env:4317"}, "endpoint", "https://env:4317"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318/",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "endpoint",
            "http://env:4318/v1/metrics",  # the general variable is a base URL
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://signal:9/custom",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "endpoint",
            "http://signal:9/custom",  # the signal's own variable is the full URL and wins
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "env:4317"}, "endpoint", "https://env:4317"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "env:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
            "endpoint",
            "http://env:4317",  # gRPC's scheme-less form, plaintext when told so
        ),
        # an empty variable counts as unset
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "endpoint", "http://from-config:4317"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "protocol", "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "protocol",
            "http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret, tenant=a=b"},
            "headers",
            {"api-key": "s ecret", "tenant": "a=b"},
        ),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, "timeout_seconds", 2.5),  # milliseconds
        (
            {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "500", "OTEL_EXPORTER_OTLP_TIMEOUT": "9000"},
            "timeout_seconds",
            0.5,
        ),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "15000"}, "interval_seconds", 15.0),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, "compression", "gzip"),
        ({"OTEL_METRICS_EXPORTER": "none"}, "enabled", False),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "enabled", False),
        ({"OTEL_METRICS_EXPORTER": "console, OTLP"}, "enabled", True),
    ],
)
def test_a_set_environment_variable_wins_over_the_config(environ, field, expected):
    assert getattr(resolve_settings(CONFIGURED, environ), field) == expected


def test_the_environment_can_turn_on_a_disabled_config():
    settings = resolve_settings(OtlpConfig(), {"OTEL_METRICS_EXPORTER": "otlp"})
    assert settings.enabled


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not grpc or http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"},
            "OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x' is not an http:// or https:// URL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "soon"},
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: 'soon' is not a number of milliseconds",
        ),
        (
            {"OTEL_METRIC_EXPORT_INTERVAL": "0"},
            "OTEL_METRIC_EXPORT_INTERVAL: '0' must be a positive number",
        ),
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,broken"},
            "OTEL_EXPORTER_OTLP_HEADERS: 'broken' is not key=value",
        ),
        (
            {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
            "OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' is not none or gzip",
        ),
    ],
)
def test_a_bad_variable_is_named_with_the_reason(environ, message):
    with pytest.raises(OtlpSettingsError, match=re.escape(message)):
        resolve_settings(OtlpConfig(), environ)


def test_a_missing_extra_names_the_pip_command():
    assert missing_package_problem(sdk_modules("grpc")) is None
    problem = missing_package_problem(("opentelemetry.sdk.metrics", "netsnoop_n7_not_installed"))
    assert problem is not None
    assert "netsnoop_n7_not_installed is not installed" in problem
    assert "pip install 'netsnoop-exporter[otlp]'" in problem


def test_the_command_refuses_to_start_without_the_extra(tmp_path):
    """The real CLI, in a python where the SDK cannot be imported (the import is blocked the way
    a missing package fails), stops before touching the kernel: no root needed."""
    config = tmp_path / "c.yaml"
    config.write_text("otlp:\n  enabled: true\n  protocol: http/protobuf\n")
    code = (
        "import sys; sys.modules['opentelemetry.sdk.metrics'] = None\n"
        "from exporter.cli import main\n"
        f"sys.exit(main(['--config.file={config}']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert parse_logfmt(result.stderr.strip())["msg"] == (
        "otlp is enabled but opentelemetry.sdk.metrics is not installed: "
        "pip install 'netsnoop-exporter[otlp]' (or scripts/install.sh --extras otlp)"
    )
    assert "Traceback" not in result.stderr


def test_a_bad_variable_stops_the_command_with_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file=/dev/null"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert parse_logfmt(line)["msg"] == (
        "OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' is not grpc or http/protobuf "
        "(http/json is not supported)"
    )


# --- mapping --------------------------------------------------------------------------------


def connections(*samples: tuple[tuple[str, ...], float], extra: tuple[str, ...] = ()):
    family = MetricFamily(
        "netsnoop_tcp_connections", "counter", "h", CONNECTION_LABELS + extra, increments=False
    )
    for labels, count in samples:
        family.add(labels, count)
    return family


def test_connection_attributes_follow_the_semantic_conventions():
    family = connections(
        (("outbound", "23", "telnet", "1000", "refused"), 2),
        (("inbound", "22", "sshd", "0", "accepted"), 5),
        (("inbound", "other", "", "", "refused"), 7),  # folded port, no process
    )
    observed = observations([family])["netsnoop.tcp.connections"]
    assert (observed.kind, observed.metric.unit) == ("counter", "{connection}")
    assert observed.description == "h"
    assert sorted(observed.points.values(), key=lambda point: point[1]) == [
        (
            {
                "network.transport": "tcp",
                "netsnoop.direction": "outbound",
                "network.peer.port": 23,
                "thread.name": "telnet",
                "process.real_user.id": 1000,
                "netsnoop.result": "refused",
            },
            2,
        ),
        (
            {
                "network.transport": "tcp",
                "netsnoop.direction": "inbound",
                "network.local.port": 22,
                "thread.name": "sshd",
                "process.real_user.id": 0,
                "netsnoop.result": "accepted",
            },
            5,
        ),
        (
            {
                "network.transport": "tcp",
                "netsnoop.direction": "inbound",
                "network.local.port": "other",
                "netsnoop.result": "refused",
            },
            7,
        ),
    ]


def test_kubernetes_labels_become_k8s_attributes():
    family = connections(
        (("outbound", "443", "curl", "0", "established", "shop", "web-1", "app"), 1),
        (("outbound", "443", "curl", "0", "established", "", "", ""), 1),  # a host process
        extra=("namespace", "pod", "container"),
    )
    points = [
        attrs for attrs, _ in observations([family])["netsnoop.tcp.connections"].points.values()
    ]
    assert points[0]["k8s.namespace.name"] == "shop"
    assert points[0]["k8s.pod.name"] == "web-1"
    assert points[0]["k8s.container.name"] == "app"
    assert not {"k8s.namespace.name", "k8s.pod.name", "k8s.container.name"} & set(points[1])


def test_sent_and_received_bytes_are_one_metric_by_io_direction():
    sent, received = (
        MetricFamily(f"netsnoop_socket_{d}_bytes", "counter", "h", ("protocol", "comm", "uid"))
        for d in ("sent", "received")
    )
    sent.set(("udp", "dig", "0"), 100)
    received.set(("udp", "dig", "0"), 300)
    observed = observations([sent, received])["netsnoop.socket.io"]
    assert observed.metric.unit == "By"
    points = observed.points
    by_direction = {attrs["network.io.direction"]: value for attrs, value in points.values()}
    assert by_direction == {"transmit": 100, "receive": 300}
    attrs = next(iter(points.values()))[0]
    assert attrs["network.transport"] == "udp"
    assert attrs["thread.name"] == "dig"


def test_drops_name_the_layer_3_protocol_as_network_type():
    drops = MetricFamily("netsnoop_packet_drops", "counter", "h", ("reason", "symbol", "protocol"))
    drops.set(("NO_SOCKET", "tcp_v4_rcv", "ipv4"), 3)
    ((attrs, count),) = observations([drops])["netsnoop.packet.drops"].points.values()
    assert count == 3
    assert attrs == {
        "netsnoop.reason": "NO_SOCKET",
        "netsnoop.symbol": "tcp_v4_rcv",
        "network.type": "ipv4",
    }


def test_a_layer_3_protocol_without_a_network_type_value_gets_our_own_attribute():
    """network.type defines ipv4 and ipv6 only: ARP or a bare ethertype are not its values."""
    drops = MetricFamily("netsnoop_packet_drops", "counter", "h", ("reason", "symbol", "protocol"))
    drops.set(("NOT_SPECIFIED", "arp_rcv", "arp"), 2)
    drops.set(("NOT_SPECIFIED", "__netif_receive_skb", "0x0000"), 1)
    points = observations([drops])["netsnoop.packet.drops"].points.values()
    assert sorted(attrs["netsnoop.protocol"] for attrs, _ in points) == ["0x0000", "arp"]
    assert not any("network.type" in attrs for attrs, _ in points)


def test_a_family_not_in_the_table_gets_a_derived_name_and_namespaced_attributes():
    family = MetricFamily(
        "netsnoop_quic_handshake_seconds", "gauge", "h", ("port", "alpn"), unit="seconds"
    )
    family.set(("443", "h3"), 0.5)
    observed = observations([family])["netsnoop.quic_handshake"]
    assert (observed.metric.unit, observed.kind) == ("s", "gauge")
    assert list(observed.points.values()) == [
        ({"netsnoop.port": "443", "netsnoop.alpn": "h3"}, 0.5)
    ]
    assert otlp_metric(MetricFamily("netsnoop_x_bytes", "counter", "h", (), unit="bytes")).unit == (
        "By"
    )


def test_series_that_map_to_one_attribute_set_add_up():
    family = connections(
        (("outbound", "80", "", "", "error"), 1), (("outbound", "80", "", "", "error"), 2)
    )
    assert [v for _, v in observations([family])["netsnoop.tcp.connections"].points.values()] == [3]


def test_docs_table_maps_every_otlp_name_to_its_prometheus_name():
    """docs/otlp.md lists each table entry on one row: OTLP name, then Prometheus name."""
    rows = [
        line
        for line in (REPO / "docs" / "otlp.md").read_text().splitlines()
        if line.startswith("| `netsnoop.")
    ]
    for family_name, metric in otlp_table().items():
        assert any(
            row.startswith(f"| `{metric.name}` |") and re.search(rf"`{family_name}(_total)?`", row)
            for row in rows
        ), family_name


def test_resource_names_the_service_host_and_node():
    attrs = resource_attributes("", {"NODE_NAME": "node-7"})
    assert attrs["service.name"] == "netsnoop-exporter"
    assert attrs["k8s.node.name"] == "node-7"
    assert attrs["host.name"]
    assert resource_attributes("from-config", {"NODE_NAME": "node-7"})["k8s.node.name"] == (
        "from-config"
    )
    assert "k8s.node.name" not in resource_attributes("", {})


# --- the pipeline, against real receivers ---------------------------------------------------


class CountingRead:
    """A kernel stand-in with a counter that grows by 3 per read, and a read counter."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> list[MetricFamily]:
        self.release.wait()
        self.reads += 1
        family = connections((("outbound", "8080", "n7-unit", "0", "established"), 3 * self.reads))
        gauge = MetricFamily("netsnoop_bpf_map_entries", "gauge", "h", ("map",))
        gauge.set(("connections",), 10 * self.reads)
        return [family, gauge]


OUTBOUND = {"netsnoop.direction": "outbound", "network.peer.port": 8080}


@pytest.mark.parametrize("receiver_type", [OtlpHttpReceiver, OtlpGrpcReceiver])
def test_each_export_reads_the_kernel_once_for_all_instruments(receiver_type, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=n7")
    receiver = receiver_type().start()
    protocol = "grpc" if receiver_type is OtlpGrpcReceiver else "http/protobuf"
    config = OtlpConfig(
        enabled=True,
        endpoint=receiver.endpoint,
        protocol=protocol,
        headers={"x-n7": "yes"},
        compression="gzip",
    )
    read = CountingRead()
    output = OtlpOutput(
        resolve_settings(config, {}), SnapshotSource(read), resource_attributes("n7-node", {})
    )
    try:
        assert output.export() and output.export()
    finally:
        output.close()  # one more export
        receiver.stop()
    assert read.reads == 3
    assert [receiver.value("netsnoop.tcp.connections", OUTBOUND)] == [9]
    assert receiver.value("netsnoop.bpf.map.entries", {"netsnoop.map": "connections"}) == 30
    first, *_, last = receiver.exports
    assert [p.value for p in first.points if p.metric == "netsnoop.tcp.connections"] == [3]
    (point,) = receiver.latest("netsnoop.tcp.connections")
    assert (point.kind, point.monotonic, point.cumulative) == ("sum", True, True)
    assert last.resource["service.name"] == "netsnoop-exporter"
    assert last.resource["k8s.node.name"] == "n7-node"
    assert last.resource["deployment.environment.name"] == "n7"
    if isinstance(receiver, OtlpGrpcReceiver):
        assert receiver.metadata[0]["x-n7"] == "yes"


def test_a_scrape_during_an_export_shares_its_read_and_its_numbers():
    receiver = OtlpHttpReceiver().start()
    read = CountingRead()
    source = SnapshotSource(read)
    config = OtlpConfig(enabled=True, endpoint=receiver.endpoint, protocol="http/protobuf")
    output = OtlpOutput(resolve_settings(config, {}), source, {})
    exposition = Exposition(source)
    read.release.clear()  # hold the kernel read until both outputs wait for it
    export = threading.Thread(target=output.export)
    export.start()
    scraped: list[bytes] = []
    scrape = threading.Thread(target=lambda: scraped.append(exposition.render("")[0]))
    scrape.start()
    try:
        time.sleep(0.3)  # the scrape arrives while the export's read is under way
        read.release.set()
        export.join()
        scrape.join()
    finally:
        receiver.stop()
    assert read.reads == 1
    assert receiver.value("netsnoop.tcp.connections", OUTBOUND) == 3
    scrape_series = parse_metrics(scraped[0].decode())
    assert value(scrape_series, "netsnoop_tcp_connections_total", comm="n7-unit", port="8080") == 3


def test_a_collector_that_is_down_counts_as_failures_and_the_totals_catch_up():
    receiver = OtlpHttpReceiver()  # not listening yet
    read = CountingRead()
    config = OtlpConfig(
        enabled=True, endpoint=receiver.endpoint, protocol="http/protobuf", timeout_seconds=0.5
    )
    output = OtlpOutput(resolve_settings(config, {}), SnapshotSource(read), {})
    assert not output.export()
    assert not output.export()
    receiver.start()
    try:
        assert output.export()
    finally:
        receiver.stop()
    assert receiver.value("netsnoop.tcp.connections", OUTBOUND) == 9  # nothing was lost
    exports, failures = output.self_metrics()
    assert (exports.samples[()], failures.samples[()]) == (3, 2)
    assert (exports.name, failures.name) == (
        "netsnoop_otlp_exports",
        "netsnoop_otlp_export_failures",
    )
