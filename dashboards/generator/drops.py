"""The Drops dashboard: packet drops by reason, function and protocol; listen queues."""

from __future__ import annotations

from .engine import Dashboard, Panel, Query
from .promql import HOST, rate, top

# Per pod as well when the series carry pod labels: pods listening on one port each have
# their own queue and backlog.
LISTENER = "instance, namespace, pod, port"
LISTENER_LEGEND = "{{instance}} {{port}} {{namespace}}/{{pod}}"
LISTEN_QUEUE = (
    f"max by ({LISTENER}) (max_over_time("
    f"netsnoop_listen_queue_length{{{HOST}}}[$__rate_interval]))"
    f" / max by ({LISTENER}) (max_over_time("
    f"netsnoop_listen_queue_capacity{{{HOST}}}[$__rate_interval]) > 0)"
)

DROPS = Dashboard(
    "netsnoop-drops",
    "netsnoop-drops.json",
    "netsnoop / Drops",
    "Where and why the kernel drops packets, and listeners whose queues overflow.",
    [
        Panel(
            "Drops by reason",
            "Packets dropped per second by the kernel's drop reason (NO_SOCKET: nothing "
            "listens; NETFILTER_DROP: a firewall rule; ...).",
            "pps",
            [
                Query(
                    f"sum by (reason) ({rate('netsnoop_packet_drops_total', HOST)})",
                    "{{reason}}",
                )
            ],
        ),
        Panel(
            "Drops by kernel function",
            "The 10 kernel functions that drop the most packets per second (the symbol of "
            "kfree_skb's caller).",
            "pps",
            [
                Query(
                    top("symbol", "netsnoop_packet_drops_total", HOST),
                    "{{symbol}}",
                )
            ],
        ),
        Panel(
            "Drops by protocol",
            "Packets dropped per second by L3 protocol (ipv4, ipv6, arp, or the ethertype).",
            "pps",
            [
                Query(
                    f"sum by (protocol) ({rate('netsnoop_packet_drops_total', HOST)})",
                    "{{protocol}}",
                )
            ],
        ),
        Panel(
            "Listen queue fill",
            "Accept queue length over its capacity (backlog) per listening port, the highest "
            "in each interval: at 100% the kernel drops new connections.",
            "percentunit",
            [Query(LISTEN_QUEUE, LISTENER_LEGEND)],
        ),
        Panel(
            "Listener drops",
            "Connections dropped per second by each listener (accept queue full, SYN queue "
            "overflow), from the socket's drop counter.",
            "cps",
            [
                Query(
                    f"sum by ({LISTENER}) ({rate('netsnoop_listen_drops_total', HOST)})",
                    LISTENER_LEGEND,
                )
            ],
        ),
        Panel(
            "SYN queue",
            "Half-open connections (SYN_RECV) per listening port, the highest in each interval.",
            "short",
            [
                Query(
                    f"max by ({LISTENER}) (max_over_time("
                    f"netsnoop_listen_syn_queue_length{{{HOST}}}[$__rate_interval]))",
                    LISTENER_LEGEND,
                )
            ],
            quiet_empty="ports appear only while handshakes are half-open (a SYN flood, a "
            "stalled client, TCP_DEFER_ACCEPT).",
        ),
        Panel(
            "UDP port unreachable",
            "ICMP port-unreachable replies per second by local port: UDP datagrams to closed "
            "ports, the UDP twin of inbound refused TCP.",
            "pps",
            [
                Query(
                    f"sum by (port) ({rate('netsnoop_udp_unreachable_total', HOST)})",
                    "{{port}}",
                )
            ],
            width=24,
        ),
    ],
)
