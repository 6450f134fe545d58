"""``python -m bench.encode``: the in-process cost of one scrape at 10k and 100k series, without
BPF or root. A synthetic counter family goes the way a collector's does: through the series
budget (Exporter.read), into a snapshot, rendered as the text format, OpenMetrics (what
Prometheus asks for by default) and gzip (Prometheus sends Accept-Encoding: gzip).

Each scrape after the first carries increments for ``--changed`` of the series, like a drained
map on a busy host; the rest keep their values."""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.measure import percentile
from exporter.core.cardinality import SeriesBudget
from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.outputs.prometheus import TEXT_CONTENT_TYPE, Exposition
from exporter.settings import CardinalityConfig, PortsConfig

COMMS = 9  # as bench/measure.py's generator: each port gives one series per comm
OPENMETRICS_ACCEPT = (  # Prometheus 2.x/3.x's default scrape_protocols, in its Accept form
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


def connections(series: int, changed: float, scrape: int) -> MetricFamily:
    """Increments of a tcp_connections-like counter: all ``series`` on scrape 0, then every
    ``1/changed``-th one."""
    family = MetricFamily(
        "netsnoop_tcp_connections",
        "counter",
        "TCP connections and connection attempts by direction, port, process, uid and result.",
        ("direction", "port", "comm", "uid", "result"),
        increments=True,
        bounded_labels=("direction", "result"),
    )
    step = 1 if scrape == 0 else max(1, round(1 / changed)) if changed else 0
    if step:
        for index in range(scrape % step, series, step):
            port, comm = divmod(index, COMMS)
            family.add(("outbound", str(port + 1), f"bench-gen-{comm:02d}", "0", "refused"), 1)
    return family


def timed(function: Callable[..., Any], *args: object) -> tuple[float, Any]:
    began = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - began, result


def measure(series: int, scrapes: int, changed: float) -> dict[str, list[float]]:
    """Seconds per stage of each scrape: the budget, then the text (the snapshot's encoding and
    the process_* metrics), its gzip, and OpenMetrics of the same snapshot."""
    budget = SeriesBudget(
        CardinalityConfig(series_per_metric=1_000_000),
        PortsConfig(),
        ephemeral=lambda: (32768, 60999),
    )
    families: list[MetricFamily] = []
    exposition = Exposition(SnapshotSource(lambda: families))
    stages: dict[str, list[float]] = {"budget": [], "text": [], "gzip": [], "openmetrics": []}
    for scrape in range(scrapes + 1):  # scrape 0: every series is born, not timed
        seconds, families[:] = timed(budget.apply, [connections(series, changed, scrape)])
        text_seconds, (body, content_type) = timed(exposition.render, "")
        assert content_type == TEXT_CONTENT_TYPE
        gzip_seconds = timed(gzip.compress, body, 1)[0]
        openmetrics_seconds = timed(exposition.render, OPENMETRICS_ACCEPT)[0]
        if scrape:
            for stage, value in zip(
                stages, (seconds, text_seconds, gzip_seconds, openmetrics_seconds), strict=True
            ):
                stages[stage].append(value)
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.encode", description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="10000,100000", help="comma-separated levels")
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes per level")
    parser.add_argument(
        "--changed", type=float, default=0.1, help="share of series with an increment per scrape"
    )
    args = parser.parse_args(argv)
    print("| Series | Stage | Median ms | p99 ms |")
    print("|---:|---|---:|---:|")
    for series in (int(level) for level in args.series.split(",") if level):
        for stage, seconds in measure(series, args.scrapes, args.changed).items():
            median, p99 = statistics.median(seconds) * 1e3, percentile(seconds, 0.99) * 1e3
            print(f"| {series} | {stage} | {median:.1f} | {p99:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
