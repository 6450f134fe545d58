"""The benchmark harness, in miniature: it runs end to end and writes its table and plots.

A smoke test only: runs of a fraction of a second on a shared machine say nothing about speed,
so no figure is checked, only that each section was measured and reported. Needs root and BPF
(marked ``root``); the peers (bpfcc-tools, bpftrace) are left out, they are bench/run.sh's
to install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]

BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_bench_writes_its_table_and_plots(tmp_path: Path):
    sysctl_before = BPF_STATS_SYSCTL.read_text()
    args = ["--out", str(tmp_path), "--seconds", "0.3", "--rounds", "1", "--peers", "none"]
    args += ["--series", "100", "--scrapes", "3", "--steady-seconds", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert BPF_STATS_SYSCTL.read_text() == sysctl_before

    report = (tmp_path / "benchmarks.md").read_text()
    rows = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row] for row in rows]
    for workload in ("churn", "udp", "bulk"):
        assert [workload, "netsnoop-exporter"] in [row[:2] for row in cells], workload
    assert any(row[:2] == ["netsnoop-exporter", "inet_sock_set_state"] for row in cells)
    for workload, operation in (("churn", "per connection"), ("udp", "per datagram")):
        row = next(row for row in cells if row[:2] == ["netsnoop-exporter", workload])
        assert row[4].endswith(f" ns** {operation}"), row  # the summed kernel cost line
    assert any(row[0] == "100" for row in cells), "the scrape-cost row for 100 series"
    assert "RSS after start" in report and "`/healthz` 200" in report
    targets = {row[0]: row for row in cells if len(row) == 4 and row[1][:1] in "<>"}
    assert len(targets) == 8 and targets["RSS steady"][1] == "< 110 MB", targets
    assert "1-min load average" in report
    assert "bench/run.sh --out" in report, "the exact command"
    for plot in ("benchmarks-throughput.png", "benchmarks-scrape.png"):
        assert (tmp_path / plot).read_bytes().startswith(PNG_SIGNATURE), plot
