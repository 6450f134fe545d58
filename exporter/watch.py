"""Watched ports: rules into kernel trie entries, and events into JSON lines and hook runs.

The kernel (bpf/watch.h) matches every connection or datagram against the rules and sends
only the matches here; this module holds the pure part: which trie entries the rules need,
the exact per-rule rate limit, the event's JSON form, and the hooks, which run on their own
threads so a slow or failing hook never holds up the event stream.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from exporter.kernel.bpf import enum_defines
from exporter.kernel.tasks import task_fact_defines
from exporter.kernel.values import IP_PROTOCOL_NAMES, IP_PROTOCOLS
from exporter.settings import WATCH_MAX_RULES, WatchRule, parse_port_range

log = logging.getLogger(__name__)

PROTOCOLS = IP_PROTOCOLS
PROTOCOL_NAMES = IP_PROTOCOL_NAMES
DIRECTIONS = ("outbound", "inbound")  # passed to bpf/watch.h as WATCH_DIR_*
MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")
ANY_ADDRESS = ipaddress.IPv6Network("::/0")


@dataclass(frozen=True)
class TrieEntry:
    """One key of the kernel's ``watch_rules`` LPM trie and the rule it leads to."""

    protocol: int
    direction: int
    port: int
    network: ipaddress.IPv6Network  # IPv4 networks as ::ffff:a.b.c.d/(96 + n)
    rule: int


def as_ipv6_network(cidr: str) -> ipaddress.IPv6Network:
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv4Network):
        mapped = ipaddress.IPv6Address(f"::ffff:{network.network_address}")
        return ipaddress.IPv6Network(f"{mapped}/{96 + network.prefixlen}")
    return network


def rule_directions(rule: WatchRule) -> tuple[int, ...]:
    if rule.direction == "both":
        return (0, 1)
    return (DIRECTIONS.index(rule.direction),)


def rule_ports(rule: WatchRule) -> list[int]:
    ports: set[int] = set()
    for entry in rule.ports:
        low, high = parse_port_range(str(entry))
        ports.update(range(low, high + 1))
    return sorted(ports)


def trie_entries(rules: Sequence[WatchRule]) -> list[TrieEntry]:
    """The trie finds only the longest matching prefix, so each entry leads to the first rule
    (in config order) whose network contains the entry's: every rule that matches an address
    has a prefix of it, and all of those contain the longest one."""
    networks: dict[tuple[int, int, int], dict[ipaddress.IPv6Network, int]] = {}
    for index, rule in enumerate(rules):
        cidrs = [as_ipv6_network(cidr) for cidr in rule.remote_cidrs] or [ANY_ADDRESS]
        for direction in rule_directions(rule):
            for port in rule_ports(rule):
                by_network = networks.setdefault((PROTOCOLS[rule.protocol], direction, port), {})
                for network in cidrs:
                    by_network.setdefault(network, index)
    entries = []
    for (protocol, direction, port), by_network in networks.items():
        for network in by_network:
            first = min(i for other, i in by_network.items() if network.subnet_of(other))
            entries.append(TrieEntry(protocol, direction, port, network, first))
    return entries


CMDLINE_BYTES = 128  # of the arguments, read in the kernel at the event (bpf/watch.h)


def watch_defines(rules: Sequence[WatchRule], pending_map_size: int) -> dict[str, int | str]:
    """Map sizes and task struct offsets for programs that paste bpf/watch.h."""
    entries = sum(rule.trie_entries_needed() for rule in rules)
    return {
        "WATCH_RULES_MAP_SIZE": max(16, entries),
        "WATCH_PENDING_MAP_SIZE": pending_map_size,
        "WATCH_CMDLINE_LEN": CMDLINE_BYTES,
        "WATCH_MAX_RULES": WATCH_MAX_RULES,
        "WATCH_PROTO_TCP": PROTOCOLS["tcp"],
        "WATCH_PROTO_UDP": PROTOCOLS["udp"],
        **enum_defines("WATCH_DIR", DIRECTIONS),
        **(task_fact_defines() if rules else {}),
    }


