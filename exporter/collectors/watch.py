"""The watch event log: matched events from the programs that paste bpf/watch.h, written as
JSON lines and handed to hooks, plus netsnoop_watch_events_total and
netsnoop_watch_events_lost_total.

This collector's own BPF program (bpf/process_lineage.c) remembers each process's parent and
name at fork and exec, so an event from a client that exited milliseconds after its connect
still names its parent. The effective uid has no BPF helper; it comes from /proc/<pid>/status
while the process exists (null after), like the command line.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from exporter.collectors import tcp_connections, udp_sends
from exporter.collectors.base import BpfCollector, Collector
from exporter.collectors.registry import CollectorSpec, register_collector
from exporter.core.metrics import MetricSpec, OtlpMetric
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf import BpfModule, BpfProgram, ProgramSpec
from exporter.kernel.maps import claim_closed_entries
from exporter.kernel.tracefs import Tracefs
from exporter.kernel.values import NO_UID, decode_comm
from exporter.watch import (
    CMDLINE_BYTES,
    HOOK_OUTCOMES,
    PROTOCOLS,
    EventLog,
    HookRunner,
    ProcessInfo,
    ReopeningFile,
    TextSink,
    WatchEvent,
    split_cmdline,
    trie_entries,
)

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.services import SharedServices

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
SWEEP_EVERY_S = 1.0
RESULT_NAMES = {PROTOCOLS["tcp"]: tcp_connections.RESULTS, PROTOCOLS["udp"]: udp_sends.RESULTS}

EVENTS = MetricSpec(
    "netsnoop_watch_events",
    "counter",
    "Connections, attempts and datagrams that matched a watch rule, logged or not.",
    ("rule",),
    OtlpMetric("netsnoop.watch.events", "{event}"),
)
EVENTS_LOST = MetricSpec(
    "netsnoop_watch_events_lost",
    "counter",
    "Watch events not logged: perf buffer overflow (buffer) or over the rule's rate "
    "limit (rate_limit).",
    ("reason",),
    OtlpMetric("netsnoop.watch.lost_events", "{event}"),
)
HOOK_RUNS = MetricSpec(
    "netsnoop_watch_hook_runs",
    "counter",
    "Hook runs per rule and outcome: ok, failed (non-zero exit or could not start), "
    "timeout (killed) or skipped (all busy, queue full).",
    ("rule", "outcome"),
    OtlpMetric("netsnoop.watch.hook.runs", "{run}"),
)


def decode_event(raw: Any) -> WatchEvent:
    """A struct watch_event_t (bpf/watch.h) from the perf buffer."""
    results = RESULT_NAMES.get(raw.protocol, ())
    has_process = bool(raw.has_process)
    comm = decode_comm(bytes(raw.comm))
    return WatchEvent(
        ktime_ns=raw.ktime_ns,
        rule=raw.rule,
        protocol=raw.protocol,
        direction=raw.direction,
        result=results[raw.result] if raw.result < len(results) else str(raw.result),
        local_addr=bytes(raw.local_addr),
        local_port=raw.local_port,
        remote_addr=bytes(raw.remote_addr),
        remote_port=raw.remote_port,
        pid=raw.pid if has_process else None,
        uid=None if raw.uid == NO_UID else raw.uid,
        comm=comm or None,
        cgroup_id=raw.cgroup_id if has_process else None,
        gid=raw.gid if has_process else None,
        process=task_facts(raw) if has_process and raw.has_task_facts else None,
    )


def task_facts(raw: Any) -> ProcessInfo:
    """What bpf/watch.h read from the task at the event."""
    length = min(raw.cmdline_len, CMDLINE_BYTES)
    # raw.cmdline would stop at the first NUL (ctypes char arrays): read the field's memory
    cmdline = ctypes.string_at(ctypes.addressof(raw) + type(raw).cmdline.offset, length)
    return ProcessInfo(
        ppid=raw.ppid or None,
        parent_comm=decode_comm(bytes(raw.parent_comm)) or None,
        euid=raw.euid,
        cmdline=split_cmdline(cmdline),
        # the kernel keeps a NUL after the last argument: without it the read stopped short
        cmdline_truncated=length == CMDLINE_BYTES and not cmdline.endswith(b"\0"),
    )


def monotonic_to_wall(ktime_ns: int) -> float:
    """bpf_ktime_get_ns() is CLOCK_MONOTONIC, the clock of time.monotonic()."""
    return ktime_ns / 1e9 + (time.time() - time.monotonic())


class WatchCollector(BpfCollector):
    name: ClassVar[str] = "watch"
    source_file: ClassVar[str] = "process_lineage.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("sched:sched_process_fork", ("child_pid",)),
        ProgramSpec("sched:sched_process_exec"),
    )
    map_names: ClassVar[tuple[str, ...]] = ("parents", "names")

    def __init__(
        self,
        config: Config,
        services: SharedServices | None = None,
        tracefs: Tracefs | None = None,
    ) -> None:
        super().__init__(tracefs)
        self.rules = config.watch
        self.settings = config.event_log
        self.sources: list[BpfCollector] = []  # started before this one (registry order)
        self.buffer_lost = 0
        self.swept_by_rule: Counter[int] = Counter()  # TCP attempts closed without an errno
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._output: TextSink = sys.stdout
        self._hooks: HookRunner | None = None
        self._log: EventLog | None = None

    def wire(self, collectors: Sequence[Collector]) -> bool:
        """Reads the events of the collectors whose programs paste bpf/watch.h; without
        any, there is nothing to log."""
        self.sources = [
            c for c in collectors if isinstance(c, BpfCollector) and c.emits_watch_events
        ]
        return bool(self.sources)

    def defines(self) -> dict[str, int | str]:
        return {"LINEAGE_MAP_SIZE": self.settings.lineage_map_size}

    def loaded(self, program: BpfProgram) -> None:
        super().loaded(program)
        if self.settings.path != "-":
            self._output = ReopeningFile(self.settings.path)
        self._hooks = HookRunner(self.settings.hook_concurrency, self.settings.hook_timeout_seconds)
        self._log = EventLog(
            self.rules, self._output, self._hooks, self.process_info, monotonic_to_wall
        )
        for name, (events, sweeps) in self.event_modules().items():
            self._load_rules(events)
            events.open_events(
                "watch_events", self._handle, self._note_lost, self.settings.buffer_pages
            )
            thread = threading.Thread(
                target=self._poll, args=(events, sweeps), name=f"watch-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def event_modules(self) -> dict[str, tuple[BpfModule, bool]]:
        """The modules that hold watch.h (sources compiled together share one), by their first
        source's name, and whether a source in one pastes watch_tcp.h (whose closed attempts
        need a sweep)."""
        found: dict[int, tuple[str, BpfModule, bool]] = {}
        for source in self.sources:
            if source.bpf is None:
                continue
            name, events, sweeps = found.get(
                id(source.bpf.module), (source.name, source.bpf.module, False)
            )
            sweeps = sweeps or "watch_tcp.h" in source.shared_sources
            found[id(source.bpf.module)] = (name, events, sweeps)
        return {name: (events, sweeps) for name, events, sweeps in found.values()}

    def _load_rules(self, bpf: BpfModule) -> None:
        trie = bpf.table("watch_rules")
        for entry in trie_entries(self.rules):
            key = trie.key()
            key.prefixlen = 32 + entry.network.prefixlen
            key.protocol = entry.protocol
            key.direction = entry.direction
            key.port = entry.port
            key.addr[:] = list(entry.network.network_address.packed)
            trie.put(key, trie.value(entry.rule))
        limits = bpf.table("watch_limits")
        for index, rule in enumerate(self.rules):
            limits.set_at(index, rule.rate_limit)

    def _poll(self, events: BpfModule, sweeps: bool) -> None:
        swept_at = time.monotonic()
        while not self._stop.is_set():
            events.poll_events(POLL_TIMEOUT_MS)
            if sweeps and time.monotonic() - swept_at >= SWEEP_EVERY_S:
                swept_at = time.monotonic()
                self._sweep_closed(events)

    def _sweep_closed(self, bpf: BpfModule) -> None:
        """Watched TCP attempts that closed and never got an errno (the caller gave up on a
        connect in progress) are logged as errors, as the counter does."""
        closing = bpf.table("watch_closing")
        for closed in claim_closed_entries(closing, tcp_connections.UNREPORTED_CLOSE_AFTER_S):
            closed.event.result = tcp_connections.RESULT_ERROR
            closed.event.ktime_ns = time.monotonic_ns()
            self.swept_by_rule[closed.event.rule] += 1
            self._handle(closed.event)

    def _handle(self, raw: Any) -> None:
        assert self._log is not None
        try:
            self._log.handle(decode_event(raw))
        except Exception:  # a bad event must not stop the stream (bcc would only print it)
            log.exception("watch event dropped")

    def _note_lost(self, count: int) -> None:
        self.buffer_lost += count

    def process_info(self, event: WatchEvent) -> ProcessInfo:
        """The kernel's facts from the event; without them (no kernel BTF), the parent the
        fork/exec records kept, and euid and cmdline unknown rather than read from /proc now,
        where the pid may run another program."""
        if event.process is not None:
            return event.process
        if event.pid is None:
            return ProcessInfo()
        assert self.bpf is not None
        parents, names = self.bpf.table("parents"), self.bpf.table("names")
        known_parent = parents.get(parents.key(event.pid))
        if known_parent is None:
            return ProcessInfo()
        known_name = names.get(names.key(known_parent.value))
        parent_comm = decode_comm(bytes(known_name.comm)) if known_name is not None else None
        return ProcessInfo(ppid=known_parent.value, parent_comm=parent_comm)

    def _per_rule_sum(self, table_name: str) -> list[int]:
        totals = [0] * len(self.rules)
        for events, _ in self.event_modules().values():
            table = events.table(table_name)
            for index in range(len(self.rules)):
                totals[index] += table.per_cpu_sum(index)
        return totals

    def collect(self) -> Iterable[MetricFamily]:
        if self._log is None or self._hooks is None:
            return []
        events = EVENTS.family()
        matched = self._per_rule_sum("watch_matched")
        for index, rule in enumerate(self.rules):
            events.set((rule.name,), matched[index] + self.swept_by_rule[index])
        lost = EVENTS_LOST.family()
        lost.set(("buffer",), self.buffer_lost)
        lost.set(
            ("rate_limit",), sum(self._per_rule_sum("watch_suppressed")) + self._log.suppressed
        )
        hooks = HOOK_RUNS.family()
        for rule in self.rules:
            if rule.hook:
                for outcome in HOOK_OUTCOMES:
                    hooks.set((rule.name, outcome), self._hooks.outcomes[(rule.name, outcome)])
        return [events, lost, hooks]

    def reopen_files(self) -> None:
        if isinstance(self._output, ReopeningFile):
            self._output.reopen()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._hooks is not None:
            self._hooks.close()
        if isinstance(self._output, ReopeningFile):
            self._output.close()
        super().close()


register_collector(
    CollectorSpec(
        name="watch",
        summary="The watch event log: connections and datagrams matching a watch: rule, as JSON "
        "lines and hooks.",
        settings=None,  # the watch: rules and event_log: settings are top-level sections
        wanted=lambda config: bool(config.watch),
        order=1,  # after the collectors whose events it reads
        factory=WatchCollector,
        metrics=(EVENTS, EVENTS_LOST, HOOK_RUNS),
    )
)
