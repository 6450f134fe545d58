"""Drop reasons, protocols and the kfree_skb program's kernel-specific defines, decoded from
format files: the real one of this 6.18 kernel, and two older ones written by hand.

- ``tracefs-5.17``: Linux v5.17, the first kernel with a reason. include/trace/events/skb.h
  (TRACE_EVENT(kfree_skb) with fields skbaddr, location, protocol and ``enum skb_drop_reason
  reason``; TRACE_SKB_DROP_REASON printed through __print_symbolic) and the enum in
  include/linux/skbuff.h: NOT_SPECIFIED = 0, NO_SOCKET, PKT_TOO_SMALL, TCP_CSUM, SOCKET_FILTER,
  UDP_CSUM, MAX. TRACE_DEFINE_ENUM makes the format file show the numbers. Offsets follow
  from the field sizes (8, 8, 2, then the 4-byte enum aligned to 28).
- ``tracefs-5.15``: Linux v5.15, before commit c504e5c2f964 ("net: skb: introduce
  kfree_skb_reason()", 5.17-rc1): skbaddr, location, protocol and no reason.
"""

from __future__ import annotations

from pathlib import Path

from exporter.collectors.packet_drops import (
    DropReasons,
    PacketDropsCollector,
    drops_family,
    protocol_label,
)
from exporter.config import Config
from exporter.kernel.tracefs import Tracefs

DATA = Path(__file__).parents[1] / "data"


def reasons_of(kernel: str) -> DropReasons:
    return DropReasons.from_format(Tracefs(DATA / f"tracefs-{kernel}").format("skb:kfree_skb"))


def test_reasons_on_this_kernel_come_from_its_table():
    reasons = reasons_of("6.18")
    assert reasons.has_field
    assert reasons.label(3) == "NO_SOCKET"
    assert reasons.label(12) == "NETFILTER_DROP"
    assert reasons.label(40) == "TCP_LISTEN_OVERFLOW"
    assert min(reasons.names) == 2 and reasons.names[128] == "MAX"
    # 0 and 1 (not dropped, consumed) go to consume_skb on 6.18: nothing to skip
    assert reasons.not_dropped() == {}


def test_the_same_name_has_another_number_on_5_17():
    reasons = reasons_of("5.17")
    assert reasons.has_field
    assert reasons.label(1) == "NO_SOCKET"
    assert reasons.label(0) == "NOT_SPECIFIED"  # a real drop there, not "not dropped"
    assert reasons.label(3) == "TCP_CSUM"
    assert reasons.not_dropped() == {}


def test_without_a_reason_field_every_drop_is_unknown():
    reasons = reasons_of("5.15")
    assert not reasons.has_field
    assert reasons.label(0) == "UNKNOWN" and reasons.label(3) == "UNKNOWN"


def test_subsystem_coded_and_unlisted_reasons_keep_their_number():
    reasons = reasons_of("6.18")
    assert reasons.label((1 << 16) | 3) == "65539"  # SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE
    assert reasons.label(999) == "999"


def test_not_dropped_entries_are_found_by_name():
    """A table that lists the "not dropped" values (built here, not copied from a kernel)."""
    reasons = DropReasons(True, {0: "NOT_DROPPED_YET", 1: "CONSUMED", 2: "NOT_SPECIFIED"})
    assert reasons.not_dropped() == {"NOT_DROPPED_YET": 0, "CONSUMED": 1}


def test_program_defines_follow_the_format():
    config = Config()
    modern = PacketDropsCollector(config, tracefs=Tracefs(DATA / "tracefs-6.18")).defines()
    assert modern == {"DROPS_MAP_SIZE": 4096, "KFREE_SKB_HAS_REASON": 1}
    old = PacketDropsCollector(config, tracefs=Tracefs(DATA / "tracefs-5.15")).defines()
    assert old == {"DROPS_MAP_SIZE": 4096}


def test_protocol_labels():
    assert [protocol_label(p) for p in (0x0800, 0x86DD, 0x0806)] == ["ipv4", "ipv6", "arp"]
    assert protocol_label(0x8100) == "0x8100"
    assert protocol_label(0) == "0x0000"


def test_call_sites_in_one_function_add_up():
    reasons = reasons_of("6.18")
    family = drops_family(
        [(0x1000, 3, 0x0800, 2), (0x1010, 3, 0x0800, 5), (0x2000, 12, 0x86DD, 1)],
        reasons,
        {0x1000: "tcp_v4_rcv", 0x1010: "tcp_v4_rcv", 0x2000: "nf_hook_slow"},
    )
    assert family.samples == {
        ("NO_SOCKET", "tcp_v4_rcv", "ipv4"): 7,
        ("NETFILTER_DROP", "nf_hook_slow", "ipv6"): 1,
    }
    assert family.increments and family.label_names == ("reason", "symbol", "protocol")
