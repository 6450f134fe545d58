"""The Traffic dashboard: bytes per process, uid and pod; UDP destinations."""

from __future__ import annotations

from .engine import Dashboard, Panel, Query
from .promql import HOST, POD, rate, top

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
