"""Watched ports without a kernel: rule entries, the exact rate limit, the event's JSON, hooks
(real commands), /proc parsing, and the traffic metric families."""

from __future__ import annotations

import ctypes
import io
import ipaddress
import json
import threading
import time
from pathlib import Path

import pytest

from exporter.collectors.socket_traffic import byte_families
from exporter.collectors.udp_sends import sends_family
from exporter.config import ConfigError, WatchRule, parse_config
from exporter.kernel import procfs
from exporter.watch.collector import task_facts
from exporter.watch.events import (
    EventLog,
    HookRunner,
    ProcessInfo,
    WatchEvent,
    WindowLimiter,
    endpoint,
    event_record,
)
from exporter.watch.rules import CMDLINE_BYTES, trie_entries


def rule(name: str, **fields) -> WatchRule:
    base = dict(protocol="tcp", direction="outbound", ports=[23])
    return WatchRule(name=name, **{**base, **fields})


def mapped(v4: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{v4}").packed


def entry_for(entries, direction: int, port: int, address: bytes) -> int | None:
    """What the kernel's longest-prefix lookup would answer."""
    target = ipaddress.IPv6Address(address)
    candidates = [
        e for e in entries if e.direction == direction and e.port == port and target in e.network
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda e: e.network.prefixlen).rule


def test_first_rule_wins_even_when_a_later_rule_has_the_longer_prefix():
    entries = trie_entries(
        [rule("any"), rule("lan", remote_cidrs=["10.0.0.0/8"]), rule("v6", ports=["22-23"])]
    )
    assert entry_for(entries, 0, 23, mapped("10.1.2.3")) == 0
    assert entry_for(entries, 0, 22, mapped("10.1.2.3")) == 2
    assert entry_for(entries, 1, 23, mapped("10.1.2.3")) is None  # outbound rules only


def test_cidrs_limit_a_rule_and_ipv4_is_matched_as_mapped_ipv6():
    entries = trie_entries(
        [rule("lan", remote_cidrs=["10.0.0.0/8", "fd00::/8"], direction="both"), rule("rest")]
    )
    assert entry_for(entries, 1, 23, mapped("10.9.9.9")) == 0
    assert entry_for(entries, 0, 23, ipaddress.IPv6Address("fd00::1").packed) == 0
    assert entry_for(entries, 0, 23, mapped("192.168.1.1")) == 1
    assert entry_for(entries, 1, 23, mapped("192.168.1.1")) is None


def test_window_limiter_allows_the_limit_per_second_window():
    limiter = WindowLimiter([2, 0])
    second = 1_000_000_000
    admitted = [limiter.admit(0, 5 * second + i) for i in range(5)]
    assert admitted == [True, True, False, False, False]
    assert limiter.admit(0, 6 * second)
    assert all(limiter.admit(1, 5 * second) for _ in range(100))  # 0: no limit


def test_endpoints_and_the_event_record():
    assert endpoint(mapped("10.0.0.1"), 23) == "10.0.0.1:23"
    assert endpoint(ipaddress.IPv6Address("fd00::2").packed, 80) == "[fd00::2]:80"
    assert endpoint(bytes(16), 0) is None
    event = WatchEvent(
        ktime_ns=1,
        rule=0,
        protocol=6,
        direction=0,
        result="refused",
        local_addr=mapped("10.0.0.1"),
        local_port=40000,
        remote_addr=mapped("10.0.0.2"),
        remote_port=23,
        pid=42,
        uid=1000,
        comm="telnet",
        cgroup_id=7,
        gid=1000,
    )
    record = event_record(event, "telnet", 0.5, ProcessInfo(1, "bash", 0, ["telnet", "x"]))
    assert record == {
        "time": "1970-01-01T00:00:00.500Z",
        "rule": "telnet",
        "direction": "outbound",
        "protocol": "tcp",
        "local": "10.0.0.1:40000",
        "remote": "10.0.0.2:23",
        "result": "refused",
        "pid": 42,
        "ppid": 1,
        "comm": "telnet",
        "parent_comm": "bash",
        "uid": 1000,
        "euid": 0,
        "gid": 1000,
        "cmdline": ["telnet", "x"],
        "cmdline_truncated": False,
        "cgroup_id": 7,
    }


def wait_for_outcomes(hooks: HookRunner, total: int) -> None:
    deadline = time.monotonic() + 10
    while sum(hooks.outcomes.values()) < total and time.monotonic() < deadline:
        time.sleep(0.02)


def test_hooks_get_the_event_on_stdin_and_failures_and_timeouts_are_counted(tmp_path: Path):
    hooks = HookRunner(concurrency=2, timeout=0.5)
    out = tmp_path / "got"
    hooks.submit("ok", ["sh", "-c", 'cat > "$0"', str(out)], b'{"a":1}\n')
    hooks.submit("bad", ["sh", "-c", "exit 3"], b"{}")
    hooks.submit("slow", ["sleep", "30"], b"{}")
    hooks.submit("missing", [str(tmp_path / "no-such-hook")], b"{}")
    wait_for_outcomes(hooks, 4)
    hooks.close()
    assert out.read_text() == '{"a":1}\n'
    assert dict(hooks.outcomes) == {
        ("ok", "ok"): 1,
        ("bad", "failed"): 1,
        ("slow", "timeout"): 1,
        ("missing", "failed"): 1,
    }


def test_hooks_beyond_the_queue_are_skipped_without_waiting():
    hooks = HookRunner(concurrency=1, timeout=5)
    capacity = 1 + HookRunner.QUEUE_PER_WORKER
    began = time.monotonic()
    for _ in range(capacity + 3):
        hooks.submit("r", ["sleep", "0.3"], b"")
    assert time.monotonic() - began < 0.5  # submit never blocks
    assert hooks.outcomes[("r", "skipped")] == 3
    hooks.close()


def test_event_log_writes_admitted_events_and_counts_the_rest():
    output = io.StringIO()
    rules = [rule("limited", rate_limit=1)]
    hooks = HookRunner(concurrency=1, timeout=1)
    log = EventLog(rules, output, hooks, lambda event: ProcessInfo(), lambda ktime: 0.0)
    event = WatchEvent(1, 0, 6, 0, "refused", bytes(16), 0, mapped("1.2.3.4"), 23, 5, 0, "x", 1)
    threads = [threading.Thread(target=log.handle, args=(event,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = output.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["remote"] == "1.2.3.4:23"
    assert log.suppressed == 2 and log.logged["limited"] == 1
    hooks.close()


def test_procfs_reads_the_name(tmp_path: Path):
    process = tmp_path / "99"
    process.mkdir()
    (process / "comm").write_bytes(b"telnet\n")
    assert procfs.comm(99, tmp_path) == "telnet"
    assert procfs.comm(100, tmp_path) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("watch: [{name: u, protocol: udp, direction: inbound, ports: [53]}]", "outbound"),
        ("watch: [{name: a, protocol: tcp, direction: both, ports: [0]}]", "1-65535"),
        ("watch: [{name: a, protocol: tcp, direction: both, ports: [1], remote_cidrs: [x]}]", "x"),
        (
            "watch: [{name: a, protocol: tcp, direction: both, ports: [1]},"
            " {name: a, protocol: tcp, direction: both, ports: [2]}]",
            "unique",
        ),
        ("watch: [{name: a, protocol: tcp, direction: both, ports: ['1-65535']}]", "over"),
        ("event_log: {buffer_pages: 3}", "power of two"),
    ],
)
def test_bad_watch_config_names_the_key_and_reason(text: str, reason: str):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "bad.yaml")
    assert str(error.value).startswith("bad.yaml: ") and reason in str(error.value)


def test_traffic_families_label_protocol_comm_and_uid():
    sent, received = byte_families(
        [(0, 6, b"curl\0", 1000, 0, 10), (1, 17, b"dig\0", 0, 0, 5), (0, 132, b"x", 0, 0, 1)],
        True,
        False,
    )
    assert sent.samples == {("tcp", "curl", ""): 10}
    assert received.samples == {("udp", "dig", ""): 5}
    family = sends_family([(53, b"dig\0", 0, 2), (53, b"dig\0", 0, 1)], True, True)
    assert family.name == "netsnoop_udp_sends" and family.samples == {("53", "dig", "0"): 3}


class RawFacts(ctypes.Structure):
    """The process part of struct watch_event_t, as bcc decodes it."""

    _fields_ = [
        ("ppid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("cmdline_len", ctypes.c_uint16),
        ("parent_comm", ctypes.c_char * 16),
        ("cmdline", ctypes.c_char * CMDLINE_BYTES),
    ]


def raw_facts(cmdline: bytes, **fields) -> RawFacts:
    raw = RawFacts(cmdline_len=len(cmdline), **fields)
    ctypes.memmove(ctypes.addressof(raw) + RawFacts.cmdline.offset, cmdline, len(cmdline))
    return raw


def test_task_facts_keep_every_argument_and_say_when_they_were_cut():
    raw = raw_facts(b"telnet\0-l\0root\0host\0", ppid=7, euid=0, parent_comm=b"bash")
    assert task_facts(raw) == ProcessInfo(7, "bash", 0, ["telnet", "-l", "root", "host"])
    cut = task_facts(raw_facts(b"x" * CMDLINE_BYTES, ppid=0, euid=5))
    assert cut == ProcessInfo(None, None, 5, ["x" * CMDLINE_BYTES], cmdline_truncated=True)
    assert task_facts(RawFacts(cmdline_len=0)).cmdline is None  # a kernel thread
