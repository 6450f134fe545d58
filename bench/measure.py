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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.tracers import Netsnoop, ToolUnavailable
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.bpf_stats import ProgramRunStats, parse_fdinfo

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
# bcc names a program after its C function, cut to BPF_OBJ_NAME_LEN - 1 characters; the
# exporter's functions are all ProgramSpec.function, on_<event>.
OUR_PROGRAM_PREFIX = ProgramSpec("category:").function
STRAY_WAIT_S = 5.0  # for a stopped exporter's programs to leave the kernel
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

    def operations(self, workload: str, seconds: float) -> int:
        """The connections (churn) or datagrams (udp) one run made."""
        return int(self.run(workload, str(seconds))["ops"])


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with fewer than 100 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- 0. no stray exporter ------------------------------------------------------------------


class StrayExporter(Exception):
    """BPF programs named like the exporter's are loaded outside the benchmark's control."""


def loaded_programs_json() -> str:
    return subprocess.run(
        ["bpftool", "-j", "prog", "show"], check=True, capture_output=True, text=True
    ).stdout


Holders = dict[int, list[tuple[str, int]]]  # program id: the (comm, pid) holding its FD


def stray_programs(bpftool_json: str, holders: Holders | None = None, ours: int = 0) -> list[str]:
    """The loaded programs named like netsnoop-exporter's (``bpftool -j prog show``) but those
    held by process ``ours`` alone, each with its holders (bpftool's ``pids``, else
    ``holders``): any of them adds its cost to the overhead a run measures."""
    strays = []
    for program in json.loads(bpftool_json):
        name = program.get("name", "")
        held_by = [(pid["comm"], pid["pid"]) for pid in program.get("pids", [])]
        held_by = held_by or (holders or {}).get(program["id"], [])
        if name.startswith(OUR_PROGRAM_PREFIX) and {pid for _, pid in held_by} != {ours}:
            holding = ", ".join(f"{comm} pid {pid}" for comm, pid in held_by)
            strays.append(
                f"id {program['id']} {name} ({program.get('type', '?')})"
                + (f", held by {holding}" if holding else "")
            )
    return strays


def program_holders() -> Holders:
    """The processes holding each BPF program's FD, from /proc (bpftool lists them only when
    built with its pid iterator)."""
    holders: Holders = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (proc / "comm").read_text().strip()
                for program_id in process_programs(int(proc.name)):
                    holders.setdefault(program_id, []).append((comm, int(proc.name)))
    return holders


def refuse_strays(wait: float = 0.0, ours: int = 0) -> None:
    """Raise StrayExporter if programs of an exporter are loaded other than those of process
    ``ours`` (the one being measured), after waiting up to ``wait`` seconds for the ones of
    an exporter the benchmark just stopped to go."""
    deadline = time.monotonic() + wait
    while True:
        listing = loaded_programs_json()
        if not stray_programs(listing, program_holders() if ours else None, ours):
            return
        if time.monotonic() >= deadline:
            raise StrayExporter(
                "BPF programs named like netsnoop-exporter's are loaded; another exporter would "
                "add its cost to every figure. Stop it, then rerun:\n  "
                + "\n  ".join(stray_programs(listing, program_holders(), ours))
            )
        time.sleep(0.2)


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
                refuse_strays(STRAY_WAIT_S, ours=tool.pid)  # nothing else ran beside it
            finally:
                tool.stop()
            refuse_strays(STRAY_WAIT_S)  # the baseline after it runs with none of ours
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


@dataclass
class WorkloadCost:
    """What one tool's BPF programs cost the kernel over one workload run, and the tool's own
    CPU meanwhile."""

    tool: str
    workload: str
    operations: int  # connections (churn) or datagrams (udp) the workload made
    programs: list[ProgramCost]
    cpu_share: float  # the tool's CPU seconds per second of the run (1.0 = one core)

    @property
    def runs(self) -> int:
        return sum(program.runs for program in self.programs)

    @property
    def ns_per_operation(self) -> float | None:
        """Kernel time of all the tool's programs per connection or datagram: the programs
        see every event on the machine, so other traffic meanwhile adds to it."""
        total = sum(program.run_time_ns for program in self.programs)
        return total / self.operations if self.operations else None


def netsnoop_workload_cost(
    exporter: Netsnoop, load: Load, workload: str, seconds: float
) -> WorkloadCost:
    """The exporter's program costs (its own self-metrics) and CPU over one workload run."""
    before = exporter.metrics()
    cpu_before = cpu_seconds(exporter.pid)
    made = load.operations(workload, seconds)
    cpu_share = (cpu_seconds(exporter.pid) - cpu_before) / seconds
    costs = netsnoop_program_costs(before, exporter.metrics())
    return WorkloadCost(exporter.name, workload, made, costs, cpu_share)


def bpftool_names() -> dict[int, str]:
    return {
        program["id"]: program.get("name", "") for program in json.loads(loaded_programs_json())
    }


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


def peer_workload_cost(tool, load: Load, workload: str, seconds: float) -> WorkloadCost:
    """A peer's per-program run time and count deltas over one workload run, from the fdinfo
    of the program FDs its process holds, and its CPU meanwhile."""
    tool.start()
    try:
        before, cpu_before = process_programs(tool.pid), cpu_seconds(tool.pid)
        made = load.operations(workload, seconds)
        after, cpu_after = process_programs(tool.pid), cpu_seconds(tool.pid)
        names = bpftool_names()  # while the programs are still loaded
    finally:
        tool.stop()
    costs = [
        ProgramCost(
            tool.name,
            names.get(program_id) or str(program_id),
            stats.run_count - before[program_id].run_count,
            stats.run_time_ns - before[program_id].run_time_ns,
        )
        for program_id, stats in sorted(after.items())
        if program_id in before
    ]
    return WorkloadCost(tool.name, workload, made, costs, (cpu_after - cpu_before) / seconds)


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
    churn_seconds: float
    bcc_import_rss: int
    costs: list[WorkloadCost]  # the churn the steady RSS follows, then a udp run


def footprint_and_costs(load: Load, churn_seconds: float, udp_seconds: float) -> Footprint:
    """A fresh exporter with the bundled default config and bpf_stats on: time to /healthz,
    RSS after start, then the churn for ``churn_seconds`` (scraped every second) and RSS, CPU
    and per-program cost over it, then the same costs over a udp run."""
    refuse_strays(STRAY_WAIT_S)
    exporter = Netsnoop()  # no config file: the exporter's default, config/netsnoop.yaml
    with bpf_stats_on():
        exporter.start()
        try:
            started = process_status(exporter.pid)
            churn = netsnoop_workload_cost(exporter, load, "churn", churn_seconds)
            steady = process_status(exporter.pid)
            udp = netsnoop_workload_cost(exporter, load, "udp", udp_seconds)
            refuse_strays(STRAY_WAIT_S, ours=exporter.pid)
        finally:
            exporter.stop()
    return Footprint(
        exporter.startup_seconds,
        started,
        steady,
        churn_seconds,
        bcc_import_rss(),
        [churn, udp],
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
    refuse_strays(STRAY_WAIT_S)
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
            refuse_strays(STRAY_WAIT_S, ours=exporter.pid)
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
