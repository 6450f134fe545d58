"""docs/benchmarks.md and its plots, from one run's results."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Footprint, OverheadRun, ScrapeCost, WorkloadCost

MB = 1024 * 1024
UNITS = {"churn": "connections/s", "udp": "datagrams/s", "bulk": "MB/s"}
OPERATIONS = {"churn": "connection", "udp": "datagram"}  # what a workload's ops count
THROUGHPUT_PLOT = "benchmarks-throughput.png"
SCRAPE_PLOT = "benchmarks-scrape.png"


@dataclass
class Results:
    command: str
    load_average: tuple[float, float]  # 1-min, at the start and at the end of the measuring
    seconds_per_run: float
    rounds: int
    overhead: list[OverheadRun]
    footprint: Footprint | None
    scrapes: list[ScrapeCost]
    peer_costs: list[WorkloadCost]  # the peers' under a churn run


@dataclass(frozen=True)
class Target:
    """One of issue 16's targets: the figure, its bound, which side of it passes, and how the
    report shows it (``value / scale`` with ``digits`` decimals, the bound in
    ``bound_format``, then ``unit``)."""

    figure: str
    bound: float
    higher_is_better: bool
    measured: Callable[[Results], float | None]
    unit: str = ""
    scale: float = 1.0
    digits: int = 2
    bound_format: str = "g"

    def show(self, value: float, format_spec: str | None = None) -> str:
        shown = format(value / self.scale, format_spec or f",.{self.digits}f")
        return f"{shown} {self.unit}" if self.unit else shown

    @property
    def text(self) -> str:
        return (
            f"{'>=' if self.higher_is_better else '<'} {self.show(self.bound, self.bound_format)}"
        )

    def judge(self, value: float) -> str:
        return f"{self.text}: {verdict(value, self.bound, self.higher_is_better)}"


def netsnoop_ratio(results: Results, workload: str) -> float | None:
    for run in results.overhead:
        for tool in run.tools:
            if run.workload == workload and tool.tool == "netsnoop-exporter":
                return tool.median_ratio
    return None


def scrape_figure(results: Results, series: int, statistic: str) -> float | None:
    """The ``statistic`` (median or p99) of the scrapes at ``series`` target series."""
    at_level = [scrape for scrape in results.scrapes if scrape.target_series == series]
    return getattr(at_level[0], statistic) if at_level else None


def footprint_figure(results: Results, read: Callable[[Footprint], float]) -> float | None:
    return read(results.footprint) if results.footprint is not None else None


# The one home of the targets (issue 16), each with where its figure comes from.
TARGETS = {
    "churn": Target(
        "Churn ratio",
        0.95,
        True,
        lambda r: netsnoop_ratio(r, "churn"),
        digits=3,
        bound_format=".2f",
    ),
    "udp": Target(
        "UDP send ratio",
        0.90,
        True,
        lambda r: netsnoop_ratio(r, "udp"),
        digits=3,
        bound_format=".2f",
    ),
    "bulk": Target(
        "Bulk ratio", 0.99, True, lambda r: netsnoop_ratio(r, "bulk"), digits=3, bound_format=".2f"
    ),
    "rss_steady": Target(
        "RSS steady",
        110 * MB,
        False,
        lambda r: footprint_figure(r, lambda f: f.rss_steady["VmRSS"]),
        unit="MB",
        scale=MB,
        digits=0,
    ),
    "rss_peak": Target(
        "Peak RSS (VmHWM)",
        180 * MB,
        False,
        lambda r: footprint_figure(r, lambda f: f.rss_steady["VmHWM"]),
        unit="MB",
        scale=MB,
        digits=0,
    ),
    "startup": Target(
        "Start to `/healthz` 200",
        1.5,
        False,
        lambda r: footprint_figure(r, lambda f: f.startup_seconds),
        unit="s",
    ),
    "scrape_10k": Target(
        "10k-series scrape, median",
        0.060,
        False,
        lambda r: scrape_figure(r, 10_000, "median"),
        unit="ms",
        scale=1e-3,
        digits=1,
    ),
    "scrape_100k": Target(
        "100k-series scrape, p99",
        0.500,
        False,
        lambda r: scrape_figure(r, 100_000, "p99"),
        unit="ms",
        scale=1e-3,
        digits=1,
    ),
}


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


def targets_table(results: Results) -> list[str]:
    lines = ["| Figure | Target | Measured | Verdict |", "|---|---|---|---|"]
    for target in TARGETS.values():
        value = target.measured(results)
        if value is None:
            lines.append(f"| {target.figure} | {target.text} | not measured | |")
            continue
        judged = verdict(value, target.bound, target.higher_is_better)
        lines.append(f"| {target.figure} | {target.text} | {target.show(value)} | {judged} |")
    return lines


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
            target = TARGETS.get(run.workload) if tool.tool == "netsnoop-exporter" else None
            goal = target.judge(ratio) if target else ""
            traced = statistics.median(tool.traced)
            name = f"{tool.tool} ({tool.note})" if tool.note else tool.tool
            lines.append(
                f"| {run.workload} | {name} | {amount(run.workload, run.baseline_median)} {unit} "
                f"| {amount(run.workload, traced)} {unit} | **{ratio:.3f}** "
                f"| {len(tool.ratios)} | {goal} |"
            )
    return lines


def per_operation_table(costs: Sequence[WorkloadCost]) -> list[str]:
    """What each tool costs the kernel per connection or datagram, all programs summed."""
    lines = [
        "| Tool | Workload | Made during the run | Program runs "
        "| Kernel time per connection or datagram | Tool's own CPU |",
        "|---|---|---|---|---|---|",
    ]
    for cost in costs:
        operation = OPERATIONS[cost.workload]
        per = cost.ns_per_operation
        lines.append(
            f"| {cost.tool} | {cost.workload} | {cost.operations:,} {operation}s "
            f"| {cost.runs:,} | **{per:,.0f} ns** per {operation} "
            f"| {cost.cpu_share:.1%} of one core |"
            if per is not None
            else f"| {cost.tool} | {cost.workload} | no {operation}s | {cost.runs:,} | | |"
        )
    return lines


def cost_table(costs: Sequence[WorkloadCost]) -> list[str]:
    """Each program's runs and cost, a column group per workload; the last column of each
    group is the program's share of the per-connection or per-datagram figure."""
    workloads = list(dict.fromkeys(cost.workload for cost in costs))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for cost in costs:
        for program in cost.programs:
            per_run = f"{program.ns_per_run:,.0f}" if program.ns_per_run is not None else "-"
            per_operation = (
                f"{program.run_time_ns / cost.operations:,.0f}" if cost.operations else "-"
            )
            cells.setdefault((program.tool, program.program), {})[cost.workload] = (
                f"{program.runs:,} | {per_run} | {per_operation}"
            )
    header = "".join(
        f" {workload}: runs | ns per run | ns per {OPERATIONS[workload]} |"
        for workload in workloads
    )
    lines = ["| Tool | Program |" + header, "|---|---|" + "---|---|---|" * len(workloads)]
    for (tool, name), by_workload in cells.items():
        row = "".join(f" {by_workload.get(workload, '| |')} |" for workload in workloads)
        lines.append(f"| {tool} | {name} |" + row)
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

    peak = footprint.rss_steady["VmHWM"]
    return [
        "| | |",
        "|---|---|",
        f"| Process start to `/healthz` 200 | **{footprint.startup_seconds:.2f} s**; "
        f"{TARGETS['startup'].judge(footprint.startup_seconds)} |",
        f"| RSS after start | {rss(footprint.rss_started)} |",
        f"| RSS steady, after {footprint.churn_seconds:.0f} s of churn scraped every second "
        f"| **{rss(footprint.rss_steady)}**; "
        f"{TARGETS['rss_steady'].judge(footprint.rss_steady['VmRSS'])} |",
        f"| Peak RSS (VmHWM, during compilation) | **{peak / MB:.0f} MB**; "
        f"{TARGETS['rss_peak'].judge(peak)} |",
        f"| Reference: a python that has only imported bcc | "
        f"{footprint.bcc_import_rss / MB:.0f} MB |",
        f"| Exporter CPU during the churn | {footprint.costs[0].cpu_share:.1%} of one core |",
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
    axes.axhline(TARGETS["churn"].bound, color="tab:red", linestyle="--", label="churn target")
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
    for key, style in (("scrape_10k", ":"), ("scrape_100k", "-.")):
        target = TARGETS[key]
        axes.axhline(target.bound * 1e3, color="tab:red", linestyle=style, label=target.figure)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("series served")
    axes.set_ylabel("scrape latency (ms)")
    axes.set_title("Scrape latency against series count")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def run_line(load_average: tuple[float, float]) -> str:
    """When, and how busy the machine was: other work on its cores moves every figure."""
    start, end = load_average
    return (
        f"- Run: {time.strftime('%Y-%m-%d %H:%M %Z')}; 1-min load average {start:.2f} at the "
        f"start, {end:.2f} at the end ({os.cpu_count()} cores)"
    )


def write(results: Results, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/` (see the README); rerun it to replace every figure here.",
        "",
        run_line(results.load_average),
        f"- Machine: {machine()}",
        f"- Command: `{results.command}`",
        "",
        "## Targets",
        "",
        "Issue 16's targets, each figure from the sections below; netsnoop-exporter runs with "
        "its bundled default config (`config/netsnoop.yaml`) except for the scrape cost.",
        "",
        *targets_table(results),
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
        "written in 64 KiB chunks. Before and after each measurement, `bpftool prog show` "
        "must list no program named like netsnoop-exporter's (`on_...`) but the measured "
        "exporter's: the benchmark refuses to run beside another exporter.",
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
            "## Kernel cost per connection and per datagram",
            "",
            "With `kernel.bpf_stats_enabled=1` (restored afterwards): the run time of all of a "
            "tool's BPF programs over one workload run, divided by the connections (churn) or "
            "datagrams (udp) the workload made in it. netsnoop-exporter's come from its own "
            "`netsnoop_bpf_program_run_seconds_total` and `netsnoop_bpf_program_runs_total` "
            f"(the churn is the footprint's {results.footprint.churn_seconds:g} s one, the udp "
            f"run {results.seconds_per_run:g} s), the peers' from the fdinfo of the program FDs "
            f"their process holds, over a {results.seconds_per_run:g} s churn. The programs see "
            "every event on the machine, not only the workload's, so other work meanwhile "
            "adds to these figures.",
            "",
            *per_operation_table(costs),
            "",
            "Per program:",
            "",
            *cost_table(costs),
            "",
            "## Footprint",
            "",
            "A fresh netsnoop-exporter with the bundled default config (no `--config.file`: "
            "`config/netsnoop.yaml`).",
            "",
            *footprint_table(results.footprint),
        ]
    if results.scrapes:
        plot_scrapes(results.scrapes, out / SCRAPE_PLOT)
        method = (
            "Live series from real traffic: in a fresh network namespace, where nothing listens, "
            "`netsnoop-bench-load refuse` connects to ports 1..N of 127.0.0.1 under 9 thread "
            "names (`bench-gen-00`..`08`); each port becomes 9 outbound `refused` series of "
            '`netsnoop_tcp_connections_total` (the inbound side folds into `port="other"`). '
            "The exporter runs with `map_size: 262144` and `series_per_metric: 1000000` "
            "(`bench/measure.py` SCRAPE_CONFIG). Latency is the client's: request sent to the "
            "uncompressed text body read, one scrape at a time; p99 is nearest-rank (with fewer "
            "than 100 scrapes, the slowest)."
        )
        goals = [
            f"{target.figure} {target.judge(value)}."
            for target in (TARGETS["scrape_10k"], TARGETS["scrape_100k"])
            if (value := target.measured(results)) is not None
        ]
        lines += [
            "",
            "## Scrape cost against series count",
            "",
            " ".join([method, *goals]),
            "",
            *scrape_table(results.scrapes),
            "",
            f"![scrape latency against series count]({SCRAPE_PLOT})",
        ]
    report = out / "benchmarks.md"
    report.write_text("\n".join(lines) + "\n")
    return report
