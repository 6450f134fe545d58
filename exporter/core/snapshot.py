"""One state snapshot per read of the kernel, shared by every output (Prometheus, OTLP).

Collectors return plain MetricFamily values; the outputs only translate them, so the two
outputs can never disagree about a number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

LabelValues = tuple[str, ...]


@dataclass
class MetricFamily:
    """A metric with its samples; counters are named without the ``_total`` suffix.

    A histogram is kept like a counter whose last label is ``le``: one series per bucket
    holding that bucket's own count (not cumulative), and ``le="sum"`` for the sum, so the
    series budget treats it as counters; the outputs turn it into buckets, sum and count
    (``histogram_series``)."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    documentation: str
    label_names: tuple[str, ...]
    samples: dict[LabelValues, float] = field(default_factory=dict)
    unit: str = ""
    # A counter whose samples are increments since the previous read (a drained BPF map);
    # the series budget (exporter/core/cardinality.py) turns them into running totals.
    increments: bool = False
    # Labels with a small fixed set of values, kept when a series is folded into overflow.
    bounded_labels: tuple[str, ...] = ()
    # Counters: when each series started from zero (wall-clock seconds); a series without an
    # entry started with the exporter.
    created: dict[LabelValues, float] = field(default_factory=dict)
    # Histograms: every bucket's le, so each one is exposed even before its first observation.
    buckets: tuple[str, ...] = ()

    def add(self, label_values: LabelValues, value: float) -> None:
        """Sum into a series, so label folding and merging keep totals exact."""
        self.samples[label_values] = self.samples.get(label_values, 0.0) + value

    def set(self, label_values: LabelValues, value: float) -> None:
        self.samples[label_values] = value


HISTOGRAM_SUM = "sum"  # the le value of a histogram's sum series


@dataclass(frozen=True)
class HistogramSeries:
    labels: LabelValues  # without le
    buckets: list[tuple[str, float]]  # (le, cumulative count), ending with +Inf
    sum: float
    count: float


def histogram_series(family: MetricFamily) -> list[HistogramSeries]:
    """Cumulative buckets per label set, in bound order; every bucket is present."""
    bounds: set[str] = set(family.buckets)
    groups: dict[LabelValues, dict[str, float]] = {}
    for label_values, value in family.samples.items():
        *series_labels, le = label_values
        groups.setdefault(tuple(series_labels), {})[le] = value
        if le != HISTOGRAM_SUM:
            bounds.add(le)
    bounds.add("+Inf")
    ordered = sorted(bounds, key=float)
    result = []
    for labels, values in groups.items():
        running = 0.0
        buckets = []
        for le in ordered:
            running += values.get(le, 0.0)
            buckets.append((le, running))
        result.append(HistogramSeries(labels, buckets, values.get(HISTOGRAM_SUM, 0.0), running))
    return result


@dataclass(frozen=True)
class Snapshot:
    families: tuple[MetricFamily, ...]
    taken_at: float  # wall-clock seconds

    def family(self, name: str) -> MetricFamily | None:
        return next((f for f in self.families if f.name == name), None)


class SnapshotSource:
    """Takes snapshots; a request that arrives while a read is under way shares its result,
    so concurrent scrapes and the OTLP push cost one read of the BPF maps."""

    def __init__(self, read: Callable[[], Sequence[MetricFamily]]) -> None:
        self._read = read
        self.started_at = time.time()  # the creation time of counters that carry none
        self._condition = threading.Condition()
        self._reading = False
        self._generation = 0
        self._latest = Snapshot((), 0.0)

    def current(self) -> Snapshot:
        with self._condition:
            if self._reading:
                generation = self._generation
                while self._generation == generation:
                    self._condition.wait()
                return self._latest
            self._reading = True
        snapshot = self._latest
        try:
            snapshot = Snapshot(tuple(self._read()), time.time())
        finally:
            with self._condition:
                self._latest = snapshot
                self._generation += 1
                self._reading = False
                self._condition.notify_all()
        return snapshot