class WindowLimiter:
    """At most ``limit`` events per rule in each one-second window of the events' own kernel
    timestamps (the kernel's filter uses the same windows but may let a few more through
    when two CPUs open a window at once)."""

    def __init__(self, limits: Sequence[int]) -> None:
        self._limits = list(limits)
        self._windows: dict[int, tuple[int, int]] = {}  # rule -> (second, admitted)

    def admit(self, rule: int, ktime_ns: int) -> bool:
        limit = self._limits[rule]
        if limit == 0:
            return True
        second = ktime_ns // 1_000_000_000
        window, admitted = self._windows.get(rule, (second, 0))
        if window != second:
            admitted = 0
        if admitted >= limit:
            return False
        self._windows[rule] = (second, admitted + 1)
        return True


def split_cmdline(raw: bytes) -> list[str] | None:
    """NUL-separated arguments as the kernel keeps them; None when none were read."""
    if not raw:
        return None
    return [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]


@dataclass(frozen=True)
class WatchEvent:
    """An event as the kernel sent it (struct watch_event_t), decoded."""

    ktime_ns: int
    rule: int
    protocol: int
    direction: int
    result: str
    local_addr: bytes
    local_port: int
    remote_addr: bytes
    remote_port: int
    pid: int | None  # None: no process (an inbound event, handled in softirq context)
    uid: int | None
    comm: str | None
    cgroup_id: int | None
    gid: int | None = None
    # read from the task in the kernel at the event; None without kernel BTF
    process: ProcessInfo | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """The event's process beyond pid, uid and comm, as it was at the event: read from the
    task in the kernel. Never from /proc at the time the event is handled, when the pid may
    run another program (after an exec) or another process (after reuse). None: unknown."""

    ppid: int | None = None
    parent_comm: str | None = None
    euid: int | None = None
    cmdline: list[str] | None = None
    cmdline_truncated: bool = False  # the arguments went on past CMDLINE_BYTES


def endpoint(addr: bytes, port: int) -> str | None:
    """``a.b.c.d:port`` or ``[v6]:port``; None when the kernel did not know it."""
    if port == 0 and not any(addr):
        return None
    address = ipaddress.IPv6Address(addr)
    if address.ipv4_mapped is not None:
        return f"{address.ipv4_mapped}:{port}"
    return f"[{address}]:{port}"


