"""``netsnoop-exporter top``: parsing, rates and the table, from injected expositions."""

from __future__ import annotations

import io

import pytest

from exporter import top

BEFORE = """\
# TYPE netsnoop_socket_sent_bytes_total counter
netsnoop_socket_sent_bytes_total{protocol="tcp",comm="curl",uid="1000"} 1000.0
netsnoop_socket_sent_bytes_total{protocol="udp",comm="curl",uid="1000"} 24.0
netsnoop_socket_sent_bytes_total{protocol="tcp",comm="nginx",uid="33"} 5000.0
# TYPE netsnoop_tcp_connections_total counter
netsnoop_tcp_connections_total{port="443",comm="curl",uid="1000",result="established"} 3.0
netsnoop_tcp_connections_total{port="23",comm="",uid="",result="refused"} 7.0
# TYPE netsnoop_listen_queue_length gauge
netsnoop_listen_queue_length{port="80",comm="nginx"} 4.0
"""
AFTER = """\
# TYPE netsnoop_socket_sent_bytes_total counter
netsnoop_socket_sent_bytes_total{protocol="tcp",comm="curl",uid="1000"} 3000.0
netsnoop_socket_sent_bytes_total{protocol="udp",comm="curl",uid="1000"} 24.0
netsnoop_socket_sent_bytes_total{protocol="tcp",comm="nginx",uid="33"} 5000.0
# TYPE netsnoop_tcp_connections_total counter
netsnoop_tcp_connections_total{port="443",comm="curl",uid="1000",result="established"} 5.0
netsnoop_tcp_connections_total{port="23",comm="",uid="",result="refused"} 11.0
netsnoop_tcp_connections_total{port="22",comm="ssh",uid="0",result="established"} 1.0
# TYPE netsnoop_listen_queue_length gauge
netsnoop_listen_queue_length{port="80",comm="nginx"} 9.0
"""

PROCESSES, PORTS, DROPS = top.VIEWS


def rows_by_key(view: top.View, sort: int = 0) -> dict[tuple[str, ...], tuple[float, ...]]:
    grown = top.increases(top.parse_exposition(BEFORE), top.parse_exposition(AFTER))
    return {row.key: row.rates for row in top.table(view, grown, 2.0, sort)}


def test_parse_keeps_counters_only():
    samples = top.parse_exposition(AFTER)
    assert {name for name, _ in samples} == {
        "netsnoop_socket_sent_bytes_total",
        "netsnoop_tcp_connections_total",
    }


def test_increases_count_new_series_from_zero_and_survive_a_reset():
    before = {("a_total", ()): 10.0, ("b_total", ()): 50.0}
    after = {("a_total", ()): 12.0, ("b_total", ()): 4.0, ("c_total", ()): 3.0}
    assert top.increases(before, after) == {
        ("a_total", ()): 2.0,
        ("b_total", ()): 4.0,  # went down: the exporter restarted and counts from 0
        ("c_total", ()): 3.0,
    }


def test_process_rates_sum_over_other_labels_per_second():
    rows = rows_by_key(PROCESSES)
    # curl: 2 connections and 2000 bytes in 2 s; its UDP series did not move
    assert rows[("curl", "1000")] == (1.0, 1000.0, 0.0, 0.0, 0.0, 0.0)
    assert rows[("nginx", "33")] == (0.0,) * 6
    assert rows[("ssh", "0")][0] == 0.5
    assert ("", "") not in rows  # refused inbound connections have no process


def test_port_view_splits_results():
    rows = rows_by_key(PORTS)
    assert rows[("23",)][2] == 2.0  # REFUSED/s: 4 in 2 s
    assert rows[("443",)][1] == 1.0  # OUT/s
    assert ("80",) not in rows  # gauges give no rates


def test_sorted_by_the_chosen_column_then_key():
    grown = top.increases(top.parse_exposition(BEFORE), top.parse_exposition(AFTER))
    keys = [row.key[0] for row in top.table(PROCESSES, grown, 2.0, sort=0)]
    assert keys == ["curl", "ssh", "nginx"]
    keys = [row.key[0] for row in top.table(PROCESSES, grown, 2.0, sort=0, reverse=True)]
    assert keys == ["nginx", "ssh", "curl"]


@pytest.mark.parametrize(
    ("rate", "unit", "text"),
    [
        (0, "", "0"),
        (0.25, "", "0.2"),
        (87.4, "", "87"),
        (1234, "", "1.2k"),
        (34e6, "", "34.0M"),
        (2048, "B", "2.0Ki"),
        (3 * 1024**3, "B", "3.0Gi"),
    ],
)
def test_format_rate(rate: float, unit: str, text: str):
    assert top.format_rate(rate, unit) == text


@pytest.mark.parametrize("view", top.VIEWS, ids=lambda view: view.name)
def test_every_line_fits_80_columns(view: top.View):
    row = top.Row(("x" * 60,) * len(view.key_labels), (123456789.0,) * len(view.columns))
    lines = top.render(view, [row], sort=0)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].rstrip("*").endswith(top.column_title(view.columns[-1]))  # none cut off
    assert lines[0].split()[len(view.key_labels)].endswith("*")  # the sort column is marked


def test_batch_prints_one_table_per_iteration(monkeypatch: pytest.MonkeyPatch):
    pages = iter([BEFORE, AFTER, AFTER])
    ticks = iter([0.0, 2.0, 4.0])
    sampler = top.Sampler(lambda: next(pages), clock=lambda: next(ticks))
    monkeypatch.setattr(top.time, "sleep", lambda seconds: None)
    out = io.StringIO()
    top.run_batch(sampler, PROCESSES, 1, False, 2, 1.0, out)
    tables = out.getvalue().strip().split("\n\n")
    assert len(tables) == 2
    first = tables[0].splitlines()
    assert "rates over 2.0s" in first[0]
    assert first[2].split()[:4] == ["curl", "1000", "1.0", "1000"]  # SENT/s sorts first


def test_sort_names_are_checked():
    assert top.sort_index(PORTS, "refused/s") == 2
    assert top.sort_index(PROCESSES, "SENT") == 1
    assert top.sort_index(PROCESSES, "nope") is None


def test_a_wrong_sort_column_exits_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        top.main(["--once", "--sort", "bogus"])
    assert exit_info.value.code == 2
    assert "the processes view has CONN/s, SENT/s" in capsys.readouterr().err


def test_an_unreachable_exporter_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]):
    assert top.main(["--once", "--url", "http://127.0.0.1:1/metrics", "-d", "0.01"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("netsnoop-exporter top: http://127.0.0.1:1/metrics: ")
    assert "\n" not in err


def test_control_characters_in_a_comm_stay_on_their_row():
    row = top.Row(('n6-"q\\\n\x1b[2J', "0"), (1.0,) * 6)
    lines = top.render(PROCESSES, [row], sort=0)
    assert len(lines) == 2 and lines[1].startswith('n6-"q\\??[2J ')
