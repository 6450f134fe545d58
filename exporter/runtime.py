"""The running exporter: starts the collectors, and reads them into one snapshot."""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.collectors.base import BpfCollector, Collector, start_bpf_collectors
from exporter.collectors.registry import enabled_collectors
from exporter.config import Config
from exporter.core.cardinality import SeriesBudget
from exporter.core.metrics import (
    BUILD_INFO,
    COLLECTOR_DURATION,
    COLLECTOR_SUCCESS,
    KERNEL_BTF_AVAILABLE,
    MAP_CAPACITY,
    MAP_ENTRIES,
    MAP_ENTRIES_SWEPT,
    MAP_UPDATE_FAILURES,
    PROGRAM_ATTACHED,
    PROGRAM_RUN_SECONDS,
    PROGRAM_RUNS,
    SCRAPE_DURATION,
)
from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.kernel import btf
from exporter.kernel.bpf import bcc_version, release_compiler_memory
from exporter.kernel.bpf_stats import stats_enabled
from exporter.kernel.programs import BpfLoadError
from exporter.services import SharedServices

log = logging.getLogger(__name__)


def program_run_families(collectors: Sequence[Collector]) -> list[MetricFamily]:
    """What each BPF program costs in the kernel; programs of the same name (one tracepoint
    used by two collectors) are summed."""
    run_seconds, runs = PROGRAM_RUN_SECONDS.family(), PROGRAM_RUNS.family()
    for collector in collectors:
        for program, stats in collector.program_run_stats().items():
            run_seconds.add((program,), stats.run_time_ns / 1e9)
            runs.add((program,), stats.run_count)
    return [run_seconds, runs]


@dataclass(frozen=True)
class CollectorRead:
    """How a collector's last read went, for netsnoop_scrape_collector_*."""

    success: bool
    seconds: float


def self_metrics(
    collectors: Sequence[Collector], reads: dict[str, CollectorRead], read_seconds: float
) -> list[MetricFamily]:
    """The exporter's own health, in the same snapshot as the kernel's numbers. A collector
    that did not start reads as failed and has no duration."""
    build = BUILD_INFO.family()
    build.set((__version__, bcc_version(), platform.release()), 1)
    attached, success, duration = (
        PROGRAM_ATTACHED.family(),
        COLLECTOR_SUCCESS.family(),
        COLLECTOR_DURATION.family(),
    )
    entries, capacity, failures, swept = (
        MAP_ENTRIES.family(),
        MAP_CAPACITY.family(),
        MAP_UPDATE_FAILURES.family(),
        MAP_ENTRIES_SWEPT.family(),
    )
    for collector in collectors:
        read = reads.get(collector.name)
        success.set((collector.name,), 1.0 if read is not None and read.success else 0.0)
        if read is not None:
            duration.set((collector.name,), read.seconds)
        for program, is_attached in collector.program_status().items():
            attached.set((collector.name, program), 1.0 if is_attached else 0.0)
        for stats in collector.map_stats():
            if stats.entries is not None and stats.capacity is not None:
                entries.set((collector.name, stats.name), stats.entries)
                capacity.set((collector.name, stats.name), stats.capacity)
            failures.set((collector.name, stats.name), stats.update_failures)
            if stats.swept is not None:
                swept.set((collector.name, stats.name), stats.swept)
    scrape = SCRAPE_DURATION.family()
    scrape.set((), read_seconds)
    families = [build, attached, success, duration, entries, capacity, failures, swept, scrape]
    if stats_enabled():  # off, the kernel counts nothing and zeros would mislead
        families += program_run_families(collectors)
    return families


def btf_family(available: bool) -> MetricFamily:
    family = KERNEL_BTF_AVAILABLE.family()
    family.set((), 1.0 if available else 0.0)
    return family


RELOADABLE_SECTIONS = ("cardinality", "ports")
DRAIN_INTERVAL_S = 1.0  # kernel maps are sized for what arrives in this long (README)


