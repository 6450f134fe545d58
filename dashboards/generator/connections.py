"""The Connections & security dashboard: who connects where, scans, watched ports (telnet),
retransmits, resets and connect time."""

from __future__ import annotations

from .engine import Dashboard, Panel, Query
from .promql import CONNECTIONS, HOST, OUTBOUND, POD, rate, top

FAILED_OUTBOUND = OUTBOUND + ', result!="established"'
OUTBOUND_WATCHED = OUTBOUND + ', port=~"$watch_ports"'
INBOUND_REFUSED = POD + ', direction="inbound", result="refused"'
INBOUND_WATCHED = POD + ', direction="inbound", port=~"$watch_ports"'
RETRANSMITS = "netsnoop_tcp_retransmits_total"
RESETS = "netsnoop_tcp_resets_total"
CONNECT_BUCKETS = "netsnoop_tcp_connect_duration_seconds_bucket"


def connect_quantile(quantile: float) -> Query:
    rates = f"sum by (port, le) ({rate(CONNECT_BUCKETS, POD)})"
    return Query(
        f"histogram_quantile({quantile}, {rates})", f"p{round(quantile * 100)} {{{{port}}}}"
    )


WATCH_PORTS = {
    "name": "watch_ports",
    "label": "Watched ports (regex)",
    "type": "textbox",
    "query": "23",
    "current": {"text": "23", "value": "23"},
    "options": [{"selected": True, "text": "23", "value": "23"}],
    "hide": 0,
}

CONNECTIONS_SECURITY = Dashboard(
    "netsnoop-connections",
    "netsnoop-connections.json",
    "netsnoop / Connections & security",
    "Who connects where, who knocks on closed ports, and every attempt on watched ports "
    "(telnet/23 first).",
    [
        Panel(
            "Inbound refused by port (scan view)",
            "Inbound connection attempts answered with a reset because nothing listens, per "
            'local port: a port scan shows as many ports, or as "other" (refused attempts to '
            "ports outside ports.keep are folded).",
            "cps",
            [
                Query(
                    top("port", CONNECTIONS, INBOUND_REFUSED, n=20),
                    "{{port}}",
                )
            ],
        ),
        Panel(
            "Inbound attempts on watched ports",
            "Inbound attempts on the ports of the Watched ports variable (default 23, telnet), "
            "by port and result; accepted attempts name the listening process.",
            "cps",
            [
                Query(
                    f"sum by (port, result, comm) ({rate(CONNECTIONS, INBOUND_WATCHED)})",
                    "{{port}} {{result}} {{comm}}",
                )
            ],
        ),
        Panel(
            "Outbound attempts to watched ports",
            "Local processes connecting out to the ports of the Watched ports variable, by "
            "port, process, uid and result.",
            "cps",
            [
                Query(
                    f"sum by (port, comm, uid, result) ({rate(CONNECTIONS, OUTBOUND_WATCHED)})",
                    "{{port}} {{comm}} uid {{uid}} {{result}}",
                )
            ],
        ),
        Panel(
            "Watch events by rule",
            "Events that matched each watch rule of the exporter's config (each one a JSON "
            "line in the event log), per second. Series exist only when the config has watch "
            "rules (the bundled config watches telnet).",
            "cps",
            [
                Query(
                    f"sum by (rule) ({rate('netsnoop_watch_events_total', HOST)})",
                    "{{rule}}",
                )
            ],
        ),
        Panel(
            "Top processes connecting out",
            "The 10 processes (comm) opening the most outbound connections per second.",
            "cps",
            [Query(top("comm", CONNECTIONS, OUTBOUND), "{{comm}}")],
        ),
        Panel(
            "Top uids connecting out",
            "The 10 uids opening the most outbound connections per second.",
            "cps",
            [Query(top("uid", CONNECTIONS, OUTBOUND), "uid {{uid}}")],
        ),
        Panel(
            "Failed outbound connects by port",
            "Outbound attempts that were refused, timed out or failed, by remote port.",
            "cps",
            [
                Query(
                    top("port, result", CONNECTIONS, FAILED_OUTBOUND),
                    "{{port}} {{result}}",
                )
            ],
        ),
        Panel(
            "Failed outbound connects by process",
            "Outbound attempts that were refused, timed out or failed, by process and uid.",
            "cps",
            [
                Query(
                    top("comm, uid, result", CONNECTIONS, FAILED_OUTBOUND),
                    "{{comm}} uid {{uid}} {{result}}",
                )
            ],
        ),
        Panel(
            "Retransmits by port",
            "TCP segments retransmitted per second, by direction and port (the remote port of "
            "connections opened here, the local port of accepted ones): loss on the path, or a "
            "peer too slow to acknowledge.",
            "cps",
            [Query(top("direction, port", RETRANSMITS, POD), "{{direction}} {{port}}")],
            quiet_empty="no connection lost a packet",
        ),
        Panel(
            "Retransmits by process",
            "TCP segments retransmitted per second, by the process owning the socket, its uid, "
            "and kind (data, or syn for handshakes: SYN and SYN-ACK resent).",
            "cps",
            [Query(top("comm, uid, kind", RETRANSMITS, POD), "{{comm}} uid {{uid}} {{kind}}")],
            quiet_empty="no connection lost a packet",
        ),
        Panel(
            "Resets by port",
            "Resets of existing connections per second, sent or received, by port. Refused "
            "connection attempts are not here: they are the refused results above.",
            "cps",
            [Query(top("direction, port", RESETS, POD), "{{direction}} {{port}}")],
            quiet_empty="no connection was aborted",
        ),
        Panel(
            "Resets by process",
            "Resets of existing connections per second, sent or received, by the process owning "
            "the socket and its uid.",
            "cps",
            [Query(top("direction, comm, uid", RESETS, POD), "{{direction}} {{comm}} uid {{uid}}")],
            quiet_empty="no connection was aborted",
        ),
        Panel(
            "Connect time p50 / p99 by port",
            "Outbound connect time (connect() to established) by remote port, median and 99th "
            "percentile, from the kernel's buckets (50 us to 30 s). About 1 s, 3 s or 7 s "
            "means one, two or three SYNs lost.",
            "s",
            [connect_quantile(0.5), connect_quantile(0.99)],
        ),
        Panel(
            "Connect time heatmap",
            "Outbound connects per connect-time bucket, all ports: bands at 1 s and 3 s are SYN "
            "retransmits.",
            "s",
            [
                Query(
                    f"sum by (le) (increase({CONNECT_BUCKETS}{{{POD}}}[$__rate_interval]))",
                    "{{le}}",
                )
            ],
            kind="heatmap",
        ),
        Panel(
            "Outbound connections by pod",
            "Outbound connections per pod (Kubernetes enrichment on). Outside Kubernetes, or "
            "for host processes, one series without pod labels.",
            "cps",
            [
                Query(
                    top("namespace, pod, comm", CONNECTIONS, OUTBOUND),
                    "{{namespace}}/{{pod}} {{comm}}",
                )
            ],
            width=24,
        ),
    ],
    pod_labels=True,
    extra_variables=[WATCH_PORTS],
)
