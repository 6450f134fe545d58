"""The encoders' line cache: the same bytes as a fresh encode (and, for OpenMetrics, as
prometheus_client's encoder), and no series it keeps that the snapshot no longer has."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import choose_encoder

from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.outputs.prometheus import Exposition, TextEncoder

HOSTILE = 'q"b\\s\nx} 1'

# What the encoder wrote before it kept lines between scrapes, for varied() below.
EXPECTED = (
    b"# HELP netsnoop_demo_total help with \\\\ and\\nnewline\n"
    b"# TYPE netsnoop_demo_total counter\n"
    b'netsnoop_demo_total{comm="q\\"b\\\\s\\nx} 1",port="22"} 3.0\n'
    b'netsnoop_demo_total{comm="plain",port="other"} 1e+21\n'
    b'netsnoop_demo_total{comm="nan",port="1"} NaN\n'
    b'netsnoop_demo_total{comm="zero",port="2"} -0.0\n'
    b"# HELP netsnoop_gauge g\n"
    b"# TYPE netsnoop_gauge gauge\n"
    b"netsnoop_gauge +Inf\n"
    b"# HELP netsnoop_neg n\n"
    b"# TYPE netsnoop_neg gauge\n"
    b'netsnoop_neg{x="a"} -Inf\n'
    b'netsnoop_neg{x="b"} 0.25\n'
    b"# HELP netsnoop_lat_seconds h\n"
    b"# TYPE netsnoop_lat_seconds histogram\n"
    b'netsnoop_lat_seconds_bucket{comm="a\\"\\\\",le="0.001"} 2.0\n'
    b'netsnoop_lat_seconds_bucket{comm="a\\"\\\\",le="0.1"} 2.0\n'
    b'netsnoop_lat_seconds_bucket{comm="a\\"\\\\",le="+Inf"} 3.0\n'
    b'netsnoop_lat_seconds_sum{comm="a\\"\\\\"} 0.5\n'
    b'netsnoop_lat_seconds_count{comm="a\\"\\\\"} 3.0\n'
)


def varied(zero: float = -0.0, plain: float = 1e21, hostile: float = 3) -> list[MetricFamily]:
    counter = MetricFamily(
        "netsnoop_demo", "counter", "help with \\ and\nnewline", ("comm", "port"), unit="seconds"
    )
    counter.set((HOSTILE, "22"), hostile)
    counter.set(("plain", "other"), plain)
    counter.set(("nan", "1"), float("nan"))
    counter.set(("zero", "2"), zero)
    gauge = MetricFamily("netsnoop_gauge", "gauge", "g", ())
    gauge.set((), float("inf"))
    negative = MetricFamily("netsnoop_neg", "gauge", "n", ("x",))
    negative.set(("a",), float("-inf"))
    negative.set(("b",), 0.25)
    histogram = MetricFamily(
        "netsnoop_lat_seconds",
        "histogram",
        "h",
        ("comm", "le"),
        buckets=("0.001", "0.1", "+Inf"),
    )
    histogram.set(('a"\\', "0.001"), 2)
    histogram.set(('a"\\', "+Inf"), 1)
    histogram.set(('a"\\', "sum"), 0.5)
    return [counter, gauge, negative, histogram]


def test_cached_lines_give_the_same_bytes_as_a_fresh_encode():
    encoder = TextEncoder()
    assert encoder.encode(varied()) == EXPECTED
    assert encoder.encode(varied()) == EXPECTED  # every line from the cache
    changed = varied(zero=0.0, plain=2.5, hostile=4)  # -0.0 -> 0.0: equal, printed apart
    assert encoder.encode(changed) == TextEncoder().encode(changed)
    assert b'{comm="q\\"b\\\\s\\nx} 1",port="22"} 4.0\n' in encoder.encode(changed)
    assert b'comm="zero",port="2"} 0.0\n' in encoder.encode(changed)
    assert b'comm="plain",port="other"} 2.5\n' in encoder.encode(changed)
    assert encoder.encode(varied()) == EXPECTED


def test_a_series_or_family_that_leaves_the_snapshot_leaves_the_cache():
    encoder = TextEncoder()
    families = varied()
    encoder.encode(families)
    counter, histogram = families[0], families[3]
    del counter.samples[(HOSTILE, "22")]
    histogram.samples = {}
    body = encoder.encode([counter, histogram])
    assert HOSTILE.encode() not in body and b"netsnoop_neg" not in body
    cached = {labels for lines in encoder._lines.values() for labels in lines}
    assert cached == set(counter.samples)
    assert not any(encoder._histogram_labels.values())
    counter.set((HOSTILE, "22"), 3)  # back, at the end of the family
    assert encoder.encode([counter]) == TextEncoder().encode([counter])


def openmetrics_varied(value: float = 3.0, created: float = 1.5e9) -> list[MetricFamily]:
    """Labels that sort apart from their declared order, around le too; units on and off the
    name; created times given and not; Go's float forms (exponents, NaN, infinities)."""
    counter = MetricFamily(
        "netsnoop_run_seconds", "counter", 'help "quoted" \\ and\nnewline', ("z", "a")
    )
    counter.unit = "seconds"
    counter.set((HOSTILE, "22"), value)
    counter.set(("plain", "other"), 1e21)
    counter.set(("big", "1"), 1234567.0)
    counter.set(("nan", "2"), float("nan"))
    counter.created[(HOSTILE, "22")] = created
    suffixed = MetricFamily("netsnoop_bytes", "gauge", "g", ("port",), unit="octets")
    suffixed.set(("1",), -0.0)
    suffixed.set(("2",), float("-inf"))
    plain = MetricFamily("netsnoop_plain", "counter", "p", ())
    plain.set((), 7)
    histogram = MetricFamily(
        "netsnoop_lat_seconds",
        "histogram",
        "h",
        ("port", "comm", "le"),
        unit="seconds",
        buckets=("0.001", "0.1", "+Inf"),
    )
    histogram.set(("22", 'a"\\', "0.001"), 2)
    histogram.set(("22", 'a"\\', "+Inf"), 1)
    histogram.set(("22", 'a"\\', "sum"), 0.5)
    unlabelled = MetricFamily("netsnoop_wait_seconds", "histogram", "w", ("le",), buckets=("1",))
    unlabelled.set(("1",), 4)
    return [counter, suffixed, plain, histogram, unlabelled]


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text",
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
        "application/openmetrics-text;version=1.0.0;escaping=underscores",
        "application/openmetrics-text;version=1.0.0;escaping=dots",  # prometheus_client's
    ],
)
def test_openmetrics_is_prometheus_clients_bytes_cached_or_not(accept):
    families = openmetrics_varied()
    source = SnapshotSource(lambda: families)
    exposition = Exposition(source, process_metrics=False)
    expected, content_type = choose_encoder(accept)
    # cold, every line cached, one value changed, one created time changed (a series reborn)
    for value, created in ((3.0, 1.5e9), (3.0, 1.5e9), (4.0, 1.5e9), (4.0, 1.7e9 + 0.5)):
        families[:] = openmetrics_varied(value, created)
        body, served_type = exposition.render(accept)
        assert served_type == content_type
        assert body == expected(exposition.openmetrics_registry)
    assert body.endswith(b"# EOF\n") and b"# UNIT netsnoop_" in body
    assert bool(exposition.openmetrics._lines) == ("dots" not in accept)  # written directly
