"""The interface every collector implements, and the common part of BPF-backed ones."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from exporter.core.cardinality import port_fold_defines
from exporter.core.snapshot import MetricFamily
from exporter.kernel import btf
from exporter.kernel.bpf import BpfModule, BpfProgram
from exporter.kernel.bpf_stats import ProgramRunStats
from exporter.kernel.counters import EpochCounters
from exporter.kernel.programs import BpfLoadError, BpfPart, ProgramSpec
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import NO_UID

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.core.cardinality import PortPolicy
    from exporter.kubernetes.workloads import WorkloadLabeler
    from exporter.services import SharedServices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapStats:
    name: str
    entries: int | None  # None: a task storage map, which cannot be listed nor fills up
    capacity: int | None
    update_failures: int
    swept: int | None = None  # entries a userspace sweep deleted; None: the map has no sweep


class Collector(ABC):
    """Started once, then asked for its metrics on every snapshot. Made by its registered
    factory from (Config, SharedServices); one that shares nothing ignores the services."""

    name: ClassVar[str]

    @abstractmethod
    def start(self) -> None:
        """Load and attach whatever the collector needs; raises on fatal problems."""

    @abstractmethod
    def collect(self) -> Iterable[MetricFamily]:
        """The collector's metrics, read now."""

    def wire(self, collectors: Sequence[Collector]) -> bool:
        """Given every enabled collector before start; False leaves this one out (it found
        nothing to work with). The watch event log finds its event sources here."""
        return True

    def apply_port_policy(self, policy: PortPolicy) -> None:
        """Hands the port policy to a kernel side that folds ports itself (at start, reload)."""

    def reopen_files(self) -> None:
        """SIGHUP: reopen the files the collector writes, for logrotate."""

    def drain(self) -> None:
        """Moves what the kernel side holds into userspace; the exporter calls it on a timer
        of its own, so kernel maps never wait for a scrape to be emptied."""

    def program_status(self) -> Mapping[str, bool]:
        """Attached (True) or not, per BPF program."""
        return {}

    def map_stats(self) -> Iterable[MapStats]:
        return ()

    def program_run_stats(self) -> Mapping[str, ProgramRunStats]:
        """Kernel run time and count per BPF program (kept while kernel.bpf_stats_enabled=1)."""
        return {}

    def close(self) -> None:
        """Release kernel resources (detach programs, close maps)."""


