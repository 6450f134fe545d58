"""The OTLP view of the shared snapshot: the same numbers /metrics serves, pushed periodically
to an OpenTelemetry Collector over gRPC or HTTP/protobuf (docs/otlp.md).

Each export takes ONE snapshot (shared with any scrape that arrives meanwhile, see
SnapshotSource) and every observable instrument of that collection reads it, so the BPF maps
are read once per export and OTLP and Prometheus always report the same totals.

The OpenTelemetry SDK is an optional extra and imported only when the output starts; settings
and the name mapping are plain Python, testable without it.
"""

from __future__ import annotations

import importlib
import logging
import math
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from exporter import __version__
from exporter.config import OtlpConfig
from exporter.snapshot import LabelValues, MetricFamily, Snapshot, SnapshotSource

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics.export import MetricExporter

log = logging.getLogger(__name__)

PIP_INSTALL = "pip install 'netsnoop-exporter[otlp]'"
DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
HTTP_METRICS_PATH = "/v1/metrics"
# Attribute sets the SDK keeps per instrument (it remembers every set it has seen; past this,
# new ones add into one otel.metric.overflow=true point). Our own series budget bounds the
# live series well below this; the margin is for series that expired and were replaced.
SDK_CARDINALITY_LIMIT = 100_000


# ---------------------------------------------------------------------------------------------
# Settings: the config section, overridden by the standard environment variables.


class OtlpSettingsError(Exception):
    """``VARIABLE: reason`` on one line, for an environment variable that cannot be used."""


@dataclass(frozen=True)
class OtlpSettings:
    enabled: bool
    endpoint: str  # what the SDK exporter takes: a full URL for HTTP, scheme://host:port for gRPC
    protocol: Literal["grpc", "http/protobuf"]
    headers: dict[str, str]
    compression: Literal["none", "gzip"]
    timeout_seconds: float
    interval_seconds: float


