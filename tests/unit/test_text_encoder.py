"""The text encoder's line cache: the same bytes as a fresh encode, and no series it keeps that
the snapshot no longer has."""

from __future__ import annotations

from exporter.prometheus import TextEncoder
from exporter.snapshot import MetricFamily

HOSTILE = 'q"b\\s\nx'

# What the encoder wrote before it kept lines between scrapes, for varied() below.
EXPECTED = (
    b"# HELP netsnoop_demo_total help with \\\\ and\\nnewline\n"
    b"# TYPE netsnoop_demo_total counter\n"
    b'netsnoop_demo_total{comm="q\\"b\\\\s\\nx",port="22"} 3.0\n'
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


def varied(zero: float = -0.0, plain: float = 1e21) -> list[MetricFamily]:
    counter = MetricFamily(
        "netsnoop_demo", "counter", "help with \\ and\nnewline", ("comm", "port"), unit="seconds"
    )
    counter.set((HOSTILE, "22"), 3)
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
    changed = varied(zero=0.0, plain=2.5)  # -0.0 -> 0.0 compare equal but print apart
    assert encoder.encode(changed) == TextEncoder().encode(changed)
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
