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

from exporter.metrics import exposed_name
from exporter.snapshot import LabelValues, MetricFamily, SnapshotSource, histogram_series


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


class TextEncoder:
    """The Prometheus text format (0.0.4) of our families.

    prometheus_client builds an object per sample and formats it generically, which is most of
    a 10k-series scrape; writing the lines directly keeps large scrapes cheap. Each series'
    label part is escaped and joined once and kept between scrapes, and its whole line too
    while its value stays the same. Only the series of the last snapshot encoded are kept: the
    cache is as large as one snapshot (for counters, the series budget), and a series that
    leaves the snapshot leaves the cache. Renders run in a few threads at once and may share
    an entry: each one is checked against its series' value before use, so a render never
    writes a line of another snapshot."""

    def __init__(self) -> None:
        # per family: label values -> (value, "name{labels} ", whole line)
        self._lines: dict[FamilyKey, dict[LabelValues, tuple[float, str, str]]] = {}
        self._histogram_labels: dict[FamilyKey, dict[LabelValues, str]] = {}  # 'a="x",b="y",'

    def encode(self, families: Iterable[MetricFamily]) -> bytes:
        lines: list[str] = []
        cached_lines, cached_labels = self._lines, self._histogram_labels
        kept_lines: dict[FamilyKey, dict[LabelValues, tuple[float, str, str]]] = {}
        kept_labels: dict[FamilyKey, dict[LabelValues, str]] = {}
        for family in families:
            key = (family.name, family.kind, family.label_names)
            if family.kind == "histogram":
                kept_labels[key] = _histogram_lines(family, cached_labels.get(key, {}), lines)
            else:
                kept_lines[key] = _sample_lines(family, cached_lines.get(key, {}), lines)
        self._lines, self._histogram_labels = kept_lines, kept_labels  # families that went: gone
        lines.append("")
        return "\n".join(lines).encode()


FamilyKey = tuple[str, str, tuple[str, ...]]


def _help_and_type(name: str, family: MetricFamily, lines: list[str]) -> None:
    documentation = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    lines.append(f"# HELP {name} {documentation}")
    lines.append(f"# TYPE {name} {family.kind}")


def _sample_lines(
    family: MetricFamily, cache: dict[LabelValues, tuple[float, str, str]], lines: list[str]
) -> dict[LabelValues, tuple[float, str, str]]:
    """Appends the family's lines; returns its cache for the next scrape: ``cache`` updated in
    place (one lookup per series), rebuilt only when some of its series left the family."""
    name = exposed_name(family.name, family.kind)
    _help_and_type(name, family, lines)
    prefixes = [f'{label}="' for label in family.label_names]
    for label_values, value in family.samples.items():
        entry = cache.get(label_values)
        if entry is not None:
            if entry[0] == value and value:  # 0.0 == -0.0, and they print apart
                lines.append(entry[2])
                continue
            prefix = entry[1]
        elif label_values:
            pairs = '",'.join(
                prefix + _escape_label_value(text)
                for prefix, text in zip(prefixes, label_values, strict=True)
            )
            prefix = f'{name}{{{pairs}"}} '
        else:
            prefix = f"{name} "
        line = prefix + _format_value(value)
        cache[label_values] = (value, prefix, line)
        lines.append(line)
    if len(cache) > len(family.samples):  # every series has its entry: the others left
        return {labels: cache[labels] for labels in family.samples}
    return cache


def _histogram_lines(
    family: MetricFamily, cache: dict[LabelValues, str], lines: list[str]
) -> dict[LabelValues, str]:
    """Appends the histogram's lines; returns its label parts for the next scrape."""
    _help_and_type(family.name, family, lines)
    names = family.label_names[:-1]
    kept = {}
    for series in histogram_series(family):
        pairs = cache.get(series.labels)
        if pairs is None:
            pairs = "".join(
                f'{label}="{_escape_label_value(text)}",'
                for label, text in zip(names, series.labels, strict=True)
            )
        kept[series.labels] = pairs
        for le, count in series.buckets:
            lines.append(f'{family.name}_bucket{{{pairs}le="{le}"}} {_format_value(count)}')
        braces = f"{{{pairs[:-1]}}}" if pairs else ""
        lines.append(f"{family.name}_sum{braces} {_format_value(series.sum)}")
        lines.append(f"{family.name}_count{braces} {_format_value(series.count)}")
    return kept


TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what TextEncoder writes


class Exposition:
    """Renders /metrics: our snapshot plus the standard process_* metrics (RSS, CPU, FDs),
    not the Python gc/platform collectors, which say nothing about the network.
    ``process_metrics=False`` (--web.disable-exporter-metrics) leaves the process_* out."""

    def __init__(self, source: SnapshotSource, process_metrics: bool = True) -> None:
        self.source = source
        self.text = TextEncoder()
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
        body = self.text.encode(self.source.current().families)
        return body + generate_latest(self.process_registry), TEXT_CONTENT_TYPE
