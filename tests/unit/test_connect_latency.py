"""The connect-time histogram: kernel bucket expression, the family, and its exposition."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.tcp_connect_latency import (
    BOUNDS_S,
    SUM_SLOT,
    bucket_of,
    duration_family,
    le_label,
)
from exporter.core.snapshot import histogram_series
from exporter.outputs.prometheus import TextEncoder


def kernel_bucket(ns: int) -> int:
    """Evaluates the generated C expression the way the compiler would."""
    python = re.sub(r"(\d+)ULL", r"\1", bucket_of(BOUNDS_S).replace("(ns)", str(ns)))
    python = re.sub(r"\(([^()?]+) \? (\d+) : ", r"(\2 if \1 else ", python)
    while "?" in python:
        python = re.sub(r"\(([^()?]+) \? (\d+) : ", r"(\2 if \1 else ", python)
    return eval(python)


@pytest.mark.parametrize(
    ("ns", "le"),
    [
        (1, "5e-05"),
        (50_000, "5e-05"),
        (50_001, "0.0001"),
        (999_999_999, "1.0"),
        (1_000_000_000, "1.0"),
        (1_000_000_001, "2.5"),
        (30_000_000_000, "30.0"),
        (30_000_000_001, "+Inf"),
    ],
)
def test_kernel_bucket_is_the_first_bound_not_exceeded(ns: int, le: str):
    assert le_label(kernel_bucket(ns)) == le


def test_bounds_cover_50us_to_30s():
    assert BOUNDS_S[0] == 0.00005 and BOUNDS_S[-1] == 30.0
    assert list(BOUNDS_S) == sorted(BOUNDS_S)


def counts():
    one_s = BOUNDS_S.index(2.5)  # (1, 2.5]
    return [
        ((443, b"curl", one_s, 0), 2),
        ((443, b"curl", SUM_SLOT, 0), 2_100_000_000),
        ((443, b"wget", 0, 0), 1),
        ((443, b"wget", SUM_SLOT, 0), 40_000),
        ((443, b"wget", 999, 0), 5),  # not a slot: skipped
    ]


def test_family_with_port_only_merges_processes():
    family = duration_family(counts(), ["port"])
    assert family.kind == "histogram" and family.label_names == ("port", "comm", "le")
    [series] = histogram_series(family)
    assert series.labels == ("443", "")
    assert series.count == 3 and series.sum == pytest.approx(2.10004)
    buckets = dict(series.buckets)
    assert buckets["5e-05"] == 1 and buckets["1.0"] == 1 and buckets["2.5"] == 3
    assert [le for le, _ in series.buckets] == [le_label(i) for i in range(len(BOUNDS_S) + 1)]


def test_exposition_is_a_prometheus_histogram():
    family = duration_family(counts(), ["port", "comm"])
    parsed = {
        f.name: f for f in text_string_to_metric_families(TextEncoder().encode([family]).decode())
    }
    histogram = parsed["netsnoop_tcp_connect_duration_seconds"]
    assert histogram.type == "histogram"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in histogram.samples}
    curl = (("comm", "curl"), ("port", "443"))
    assert samples[("netsnoop_tcp_connect_duration_seconds_count", curl)] == 2
    assert samples[("netsnoop_tcp_connect_duration_seconds_sum", curl)] == pytest.approx(2.1)
    le = lambda v: tuple(sorted((*curl, ("le", v))))  # noqa: E731
    assert samples[("netsnoop_tcp_connect_duration_seconds_bucket", le("1.0"))] == 0
    assert samples[("netsnoop_tcp_connect_duration_seconds_bucket", le("2.5"))] == 2
    assert samples[("netsnoop_tcp_connect_duration_seconds_bucket", le("+Inf"))] == 2