def rfc3339(wall_seconds: float) -> str:
    moment = datetime.fromtimestamp(wall_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_record(
    event: WatchEvent, rule_name: str, wall_seconds: float, process: ProcessInfo
) -> dict[str, Any]:
    """The event log's JSON object (README.md, Watched ports)."""
    return {
        "time": rfc3339(wall_seconds),
        "rule": rule_name,
        "direction": DIRECTIONS[event.direction],
        "protocol": PROTOCOL_NAMES.get(event.protocol, str(event.protocol)),
        "local": endpoint(event.local_addr, event.local_port),
        "remote": endpoint(event.remote_addr, event.remote_port),
        "result": event.result,
        "pid": event.pid,
        "ppid": process.ppid,
        "comm": event.comm,
        "parent_comm": process.parent_comm,
        "uid": event.uid,
        "euid": process.euid,
        "gid": event.gid,
        "cmdline": process.cmdline,
        "cmdline_truncated": process.cmdline_truncated,
        "cgroup_id": event.cgroup_id,
    }


def event_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


HOOK_OUTCOMES = ("ok", "failed", "timeout", "skipped")


class HookRunner:
    """Runs hook commands on worker threads: at most ``concurrency`` at once, each killed
    after ``timeout`` seconds. An event that finds the queue full skips its hook (counted)
    rather than wait, so the event stream never blocks on a hook."""

    QUEUE_PER_WORKER = 8

    def __init__(
        self,
        concurrency: int,
        timeout: float,
        run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    ) -> None:
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="watch-hook")
        self._timeout = timeout
        self._run = run
        self._slots = threading.BoundedSemaphore(concurrency * (1 + self.QUEUE_PER_WORKER))
        self._lock = threading.Lock()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (rule, outcome)

    def submit(self, rule: str, command: Sequence[str], payload: bytes) -> None:
        if not self._slots.acquire(blocking=False):
            self._count(rule, "skipped")
            return
        self._pool.submit(self._execute, rule, list(command), payload)

    def _execute(self, rule: str, command: list[str], payload: bytes) -> None:
        try:
            result = self._run(
                command,
                input=payload,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self._timeout,
                start_new_session=True,  # the exporter's signals are not the hook's
            )
            outcome = "ok" if result.returncode == 0 else "failed"
            if outcome == "failed":
                log.warning(
                    "hook of rule %s exited %d: %s",
                    rule,
                    result.returncode,
                    result.stderr[-300:].decode(errors="replace").strip(),
                )
        except subprocess.TimeoutExpired:
            outcome = "timeout"
            log.warning("hook of rule %s killed after %.1fs", rule, self._timeout)
        except OSError as error:
            outcome = "failed"
            log.warning("hook of rule %s could not run: %s", rule, error)
        finally:
            self._slots.release()
        self._count(rule, outcome)

    def _count(self, rule: str, outcome: str) -> None:
        with self._lock:
            self.outcomes[(rule, outcome)] += 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class TextSink(Protocol):
    """Where event lines go: standard output or a ReopeningFile."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ReopeningFile:
    """The event log file, handled the way logrotate expects: reopened on reopen() (SIGHUP),
    and by itself when the path no longer names the file it has open (moved or deleted).
    Opened for append, so a truncated file is simply written from its new end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # reopen() comes from the signal handler's thread
        self._file = self._open()

    def _open(self) -> IO[str]:
        return open(self.path, "a", encoding="utf-8")

    def _moved(self) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._file.fileno())
        return (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino)

    def reopen(self) -> None:
        with self._lock:
            self._reopen()

    def _reopen(self) -> None:
        old, self._file = self._file, self._open()
        old.close()

    def write(self, text: str) -> int:
        with self._lock:
            if self._moved():
                self._reopen()
            return self._file.write(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class EventLog:
    """Turns kernel events into log lines and hook runs, applying each rule's exact limit.
    Called from the perf-buffer threads of several BPF programs, hence the lock."""

    def __init__(
        self,
        rules: Sequence[WatchRule],
        output: TextSink,
        hooks: HookRunner,
        process_info: Callable[[WatchEvent], ProcessInfo],
        wall_clock: Callable[[int], float],
    ) -> None:
        self.rules = list(rules)
        self._output = output
        self._hooks = hooks
        self._process_info = process_info
        self._wall_clock = wall_clock
        self._limiter = WindowLimiter([rule.rate_limit for rule in self.rules])
        self._lock = threading.Lock()
        self.logged: Counter[str] = Counter()  # per rule name
        self.suppressed = 0  # by the exact limit, after the kernel's own filter

    def handle(self, event: WatchEvent) -> None:
        if event.rule >= len(self.rules):
            return
        rule = self.rules[event.rule]
        with self._lock:
            if not self._limiter.admit(event.rule, event.ktime_ns):
                self.suppressed += 1
                return
        record = event_record(
            event, rule.name, self._wall_clock(event.ktime_ns), self._process_info(event)
        )
        line = event_line(record)
        with self._lock:
            try:
                self._output.write(line)
                self._output.flush()
            except OSError as error:
                log.error("event log write failed: %s", error)
            self.logged[rule.name] += 1
        if rule.hook:
            self._hooks.submit(rule.name, rule.hook, line.encode())

    def rule_names(self) -> Iterable[str]:
        return (rule.name for rule in self.rules)
