"""The chart's ServiceMonitor relabeling, run by a real Prometheus: the series' pod labels keep
their names, and host processes' series get no namespace of the exporter's pod.

prometheus-operator cannot run here, so Prometheus gets the target labels the operator adds
(the exporter pod's namespace, pod and container) as static labels, followed by the chart's
relabelings that do not need Kubernetes service discovery. The target is a stand-in serving
two series as the exporter writes them with pod labels on (which need a Kubernetes API)."""

from __future__ import annotations

import http.server
import re
import shutil
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chart import CHART, HELM, only, render, values_args
from tests.e2e.test_dashboards_alerts import Prometheus
from tests.helpers import free_port

EXPOSITION = (
    b'netsnoop_tcp_connections_total{namespace="shop",pod="web-1",container="web",comm="nginx"} 3\n'
    b'netsnoop_tcp_connections_total{namespace="",pod="",container="",comm="sshd"} 2\n'
)
OPERATOR_TARGET_LABELS = {"namespace": "monitoring", "pod": "netsnoop-x", "container": "exporter"}


@pytest.fixture
def stand_in() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(EXPOSITION)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def chart_relabelings() -> list[dict]:
    """The ServiceMonitor's relabelings that use no service-discovery meta label, in
    Prometheus's spelling."""
    monitor = only(render(*values_args(CHART / "ci" / "monitoring-values.yaml")), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    snake = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [
        {snake.get(key, key): value for key, value in rule.items()}
        for rule in endpoint["relabelings"]
        if not any(label.startswith("__meta_") for label in rule.get("sourceLabels", []))
    ]


@pytest.mark.skipif(HELM is None, reason="needs helm: scripts/install-helm.sh")
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus")
def test_pod_labels_survive_the_chart_relabeling(tmp_path, stand_in):
    relabelings = chart_relabelings()
    assert relabelings, "the chart has no relabeling for the target's own pod labels"
    scrape = {
        "static_configs": [{"targets": [stand_in], "labels": OPERATOR_TARGET_LABELS}],
        "relabel_configs": relabelings,
    }
    prometheus = Prometheus(tmp_path, stand_in, scrape)
    try:
        prometheus.wait_until_up()
        deadline = time.monotonic() + 30
        while len(series := prometheus.query("netsnoop_tcp_connections_total")) < 2:
            assert time.monotonic() < deadline, series
            time.sleep(0.5)
    finally:
        prometheus.stop()
    by_comm = {s["metric"]["comm"]: s["metric"] for s in series}
    nginx, sshd = by_comm["nginx"], by_comm["sshd"]
    assert (nginx["namespace"], nginx["pod"], nginx["container"]) == ("shop", "web-1", "web")
    assert not {"namespace", "pod", "container"} & sshd.keys()  # a host process: no pod
    assert not any(re.match("exported_", label) for s in series for label in s["metric"])
