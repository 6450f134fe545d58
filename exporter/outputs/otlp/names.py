"""OTLP names: from our families to OTel metric names, units and attributes (the table comes
from the metric declarations, exporter/core/metrics.py and the collector registry)."""

from __future__ import annotations

import functools
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from exporter import __version__
from exporter.collectors.registry import registered_collectors
from exporter.core.metrics import (
    EXPORTER_METRICS,
    OtlpMetric,
)
from exporter.core.snapshot import LabelValues, MetricFamily

if TYPE_CHECKING:
    pass

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


@functools.cache
def otlp_table() -> dict[str, OtlpMetric]:
    """By MetricFamily.name (counters without _total), from the declarations: the exporter's
    own metrics (exporter/core/metrics.py) and every registered collector's. Families that share
    an OTLP name are told apart by their constant attributes."""
    specs = [*EXPORTER_METRICS, *(m for c in registered_collectors() for m in c.metrics)]
    return {spec.name: spec.otlp for spec in specs if spec.otlp is not None}


def otlp_metric(family: MetricFamily) -> OtlpMetric:
    """The table's entry, or for a family not in it: ``netsnoop_`` becomes ``netsnoop.``, the
    unit suffix moves to the unit, and the rest of the name stays as it is."""
    if metric := otlp_table().get(family.name):
        return metric
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
