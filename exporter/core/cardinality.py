"""Bounded cardinality with exact totals, for every collector's counters.

Each read's counter families pass through here before they become a snapshot. Per metric:

- the port policy folds port values that only an attacker or the client side chooses
  (ephemeral ports, inbound refused ports outside the kept list) into ``port="other"``;
- a series budget: the first ``series_per_metric`` label combinations keep their own series;
  later ones are added to an overflow series whose unbounded labels read ``other`` (a kept port
  stays), so the sum over the metric stays exact; ``netsnoop_series_overflow_total{metric}``
  counts the increments folded that way;
- a series that had no increment for ``idle_seconds`` is dropped and frees its place;
- a series a collector reports at 0 (a listener, a rule's hook outcome) is born at 0, so the
  first increment shows in ``increase()``; each series carries its creation time
  (OpenMetrics ``_created``).

Totals live here, in userspace, so collectors may drain or lose their kernel maps: a counter
keeps growing from where it was. Collectors report either running totals (a reset is taken
as a restart from zero) or, with ``MetricFamily.increments``, what was added since their last
read.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.core.metrics import SERIES_OVERFLOW, exposed_name
from exporter.core.snapshot import LabelValues, MetricFamily
from exporter.kernel.sysctl import local_port_range
from exporter.settings import CardinalityConfig, PortsConfig, parse_port_range

OTHER = "other"
# bpf/common.h: one flag byte per port, written into each program's port_fold map.
PORT_FOLD_ALWAYS = 1
PORT_FOLD_REFUSED_INBOUND = 2
KERNEL_PORT_OTHER = 0  # the port a BPF program counts a folded port as


def port_fold_defines() -> dict[str, int]:
    """The flag values and folded port of ``kernel_flags``, for bpf/common.h's fold_port."""
    return {
        "PORT_OTHER": KERNEL_PORT_OTHER,
        "PORT_FOLD_ALWAYS": PORT_FOLD_ALWAYS,
        "PORT_FOLD_REFUSED_INBOUND": PORT_FOLD_REFUSED_INBOUND,
    }


def kernel_port_label(port: int) -> str:
    return OTHER if port == KERNEL_PORT_OTHER else str(port)


class PortPolicy:
    def __init__(self, settings: PortsConfig, ephemeral: tuple[int, int]) -> None:
        kept = [parse_port_range(str(entry)) for entry in settings.keep]
        # one flag per port: checked for every sample of every read, so O(1), not per range
        self._kept_flags = bytearray(65536)
        for low, high in kept:
            self._kept_flags[low : high + 1] = b"\x01" * (high - low + 1)
        self.ephemeral = (
            parse_port_range(settings.ephemeral_range) if settings.ephemeral_range else ephemeral
        )
        self.fold_ephemeral = settings.fold_ephemeral
        self.fold_refused_inbound = settings.fold_refused_inbound

    def kernel_flags(self) -> bytes:
        """The policy as the BPF programs apply it: a PORT_FOLD_* byte per port 0-65535.

        The same rules as port_label, so a port folds the same way on both sides."""
        flags = bytearray([PORT_FOLD_REFUSED_INBOUND if self.fold_refused_inbound else 0]) * 65536
        if self.fold_ephemeral:
            low, high = self.ephemeral
            for port in range(low, high + 1):
                flags[port] |= PORT_FOLD_ALWAYS
        for port, kept in enumerate(self._kept_flags):
            if kept or port == KERNEL_PORT_OTHER:
                flags[port] = 0
        return bytes(flags)

    def is_kept(self, port: str) -> bool:
        return port.isdigit() and int(port) < 65536 and self._kept_flags[int(port)] == 1

    def port_label(self, port: str, direction: str | None, result: str | None) -> str:
        """The value the port label gets: its own, or OTHER."""
        if not port.isdigit() or self.is_kept(port):
            return port
        low, high = self.ephemeral
        if self.fold_ephemeral and low <= int(port) <= high:
            return OTHER
        refused_inbound = direction == "inbound" and result == "refused"
        return OTHER if self.fold_refused_inbound and refused_inbound else port


@dataclass
class Series:
    created: float  # wall-clock seconds: OpenMetrics ``_created``
    value: float = 0.0


