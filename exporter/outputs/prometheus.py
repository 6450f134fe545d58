"""The Prometheus view of a snapshot: the text format and OpenMetrics written straight from it;
prometheus_client's OpenMetrics encoder remains for escapings that rewrite names."""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.utils import floatToGoString

from exporter.core.metrics import exposed_name
from exporter.core.snapshot import LabelValues, MetricFamily, SnapshotSource, histogram_series


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


SampleEntry = tuple[float, float | None, str]  # value, created, line(s)
HistogramLabels = tuple[str, str, str]  # labels before le, after le, all of them
FamilyKey = tuple[str, str, tuple[str, ...]]


class TextEncoder:
    """The Prometheus text format (0.0.4) of our families; OpenMetricsEncoder below writes
    OpenMetrics the same way.

    prometheus_client builds an object per sample and formats it generically, which is most of
    a 10k-series scrape; writing the lines directly keeps large scrapes cheap. Each series'
    lines are kept between scrapes: a series whose value stays the same reuses its line, one
    whose value changed takes its label part from it (escaped and joined only once). Only the
    series of the last snapshot encoded are kept: the cache is as large as one snapshot (for
    counters, the series budget), and a series that leaves the snapshot leaves the cache.
    Renders run in a few threads at once and may share an entry: each one is checked against
    its series' value before use, so a render never writes a line of another snapshot."""

    count_before_sum = False  # the order of a histogram's _count and _sum lines

    def __init__(self) -> None:
        self._lines: dict[FamilyKey, dict[LabelValues, SampleEntry]] = {}
        self._histogram_labels: dict[FamilyKey, dict[LabelValues, HistogramLabels]] = {}

    def encode(self, families: Iterable[MetricFamily], started_at: float = 0.0) -> bytes:
        """``started_at``: the creation time of counters that carry none (OpenMetrics)."""
        lines: list[str] = []
        cached_lines, cached_labels = self._lines, self._histogram_labels
        kept_lines: dict[FamilyKey, dict[LabelValues, SampleEntry]] = {}
        kept_labels: dict[FamilyKey, dict[LabelValues, HistogramLabels]] = {}
        for family in families:
            key = (family.name, family.kind, family.label_names)
            if family.kind == "histogram":
                kept_labels[key] = self._histogram(family, cached_labels.get(key, {}), lines)
            else:
                cache = cached_lines.get(key, {})
                kept_lines[key] = self._samples(family, cache, lines, started_at)
        self._lines, self._histogram_labels = kept_lines, kept_labels  # families that went: gone
        lines.append("")
        return "\n".join(lines).encode()

    def _samples(
        self,
        family: MetricFamily,
        cache: dict[LabelValues, SampleEntry],
        lines: list[str],
        started_at: float,
    ) -> dict[LabelValues, SampleEntry]:
        """Appends the family's lines; returns its cache for the next scrape: ``cache`` updated
        in place (one lookup per series), rebuilt only when some of its series left."""
        name = self.header(family, lines)
        names = family.label_names
        created_at = family.created.get if self.created(family) else None
        created = None
        for label_values, value in family.samples.items():
            entry = cache.get(label_values)
            if created_at is not None:
                created = created_at(label_values, started_at)
            if entry is not None:
                # a zero is always rewritten: 0.0 == -0.0, and they print apart
                if entry[0] == value and value and entry[1] == created:
                    lines.append(entry[2])
                    continue
                label_part = self.label_part_of(name, entry[2], entry[1])
            else:
                label_part = self.label_part(names, label_values)
            line = self.sample(name, label_part, value, created)
            cache[label_values] = (value, created, line)
            lines.append(line)
        if len(cache) > len(family.samples):  # every series has its entry: the others left
            return {labels: cache[labels] for labels in family.samples}
        return cache

    def _histogram(
        self, family: MetricFamily, cache: dict[LabelValues, HistogramLabels], lines: list[str]
    ) -> dict[LabelValues, HistogramLabels]:
        """Appends the histogram's lines; returns its label parts for the next scrape."""
        name = self.header(family, lines)
        names, value = family.label_names[:-1], self.format_value
        kept = {}
        for series in histogram_series(family):
            labels = cache.get(series.labels)
            if labels is None:
                labels = self.histogram_labels(names, series.labels)
            kept[series.labels] = before, after, plain = labels
            for le, count in series.buckets:
                lines.append(f'{name}_bucket{{{before}le="{le}"{after}}} {value(count)}')
            braces = f"{{{plain}}}" if plain else ""
            total = [
                f"{name}_sum{braces} {value(series.sum)}",
                f"{name}_count{braces} {value(series.count)}",
            ]
            lines += reversed(total) if self.count_before_sum else total
        return kept

    # What differs between the formats:

    def header(self, family: MetricFamily, lines: list[str]) -> str:
        """Appends the HELP and TYPE lines; returns the name the samples start with."""
        name = family.name if family.kind == "histogram" else exposed_name(family.name, family.kind)
        documentation = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {documentation}")
        lines.append(f"# TYPE {name} {family.kind}")
        return name

    def created(self, family: MetricFamily) -> bool:
        """Whether the family's samples carry their creation time."""
        return False

    @staticmethod
    def label_part(names: Sequence[str], values: LabelValues) -> str:
        if not values:
            return ""
        pairs = ",".join(
            f'{name}="{_escape_label_value(text)}"'
            for name, text in zip(names, values, strict=True)
        )
        return f"{{{pairs}}}"

    @staticmethod
    def histogram_labels(names: Sequence[str], values: LabelValues) -> HistogramLabels:
        plain = TextEncoder.label_part(names, values)[1:-1]
        return (f"{plain}," if plain else "", "", plain)

    @staticmethod
    def format_value(value: float) -> str:
        return _format_value(value)

    def sample(self, name: str, label_part: str, value: float, created: float | None) -> str:
        return f"{name}{label_part} {self.format_value(value)}"

    @staticmethod
    def label_part_of(name: str, line: str, created: float | None) -> str:
        """The label part of a line ``sample`` wrote: values never hold a space, and an escaped
        label value never a newline."""
        return line[len(name) : line.rindex(" ")]


