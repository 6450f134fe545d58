"""The Prometheus view of a snapshot: the text format written straight from it, and
OpenMetrics through prometheus_client for clients that ask for it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest

from exporter.core.metrics import exposed_name
from exporter.core.snapshot import MetricFamily, SnapshotSource, histogram_series


class SnapshotCollector:
    """Translates the shared snapshot; it reads nothing from the kernel itself."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """Counters carry ``_created``, so Prometheus (created-timestamp-zero-ingestion) sees
        a new series start from 0 and counts its first increment in ``increase()``."""
        started_at = self.source.started_at
        for family in self.source.current().families:
            if family.kind == "histogram":
                histogram = HistogramMetricFamily(
                    family.name, family.documentation, labels=family.label_names[:-1]
                )
                for series in histogram_series(family):
                    histogram.add_metric(list(series.labels), series.buckets, series.sum)
                yield histogram
                continue
            if family.kind == "counter":
                counter = CounterMetricFamily(
                    family.name, family.documentation, labels=family.label_names, unit=family.unit
                )
                for label_values, value in family.samples.items():
                    created = family.created.get(label_values, started_at)
                    counter.add_metric(label_values, value, created=created)
                yield counter
                continue
            gauge = GaugeMetricFamily(
                family.name, family.documentation, labels=family.label_names, unit=family.unit
            )
            for label_values, value in family.samples.items():
                gauge.add_metric(label_values, value)
            yield gauge


def _escape_label_value(value: str) -> str:
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value  # nearly always: skip the three copies
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def encode_text(families: Iterable[MetricFamily]) -> bytes:
    """The Prometheus text format (0.0.4) of our families.

    prometheus_client builds an object per sample and formats it generically, which is most of
    a 10k-series scrape; writing the lines directly keeps large scrapes cheap."""
    lines: list[str] = []
    for family in families:
        if family.kind == "histogram":
            lines += _histogram_lines(family)
            continue
        name = exposed_name(family.name, family.kind)
        documentation = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {documentation}")
        lines.append(f"# TYPE {name} {family.kind}")
        prefixes = [f'{label}="' for label in family.label_names]
        for label_values, value in family.samples.items():
            if label_values:
                pairs = '",'.join(
                    prefix + _escape_label_value(text)
                    for prefix, text in zip(prefixes, label_values, strict=True)
                )
                lines.append(f'{name}{{{pairs}"}} {_format_value(value)}')
            else:
                lines.append(f"{name} {_format_value(value)}")
    lines.append("")
    return "\n".join(lines).encode()


def _histogram_lines(family: MetricFamily) -> list[str]:
    documentation = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {family.name} {documentation}", f"# TYPE {family.name} histogram"]
    names = family.label_names[:-1]
    for series in histogram_series(family):
        pairs = "".join(
            f'{label}="{_escape_label_value(text)}",'
            for label, text in zip(names, series.labels, strict=True)
        )
        for le, count in series.buckets:
            lines.append(f'{family.name}_bucket{{{pairs}le="{le}"}} {_format_value(count)}')
        braces = f"{{{pairs[:-1]}}}" if pairs else ""
        lines.append(f"{family.name}_sum{braces} {_format_value(series.sum)}")
        lines.append(f"{family.name}_count{braces} {_format_value(series.count)}")
    return lines


TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what encode_text writes


class Exposition:
    """Renders /metrics: our snapshot plus the standard process_* metrics (RSS, CPU, FDs),
    not the Python gc/platform collectors, which say nothing about the network.
    ``process_metrics=False`` (--web.disable-exporter-metrics) leaves the process_* out."""

    def __init__(self, source: SnapshotSource, process_metrics: bool = True) -> None:
        self.source = source
        self.process_registry = CollectorRegistry(auto_describe=False)
        self.openmetrics_registry = CollectorRegistry(auto_describe=False)
        self.openmetrics_registry.register(SnapshotCollector(source))
        if process_metrics:
            ProcessCollector(registry=self.process_registry)
            ProcessCollector(registry=self.openmetrics_registry)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The body and its content type, in the format the Accept header prefers."""
        encoder, content_type = choose_encoder(accept)
        if content_type.startswith("application/openmetrics-text"):
            return encoder(self.openmetrics_registry), content_type
        body = encode_text(self.source.current().families)
        return body + generate_latest(self.process_registry), TEXT_CONTENT_TYPE
