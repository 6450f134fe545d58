"""docs/benchmarks.md and its plots, from one run's results."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Footprint, OverheadRun, ScrapeCost

MB = 1024 * 1024
UNITS = {"churn": "connections/s", "udp": "datagrams/s", "bulk": "MB/s"}
RATIO_TARGETS = {"churn": 0.97, "bulk": 0.99}
SCRAPE_TARGET = (10_000, 0.100)  # 10k series in under 100 ms
RSS_TARGET = 120 * MB
THROUGHPUT_PLOT = "benchmarks-throughput.png"
SCRAPE_PLOT = "benchmarks-scrape.png"


@dataclass
class Results:
    command: str
    seconds_per_run: float
    rounds: int
    overhead: list[OverheadRun]
    footprint: Footprint | None
    scrapes: list[ScrapeCost]
    peer_costs: list  # ProgramCost of the peers, under the same churn


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    distro = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        "",
    )
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, Linux {platform.release()}, "
        f"{distro}, Python {platform.python_version()}"
    )


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value < target
    if met:
        return "met"
    return f"missed by {abs(value - target) / target:.1%}"


def amount(workload: str, value: float) -> str:
    return f"{value / 1e6:,.0f}" if workload == "bulk" else f"{value:,.0f}"


def overhead_table(runs: Sequence[OverheadRun]) -> list[str]:
    lines = [
        "| Workload | Tool | Without (median) | With (median) | Ratio (median) | Pairs | Target |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        unit = UNITS[run.workload]
        for tool in run.tools:
            ratio = tool.median_ratio
            if ratio is None:
                lines.append(f"| {run.workload} | {tool.tool} | | | {tool.note} | 0 | |")
                continue
            target = RATIO_TARGETS.get(run.workload) if tool.tool == "netsnoop-exporter" else None
            goal = f">= {target}: {verdict(ratio, target, True)}" if target else ""
            traced = statistics.median(tool.traced)
            name = f"{tool.tool} ({tool.note})" if tool.note else tool.tool
            lines.append(
                f"| {run.workload} | {name} | {amount(run.workload, run.baseline_median)} {unit} "
                f"| {amount(run.workload, traced)} {unit} | **{ratio:.3f}** "
                f"| {len(tool.ratios)} | {goal} |"
            )
    return lines


def cost_table(costs: Sequence) -> list[str]:
    lines = ["| Tool | Program | Runs | ns per run |", "|---|---|---|---|"]
    for cost in costs:
        per_run = f"{cost.ns_per_run:,.0f}" if cost.ns_per_run is not None else "(no runs)"
        lines.append(f"| {cost.tool} | {cost.program} | {cost.runs:,} | {per_run} |")
    return lines


def scrape_table(scrapes: Sequence[ScrapeCost]) -> list[str]:
    lines = [
        "| Series (target) | Series served | Bytes served | Median | p99 | Scrapes "
        "| Exporter read (median) | RSS after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scrape in scrapes:
        read = statistics.median(scrape.read_seconds) * 1e3
        lines.append(
            f"| {scrape.target_series:,} | {scrape.series:,} | {scrape.body_bytes:,} "
            f"| **{scrape.median * 1e3:.1f} ms** | {scrape.p99 * 1e3:.1f} ms "
            f"| {len(scrape.latencies)} | {read:.1f} ms | {scrape.rss / MB:.0f} MB |"
        )
    return lines


def footprint_table(footprint: Footprint) -> list[str]:
    def rss(status: dict[str, int]) -> str:
        return (
            f"{status['VmRSS'] / MB:.0f} MB (anon {status['RssAnon'] / MB:.0f}, "
            f"file {status['RssFile'] / MB:.0f})"
        )

    steady = footprint.rss_steady["VmRSS"]
    return [
        "| | |",
        "|---|---|",
        f"| Process start to `/healthz` OK | {footprint.startup_seconds:.2f} s |",
        f"| RSS after start | {rss(footprint.rss_started)} |",
        f"| RSS steady, after {footprint.churn_seconds:.0f} s of churn scraped every second "
        f"| **{rss(footprint.rss_steady)}**; < 120 MB: {verdict(steady, RSS_TARGET, False)} |",
        f"| Peak RSS (VmHWM, during compilation) | {footprint.rss_steady['VmHWM'] / MB:.0f} MB |",
        f"| Reference: a python that has only imported bcc | "
        f"{footprint.bcc_import_rss / MB:.0f} MB |",
        f"| Exporter CPU during the churn | {footprint.cpu_share:.1%} of one core |",
    ]


def plot_throughput(runs: Sequence[OverheadRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labels, ratios = [], []
    for run in runs:
        for tool in run.tools:
            if tool.median_ratio is not None:
                labels.append(f"{run.workload}\n{tool.tool}")
                ratios.append(tool.median_ratio)
    figure, axes = pyplot.subplots(figsize=(max(5, 1.4 * len(labels)), 4))
    bars = axes.bar(range(len(ratios)), ratios, color="tab:blue")
    axes.bar_label(bars, fmt="%.3f")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.axhline(RATIO_TARGETS["churn"], color="tab:red", linestyle="--", label="churn target")
    axes.set_xticks(range(len(labels)), labels, fontsize=8)
    axes.set_ylabel("throughput with tool / without (median)")
    axes.set_ylim(0, 1.1)
    axes.set_title("Overhead on the traced workload")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def plot_scrapes(scrapes: Sequence[ScrapeCost], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    series = [scrape.series for scrape in scrapes]
    figure, axes = pyplot.subplots(figsize=(5.5, 4))
    axes.plot(series, [s.median * 1e3 for s in scrapes], "o-", label="median")
    axes.plot(series, [s.p99 * 1e3 for s in scrapes], "s--", label="p99")
    axes.axhline(SCRAPE_TARGET[1] * 1e3, color="tab:red", linestyle=":", label="100 ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("series served")
    axes.set_ylabel("scrape latency (ms)")
    axes.set_title("Scrape latency against series count")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def write(results: Results, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/` (see the README); rerun it to replace every figure here.",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}",
        f"- Command: `{results.command}`",
        "",
        "## Overhead on the traced workload",
        "",
        f"Each traced run ({results.seconds_per_run:g} s) sits between two runs with no tracer; "
        "its throughput is divided by the mean of those two, and the table gives the median of "
        f"these ratios over {results.rounds} rounds (tool order rotated each round). The "
        "tracer is started before and stopped after its run; netsnoop-exporter is scraped "
        "every second meanwhile. Workloads (`bench/load.c`): **churn**, loopback TCP "
        "connect, 1-byte exchange, close, in 4 client and 4 server processes; **udp**, "
        "64-byte `sendto()` to a loopback receiver; **bulk**, one loopback TCP connection "
        "written in 64 KiB chunks.",
        "",
        *overhead_table(results.overhead),
    ]
    if results.overhead:
        plot_throughput(results.overhead, out / THROUGHPUT_PLOT)
        lines += ["", f"![throughput ratio per tool]({THROUGHPUT_PLOT})"]
    if results.footprint is not None:
        costs = results.footprint.costs + list(results.peer_costs)
        lines += [
            "",
            "## Kernel cost per BPF program run",
            "",
            "With `kernel.bpf_stats_enabled=1` (restored afterwards), over one churn run: "
            "netsnoop-exporter's from its own `netsnoop_bpf_program_run_seconds_total` and "
            "`netsnoop_bpf_program_runs_total`, the peers' from the fdinfo of the program FDs "
            "their process holds. The programs see every event on the machine, not only the "
            "churn's.",
            "",
            *cost_table(costs),
            "",
            "## Footprint",
            "",
            *footprint_table(results.footprint),
        ]
    if results.scrapes:
        plot_scrapes(results.scrapes, out / SCRAPE_PLOT)
        at_target = [s for s in results.scrapes if s.target_series == SCRAPE_TARGET[0]]
        goal = (
            f"10k series in < 100 ms: {verdict(at_target[0].median, SCRAPE_TARGET[1], False)}."
            if at_target
            else ""
        )
        lines += [
            "",
            "## Scrape cost against series count",
            "",
            "Live series from real traffic: in a fresh network namespace, where nothing listens, "
            "`netsnoop-bench-load refuse` connects to ports 1..N of 127.0.0.1 under 9 thread "
            "names (`bench-gen-00`..`08`); each port becomes 9 outbound `refused` series of "
            '`netsnoop_tcp_connections_total` (the inbound side folds into `port="other"`). '
            "The exporter runs with `map_size: 262144` and `series_per_metric: 1000000` "
            "(`bench/measure.py` SCRAPE_CONFIG). Latency is the client's: request sent to the "
            "uncompressed text body read, one scrape at a time; p99 is nearest-rank (with fewer "
            "than 100 "
            "scrapes, the slowest). " + goal,
            "",
            *scrape_table(results.scrapes),
            "",
            f"![scrape latency against series count]({SCRAPE_PLOT})",
        ]
    report = out / "benchmarks.md"
    report.write_text("\n".join(lines) + "\n")
    return report
