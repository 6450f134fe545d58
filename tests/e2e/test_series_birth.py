"""End to end: counters are born at zero and carry their creation time, so Prometheus'
``increase()`` sees a series' first increments.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.helpers import ExporterProcess, free_port, remote_host

pytestmark = pytest.mark.root

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def openmetrics(exporter: ExporterProcess) -> dict[tuple[str, frozenset], float]:
    request = urllib.request.Request(exporter.url + "/metrics", headers={"Accept": OPENMETRICS})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_listeners_drops_exist_at_zero_with_created_before_the_first_drop(exporter):
    port = free_port()
    with remote_host() as peer, socket.create_server((peer.host_v4, port), backlog=1):
        series = {}
        for _ in range(50):  # the listener shows from the next read of sock_diag
            series = openmetrics(exporter)
            drops = {
                name: count
                for (name, labels), count in series.items()
                if name.startswith("netsnoop_listen_drops") and ("port", str(port)) in labels
            }
            if drops:
                break
            time.sleep(0.2)
    assert drops["netsnoop_listen_drops_total"] == 0
    assert drops["netsnoop_listen_drops_created"] > 0
    # every counter of the exposition carries its creation time
    failures = "netsnoop_bpf_map_update_failures"
    totals = {labels for (name, labels) in series if name == f"{failures}_total"}
    created = {labels for (name, labels) in series if name == f"{failures}_created"}
    assert totals and totals == created
