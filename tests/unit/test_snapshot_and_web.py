from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.outputs.prometheus import Exposition, TextEncoder
from exporter.outputs.web import ExporterServer, ListenAddressError, parse_listen_address


def test_concurrent_requests_share_one_read():
    reads = []
    gate = threading.Event()

    def read():
        reads.append(1)
        gate.wait(2)
        return [MetricFamily("netsnoop_x", "gauge", "x", (), {(): len(reads)})]

    source = SnapshotSource(read)
    results = []
    threads = [threading.Thread(target=lambda: results.append(source.current())) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join()
    assert len(reads) == 1
    assert {id(r) for r in results} == {id(results[0])}


@pytest.mark.parametrize(
    ("address", "parsed"),
    [(":19435", ("", 19435)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9", ("::1", 9))],
)
def test_listen_addresses(address, parsed):
    assert parse_listen_address(address) == parsed


@pytest.mark.parametrize("address", ["19435", "host:", "h:99999", "h:x"])
def test_bad_listen_addresses(address):
    with pytest.raises(ListenAddressError):
        parse_listen_address(address)


def test_server_pages_and_exposition():
    family = MetricFamily("netsnoop_demo", "counter", "demo", ("port",))
    family.add(("23",), 2)
    ready = threading.Event()
    server = ExporterServer(
        [("127.0.0.1", 0)], Exposition(SnapshotSource(lambda: [family])), "/metrics", ready
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/healthz")
        assert not_ready.value.code == 503
        ready.set()
        assert urllib.request.urlopen(base + "/healthz").status == 200
        assert b'href="/metrics"' in urllib.request.urlopen(base + "/").read()
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["netsnoop_demo"].samples[0].value == 2
        assert families["netsnoop_demo"].samples[0].name == "netsnoop_demo_total"
        assert "process_resident_memory_bytes" in text
        assert "python_gc" not in text
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nope")
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_text_encoder_round_trips_hostile_values_and_matches_prometheus_client():
    hostile = 'q"b\\s\nx\ufffd'
    counter = MetricFamily("netsnoop_demo", "counter", "help with \\ and\nnewline", ("comm",))
    counter.add((hostile,), 3)
    counter.add(("plain",), 1e21)
    gauge = MetricFamily("netsnoop_gauge", "gauge", "g", ())
    gauge.set((), float("inf"))
    source = SnapshotSource(lambda: [counter, gauge])
    ours = TextEncoder().encode([counter, gauge]).decode()
    reference = generate_latest(Exposition(source).openmetrics_registry).decode()

    def samples(text):
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("netsnoop_") and not s.name.endswith("_created")
        }

    assert samples(ours) == samples(reference)
    assert (
        "netsnoop_demo_total",
        (("comm", hostile),),
        3.0,
    ) in samples(ours)


def test_plain_scrapes_take_the_direct_text_path_and_openmetrics_is_still_served():
    family = MetricFamily("netsnoop_demo", "counter", "demo", ("port",))
    family.add(("23",), 2)
    exposition = Exposition(SnapshotSource(lambda: [family]))
    for accept in ("", "text/plain;version=0.0.4", "*/*"):
        body, content_type = exposition.render(accept)
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert body.startswith(TextEncoder().encode([family]))
        assert b"process_resident_memory_bytes" in body
    body, content_type = exposition.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n") and b"netsnoop_demo_total" in body


def test_openmetrics_declares_the_unit_of_families_that_have_one():
    seconds = MetricFamily(
        "netsnoop_bpf_program_run_seconds", "counter", "s", ("program",), unit="seconds"
    )
    seconds.add(("tcp_send_reset",), 0.5)
    plain = MetricFamily("netsnoop_demo", "counter", "demo", ())
    plain.add((), 1)
    body, _ = Exposition(SnapshotSource(lambda: [seconds, plain])).render(
        "application/openmetrics-text; version=1.0.0"
    )
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["netsnoop_bpf_program_run_seconds"].unit == "seconds"
    assert families["netsnoop_demo"].unit == ""
    assert b"# UNIT netsnoop_bpf_program_run_seconds seconds\n" in body


def test_openmetrics_counters_carry_their_created_time():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse

    counter = MetricFamily("netsnoop_demo", "counter", "h", ("comm",))
    counter.set(("new",), 0)
    counter.set(("old",), 4)
    counter.created[("new",)] = 1700000000.5
    source = SnapshotSource(lambda: [counter])
    body, content_type = Exposition(source).render("application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    demo = next(f for f in parse(body.decode()) if f.name == "netsnoop_demo")
    values = {(s.name, s.labels["comm"]): s.value for s in demo.samples}
    assert values[("netsnoop_demo_total", "new")] == 0  # the series exists before its first
    assert values[("netsnoop_demo_created", "new")] == 1700000000.5
    # a counter with no birth of its own started with the exporter
    assert values[("netsnoop_demo_created", "old")] == pytest.approx(source.started_at)
