"""Generates the Grafana dashboards in this directory and docs/dashboards.md from one
description, so panels, queries and their documentation cannot drift apart.

    python dashboards/generate.py           # rewrite dashboards/*.json and docs/dashboards.md
    python dashboards/generate.py --check   # exit 1 when a committed file is out of date

Plain dictionaries rather than grafana-foundation-sdk: five dashboards of time series and
stats do not need a dependency. tests/unit/test_dashboards.py checks the output agrees.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "dashboards.md"

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query is scoped by these; "All" nodes is ".*", which also matches series without a
# node label (outside Kubernetes), while "All" instances is the list of netsnoop exporters.
HOST = 'instance=~"$instance", node=~"$node"'
POD = HOST + ', namespace=~"$namespace"'  # series that carry pod labels (issue 4)
QUIET_EMPTY = "Empty on a quiet host"  # panels that may legitimately have no data

CONNECTIONS = "netsnoop_tcp_connections_total"
OUTBOUND = POD + ', direction="outbound"'
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


def rate(metric: str, selector: str) -> str:
    return f"rate({metric}{{{selector}}}[$__rate_interval])"


def top(by: str, metric: str, selector: str, n: int = 10) -> str:
    """The ``n`` busiest label combinations ``by`` of a counter's per-second rate."""
    return f"topk({n}, sum by ({by}) ({rate(metric, selector)}))"


@dataclass
class Query:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    queries: list[Query]
    kind: str = "timeseries"  # or "stat", "heatmap"
    width: int = 12
    quiet_empty: str = ""  # why the panel may be empty on a healthy, quiet host

    def full_description(self) -> str:
        if self.quiet_empty:
            return f"{self.description} {QUIET_EMPTY}: {self.quiet_empty}"
        return self.description


@dataclass
class Dashboard:
    uid: str
    file: str
    title: str
    description: str
    panels: list[Panel]
    pod_labels: bool = False  # adds the namespace variable
    extra_variables: list[dict] = field(default_factory=list)


