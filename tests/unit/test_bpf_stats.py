"""BPF program run stats: parsed from a program FD's fdinfo, exported per program."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from exporter.collectors.base import Collector
from exporter.core.snapshot import MetricFamily
from exporter.kernel.bpf_stats import ProgramRunStats, parse_fdinfo, stats_enabled
from exporter.runtime import program_run_families

# /proc/self/fdinfo/<fd> of a bcc tracepoint program on Linux 6.18, after 3 runs.
PROGRAM_FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t1038
prog_type:\t5
prog_jited:\t1
prog_tag:\t59f4a931744dcdc6
memlock:\t4096
prog_id:\t254
run_time_ns:\t1234567
run_cnt:\t3
recursion_misses:\t0
verified_insns:\t2
"""

# The fdinfo of a plain file: no program fields.
FILE_FDINFO = "pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t7\n"


def test_run_time_and_count_come_from_fdinfo():
    assert parse_fdinfo(PROGRAM_FDINFO) == ProgramRunStats(run_time_ns=1234567, run_count=3)


def test_fdinfo_without_program_fields_gives_none():
    assert parse_fdinfo(FILE_FDINFO) is None
    assert parse_fdinfo("run_time_ns:\tlots\nrun_cnt:\t1\n") is None


def test_stats_enabled_follows_the_sysctl(tmp_path: Path):
    assert not stats_enabled(tmp_path)  # no such file: an old kernel, stats unavailable
    sysctl = tmp_path / "sys/kernel/bpf_stats_enabled"
    sysctl.parent.mkdir(parents=True)
    sysctl.write_text("0\n")
    assert not stats_enabled(tmp_path)
    sysctl.write_text("1\n")
    assert stats_enabled(tmp_path)


class StatsOnlyCollector(Collector):
    """Serves fixed run stats; start and collect are not what these tests are about."""

    def __init__(self, name: str, stats: Mapping[str, ProgramRunStats]) -> None:
        self.name = name
        self.stats = stats

    def start(self) -> None:
        pass

    def collect(self) -> Iterable[MetricFamily]:
        return []

    def program_run_stats(self) -> Mapping[str, ProgramRunStats]:
        return self.stats


def test_families_carry_seconds_and_runs_per_program_summed_across_collectors():
    parsed = parse_fdinfo(PROGRAM_FDINFO)
    assert parsed is not None
    collectors = [
        StatsOnlyCollector("a", {"inet_sock_set_state": parsed, "tcp_send_reset": parsed}),
        StatsOnlyCollector("b", {"inet_sock_set_state": ProgramRunStats(500, 2)}),
    ]
    run_seconds, runs = program_run_families(collectors)
    assert run_seconds.name == "netsnoop_bpf_program_run_seconds"
    assert run_seconds.kind == runs.kind == "counter"
    assert run_seconds.samples == pytest.approx(
        {("inet_sock_set_state",): (1234567 + 500) / 1e9, ("tcp_send_reset",): 1234567 / 1e9}
    )
    assert runs.name == "netsnoop_bpf_program_runs"
    assert runs.samples == {("inet_sock_set_state",): 5, ("tcp_send_reset",): 3}
