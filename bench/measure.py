"""The measurements: workload throughput with and without each tracer (interleaved), the
kernel cost per BPF program run, scrape cost against series count, and the exporter's footprint."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.tracers import Netsnoop, ToolUnavailable
from exporter.kernel.bpf_stats import ProgramRunStats, parse_fdinfo

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
GENERATOR_COMMS = 9  # bench-gen-00..08: each refused port gives 9 outbound series
# Room for the largest level: connections map entries, and the per-metric series budget.
SCRAPE_CONFIG = """collectors:
  tcp_connections:
    map_size: 262144
cardinality:
  series_per_metric: 1000000
"""


class Load:
    """bench/load.c, built with gcc into ``build_dir``."""

    def __init__(self, build_dir: Path) -> None:
        self.path = build_dir / "netsnoop-bench-load"
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(self.path), str(BENCH_DIR / "load.c")], check=True
        )

    def run(self, *args: str, prefix: Sequence[str] = ()) -> dict[str, float]:
        out = subprocess.run(
            [*prefix, str(self.path), *args], check=True, capture_output=True, text=True
        ).stdout
        return json.loads(out)

    def throughput(self, workload: str, seconds: float) -> float:
        """Operations per second: connections (churn), datagrams (udp) or bytes (bulk)."""
        result = self.run(workload, str(seconds))
        amount = result["bytes"] if workload == "bulk" else result["ops"]
        return amount / result["seconds"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with fewer than 100 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- 1. overhead on the traced workload ------------------------------------------------------


@dataclass
class Overhead:
    workload: str
    tool: str
    ratios: list[float] = field(default_factory=list)
    traced: list[float] = field(default_factory=list)  # throughput while the tool ran
    note: str = ""

    @property
    def median_ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


@dataclass
class OverheadRun:
    workload: str
    baselines: list[float]
    tools: list[Overhead]

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baselines)


def interleaved(
    load: Load, workload: str, tools: Sequence, rounds: int, seconds: float
) -> OverheadRun:
    """Baseline, tool A, baseline, tool B, ... baseline, with the tool order rotated each
    round. Each traced run is divided by the mean of the two baselines around it, so drift in
    the machine's load (other work on the 2 cores) cancels out; the median of those ratios is
    the figure."""
    results = {tool.name: Overhead(workload, tool.name, note=tool.note) for tool in tools}
    live = list(tools)
    baselines = [load.throughput(workload, seconds)]
    for round_index in range(rounds):
        shift = round_index % len(live) if live else 0
        for tool in live[shift:] + live[:shift]:
            try:
                tool.start()
            except ToolUnavailable as error:
                log.warning("%s unavailable: %s", tool.name, error)
                results[tool.name].note = f"not run: {error}"
                live.remove(tool)
                continue
            try:
                traced = load.throughput(workload, seconds)
            finally:
                tool.stop()
            after = load.throughput(workload, seconds)
            results[tool.name].traced.append(traced)
            results[tool.name].ratios.append(traced / ((baselines[-1] + after) / 2))
            baselines.append(after)
            log.info("%s %s: ratio %.3f", workload, tool.name, results[tool.name].ratios[-1])
    return OverheadRun(workload, baselines, list(results.values()))


# --- 2. kernel cost per BPF program run ----------------------------------------------------


@contextlib.contextmanager
def bpf_stats_on() -> Iterator[None]:
    """kernel.bpf_stats_enabled=1 for the block, then back to what it was."""
    original = BPF_STATS_SYSCTL.read_text()
    BPF_STATS_SYSCTL.write_text("1\n")
    try:
        yield
    finally:
        BPF_STATS_SYSCTL.write_text(original)


@dataclass
class ProgramCost:
    tool: str
    program: str
    runs: int
    run_time_ns: int

    @property
    def ns_per_run(self) -> float | None:
        return self.run_time_ns / self.runs if self.runs else None


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric by their ``program`` label, from the text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels.get("program", "")] = sample.value
    return values


def netsnoop_program_costs(before: str, after: str) -> list[ProgramCost]:
    """Per-program deltas of the exporter's own netsnoop_bpf_program_* self-metrics."""
    runs = [samples(text, "netsnoop_bpf_program_runs_total") for text in (before, after)]
    spent = [samples(text, "netsnoop_bpf_program_run_seconds_total") for text in (before, after)]
    return [
        ProgramCost(
            "netsnoop-exporter",
            program,
            int(runs[1][program] - runs[0].get(program, 0)),
            round((spent[1][program] - spent[0].get(program, 0)) * 1e9),
        )
        for program in sorted(runs[1])
    ]


def bpftool_names() -> dict[int, str]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "--json"], check=True, capture_output=True, text=True
    ).stdout
    return {program["id"]: program.get("name", "") for program in json.loads(out)}


def process_programs(pid: int) -> dict[int, ProgramRunStats]:
    """Run stats of the BPF programs a process holds FDs of, by program id: exactly that
    tool's programs, whatever else the machine loads meanwhile."""
    programs = {}
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            text = fd.read_text()
            stats = parse_fdinfo(text)
            if stats is not None and "prog_id:" in text:
                program_id = int(text.split("prog_id:", 1)[1].split()[0])
                programs[program_id] = stats
    return programs


