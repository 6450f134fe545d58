"""PromQL building blocks shared by the dashboards: the variable scope every query carries
and the rate/top/max shapes the panels repeat."""

from __future__ import annotations

# Every query is scoped by these; "All" nodes is ".*", which also matches series without a
# node label (outside Kubernetes), while "All" instances is the list of netsnoop exporters.
HOST = 'instance=~"$instance", node=~"$node"'
POD = HOST + ', namespace=~"$namespace"'  # series that carry pod labels (issue 4)

CONNECTIONS = "netsnoop_tcp_connections_total"
OUTBOUND = POD + ', direction="outbound"'


def rate(metric: str, selector: str) -> str:
    return f"rate({metric}{{{selector}}}[$__rate_interval])"


def top(by: str, metric: str, selector: str, n: int = 10) -> str:
    """The ``n`` busiest label combinations ``by`` of a counter's per-second rate."""
    return f"topk({n}, sum by ({by}) ({rate(metric, selector)}))"


def gauge_max(metric: str, by: str) -> str:
    return f"max by ({by}) (max_over_time({metric}{{{HOST}}}[$__rate_interval]))"