def _variable(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """The metrics-specific variable, else the general one; empty values count as unset."""
    for name in (f"OTEL_EXPORTER_OTLP_METRICS_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def _milliseconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OtlpSettingsError(f"{name}: {text!r} is not a number of milliseconds") from None
    if not 0 < value < math.inf:
        raise OtlpSettingsError(f"{name}: {text!r} must be a positive number of milliseconds")
    return value / 1000


def parse_headers(name: str, text: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` with URL-encoded values (the OTel environment format)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise OtlpSettingsError(f"{name}: {item.strip()!r} is not key=value")
        headers[key.strip()] = unquote(value.strip())
    return headers


def _endpoint_url(name: str, text: str, environ: Mapping[str, str]) -> str:
    if "://" not in text:  # gRPC's host:port form; OTEL_EXPORTER_OTLP_INSECURE picks the scheme
        insecure = (_variable(environ, "INSECURE") or ("", "false"))[1].lower() == "true"
        text = ("http://" if insecure else "https://") + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OtlpSettingsError(f"{name}: {text!r} is not an http:// or https:// URL")
    return text


def resolve_settings(config: OtlpConfig, environ: Mapping[str, str]) -> OtlpSettings:
    """The config section with every standard variable that is set taking precedence."""
    enabled = config.enabled
    if selected := environ.get("OTEL_METRICS_EXPORTER", "").strip():
        enabled = "otlp" in (part.strip().lower() for part in selected.split(","))

    protocol = config.protocol
    if found := _variable(environ, "PROTOCOL"):
        if found[1] not in DEFAULT_ENDPOINTS:
            reason = "is not grpc or http/protobuf (http/json is not supported)"
            raise OtlpSettingsError(f"{found[0]}: {found[1]!r} {reason}")
        protocol = found[1]  # type: ignore[assignment]  # checked just above

    signal_endpoint = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    general_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if signal_endpoint:  # a full URL, used as it is
        endpoint = _endpoint_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", signal_endpoint, environ)
    else:
        base = config.endpoint or DEFAULT_ENDPOINTS[protocol]
        if general_endpoint:
            base = _endpoint_url("OTEL_EXPORTER_OTLP_ENDPOINT", general_endpoint, environ)
        endpoint = base.rstrip("/") + HTTP_METRICS_PATH if protocol == "http/protobuf" else base

    headers = dict(config.headers)
    if found := _variable(environ, "HEADERS"):
        headers = parse_headers(*found)

    compression = config.compression
    if found := _variable(environ, "COMPRESSION"):
        if found[1] not in ("none", "gzip"):
            raise OtlpSettingsError(f"{found[0]}: {found[1]!r} is not none or gzip")
        compression = found[1]  # type: ignore[assignment]  # checked just above

    timeout = config.timeout_seconds
    if found := _variable(environ, "TIMEOUT"):
        timeout = _milliseconds(*found)
    interval = config.interval_seconds
    if text := environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip():
        interval = _milliseconds("OTEL_METRIC_EXPORT_INTERVAL", text)
    return OtlpSettings(enabled, endpoint, protocol, headers, compression, timeout, interval)


def missing_package_problem(modules: Sequence[str]) -> str | None:
    """Why the OTLP output cannot start here (the extra is not installed), or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return (
                f"otlp is enabled but {error.name or module} is not installed: {PIP_INSTALL} "
                "(or scripts/install.sh --extras otlp)"
            )
    return None


def sdk_modules(protocol: str) -> tuple[str, ...]:
    exporter = "grpc" if protocol == "grpc" else "http"
    return (
        "opentelemetry.sdk.metrics",
        f"opentelemetry.exporter.otlp.proto.{exporter}.metric_exporter",
    )


# ---------------------------------------------------------------------------------------------
# Names: a table from our families to OTel metric names, units and attributes.

# Labels with an OpenTelemetry semantic-convention attribute, whatever the metric.
SEMCONV_ATTRIBUTES = {
    # comm is the name of the thread that made the call (15 bytes, renamable with prctl):
    # neither thread.name (the basename of /proc/<pid>/exe) nor process.command
    # (argv[0]). The conventions' thread.name is what it is.
    "comm": "thread.name",
    "uid": "process.real_user.id",  # the real uid, which BPF records (not the effective one)
    "namespace": "k8s.namespace.name",
    "pod": "k8s.pod.name",
    "container": "k8s.container.name",
}
PORT_ATTRIBUTES = {"peer": "network.peer.port", "local": "network.local.port"}
PORT_SIDE_BY_DIRECTION = {"outbound": "peer", "inbound": "local"}
INTEGER_ATTRIBUTES = frozenset({"process.real_user.id", *PORT_ATTRIBUTES.values()})
UCUM_UNITS = {"seconds": "s", "bytes": "By"}
NETWORK_TYPES = frozenset({"ipv4", "ipv6"})  # the values network.type defines

TCP = (("network.transport", "tcp"),)
UDP = (("network.transport", "udp"),)


@dataclass(frozen=True)
class OtlpMetric:
    """How one family is named over OTLP. ``port`` says what the port label is: the remote
    (peer) or local port, or decided per series by the direction label (outbound: the peer's,
    inbound: the local one). ``protocol`` names the attribute of the protocol label."""

    name: str
    unit: str = ""
    constant: tuple[tuple[str, str], ...] = ()
    port: Literal["peer", "local", "direction"] = "direction"
    protocol: str = "network.transport"


# Keyed by MetricFamily.name (counters without _total). Families that share an OTLP name are
# told apart by their constant attributes; docs/otlp.md has this table for readers.
METRICS: dict[str, OtlpMetric] = {
    "netsnoop_tcp_connections": OtlpMetric("netsnoop.tcp.connections", "{connection}", TCP),
    "netsnoop_socket_sent_bytes": OtlpMetric(
        "netsnoop.socket.io", "By", (("network.io.direction", "transmit"),)
    ),
    "netsnoop_socket_received_bytes": OtlpMetric(
        "netsnoop.socket.io", "By", (("network.io.direction", "receive"),)
    ),
    "netsnoop_tcp_retransmits": OtlpMetric("netsnoop.tcp.retransmits", "{segment}", TCP),
    # direction is sent/received, which does not say the port's side: netsnoop.port
    "netsnoop_tcp_resets": OtlpMetric("netsnoop.tcp.resets", "{reset}", TCP),
    "netsnoop_udp_sends": OtlpMetric("netsnoop.udp.sends", "{datagram}", UDP, port="peer"),
    "netsnoop_udp_unreachable": OtlpMetric(
        "netsnoop.udp.unreachable", "{reply}", UDP, port="local"
    ),
    "netsnoop_packet_drops": OtlpMetric(
        "netsnoop.packet.drops", "{packet}", protocol="network.type"
    ),
    "netsnoop_listen_queue_length": OtlpMetric(
        "netsnoop.listen.queue.length", "{connection}", TCP, port="local"
    ),
    "netsnoop_listen_queue_capacity": OtlpMetric(
        "netsnoop.listen.queue.capacity", "{connection}", TCP, port="local"
    ),
    "netsnoop_listen_syn_queue_length": OtlpMetric(
        "netsnoop.listen.syn_queue.length", "{handshake}", TCP, port="local"
    ),
    "netsnoop_listen_drops": OtlpMetric("netsnoop.listen.drops", "{packet}", TCP, port="local"),
    "netsnoop_watch_events": OtlpMetric("netsnoop.watch.events", "{event}"),
    "netsnoop_watch_events_lost": OtlpMetric("netsnoop.watch.lost_events", "{event}"),
    "netsnoop_watch_hook_runs": OtlpMetric("netsnoop.watch.hook.runs", "{run}"),
    "netsnoop_build_info": OtlpMetric("netsnoop.build.info", "1"),
    "netsnoop_bpf_program_attached": OtlpMetric("netsnoop.bpf.program.attached", "1"),
    "netsnoop_bpf_program_run_seconds": OtlpMetric("netsnoop.bpf.program.run.time", "s"),
    "netsnoop_bpf_program_runs": OtlpMetric("netsnoop.bpf.program.runs", "{run}"),
    "netsnoop_bpf_map_entries": OtlpMetric("netsnoop.bpf.map.entries", "{entry}"),
    "netsnoop_bpf_map_capacity": OtlpMetric("netsnoop.bpf.map.capacity", "{entry}"),
    "netsnoop_bpf_map_update_failures": OtlpMetric("netsnoop.bpf.map.update_failures", "{update}"),
    "netsnoop_bpf_map_entries_swept": OtlpMetric("netsnoop.bpf.map.swept_entries", "{entry}"),
    "netsnoop_collector_success": OtlpMetric("netsnoop.collector.success", "1"),
    "netsnoop_series_overflow": OtlpMetric("netsnoop.series.overflow", "{increment}"),
    "netsnoop_scrape_duration_seconds": OtlpMetric("netsnoop.snapshot.duration", "s"),
    "netsnoop_otlp_exports": OtlpMetric("netsnoop.otlp.exports", "{export}"),
    "netsnoop_otlp_export_failures": OtlpMetric("netsnoop.otlp.export.failures", "{export}"),
}


def otlp_metric(family: MetricFamily) -> OtlpMetric:
    """The table's entry, or for a family not in it: ``netsnoop_`` becomes ``netsnoop.``, the
    unit suffix moves to the unit, and the rest of the name stays as it is."""
    if family.name in METRICS:
        return METRICS[family.name]
    name = family.name.removeprefix("netsnoop_")
    if family.unit:
        name = name.removesuffix(f"_{family.unit}")
    return OtlpMetric(f"netsnoop.{name}", UCUM_UNITS.get(family.unit, ""))


def attribute_name(label: str, metric: OtlpMetric, direction: str) -> str:
    if label == "port":
        side = PORT_SIDE_BY_DIRECTION.get(direction) if metric.port == "direction" else metric.port
        return PORT_ATTRIBUTES.get(side or "", "netsnoop.port")
    if label == "protocol":
        return metric.protocol
    return SEMCONV_ATTRIBUTES.get(label, f"netsnoop.{label}")


def attributes(
    family: MetricFamily, metric: OtlpMetric, label_values: LabelValues
) -> dict[str, str | int]:
    """A series' labels as attributes: an empty label is left out, ports and uids are integers
    (a series folded by the series budget keeps the string "other", as in Prometheus)."""
    labels = dict(zip(family.label_names, label_values, strict=True))
    result: dict[str, str | int] = dict(metric.constant)
    for label, text in labels.items():
        if text == "":
            continue
        key = attribute_name(label, metric, labels.get("direction", ""))
        if key == "network.type" and text not in NETWORK_TYPES:
            key = "netsnoop.protocol"  # arp, a bare ethertype: no network.type value
        result[key] = int(text) if key in INTEGER_ATTRIBUTES and text.isdigit() else text
    return result


def measurement(value: float, unit: str) -> int | float:
    """Counts go out as integers (OTLP as_int); seconds stay floating point."""
    return int(value) if unit != "s" and float(value).is_integer() else value


@dataclass
class ObservedMetric:
    """One OTLP metric of a snapshot, with its points by attribute set: (attributes, value)."""

    metric: OtlpMetric
    kind: Literal["counter", "gauge"]
    description: str
    points: dict[frozenset, tuple[dict[str, Any], float]]


def observations(families: Sequence[MetricFamily]) -> dict[str, ObservedMetric]:
    """The snapshot by OTLP name. Points that map to the same attribute set add up, so no
    mapping can silently drop a count."""
    result: dict[str, ObservedMetric] = {}
    for family in families:
        if family.kind == "histogram":
            continue  # the SDK has no asynchronous histogram instrument (docs/otlp.md)
        metric = otlp_metric(family)
        observed = result.setdefault(
            metric.name, ObservedMetric(metric, family.kind, family.documentation, {})
        )
        for label_values, value in family.samples.items():
            attrs = attributes(family, metric, label_values)
            key = frozenset(attrs.items())
            previous = observed.points.get(key, (attrs, 0.0))[1]
            observed.points[key] = (attrs, previous + value)
    return result


def resource_attributes(node_name: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Our defaults; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override them (SDK)."""
    attrs = {
        "service.name": "netsnoop-exporter",
        "service.version": __version__,
        "host.name": socket.gethostname(),
    }
    if node := node_name or environ.get("NODE_NAME", ""):
        attrs["k8s.node.name"] = node
    return attrs


# ---------------------------------------------------------------------------------------------
# The output: periodic exports through the official SDK.


@dataclass
class ExportCounts:
    exports: int = 0
    failures: int = 0
    failing_since_export: int | None = None  # the first failed export of an outage


SHUTDOWN_TIMEOUT_MS = 500  # the SDK's own shutdown, once our last export is done


class OtlpOutput:
    """Exports every ``interval_seconds`` on its own thread, so a collector that is down only
    delays this thread: counting and /metrics go on. A failed export is retried inside the SDK
    exporter with exponential backoff until ``timeout_seconds``; after that the next export
    sends the totals of then, so a cumulative count is never lost."""

    def __init__(
        self, settings: OtlpSettings, source: SnapshotSource, resource: Mapping[str, str]
    ) -> None:
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter, ObservableGauge
        from opentelemetry.sdk.metrics.export import MetricReader
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        class SnapshotReader(MetricReader):
            """Collects when the output says so and keeps the exporter's verdict."""

            def __init__(self, exporter: MetricExporter) -> None:
                limit = SDK_CARDINALITY_LIMIT
                limits = {ObservableCounter: limit, ObservableGauge: limit}
                super().__init__(cardinality_limits=limits)  # cumulative temporality
                self.exporter = exporter
                self.succeeded = False

            def _receive_metrics(self, metrics_data, timeout_millis=10_000, **kwargs) -> None:
                from opentelemetry.sdk.metrics.export import MetricExportResult

                result = self.exporter.export(metrics_data, timeout_millis=timeout_millis)
                self.succeeded = result is MetricExportResult.SUCCESS

            def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
                self.exporter.shutdown(timeout_millis=timeout_millis)

        if not log.isEnabledFor(logging.DEBUG):  # no warning per retry; one error per export
            logging.getLogger("opentelemetry").setLevel(logging.ERROR)
        self.settings = settings
        self.source = source
        self.counts = ExportCounts()
        self._observation = Observation
        self._reader = SnapshotReader(build_exporter(settings))
        from_environment = OTELResourceDetector().detect().attributes
        ours = {k: v for k, v in resource.items() if k not in from_environment}
        self._provider = MeterProvider(
            resource=Resource.create(ours), metric_readers=[self._reader], shutdown_on_exit=False
        )
        self._meter = self._provider.get_meter("netsnoop-exporter", __version__)
        self._instruments: set[str] = set()
        self._collection: dict[str, ObservedMetric] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp", daemon=True)

    def start(self) -> None:
        log.info(
            "OTLP export to %s (%s) every %gs",
            self.settings.endpoint,
            self.settings.protocol,
            self.settings.interval_seconds,
        )
        self._thread.start()

    def export(self) -> bool:
        """One export: one snapshot, read by every instrument of this collection."""
        snapshot: Snapshot = self.source.current()
        self._collection = observations(snapshot.families)
        for name, observed in self._collection.items():
            if name not in self._instruments:
                self._instruments.add(name)
                create = (
                    self._meter.create_observable_counter
                    if observed.kind == "counter"
                    else self._meter.create_observable_gauge
                )
                create(name, [self._callback(name)], observed.metric.unit, observed.description)
        self._reader.succeeded = False
        self._reader.collect(timeout_millis=self.settings.timeout_seconds * 1000)
        self._count(self._reader.succeeded)
        return self._reader.succeeded

    def _callback(self, name: str):
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            if name not in self._collection:  # not in this snapshot: no points
                return
            observed = self._collection[name]
            for attrs, value in observed.points.values():
                yield self._observation(measurement(value, observed.metric.unit), attrs)

        return observe

    def _count(self, succeeded: bool) -> None:
        counts = self.counts
        counts.exports += 1
        if succeeded and counts.failing_since_export is not None:
            log.info(
                "OTLP export to %s works again after %d failed exports",
                self.settings.endpoint,
                counts.exports - counts.failing_since_export,
            )
            counts.failing_since_export = None
        elif not succeeded:
            counts.failures += 1
            if counts.failing_since_export is None:
                counts.failing_since_export = counts.exports
                log.warning(
                    "OTLP export to %s failed; trying again every %gs "
                    "(netsnoop_otlp_export_failures_total)",
                    self.settings.endpoint,
                    self.settings.interval_seconds,
                )

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval_seconds):
            try:
                self.export()
            except Exception:  # a bug here must not end the exports for good
                log.exception("OTLP export")
                self._count(False)

    def self_metrics(self) -> list[MetricFamily]:
        exports = MetricFamily(
            "netsnoop_otlp_exports", "counter", "OTLP exports attempted, failed or not.", ()
        )
        exports.set((), self.counts.exports)
        failures = MetricFamily(
            "netsnoop_otlp_export_failures",
            "counter",
            "OTLP exports that failed after the exporter's retries (collector down, refused).",
            (),
        )
        failures.set((), self.counts.failures)
        return [exports, failures]

    def close(self) -> None:
        """Stops the thread, then one last export so the latest counts are not lost, unless
        the collector is failing: retrying it would hold SIGTERM past its 2 s."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)  # an export stuck in retries dies with the process
        if self.counts.failing_since_export is None and not self._thread.is_alive():
            try:
                self.export()
            except Exception:
                log.exception("last OTLP export")
        self._provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_MS)


def build_exporter(settings: OtlpSettings) -> MetricExporter:
    if settings.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=settings.endpoint,
            insecure=settings.endpoint.startswith("http://"),
            headers={key.lower(): value for key, value in settings.headers.items()},
            timeout=settings.timeout_seconds,
            compression=grpc.Compression.Gzip
            if settings.compression == "gzip"
            else grpc.Compression.NoCompression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=settings.endpoint,
        headers=settings.headers,
        timeout=settings.timeout_seconds,
        compression=Compression.Gzip
        if settings.compression == "gzip"
        else Compression.NoCompression,
    )