def datasource_variable() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, query: str, all_value: str | None) -> dict:
    """A multi-value label_values() variable. Without ``all_value`` "All" expands to the
    options found, which keeps the scope to netsnoop targets (for process_* and up)."""
    variable = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: exporters come and go
        "includeAll": True,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def variables(dashboard: Dashboard) -> list[dict]:
    result = [
        datasource_variable(),
        query_variable("node", "Node", "label_values(netsnoop_build_info, node)", ".*"),
        query_variable(
            "instance",
            "Instance",
            'label_values(netsnoop_build_info{node=~"$node"}, instance)',
            None,
        ),
    ]
    if dashboard.pod_labels:
        result.append(
            query_variable(
                "namespace",
                "Namespace",
                f'label_values({CONNECTIONS}{{instance=~"$instance"}}, namespace)',
                ".*",
            )
        )
    return result + dashboard.extra_variables


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    targets = [
        {
            "refId": chr(ord("A") + index),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": True,
            "instant": False,
        }
        for index, query in enumerate(panel.queries)
    ]
    result = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.full_description(),
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "heatmap":  # buckets as Prometheus gives them, one row per le
        for target in targets:
            target["format"] = "heatmap"
        result["options"] = {
            "calculate": False,
            "yAxis": {"unit": panel.unit},
            "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5},
            "cellGap": 1,
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    elif panel.kind == "stat":
        result["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    else:
        result["options"] = {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return result


def dashboard_json(dashboard: Dashboard) -> dict:
    panels, x, y = [], 0, 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["netsnoop", "ebpf", "network"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "links": [
            {
                "title": "netsnoop",
                "type": "dashboards",
                "tags": ["netsnoop"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables(dashboard)},
        "panels": panels,
    }


# --- the dashboards --------------------------------------------------------------------------

WATCH_PORTS = {
    "name": "watch_ports",
    "label": "Watched ports (regex)",
    "type": "textbox",
    "query": "23",
    "current": {"text": "23", "value": "23"},
    "options": [{"selected": True, "text": "23", "value": "23"}],
    "hide": 0,
}

EXPORTER_UP = Panel(
    "Exporters up",
    "Scrape health of each selected netsnoop exporter: 1 up, 0 down (the lowest value in each "
    "interval, so a short outage shows).",
    "none",
    [Query(f"min by (instance) (min_over_time(up{{{HOST}}}[$__rate_interval]))", "{{instance}}")],
    kind="stat",
    width=8,
)
PROGRAMS_UNATTACHED = Panel(
    "BPF programs not attached",
    "Programs that could not be attached to their tracepoint (usually a kernel without it); "
    "0 is healthy. Their metrics stay flat. Details in the Exporter health dashboard.",
    "none",
    [
        Query(
            "sum by (instance) (1 - min_over_time("
            f"netsnoop_bpf_program_attached{{{HOST}}}[$__rate_interval]))",
            "{{instance}}",
        )
    ],
    kind="stat",
    width=8,
)

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

SENT = "netsnoop_socket_sent_bytes_total"
RECEIVED = "netsnoop_socket_received_bytes_total"
UDP_SENDS = "netsnoop_udp_sends_total"


def sent_and_received(by: str, legend: str, busiest: bool = True) -> list[Query]:
    """Two queries, bytes sent and bytes received per second, summed by ``by``."""
    queries = []
    for metric, direction in ((SENT, "sent"), (RECEIVED, "received")):
        expr = f"sum by ({by}) ({rate(metric, POD)})"
        queries.append(Query(f"topk(10, {expr})" if busiest else expr, f"{legend} {direction}"))
    return queries


TRAFFIC = Dashboard(
    "netsnoop-traffic",
    "netsnoop-traffic.json",
    "netsnoop / Traffic",
    "Bytes through TCP and UDP sockets per process, uid and pod; UDP destinations.",
    [
        Panel(
            "Bytes sent by process",
            "The 10 processes sending the most bytes per second through TCP and UDP sockets.",
            "Bps",
            [Query(top("comm", SENT, POD), "{{comm}}")],
        ),
        Panel(
            "Bytes received by process",
            "The 10 processes receiving the most bytes per second through TCP and UDP sockets.",
            "Bps",
            [Query(top("comm", RECEIVED, POD), "{{comm}}")],
        ),
        Panel(
            "Bytes by uid",
            "Bytes per second sent and received by each uid.",
            "Bps",
            sent_and_received("uid", "uid {{uid}}"),
        ),
        Panel(
            "Bytes by protocol",
            "Bytes per second through TCP and UDP sockets, sent and received.",
            "Bps",
            sent_and_received("protocol", "{{protocol}}", busiest=False),
        ),
        Panel(
            "UDP destinations by port",
            "UDP datagrams sent per second by remote port.",
            "pps",
            [Query(top("port", UDP_SENDS, HOST), "{{port}}")],
        ),
        Panel(
            "UDP destinations by process",
            "UDP datagrams sent per second by process, uid and remote port.",
            "pps",
            [
                Query(
                    top("comm, uid, port", UDP_SENDS, HOST),
                    "{{comm}} uid {{uid}} to {{port}}",
                )
            ],
        ),
        Panel(
            "Bytes by pod",
            "Bytes per second sent and received per pod (Kubernetes enrichment on). Outside "
            "Kubernetes, or for host processes, one series without pod labels.",
            "Bps",
            sent_and_received("namespace, pod", "{{namespace}}/{{pod}}"),
            width=24,
        ),
    ],
    pod_labels=True,
)


def gauge_max(metric: str, by: str) -> str:
    return f"max by ({by}) (max_over_time({metric}{{{HOST}}}[$__rate_interval]))"


EXPORTER_HEALTH = Dashboard(
    "netsnoop-exporter-health",
    "netsnoop-exporter-health.json",
    "netsnoop / Exporter health",
    "Is netsnoop-exporter itself working: scrapes, BPF programs and maps, lost events, cost.",
    [
        EXPORTER_UP,
        PROGRAMS_UNATTACHED,
        Panel(
            "Collectors failing",
            "Collectors whose last read failed; 0 is healthy.",
            "none",
            [
                Query(
                    "sum by (instance) (1 - min_over_time("
                    f"netsnoop_scrape_collector_success{{{HOST}}}[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            kind="stat",
            width=8,
        ),
        Panel(
            "Programs attached",
            "Each BPF program: 1 attached to its tracepoint, 0 not (the lowest value in each "
            "interval).",
            "none",
            [
                Query(
                    "min by (instance, collector, program) (min_over_time("
                    f"netsnoop_bpf_program_attached{{{HOST}}}[$__rate_interval]))",
                    "{{instance}} {{collector}} {{program}}",
                )
            ],
        ),
        Panel(
            "BPF map fill",
            "Entries over capacity of each BPF map, the highest in each interval. A full map "
            "loses updates (next panel); raise its map_size in the config.",
            "percentunit",
            [
                Query(
                    f"{gauge_max('netsnoop_bpf_map_entries', 'instance, collector, map')}"
                    f" / {gauge_max('netsnoop_bpf_map_capacity', 'instance, collector, map')}",
                    "{{instance}} {{collector}} {{map}}",
                )
            ],
        ),
        Panel(
            "BPF map update failures",
            "Updates the BPF programs lost per second because a map was full.",
            "ops",
            [
                Query(
                    "sum by (instance, collector, map) "
                    f"({rate('netsnoop_bpf_map_update_failures_total', HOST)})",
                    "{{instance}} {{collector}} {{map}}",
                )
            ],
        ),
        Panel(
            "Lost events",
            "Watch events not written to the event log, per second: perf buffer overflow "
            "(buffer) or over a rule's rate limit (rate_limit).",
            "ops",
            [
                Query(
                    f"sum by (instance, reason) ({rate('netsnoop_watch_events_lost_total', HOST)})",
                    "{{instance}} {{reason}}",
                )
            ],
            quiet_empty="a series appears with the first lost event.",
        ),
        Panel(
            "Series budget overflow",
            "Increments folded into a metric's overflow series per second, once its series "
            "budget (cardinality.series_per_metric) is spent.",
            "ops",
            [
                Query(
                    f"sum by (instance, metric) ({rate('netsnoop_series_overflow_total', HOST)})",
                    "{{instance}} {{metric}}",
                )
            ],
            quiet_empty="a series appears only once a metric has spent its budget.",
        ),
        Panel(
            "Scrape duration",
            "Seconds each snapshot took to read the BPF maps and sockets, the longest in each "
            "interval.",
            "s",
            [Query(gauge_max("netsnoop_scrape_duration_seconds", "instance"), "{{instance}}")],
        ),
        Panel(
            "Resident memory",
            "Resident set size of the exporter process (process_resident_memory_bytes), the "
            "highest in each interval.",
            "bytes",
            [Query(gauge_max("process_resident_memory_bytes", "instance"), "{{instance}}")],
        ),
        Panel(
            "CPU",
            "CPU used by the exporter process, in cores (1.0 = one core busy).",
            "percentunit",
            [
                Query(
                    f"sum by (instance) ({rate('process_cpu_seconds_total', HOST)})",
                    "{{instance}}",
                )
            ],
            width=24,
        ),
    ],
)

DASHBOARDS = [OVERVIEW, CONNECTIONS_SECURITY, DROPS, TRAFFIC, EXPORTER_HEALTH]


# --- docs/dashboards.md ----------------------------------------------------------------------

DOCS_INTRO = """\
# Dashboards

Five Grafana dashboards ship in [`dashboards/`](../dashboards). They are generated by
[`dashboards/generate.py`](../dashboards/generate.py), which also writes this page: edit the
generator, run `python dashboards/generate.py`, and commit both (a unit test fails when they
disagree). Importing and provisioning them: [README](../README.md#dashboards-and-alerts).

Every dashboard has the variables `datasource` (a Prometheus data source), `node` (the `node`
label the Helm chart's ServiceMonitor adds; "All" also matches series without it) and
`instance` (the netsnoop exporters found through `netsnoop_build_info`); the dashboards whose
series carry pod labels also have `namespace`. Every query is scoped by them, uses
`$__rate_interval`, and reads counters only through `rate()`.

A series is born with the first event it counts, so right after the exporter starts a panel
shows "No data" until that kind of traffic happens (a first connection, a first drop). Panels
marked *{quiet}* stay empty on a healthy host even under ordinary traffic: they show a
problem or a rare condition. The tests (`tests/e2e/test_dashboards_alerts.py`) run every query
of every panel through a real Prometheus after a traffic scenario that exercises every metric,
and accept no data only for the series budget overflow panel, which the bundled config cannot
fill.

No Grafana server runs in this project's tests, so there are no screenshots here.
"""


def docs_markdown() -> str:
    lines = [DOCS_INTRO.format(quiet=QUIET_EMPTY)]
    for dashboard in DASHBOARDS:
        lines += [
            f"## {dashboard.title}",
            "",
            f"`dashboards/{dashboard.file}`, uid `{dashboard.uid}`. {dashboard.description}",
            "",
        ]
        for panel in dashboard.panels:
            lines += [f"### {panel.title}", "", f"{panel.description} Unit: `{panel.unit}`.", ""]
            if panel.quiet_empty:
                lines += [f"*{QUIET_EMPTY}:* {panel.quiet_empty}", ""]
            lines += ["```promql", *(query.expr for query in panel.queries), "```", ""]
    return "\n".join(lines)


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        HERE / dashboard.file: json.dumps(dashboard_json(dashboard), indent=2) + "\n"
        for dashboard in DASHBOARDS
    }
    files[DOCS] = docs_markdown()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args()
    stale = []
    for path, content in rendered().items():
        if path.exists() and path.read_text() == content:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(content)
    if stale:
        print("out of date, run python dashboards/generate.py:", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