@dataclass
class MetricState:
    """What the budget remembers of one metric: bounded by the budget, the overflow series
    (bounded labels x kept ports) and the collector's own last read.

    A series' total, creation time and last increment live in three dicts with the same keys,
    so a snapshot's samples and creation times are two dict copies, not a loop in Python;
    ``touched`` is kept in the order of the last increment (a touched series moves to the end),
    so the idle series are the first ones and expiry stops at the first that is not."""

    values: dict[LabelValues, float] = field(default_factory=dict)
    created: dict[LabelValues, float] = field(default_factory=dict)  # OpenMetrics ``_created``
    touched: dict[LabelValues, float] = field(default_factory=dict)  # or read again at 0
    overflow: dict[LabelValues, Series] = field(default_factory=dict)
    folded: float = 0.0
    last_totals: dict[LabelValues, float] = field(default_factory=dict)


class SeriesBudget:
    def __init__(
        self,
        settings: CardinalityConfig,
        ports: PortsConfig,
        clock: Callable[[], float] = time.monotonic,
        ephemeral: Callable[[], tuple[int, int]] = local_port_range,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._ephemeral = ephemeral
        self._metrics: dict[str, MetricState] = {}
        self.configure(settings, ports)

    def configure(self, settings: CardinalityConfig, ports: PortsConfig) -> None:
        """New limits and port policy; existing totals are kept (config reload)."""
        self.settings = settings
        self.ports = PortPolicy(ports, self._ephemeral())

    def apply(self, families: Sequence[MetricFamily]) -> list[MetricFamily]:
        """Counters with running totals and bounded series; gauges pass through."""
        now = self._clock()
        out = [
            self._bound(family, now)
            if family.kind in ("counter", "histogram") and family.label_names
            else family
            for family in families
        ]
        overflow = SERIES_OVERFLOW.family()
        for name, state in self._metrics.items():
            if state.folded:
                overflow.set((exposed_name(name, "counter"),), state.folded)
        return [*out, overflow]

    def _bound(self, family: MetricFamily, now: float) -> MetricFamily:
        state = self._metrics.setdefault(family.name, MetricState())
        values, touched, created = state.values, state.touched, state.created
        increments = family.samples if family.increments else self._increments(family, state)
        names = family.label_names
        port_index = names.index("port") if "port" in names else None
        direction_index = names.index("direction") if "direction" in names else None
        result_index = names.index("result") if "result" in names else None
        new: dict[LabelValues, float] = {}
        for label_values, increment in increments.items():
            if increment < 0:
                continue
            labels = label_values
            if port_index is not None:
                port = labels[port_index]
                folded = self.ports.port_label(
                    port,
                    None if direction_index is None else labels[direction_index],
                    None if result_index is None else labels[result_index],
                )
                if folded != port:
                    labels = (*labels[:port_index], folded, *labels[port_index + 1 :])
            total = values.get(labels)
            if total is None:
                new[labels] = new.get(labels, 0.0) + increment
            else:
                values[labels] = total + increment
                del touched[labels]  # to the end: the most recent
                touched[labels] = now
        # expire only after the existing series took their increments, and before new ones
        # compete for the places that frees
        expiry = now - self.settings.idle_seconds
        idle = list(itertools.takewhile(lambda item: item[1] < expiry, touched.items()))
        for labels, _ in idle:
            del values[labels], created[labels], touched[labels]
        born = self._wall_clock()
        for labels, increment in new.items():
            if len(values) < self.settings.series_per_metric:
                values[labels], created[labels], touched[labels] = increment, born, now
            elif increment:  # a series born at zero never takes an overflow place
                series = state.overflow.setdefault(self._fold(family, labels), Series(born))
                series.value += increment
                state.folded += increment
        samples, creation = values.copy(), created.copy()
        for labels, series in state.overflow.items():
            samples[labels] = samples.get(labels, 0.0) + series.value
            creation[labels] = min(creation.get(labels, series.created), series.created)
        return dataclasses.replace(family, samples=samples, created=creation, increments=False)

    def _fold(self, family: MetricFamily, labels: LabelValues) -> LabelValues:
        """Unbounded labels become OTHER; bounded ones and a kept port stay."""
        return tuple(
            value
            if name in family.bounded_labels or (name == "port" and self.ports.is_kept(value))
            else OTHER
            for name, value in zip(family.label_names, labels, strict=True)
        )

    @staticmethod
    def _increments(family: MetricFamily, state: MetricState) -> dict[LabelValues, float]:
        """Running totals into increments; a total that went down restarted from zero."""
        increments = {}
        for labels, total in family.samples.items():
            previous = state.last_totals.get(labels, 0.0)
            increments[labels] = total - previous if total >= previous else total
        state.last_totals = dict(family.samples)
        return increments