def peer_program_costs(tool, workload: Callable[[], object]) -> list[ProgramCost]:
    """A peer's per-program run time and count deltas over the workload, from the fdinfo of
    the program FDs its process holds."""
    tool.start()
    try:
        before = process_programs(tool.pid)
        workload()
        after = process_programs(tool.pid)
        names = bpftool_names()  # while the programs are still loaded
    finally:
        tool.stop()
    return [
        ProgramCost(
            tool.name,
            names.get(program_id) or str(program_id),
            stats.run_count - before[program_id].run_count,
            stats.run_time_ns - before[program_id].run_time_ns,
        )
        for program_id, stats in sorted(after.items())
        if program_id in before
    ]


# --- 4. footprint -----------------------------------------------------------------------


def process_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bcc_import_rss() -> int:
    """RSS of a python that has only imported bcc: the floor any bcc-based tool stands on."""
    code = (
        "import bcc, pathlib; print([l.split()[1] for l in "
        "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout) * 1024


@dataclass
class Footprint:
    startup_seconds: float
    rss_started: dict[str, int]
    rss_steady: dict[str, int]
    cpu_share: float  # the exporter's CPU seconds per second of churn (1.0 = one core)
    churn_seconds: float
    bcc_import_rss: int
    costs: list[ProgramCost]


def footprint_and_costs(load: Load, churn_seconds: float) -> Footprint:
    """A fresh exporter with bpf_stats on: time to /healthz, RSS after start, then the churn
    for ``churn_seconds`` (scraped every second) and RSS, CPU and per-program cost over it."""
    exporter = Netsnoop()
    with bpf_stats_on():
        exporter.start()
        try:
            started = process_status(exporter.pid)
            before, cpu_before = exporter.metrics(), cpu_seconds(exporter.pid)
            load.throughput("churn", churn_seconds)
            cpu_share = (cpu_seconds(exporter.pid) - cpu_before) / churn_seconds
            after = exporter.metrics()
            steady = process_status(exporter.pid)
        finally:
            exporter.stop()
    return Footprint(
        exporter.startup_seconds,
        started,
        steady,
        cpu_share,
        churn_seconds,
        bcc_import_rss(),
        netsnoop_program_costs(before, after),
    )


# --- 3. scrape cost against series count ---------------------------------------------------


@dataclass
class ScrapeCost:
    target_series: int
    series: int  # sample lines served
    body_bytes: int
    latencies: list[float]
    read_seconds: list[float]  # the exporter's own netsnoop_scrape_duration_seconds
    rss: int

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


@contextlib.contextmanager
def generator_namespace() -> Iterator[list[str]]:
    """A fresh network namespace: nothing listens on its loopback, so every connect there is
    refused, and its traffic never meets anyone else's."""
    name = f"netsnoop-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def sample_lines(body: str) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def generated_series(body: str) -> int:
    return body.count('comm="bench-gen-')


def scrape_costs(load: Load, levels: Sequence[int], scrapes: int) -> list[ScrapeCost]:
    """Series come from real traffic: in a fresh namespace, connects to closed loopback ports
    under GENERATOR_COMMS thread names. Each port gives GENERATOR_COMMS outbound "refused"
    series (one per comm); the inbound side folds into port="other" (the default port
    policy). Levels add ports cumulatively."""
    exporter = Netsnoop(SCRAPE_CONFIG)
    results = []
    ports = 0
    with generator_namespace() as in_namespace:
        exporter.start(scrape_every_second=False)
        try:
            for target in sorted(levels):
                wanted_ports = max(1, math.ceil(target / GENERATOR_COMMS))
                if wanted_ports > ports:
                    first, last = str(ports + 1), str(wanted_ports)
                    load.run("refuse", first, last, str(GENERATOR_COMMS), prefix=in_namespace)
                    ports = wanted_ports
                wait_for_series(exporter, ports * GENERATOR_COMMS)
                results.append(measure_scrapes(exporter, target, scrapes))
                log.info(
                    "scrape at %d series: median %.1f ms",
                    results[-1].series,
                    results[-1].median * 1e3,
                )
        finally:
            exporter.stop()
    return results


def wait_for_series(exporter: Netsnoop, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while generated_series(exporter.metrics()) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the exporter never showed {expected} generated series: {exporter.log_tail()}"
            )
        time.sleep(0.5)


def measure_scrapes(exporter: Netsnoop, target: int, scrapes: int) -> ScrapeCost:
    latencies, read_seconds = [], []
    body = ""
    for _ in range(scrapes):
        began = time.perf_counter()
        status, raw = exporter.get("/metrics")
        latencies.append(time.perf_counter() - began)
        assert status == 200
        body = raw.decode()
        for line in body.splitlines():
            if line.startswith("netsnoop_scrape_duration_seconds "):
                read_seconds.append(float(line.split()[1]))
    return ScrapeCost(
        target,
        sample_lines(body),
        len(body.encode()),
        latencies,
        read_seconds,
        process_status(exporter.pid)["VmRSS"],
    )
