"""The OTLP output: periodic exports of the shared snapshot through the official SDK, imported
only when the output starts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.core.metrics import (
    OTLP_EXPORT_FAILURES,
    OTLP_EXPORTS,
)
from exporter.core.snapshot import MetricFamily, Snapshot, SnapshotSource

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics.export import MetricExporter

from exporter.outputs.otlp.names import ObservedMetric, measurement, observations
from exporter.outputs.otlp.settings import OtlpSettings

log = logging.getLogger(__name__)

# Attribute sets the SDK keeps per instrument (it remembers every set it has seen; past this,
# new ones add into one otel.metric.overflow=true point). Our own series budget bounds the
# live series well below this; the margin is for series that expired and were replaced.
SDK_CARDINALITY_LIMIT = 100_000


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
        from opentelemetry.sdk.metrics.export import CardinalityLimits, MetricReader
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        class SnapshotReader(MetricReader):
            """Collects when the output says so and keeps the exporter's verdict."""

            def __init__(self, exporter: MetricExporter) -> None:
                limit = SDK_CARDINALITY_LIMIT
                limits: CardinalityLimits = {ObservableCounter: limit, ObservableGauge: limit}
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
        exports = OTLP_EXPORTS.family()
        exports.set((), self.counts.exports)
        failures = OTLP_EXPORT_FAILURES.family()
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
