"""``python -m bench``: measure, then write docs/benchmarks.md and its plots.

Needs root (BPF, network namespaces, the bpf_stats sysctl), gcc, and for the peers Debian's
bpfcc-tools and bpftrace; bench/run.sh installs them and runs this.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path

from bench import measure, report
from bench.tracers import Netsnoop, ToolUnavailable, bcc_tool, bpftrace_counter

log = logging.getLogger("bench")

PEERS = ("tcpconnect", "tcplife", "bpftrace")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.Path("docs"), help="report directory")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each workload run")
    parser.add_argument("--rounds", type=int, default=5, help="traced runs per tool and workload")
    parser.add_argument("--workloads", default="churn,udp,bulk", help="comma-separated")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated of {PEERS}, or none"
    )
    parser.add_argument("--series", default="1000,10000,100000", help="scrape-cost levels")
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes per series level")
    parser.add_argument(
        "--steady-seconds", type=float, default=15.0, help="churn before the steady RSS"
    )
    return parser.parse_args(argv)


def peer_tools(names: list[str], scratch: Path) -> tuple[list, list[str]]:
    """The peers that can run here, and why the others cannot."""
    tools, problems = [], []
    for name in names:
        try:
            tools.append(bpftrace_counter() if name == "bpftrace" else bcc_tool(name, scratch))
        except ToolUnavailable as error:
            log.warning("%s unavailable: %s", name, error)
            problems.append(f"{name}: {str(error).split(' | ')[-1]}")  # the final error line
    return tools, problems


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    args = parse_args(argv)
    args.command = shlex.join(["bench/run.sh", *(sys.argv[1:] if argv is None else argv)])
    try:
        measure.refuse_strays(measure.STRAY_WAIT_S)  # before the peers' slow compiles
        workdir = Path(tempfile.mkdtemp(prefix="netsnoop-bench-"))
        load = measure.Load(workdir)
        peer_names = [name for name in args.peers.split(",") if name and name != "none"]
        peers, unavailable = peer_tools(peer_names, workdir)
        results = measure_all(args, load, peers, unavailable)
    except measure.StrayExporter as error:
        log.error("refusing to measure: %s", error)
        return 2
    written = report.write(results, args.out)
    print(written.read_text())
    log.info("wrote %s", written)
    return 0


def measure_all(
    args: argparse.Namespace, load: measure.Load, peers: list, unavailable: list[str]
) -> report.Results:
    """Every measurement of the report, in order, with the machine's load around them; each
    checks that no exporter of ours is loaded before it starts one (measure.StrayExporter)."""
    load_at_start = os.getloadavg()[0]
    overhead = []
    for workload in [name for name in args.workloads.split(",") if name]:
        tools = [Netsnoop(), *peers] if workload == "churn" else [Netsnoop()]
        overhead.append(measure.interleaved(load, workload, tools, args.rounds, args.seconds))
    for problem in unavailable:  # shown as rows of the churn table
        name, _, reason = problem.partition(": ")
        for run in overhead:
            if run.workload == "churn":
                run.tools.append(measure.Overhead("churn", name, note=f"not run: {reason}"))

    footprint = measure.footprint_and_costs(load, args.steady_seconds, args.seconds)
    with measure.bpf_stats_on():
        peer_costs = [
            measure.peer_workload_cost(peer, load, "churn", args.seconds) for peer in peers
        ]
    levels = [int(level) for level in args.series.split(",") if level]
    scrapes = measure.scrape_costs(load, levels, args.scrapes) if levels else []
    return report.Results(
        args.command,
        (load_at_start, os.getloadavg()[0]),
        args.seconds,
        args.rounds,
        overhead,
        footprint,
        scrapes,
        peer_costs,
    )


if __name__ == "__main__":
    sys.exit(main())
