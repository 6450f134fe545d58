"""The Prometheus view of a snapshot, through prometheus_client's custom-collector API."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.snapshot import SnapshotSource


class SnapshotCollector:
    """Translates the shared snapshot; it reads nothing from the kernel itself."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for family in self.source.current().families:
            metric_type = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = metric_type(family.name, family.documentation, labels=family.label_names)
            for label_values, value in family.samples.items():
                metric.add_metric(label_values, value)
            yield metric


def build_registry(source: SnapshotSource) -> CollectorRegistry:
    """Our metrics plus the standard process_* ones (RSS, CPU, FDs), not the Python gc/platform
    collectors, which say nothing about the network."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))
    ProcessCollector(registry=registry)
    return registry
