"""The ``watch:`` rules as the kernel needs them: the entries of its ``watch_rules`` LPM trie
and the defines of the programs that paste bpf/watch/watch.h (pure, unit-tested)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.kernel.programs import enum_defines
from exporter.kernel.tasks import task_fact_defines
from exporter.kernel.values import IP_PROTOCOLS
from exporter.settings import WATCH_MAX_RULES, WatchRule, parse_port_range

# The shared headers (bpf/watch/) a collector that emits watch events names in its
# shared_sources: watch.h for every protocol, watch_tcp.h also for TCP's attempts.
WATCH_HEADER = "watch/watch.h"
WATCH_TCP_HEADER = "watch/watch_tcp.h"
DIRECTIONS = ("outbound", "inbound")  # passed to bpf/watch/watch.h as WATCH_DIR_*
ANY_ADDRESS = ipaddress.IPv6Network("::/0")
CMDLINE_BYTES = 128  # of the arguments, read in the kernel at the event (bpf/watch/watch.h)


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
                key = (IP_PROTOCOLS[rule.protocol], direction, port)
                by_network = networks.setdefault(key, {})
                for network in cidrs:
                    by_network.setdefault(network, index)
    entries = []
    for (protocol, direction, port), by_network in networks.items():
        for network in by_network:
            first = min(i for other, i in by_network.items() if network.subnet_of(other))
            entries.append(TrieEntry(protocol, direction, port, network, first))
    return entries


def watch_defines(rules: Sequence[WatchRule], pending_map_size: int) -> dict[str, int | str]:
    """Map sizes and task struct offsets for programs that paste bpf/watch/watch.h."""
    entries = sum(rule.trie_entries_needed() for rule in rules)
    return {
        "WATCH_RULES_MAP_SIZE": max(16, entries),
        "WATCH_PENDING_MAP_SIZE": pending_map_size,
        "WATCH_CMDLINE_LEN": CMDLINE_BYTES,
        "WATCH_MAX_RULES": WATCH_MAX_RULES,
        "WATCH_PROTO_TCP": IP_PROTOCOLS["tcp"],
        "WATCH_PROTO_UDP": IP_PROTOCOLS["udp"],
        "WATCH_TCP_RULES": sum(rule.protocol == "tcp" for rule in rules),
        "WATCH_UDP_RULES": sum(rule.protocol == "udp" for rule in rules),
        **enum_defines("WATCH_DIR", DIRECTIONS),
        **(task_fact_defines() if rules else {}),
    }
