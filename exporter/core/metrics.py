"""One declaration per metric: its Prometheus name, type, help, labels and unit, and how it is
named over OTLP. Collectors build their families from these specs and the outputs and the docs
read them, so a metric's name is written once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.core.snapshot import MetricFamily

Kind = Literal["counter", "gauge", "histogram"]


def exposed_name(name: str, kind: str) -> str:
    """The name Prometheus sees: counters get ``_total`` (families are named without it)."""
    return f"{name}_total" if kind == "counter" else name


@dataclass(frozen=True)
class OtlpMetric:
    """How one family is named over OTLP. ``port`` says what the port label is: the remote
    (peer) or local port, or decided per series by the direction label (outbound: the peer's,
    inbound: the local one), or ``netsnoop.port`` when it is neither for every series (the
    resets' direction is sent or received). ``protocol`` names the attribute of the protocol
    label."""

    name: str
    unit: str = ""
    constant: tuple[tuple[str, str], ...] = ()
    port: Literal["peer", "local", "direction", "mixed"] = "direction"
    protocol: str = "network.transport"


TCP = (("network.transport", "tcp"),)
UDP = (("network.transport", "udp"),)


@dataclass(frozen=True)
class MetricSpec:
    """A metric as declared. ``labels`` are the ones every series has; ``optional_labels``
    exist only when a setting adds them (kubernetes.enabled: namespace, pod, container).
    A histogram has ``le`` as its last label and its ``buckets`` (the le values, ending with
    +Inf); ``otlp`` is None for it: the SDK has no asynchronous histogram (docs/otlp.md)."""

    name: str  # counters without _total
    kind: Kind
    help: str
    labels: tuple[str, ...]
    otlp: OtlpMetric | None
    unit: str = ""
    bounded_labels: tuple[str, ...] = ()  # a small fixed set of values, kept when folding
    optional_labels: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()

    @property
    def exposed_name(self) -> str:
        return exposed_name(self.name, self.kind)

    def family(
        self, label_names: tuple[str, ...] | None = None, increments: bool = False
    ) -> MetricFamily:
        """An empty family of this metric; ``label_names`` when optional labels are on;
        ``increments`` for counters read from a drained map (EpochCounters)."""
        return MetricFamily(
            self.name,
            self.kind,
            self.help,
            self.labels if label_names is None else label_names,
            unit=self.unit,
            increments=increments,
            bounded_labels=self.bounded_labels,
            buckets=self.buckets,
        )


# The exporter's own metrics; each collector declares its own in its module (registry.py).
BUILD_INFO = MetricSpec(
    "netsnoop_build_info",
    "gauge",
    "Build and runtime versions; the value is always 1.",
    ("version", "bcc_version", "kernel"),
    OtlpMetric("netsnoop.build.info", "1"),
)
KERNEL_BTF_AVAILABLE = MetricSpec(
    "netsnoop_kernel_btf_available",
    "gauge",
    "1 when the kernel's BTF gave the struct offsets that per-namespace listener owners "
    "and connected-UDP destinations need; 0 turns both off (see the README).",
    (),
    OtlpMetric("netsnoop.kernel_btf_available"),
)
PROGRAM_ATTACHED = MetricSpec(
    "netsnoop_bpf_program_attached",
    "gauge",
    "1 when the BPF program is attached to its tracepoint, 0 when it could not be.",
    ("collector", "program"),
    OtlpMetric("netsnoop.bpf.program.attached", "1"),
)
COLLECTOR_SUCCESS = MetricSpec(
    "netsnoop_scrape_collector_success",
    "gauge",
    "1 when the collector's last read succeeded.",
    ("collector",),
    OtlpMetric("netsnoop.collector.success", "1"),
)
COLLECTOR_DURATION = MetricSpec(
    "netsnoop_scrape_collector_duration_seconds",
    "gauge",
    "Seconds the collector's last read took.",
    ("collector",),
    OtlpMetric("netsnoop.collector.duration", "s"),
    unit="seconds",
)
MAP_ENTRIES = MetricSpec(
    "netsnoop_bpf_map_entries",
    "gauge",
    "Entries in the BPF map now.",
    ("collector", "map"),
    OtlpMetric("netsnoop.bpf.map.entries", "{entry}"),
)
MAP_CAPACITY = MetricSpec(
    "netsnoop_bpf_map_capacity",
    "gauge",
    "Maximum entries of the BPF map.",
    ("collector", "map"),
    OtlpMetric("netsnoop.bpf.map.capacity", "{entry}"),
)
MAP_UPDATE_FAILURES = MetricSpec(
    "netsnoop_bpf_map_update_failures",
    "counter",
    "Updates the BPF side lost because the map was full.",
    ("collector", "map"),
    OtlpMetric("netsnoop.bpf.map.update_failures", "{update}"),
)
MAP_ENTRIES_SWEPT = MetricSpec(
    "netsnoop_bpf_map_entries_swept",
    "counter",
    "Entries the BPF side never removed (an event it did not see), deleted by the "
    "exporter's sweep; for pending connects, attempts that could not be counted.",
    ("collector", "map"),
    OtlpMetric("netsnoop.bpf.map.swept_entries", "{entry}"),
)
PROGRAM_RUN_SECONDS = MetricSpec(
    "netsnoop_bpf_program_run_seconds",
    "counter",
    "Kernel time spent running the BPF program, counted while kernel.bpf_stats_enabled=1.",
    ("program",),
    OtlpMetric("netsnoop.bpf.program.run.time", "s"),
    unit="seconds",
)
PROGRAM_RUNS = MetricSpec(
    "netsnoop_bpf_program_runs",
    "counter",
    "Runs of the BPF program, counted while kernel.bpf_stats_enabled=1.",
    ("program",),
    OtlpMetric("netsnoop.bpf.program.runs", "{run}"),
)
SERIES_OVERFLOW = MetricSpec(
    "netsnoop_series_overflow",
    "counter",
    "Increments folded into a metric's overflow series because its series budget "
    "(cardinality.series_per_metric) was spent.",
    ("metric",),
    OtlpMetric("netsnoop.series.overflow", "{increment}"),
)
SCRAPE_DURATION = MetricSpec(
    "netsnoop_scrape_duration_seconds",
    "gauge",
    "Seconds this snapshot took to read from the kernel.",
    (),
    OtlpMetric("netsnoop.snapshot.duration", "s"),
    unit="seconds",
)
OTLP_EXPORTS = MetricSpec(
    "netsnoop_otlp_exports",
    "counter",
    "OTLP exports attempted, failed or not.",
    (),
    OtlpMetric("netsnoop.otlp.exports", "{export}"),
)
OTLP_EXPORT_FAILURES = MetricSpec(
    "netsnoop_otlp_export_failures",
    "counter",
    "OTLP exports that failed after the exporter's retries (collector down, refused).",
    (),
    OtlpMetric("netsnoop.otlp.export.failures", "{export}"),
)
EXPORTER_METRICS = (
    KERNEL_BTF_AVAILABLE,
    BUILD_INFO,
    PROGRAM_ATTACHED,
    COLLECTOR_SUCCESS,
    COLLECTOR_DURATION,
    MAP_ENTRIES,
    MAP_CAPACITY,
    MAP_UPDATE_FAILURES,
    MAP_ENTRIES_SWEPT,
    SERIES_OVERFLOW,
    SCRAPE_DURATION,
    PROGRAM_RUN_SECONDS,
    PROGRAM_RUNS,
    OTLP_EXPORTS,
    OTLP_EXPORT_FAILURES,
)