class BpfCollector(Collector):
    """A collector backed by one BPF source file: ``bpf/<source_file>``, compiled with the
    other collectors' into one module (start_bpf_collectors).

    ``map_names`` numbers the maps for ``map_update_failures``: the source gets each index as
    ``MAP_<NAME>``, with the other values both sides share (``NO_UID``, the port-fold flags).
    """

    source_file: ClassVar[str]
    programs: ClassVar[tuple[ProgramSpec, ...]]
    map_names: ClassVar[tuple[str, ...]]
    shared_sources: ClassVar[tuple[str, ...]] = ()  # bpf/ files pasted after common.h
    # The counters map read as increments and drained without loss (kernel/counters.py).
    counters_map: ClassVar[str] = ""
    # Maps whose entries the BPF side may never delete: a sweep counts those it deletes.
    swept_maps: ClassVar[tuple[str, ...]] = ()
    # Task storage maps (one entry per thread, freed with it): only their failures are shown.
    task_storage_maps: ClassVar[tuple[str, ...]] = ()
    # The program pastes bpf/watch/watch.h: the watch collector reads its events.
    emits_watch_events: ClassVar[bool] = False
    # The program calls fold_port (bpf/common.h): its port_fold map holds the port policy.
    folds_ports: ClassVar[bool] = False
    # Kernel struct members it reads, as {define: (struct, member)}: their offsets in the
    # running kernel's BTF are module-wide defines (common.h's socket_netns reads some).
    kernel_members: ClassVar[Mapping[str, tuple[str, str]]] = {}

    def __init__(self, tracefs: Tracefs | None = None) -> None:
        self._tracefs = tracefs
        self.bpf: BpfProgram | None = None
        self.attach_points: dict[str, str] = {}  # program -> tracepoint, from the config
        self.counters: EpochCounters | None = None
        self._entries: dict[str, int] = {}
        self.swept: Counter[str] = Counter()  # per map, by a subclass's sweeps
        self.cgroup_labels = False  # the programs record each owner's cgroup (pod labels)

    @property
    def tracefs(self) -> Tracefs:
        if self._tracefs is None:
            self._tracefs = Tracefs()
        return self._tracefs

    def defines(self) -> dict[str, int | str]:
        """Preprocessor values for the BPF source (map sizes, kernel-specific numbers)."""
        return {}

    def bpf_part(self) -> BpfPart:
        """What this collector adds to the module the exporter compiles once for all."""
        module_defines: dict[str, int | str] = {"NO_UID": f"{NO_UID:#x}U", **self.kernel_offsets()}
        if self.folds_ports:
            module_defines.update(NS_PORT_FOLD=1, **port_fold_defines())
        if self.cgroup_labels:
            module_defines["NS_CGROUP_LABELS"] = 1  # common.h's current_owner records the cgroup
        programs = tuple(
            replace(spec, attach_point=self.attach_points.get(spec.name, ""))
            for spec in self.programs
        )
        return BpfPart(
            self.name,
            self.source_file,
            programs,
            self.map_names,
            self.defines(),
            module_defines,
            self.shared_sources,
        )

    def kernel_offsets(self) -> dict[str, int]:
        """The offsets of ``kernel_members``; empty without kernel BTF."""
        return btf.offset_defines(self.kernel_members)

    def prepare(self) -> None:
        """Before the compile: whatever ``defines()`` needs."""

    def start(self) -> None:
        """Compiles this collector alone (the exporter compiles all of them at once:
        start_bpf_collectors)."""
        self.prepare()
        self.load_alone()

    def load_alone(self) -> None:
        """Compiles this collector's part as a module of its own, then ``loaded``."""
        self.loaded(BpfModule([self.bpf_part()], self.tracefs).program(self.name))

    def loaded(self, program: BpfProgram) -> None:
        """After the compile: the collector's maps are there to fill and read."""
        self.bpf = program
        if self.counters_map:
            self.counters = EpochCounters(program.table(self.counters_map), program.epochs)

    def apply_port_policy(self, policy: PortPolicy) -> None:
        if self.folds_ports and self.bpf is not None:
            self.bpf.table("port_fold").fill(policy.kernel_flags())

    def drain(self) -> None:
        if self.counters is not None:
            self.counters.drain()
            self.note_entries(self.counters_map, self.counters.entries)

    def read_counters(self) -> list[tuple[Any, int]]:
        """(key, increment) of the ``counters_map`` since the previous read."""
        assert self.counters is not None
        increments = self.counters.read()
        self.note_entries(self.counters_map, self.counters.entries)
        return increments

    def program_status(self) -> Mapping[str, bool]:
        if self.bpf is None:
            return {spec.name: False for spec in self.programs}
        return self.bpf.attached

    def program_run_stats(self) -> Mapping[str, ProgramRunStats]:
        return {} if self.bpf is None else self.bpf.run_stats()

    def note_entries(self, map_name: str, entries: int) -> None:
        """Record a map's size from a full read, sparing map_stats a second walk."""
        self._entries[map_name] = entries

    def map_stats(self) -> Iterable[MapStats]:
        if self.bpf is None:
            return []
        failures = self.bpf.table("map_update_failures")
        stats = []
        for name in self.map_names:
            lost = int(failures.per_cpu_sum(self.bpf.map_index(name)))
            if name in self.task_storage_maps:
                stats.append(MapStats(name, None, None, lost))
                continue
            table = self.bpf.table(name)
            entries = self._entries.get(name)
            if entries is None:
                entries = len(table.items())  # one syscall per batch
            swept = self.swept[name] if name in self.swept_maps else None
            stats.append(MapStats(name, entries, table.max_entries, lost, swept))
        return stats

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.close()
            self.bpf = None


class PodLabelledCollector(BpfCollector):
    """A BPF collector whose series carry namespace/pod/container with kubernetes.enabled:
    its programs then record each owner's cgroup, and collect() names it through the
    exporter's shared workload labeler (taken at start, so it is made only when needed)."""

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        from exporter.services import SharedServices  # services imports the listener layer

        super().__init__(tracefs)
        self.services = services if services is not None else SharedServices(config)
        self.kubernetes = config.kubernetes
        self.cgroup_labels = config.kubernetes.enabled
        self.workloads: WorkloadLabeler | None = None

    def prepare(self) -> None:
        if self.kubernetes.enabled:
            self.workloads = self.services.workloads()


def start_bpf_collectors(collectors: Sequence[BpfCollector], tracefs: Tracefs) -> dict[str, str]:
    """Compiles the collectors' programs as one bcc module, one compiler run for all. If that
    fails, each is compiled on its own, so that a broken one disables only itself. Returns
    why each collector that did not start failed."""
    for collector in collectors:
        collector.prepare()
    try:
        module = BpfModule([c.bpf_part() for c in collectors], tracefs)
    except BpfLoadError as error:
        if len(collectors) <= 1:
            return {c.name: str(error) for c in collectors}
        log.warning("compiling the collectors together failed (%s): compiling each alone", error)
        return start_each_alone(collectors)
    if module.shared_failures and len(collectors) > 1:
        # one collector's handler may be what the verifier refused: apart, the others attach
        log.warning(
            "programs %s, shared by several collectors, did not attach: compiling each alone",
            ", ".join(module.shared_failures),
        )
        module.close()
        return start_each_alone(collectors)
    for collector in collectors:
        collector.loaded(module.program(collector.name))
    return {}


def start_each_alone(collectors: Sequence[BpfCollector]) -> dict[str, str]:
    """One compile per collector, so that a broken one disables only itself."""
    failed = {}
    for collector in collectors:
        try:
            collector.load_alone()
        except BpfLoadError as alone:
            failed[collector.name] = str(alone)
    return failed