class Exporter:
    def __init__(self, config: Config, collectors: Sequence[Collector] | None = None) -> None:
        self.config = config
        self.services = SharedServices(config)
        self.collectors = (
            list(collectors)
            if collectors is not None
            else enabled_collectors(config, self.services)
        )
        self.snapshots = SnapshotSource(self.read)
        self.budget = SeriesBudget(config.cardinality, config.ports)
        self.ready = threading.Event()
        self._started: list[Collector] = []
        self.btf_available = False
        # The outputs' own health (e.g. OTLP export counts), read into every snapshot.
        self.output_metrics: list[Callable[[], list[MetricFamily]]] = []
        self._stop_draining = threading.Event()
        self._drainer: threading.Thread | None = None

    def start(self) -> None:
        """Load every collector; one that cannot load is reported, the rest still serve."""
        began = time.monotonic()
        bpf_collectors = [c for c in self.collectors if isinstance(c, BpfCollector)]
        failed = (
            start_bpf_collectors(bpf_collectors, bpf_collectors[0].tracefs)
            if bpf_collectors
            else {}
        )
        if bpf_collectors:
            log.info(
                "BPF programs of %d collectors compiled and attached in %.2fs",
                len(bpf_collectors),
                time.monotonic() - began,
            )
        for collector in self.collectors:
            if not isinstance(collector, BpfCollector):
                try:
                    collector.start()
                except BpfLoadError as error:
                    failed[collector.name] = str(error)
            if collector.name in failed:
                log.error("collector %s disabled: %s", collector.name, failed[collector.name])
                continue
            collector.apply_port_policy(self.budget.ports)
            self._started.append(collector)
        release_compiler_memory()
        # The collectors have their struct offsets: the parsed BTF (several MB) can go.
        self.btf_available = btf.kernel_btf() is not None
        btf.kernel_btf.cache_clear()
        self._drainer = threading.Thread(target=self._drain_loop, name="drain", daemon=True)
        self._drainer.start()
        statuses = [s for c in self.collectors for s in c.program_status().values()]
        if any(statuses) or not statuses:
            self.ready.set()
        else:  # serving only zeros would look healthy to a liveness probe
            log.error("no BPF program could be attached: /healthz stays 503")

    def _drain_loop(self) -> None:
        """Empties the kernel maps every DRAIN_INTERVAL_S whether or not anyone scrapes."""
        while not self._stop_draining.wait(DRAIN_INTERVAL_S):
            for collector in self._started:
                try:
                    collector.drain()
                except Exception:  # the next read reports the collector as failed
                    log.exception("draining collector %s", collector.name)

    def read(self) -> list[MetricFamily]:
        began = time.perf_counter()
        self.services.new_snapshot()  # listener owners and queues are read once per snapshot
        families: list[MetricFamily] = []
        reads: dict[str, CollectorRead] = {}
        for collector in self._started:
            collector_began = time.perf_counter()
            try:
                families.extend(collector.collect())
                succeeded = True
            except Exception:  # one broken read must not take the whole endpoint down
                log.exception("collector %s failed", collector.name)
                succeeded = False
            reads[collector.name] = CollectorRead(succeeded, time.perf_counter() - collector_began)
        families = self.budget.apply(families)
        families += self_metrics(self.collectors, reads, time.perf_counter() - began)
        families.append(btf_family(self.btf_available))
        return families + [family for output in self.output_metrics for family in output()]

    def reopen_files(self) -> None:
        """SIGHUP: the event log goes to a new file after logrotate moved the old one."""
        for collector in self._started:
            collector.reopen_files()

    def reload(self, config: Config) -> None:
        """SIGHUP: applies the series budget and port policy; every total is kept. Sections
        that shape the BPF programs or the collectors' labels need a restart."""
        for section in type(config).model_fields:
            if section in RELOADABLE_SECTIONS:
                continue
            if getattr(config, section) != getattr(self.config, section):
                log.warning("config reload: %s changed; it takes effect on restart", section)
        self.budget.configure(config.cardinality, config.ports)
        for collector in self._started:
            collector.apply_port_policy(self.budget.ports)
        self.config = self.config.model_copy(
            update={section: getattr(config, section) for section in RELOADABLE_SECTIONS}
        )

    def close(self) -> None:
        self._stop_draining.set()
        if self._drainer is not None:
            self._drainer.join()
            self._drainer = None
        for collector in reversed(self._started):  # a later one may use an earlier one's maps
            try:
                collector.close()
            except Exception:
                log.exception("closing collector %s", collector.name)
        self._started.clear()
