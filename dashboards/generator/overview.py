"""The Overview dashboard: connections, drops and exporter health at a glance."""

from __future__ import annotations

from .engine import Dashboard, Panel, Query
from .health import EXPORTER_UP, PROGRAMS_UNATTACHED
from .promql import CONNECTIONS, HOST, OUTBOUND, POD, rate, top

OVERVIEW = Dashboard(
    "netsnoop-overview",
    "netsnoop-overview.json",
    "netsnoop / Overview",
    "TCP connections, drops and exporter health at a glance.",
    [
        EXPORTER_UP,
        PROGRAMS_UNATTACHED,
        Panel(
            "Connection attempts",
            "All TCP connections and attempts, both directions, per second.",
            "cps",
            [Query(f"sum({rate(CONNECTIONS, POD)})", "attempts/s")],
            kind="stat",
            width=8,
        ),
        Panel(
            "Connections by direction and result",
            "TCP connections per second: outbound (local connect()) established, refused, "
            "timeout or error; inbound accepted, or refused because nothing listens.",
            "cps",
            [
                Query(
                    f"sum by (direction, result) ({rate(CONNECTIONS, POD)})",
                    "{{direction}} {{result}}",
                )
            ],
        ),
        Panel(
            "Top ports",
            "The 10 busiest ports by connection rate, per direction (outbound: remote port; "
            'inbound: local port). Ephemeral and scanned ports are folded into "other".',
            "cps",
            [
                Query(
                    top("direction, port", CONNECTIONS, POD),
                    "{{direction}} {{port}}",
                )
            ],
        ),
        Panel(
            "Top processes",
            "The 10 processes (comm) that open the most outbound connections per second.",
            "cps",
            [
                Query(
                    top("comm", CONNECTIONS, OUTBOUND),
                    "{{comm}}",
                )
            ],
        ),
        Panel(
            "Packet drops by reason",
            "Packets the kernel dropped per second, by drop reason (skb:kfree_skb).",
            "pps",
            [
                Query(
                    f"sum by (reason) ({rate('netsnoop_packet_drops_total', HOST)})",
                    "{{reason}}",
                )
            ],
        ),
    ],
    pod_labels=True,
)