class OpenMetricsEncoder(TextEncoder):
    """OpenMetrics 1.0, the bytes prometheus_client's encoder writes for SnapshotCollector
    (labels sorted by name, Go's float format, ``# UNIT``, counters' ``_created``) for the
    escapings that leave our legal names alone; Prometheus asks for it by default."""

    count_before_sum = True
    escapings = ("underscores", "allow-utf-8")

    def header(self, family: MetricFamily, lines: list[str]) -> str:
        unit = "" if family.kind == "histogram" else family.unit
        name = family.name
        if unit and not name.endswith(f"_{unit}"):
            name += f"_{unit}"  # as prometheus_client's Metric does
        documentation = _escape_label_value(family.documentation)
        lines.append(f"# HELP {name} {documentation}")
        lines.append(f"# TYPE {name} {family.kind}")
        if unit:
            lines.append(f"# UNIT {name} {unit}")
        return name

    def created(self, family: MetricFamily) -> bool:
        return family.kind == "counter"

    @staticmethod
    def label_part(names: Sequence[str], values: LabelValues) -> str:
        return TextEncoder.label_part(*_sorted_labels(names, values))

    @staticmethod
    def histogram_labels(names: Sequence[str], values: LabelValues) -> HistogramLabels:
        names, values = _sorted_labels(names, values)
        split = bisect.bisect(names, "le")
        before = TextEncoder.label_part(names[:split], values[:split])[1:-1]
        after = TextEncoder.label_part(names[split:], values[split:])[1:-1]
        plain = TextEncoder.label_part(names, values)[1:-1]
        return (f"{before}," if before else "", f",{after}" if after else "", plain)

    @staticmethod
    def format_value(value: float) -> str:
        return floatToGoString(value)

    def sample(self, name: str, label_part: str, value: float, created: float | None) -> str:
        if created is None:
            return f"{name}{label_part} {floatToGoString(value)}"
        return (
            f"{name}_total{label_part} {floatToGoString(value)}\n"
            f"{name}_created{label_part} {floatToGoString(created)}"
        )

    @staticmethod
    def label_part_of(name: str, line: str, created: float | None) -> str:
        if created is None:
            return TextEncoder.label_part_of(name, line, created)
        return line[len(name) + len("_total") : line.rindex(" ", 0, line.index("\n"))]


@functools.lru_cache(maxsize=256)  # one entry per family's label names
def _label_order(names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(sorted(range(len(names)), key=names.__getitem__))


def _sorted_labels(
    names: Sequence[str], values: LabelValues
) -> tuple[tuple[str, ...], LabelValues]:
    """Names and values in the names' order, as prometheus_client writes OpenMetrics labels."""
    order = _label_order(tuple(names))
    return tuple(names[i] for i in order), tuple(values[i] for i in order)


TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what TextEncoder writes


class Exposition:
    """Renders /metrics: our snapshot plus the standard process_* metrics (RSS, CPU, FDs),
    not the Python gc/platform collectors, which say nothing about the network.
    ``process_metrics=False`` (--web.disable-exporter-metrics) leaves the process_* out."""

    def __init__(self, source: SnapshotSource, process_metrics: bool = True) -> None:
        self.source = source
        self.text = TextEncoder()
        self.openmetrics = OpenMetricsEncoder()
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
            escaping = getattr(encoder, "keywords", {}).get("escaping")
            if escaping not in OpenMetricsEncoder.escapings:  # names would be rewritten
                return encoder(self.openmetrics_registry), content_type
            families = self.source.current().families
            body = self.openmetrics.encode(families, self.source.started_at)
            return body + encoder(self.process_registry), content_type  # ends with # EOF
        body = self.text.encode(self.source.current().families)
        return body + generate_latest(self.process_registry), TEXT_CONTENT_TYPE
