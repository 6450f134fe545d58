"""End to end: packets the kernel really drops, and the ICMP port-unreachable replies it really
sends, counted by the real exporter; exact deltas.

Drops are machine-wide and carry no port, so each test picks a reason, protocol and kernel
function that only its own traffic produces while tests run one at a time (CI), and the
namespaces, nft tables (``n9_*``) and ports are this test's own.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import ExporterProcess, free_port, remote_host, value

pytestmark = pytest.mark.root

DROPS = "netsnoop_packet_drops_total"
UNREACHABLE = "netsnoop_udp_unreachable_total"


def send_udp(host: str, port: int, count: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"n9", (host, port))
            time.sleep(0.002)  # let each reply pass before the next datagram


def nft(namespace: str, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
        capture_output=True,
    )


def drop_symbols(series, reason: str, protocol: str) -> dict[str, float]:
    return {
        dict(labels)["symbol"]: v
        for (name, labels), v in series.items()
        if name == DROPS and {("reason", reason), ("protocol", protocol)} <= labels
    }


def test_netfilter_drops_count_each_datagram_where_nftables_drops_it(exporter):
    """An nft rule inside a namespace drops N IPv6 datagrams sent to it over veth. On 6.18 the
    kernel's own trace (``location=nft_do_chain+0x46f``) names nft_do_chain, which gives the
    verdict with its drop reason, not nf_hook_slow."""
    count, port = 25, free_port()
    labels = dict(reason="NETFILTER_DROP", protocol="ipv6")
    with remote_host() as peer:
        nft(
            peer.name,
            f"""table inet n9_drop {{
                chain input {{
                    type filter hook input priority 0; policy accept;
                    udp dport {port} drop
                }}
            }}""",
        )
        send_udp(peer.peer_v6, port + 1, 1)  # resolves the neighbour before the counted ones
        time.sleep(0.5)
        before = exporter.scrape()
        send_udp(peer.peer_v6, port, count)
        after = exporter.wait_for(DROPS, labels, value(before, DROPS, **labels) + count)
    assert value(after, DROPS, **labels) - value(before, DROPS, **labels) == count
    grown = {
        symbol: total - drop_symbols(before, **labels).get(symbol, 0)
        for symbol, total in drop_symbols(after, **labels).items()
    }
    assert {s: n for s, n in grown.items() if n} == {"nft_do_chain": count}


def test_udp_to_a_closed_port_is_a_no_socket_drop_in_the_udp_receive_path(exporter):
    count, port = 9, free_port()
    labels = dict(reason="NO_SOCKET", protocol="ipv6", symbol="__udp6_lib_rcv")
    before = value(exporter.scrape(), DROPS, **labels)
    send_udp("::1", port, count)
    after = exporter.wait_for(DROPS, labels, before + count)
    assert value(after, DROPS, **labels) - before == count


@pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh (libcap2-bin)")
def test_hidden_kallsyms_addresses_give_unknown_symbols(tmp_path):
    """Without CAP_SYSLOG (and perf_event_paranoid > 1) /proc/kallsyms reads as zeros: drops
    are still counted, under symbol="unknown"."""
    count, port = 4, free_port()
    labels = dict(reason="NO_SOCKET", protocol="ipv6", symbol="unknown")
    no_syslog = ("capsh", "--drop=cap_syslog", "--", "-c", 'exec "$@"', "capsh")
    exporter = ExporterProcess(None, tmp_path, prefix=no_syslog)
    try:
        exporter.wait_ready()
        before = value(exporter.scrape(), DROPS, **labels)
        send_udp("::1", port, count)
        after = exporter.wait_for(DROPS, labels, before + count)
    finally:
        exporter.stop()
    assert value(after, DROPS, **labels) - before == count
    assert value(after, DROPS, symbol="__udp6_lib_rcv") == 0


SYSCTL = (sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])")


def test_udp_unreachable_counts_each_icmp_reply(exporter):
    """N datagrams to a closed port of a namespace: it sends N port-unreachable replies once
    its own icmp_ratelimit (per network namespace, like the port) is lifted. The host's
    settings are left alone. A closed port is folded into port="other" like an inbound refused
    TCP port, unless kept: 11211 is in the default keep list, and in the namespace closed."""
    count, port = 30, 11211  # past the per-peer burst of 6 the default limit allows
    labels = dict(port=str(port))
    with remote_host() as peer:
        peer.run(*SYSCTL, "/proc/sys/net/ipv4/icmp_ratelimit", "0")
        send_udp(peer.peer_v4, port + 1, 1)  # resolves the neighbour before the counted ones
        time.sleep(0.5)
        before = value(exporter.scrape(), UNREACHABLE, **labels)
        send_udp(peer.peer_v4, port, count)
        after = exporter.wait_for(UNREACHABLE, labels, before + count)
    assert value(after, UNREACHABLE, **labels) - before == count
