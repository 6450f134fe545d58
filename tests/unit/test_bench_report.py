"""The benchmark's pure parts: the stray-exporter check on bpftool's JSON, the targets and
their verdicts, and the kernel cost per connection or datagram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import measure, report
from bench.measure import Footprint, Overhead, OverheadRun, ProgramCost, ScrapeCost, WorkloadCost

MB = report.MB

# What `bpftool -j prog show` lists while an exporter, bpftrace and tcplife run (trimmed).
BPFTOOL_JSON = json.dumps(
    [
        {
            "id": 41,
            "type": "tracepoint",
            "name": "on_inet_sock_se",
            "pids": [{"pid": 4242, "comm": "python"}],
        },
        {"id": 42, "type": "tracepoint", "name": "on_sys_enter_se", "pids": []},
        {"id": 50, "type": "tracepoint", "name": "inet_sock_set_s"},  # bpftrace
        {"id": 51, "type": "tracepoint", "name": "tracepoint__soc"},  # tcplife
        {"id": 52, "type": "tracing", "name": "dump_bpf_prog"},  # bpftool's own iterator
        {"id": 53, "type": "cgroup_skb"},  # systemd's, without a name
    ]
)


def test_stray_programs_are_the_ones_named_like_the_exporters_with_their_holders() -> None:
    assert measure.stray_programs(BPFTOOL_JSON) == [
        "id 41 on_inet_sock_se (tracepoint), held by python pid 4242",
        "id 42 on_sys_enter_se (tracepoint)",
    ]


def test_holders_from_proc_fill_in_where_bpftool_lists_no_pids() -> None:
    found = {41: [("other", 1)], 42: [("python", 17918)]}
    assert measure.stray_programs(BPFTOOL_JSON, found) == [
        "id 41 on_inet_sock_se (tracepoint), held by python pid 4242",
        "id 42 on_sys_enter_se (tracepoint), held by python pid 17918",
    ]


def test_the_measured_exporters_own_programs_are_not_strays() -> None:
    held = {42: [("python", 4242)]}
    assert measure.stray_programs(BPFTOOL_JSON, held, ours=4242) == []
    assert measure.stray_programs(BPFTOOL_JSON, {42: [("python", 7)]}, ours=4242) == [
        "id 42 on_sys_enter_se (tracepoint), held by python pid 7"
    ]
    shared = {42: [("python", 4242), ("python", 7)]}  # also held elsewhere: not only ours
    assert len(measure.stray_programs(BPFTOOL_JSON, shared, ours=4242)) == 1


def test_refuse_strays_beside_the_measured_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "loaded_programs_json", lambda: BPFTOOL_JSON)
    monkeypatch.setattr(measure, "program_holders", lambda: {42: [("python", 4242)]})
    measure.refuse_strays(ours=4242)
    with pytest.raises(measure.StrayExporter, match="id 42 on_sys_enter_se"):
        measure.refuse_strays(ours=99)


def test_peers_and_other_programs_are_not_strays() -> None:
    others = [p for p in json.loads(BPFTOOL_JSON) if not p.get("name", "").startswith("on_")]
    assert measure.stray_programs(json.dumps(others)) == []
    assert measure.stray_programs("[]") == []


def test_the_prefix_is_the_exporters_function_naming() -> None:
    from exporter.kernel.bpf import ProgramSpec

    bcc_name = ProgramSpec("sock:inet_sock_set_state").function[:15]  # BPF_OBJ_NAME_LEN - 1
    assert measure.stray_programs(json.dumps([{"id": 1, "name": bcc_name}]))


def test_refuse_strays_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "loaded_programs_json", lambda: BPFTOOL_JSON)
    monkeypatch.setattr(measure, "program_holders", lambda: {42: [("python", 17918)]})
    with pytest.raises(measure.StrayExporter) as raised:
        measure.refuse_strays()
    assert "id 41 on_inet_sock_se (tracepoint), held by python pid 4242" in str(raised.value)
    assert "id 42 on_sys_enter_se (tracepoint), held by python pid 17918" in str(raised.value)
    assert "inet_sock_set_s" not in str(raised.value)


def test_refuse_strays_waits_for_a_stopped_exporters_programs_to_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listings = iter([BPFTOOL_JSON, BPFTOOL_JSON, "[]"])
    monkeypatch.setattr(measure, "loaded_programs_json", lambda: next(listings))
    monkeypatch.setattr(measure.time, "sleep", lambda seconds: None)
    measure.refuse_strays(wait=60.0)
    assert next(listings, None) is None  # asked until the listing came back clean


def test_refuse_strays_passes_with_none_of_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    others = [p for p in json.loads(BPFTOOL_JSON) if p["id"] >= 50]
    monkeypatch.setattr(measure, "loaded_programs_json", lambda: json.dumps(others))
    measure.refuse_strays()


def cost(tool: str, workload: str, operations: int, *programs: tuple[str, int, int]):
    return WorkloadCost(
        tool,
        workload,
        operations,
        [ProgramCost(tool, name, runs, ns) for name, runs, ns in programs],
        0.025,
    )


def test_cost_per_operation_sums_every_program_of_the_tool() -> None:
    churn = cost("netsnoop-exporter", "churn", 1_000, ("a", 10_000, 2_000_000), ("b", 0, 0))
    churn.programs.append(ProgramCost("netsnoop-exporter", "c", 2_000, 500_000))
    assert churn.runs == 12_000
    assert churn.ns_per_operation == pytest.approx(2_500)
    assert cost("x", "udp", 0, ("a", 5, 100)).ns_per_operation is None


def test_per_operation_table_compares_the_tools() -> None:
    lines = report.per_operation_table(
        [
            cost("netsnoop-exporter", "churn", 2_000, ("a", 20_000, 6_000_000)),
            cost("netsnoop-exporter", "udp", 100_000, ("b", 500_000, 90_000_000)),
            cost("bpftrace", "churn", 4_000, ("inet_sock_set_s", 8_000, 1_600_000)),
            cost("tcplife", "churn", 0),
        ]
    )
    assert lines[2] == (
        "| netsnoop-exporter | churn | 2,000 connections | 20,000 | **3,000 ns** per "
        "connection | 2.5% of one core |"
    )
    assert "| 100,000 datagrams | 500,000 | **900 ns** per datagram |" in lines[3]
    assert "| bpftrace | churn | 4,000 connections | 8,000 | **400 ns** per connection" in lines[4]
    assert lines[5] == "| tcplife | churn | no connections | 0 | | |"


def test_cost_table_has_a_column_group_per_workload() -> None:
    lines = report.cost_table(
        [
            cost("netsnoop-exporter", "churn", 1_000, ("a", 10_000, 2_000_000), ("b", 0, 0)),
            cost("netsnoop-exporter", "udp", 4_000, ("a", 8_000, 800_000)),
            cost("bpftrace", "churn", 2_000, ("inet_sock_set_s", 2_000, 300_000)),
        ]
    )
    assert lines[0] == (
        "| Tool | Program | churn: runs | ns per run | ns per connection |"
        " udp: runs | ns per run | ns per datagram |"
    )
    assert lines[2] == "| netsnoop-exporter | a | 10,000 | 200 | 2,000 | 8,000 | 100 | 200 |"
    assert lines[3] == "| netsnoop-exporter | b | 0 | - | 0 | | | |"
    assert lines[4] == "| bpftrace | inet_sock_set_s | 2,000 | 150 | 150 | | | |"
    assert {line.count("|") for line in lines} == {9}


def results(**changes) -> report.Results:
    overhead = [
        OverheadRun(
            "churn",
            [100.0],
            [
                Overhead("churn", "netsnoop-exporter", [0.96], [96.0]),
                Overhead("churn", "bpftrace", [0.5], [50.0]),
            ],
        ),
        OverheadRun("udp", [100.0], [Overhead("udp", "netsnoop-exporter", [0.80], [80.0])]),
    ]
    status = {"VmRSS": 100 * MB, "VmHWM": 190 * MB, "RssAnon": 40 * MB, "RssFile": 60 * MB}
    footprint = Footprint(1.2, status, status, 15.0, 75 * MB, [cost("n", "churn", 10)])
    scrapes = [ScrapeCost(10_000, 10_100, 1, [0.050, 0.055, 0.070], [0.04], 170 * MB)]
    fields = {
        "command": "bench/run.sh",
        "load_average": (0.5, 1.25),
        "seconds_per_run": 3.0,
        "rounds": 1,
        "overhead": overhead,
        "footprint": footprint,
        "scrapes": scrapes,
        "peer_costs": [],
    }
    return report.Results(**{**fields, **changes})


def test_targets_are_the_issues() -> None:
    texts = {key: target.text for key, target in report.TARGETS.items()}
    assert texts == {
        "churn": ">= 0.95",
        "udp": ">= 0.90",
        "bulk": ">= 0.99",
        "rss_steady": "< 110 MB",
        "rss_peak": "< 180 MB",
        "startup": "< 1.5 s",
        "scrape_10k": "< 60 ms",
        "scrape_100k": "< 500 ms",
    }


def test_targets_table_judges_each_figure_or_says_it_was_not_measured() -> None:
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.targets_table(results())}
    assert rows["Churn ratio"] == "| Churn ratio | >= 0.95 | 0.960 | met |"
    assert rows["UDP send ratio"] == "| UDP send ratio | >= 0.90 | 0.800 | missed by 11.1% |"
    assert rows["Bulk ratio"] == "| Bulk ratio | >= 0.99 | not measured | |"
    assert rows["RSS steady"] == "| RSS steady | < 110 MB | 100 MB | met |"
    assert rows["Peak RSS (VmHWM)"] == "| Peak RSS (VmHWM) | < 180 MB | 190 MB | missed by 5.6% |"
    assert rows["Start to `/healthz` 200"].endswith("| 1.20 s | met |")
    assert rows["10k-series scrape, median"].endswith("| < 60 ms | 55.0 ms | met |")
    assert rows["100k-series scrape, p99"].endswith("| < 500 ms | not measured | |")


def test_without_footprint_its_targets_are_not_measured() -> None:
    lines = report.targets_table(results(footprint=None))
    assert sum("not measured" in line for line in lines) == 5  # RSS x2, start; bulk, 100k


def test_overhead_rows_carry_the_verdict_of_netsnoop_only() -> None:
    lines = report.overhead_table(results().overhead)
    assert lines[2].endswith("| >= 0.95: met |")
    assert lines[3].endswith("|  |")  # bpftrace: no target of its own
    assert lines[4].endswith("| >= 0.90: missed by 11.1% |")


def test_run_line_names_the_machine_load_at_start_and_end() -> None:
    line = report.run_line((0.5, 1.25))
    assert "1-min load average 0.50 at the start, 1.25 at the end" in line


def test_the_report_opens_with_the_targets_and_judges_the_scrape_in_its_section(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    text = report.write(results(), tmp_path).read_text()
    assert "1-min load average 0.50 at the start, 1.25 at the end" in text
    assert text.index("## Targets") < text.index("## Overhead on the traced workload")
    assert "| Churn ratio | >= 0.95 | 0.960 | met |" in text
    assert "the slowest). 10k-series scrape, median < 60 ms: met.\n" in text
    assert "| n | churn | 10 connections | 0 | **0 ns** per connection |" in text
