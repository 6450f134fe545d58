"""A collector declared in a test directory, run by the real exporter: its flag turns it on,
its metric is served next to its netsnoop_scrape_collector_* series."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, ExporterProcess, value

pytestmark = pytest.mark.root

THROWAWAY = str(REPO / "tests" / "data" / "collectors" / "throwaway.py")
NO_BUILT_IN = tuple(
    f"--no-collector.{name}"
    for name in (
        "tcp_connections",
        "socket_traffic",
        "udp_sends",
        "packet_drops",
        "udp_unreachable",
        "listen_queue",
        "tcp_retransmits",
        "tcp_resets",
        "tcp_connect_latency",
    )
)


def run(tmp_path, config: str, *flags: str, log: list[str] | None = None) -> dict:
    process = ExporterProcess(config, tmp_path, (*NO_BUILT_IN, *flags), entry=(THROWAWAY,))
    try:
        process.wait_ready()
        return process.scrape()
    finally:
        assert process.stop() == 0
        if log is not None:
            log.append(process.log())


def test_the_flag_turns_on_a_collector_registered_elsewhere(tmp_path):
    series = run(tmp_path, "collectors: {throwaway: {answer: 7}}", "--collector.throwaway")
    assert value(series, "netsnoop_throwaway_answer", source="config") == 7
    assert value(series, "netsnoop_scrape_collector_success", collector="throwaway") == 1
    assert (
        "netsnoop_scrape_collector_duration_seconds",
        frozenset({("collector", "throwaway")}),
    ) in (series)
    # the flags turned every built-in collector off: none is read, the watch has no source
    assert {
        dict(labels)["collector"]
        for name, labels in series
        if name.startswith("netsnoop_scrape_collector_success")
    } == {"throwaway"}


def test_the_no_flag_wins_over_the_config_file(tmp_path):
    series = run(tmp_path, "collectors: {throwaway: {enabled: true}}", "--no-collector.throwaway")
    assert not [name for name, _ in series if name == "netsnoop_throwaway_answer"]
    assert value(series, "netsnoop_build_info") == 1


def beside_two_healthy(tmp_path, broken: str) -> tuple[dict, str]:
    """The series and the log of an exporter running ``broken`` with two collectors that share
    its tracepoint (sock:inet_sock_set_state)."""
    log: list[str] = []
    series = run(
        tmp_path,
        "",
        f"--collector.{broken}",
        "--collector.tcp_connections",
        "--collector.tcp_retransmits",
        log=log,
    )
    return series, log[0]


def state_program_attached(series: dict, collector: str) -> float:
    return value(
        series,
        "netsnoop_bpf_program_attached",
        collector=collector,
        program="inet_sock_set_state",
    )


def test_a_collector_that_does_not_compile_disables_only_itself(tmp_path):
    """All collectors compile as one module; when that fails, each is compiled alone."""
    series, log = beside_two_healthy(tmp_path, "broken_bpf")
    assert value(series, "netsnoop_scrape_collector_success", collector="broken_bpf") == 0
    for healthy in ("tcp_connections", "tcp_retransmits"):
        assert value(series, "netsnoop_scrape_collector_success", collector=healthy) == 1
        assert state_program_attached(series, healthy) == 1
    assert "compiling each alone" in log
    assert "collector broken_bpf disabled" in log and "no_such_variable" in log


def test_a_handler_the_verifier_refuses_disables_only_its_collector(tmp_path):
    """It shares one program per tracepoint with the others; refused, they are compiled apart."""
    series, log = beside_two_healthy(tmp_path, "refused_bpf")
    assert state_program_attached(series, "refused_bpf") == 0
    assert state_program_attached(series, "tcp_connections") == 1
    assert state_program_attached(series, "tcp_retransmits") == 1
    assert "shared by several collectors, did not attach: compiling each alone" in log
