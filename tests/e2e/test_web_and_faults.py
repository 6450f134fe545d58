"""The real exporter behind TLS and basic auth, scraped by a real Prometheus; and faults: kill -9
mid-scrape, hidden kernel symbols, a config reload, a bad web config.

Needs root and BPF (marked ``root``); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.certs import SERVER_EXTENSION, bcrypt_hash, issue_certificate, make_pki
from tests.e2e.test_hardening import accepting
from tests.helpers import ExporterProcess, Series, free_port, value

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_connections_total"
PASSWORD = "n6-prom-pass"


def connect(port: int, count: int) -> None:
    for _ in range(count):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def counted_connections(exporter: ExporterProcess, count: int) -> Series:
    """Makes ``count`` connections to a fresh port; the scrape once they are all counted."""
    port = free_port()
    labels = {"direction": "outbound", "port": str(port), "result": "established"}
    with accepting(port):
        connect(port, count)
        series = exporter.wait_for(METRIC, labels, count)
    assert value(series, METRIC, **labels) == count
    return series


def prometheus_up(api: str, job: str) -> float | None:
    query = urllib.parse.urlencode({"query": f'up{{job="{job}"}}'})
    try:
        with urllib.request.urlopen(f"{api}/api/v1/query?{query}", timeout=5) as response:
            result = json.load(response)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


def start_prometheus(config: Path, api_port: int) -> subprocess.Popen:
    """A real Prometheus with its data next to its config, its API on ``api_port``."""
    return subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{api_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (Debian)")
def test_prometheus_scrapes_over_tls_with_basic_auth_and_client_certificate(tmp_path: Path):
    pki = make_pki(tmp_path)
    web_config = tmp_path / "web.yaml"
    web_config.write_text(
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_ca_file: {pki.ca}
  client_auth_type: RequireAndVerifyClientCert
basic_auth_users:
  n6-prometheus: {bcrypt_hash(PASSWORD)}
"""
    )
    exporter = ExporterProcess(None, tmp_path, (f"--web.config.file={web_config}",))
    api_port = free_port()
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: n6-netsnoop
    scheme: https
    basic_auth: {{username: n6-prometheus, password: {PASSWORD}}}
    tls_config: {{ca_file: {pki.ca}, cert_file: {pki.client_cert}, key_file: {pki.client_key}}}
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
"""
    )
    prometheus = start_prometheus(prometheus_config, api_port)
    try:
        url = f"https://127.0.0.1:{exporter.port}"
        verified = ssl.create_default_context(cafile=str(pki.ca))
        verified.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        deadline = time.monotonic() + 60
        up = None
        while up != 1.0 and time.monotonic() < deadline:
            time.sleep(0.5)
            up = prometheus_up(f"http://127.0.0.1:{api_port}", "n6-netsnoop")
        assert up == 1.0, exporter.log()

        def status(password: str, context: ssl.SSLContext) -> int:
            token = base64_credentials("n6-prometheus", password)
            request = urllib.request.Request(url + "/metrics", headers={"Authorization": token})
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert status(PASSWORD, verified) == 200
        assert status("wrong", verified) == 401
        no_certificate = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            status(PASSWORD, no_certificate)
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        exporter.stop()


def base64_credentials(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bad_web_config_stops_start_up_naming_file_and_key(tmp_path: Path):
    web_config = tmp_path / "web.yaml"
    web_config.write_text("basic_auth_users:\n  n6: plaintext\n")
    exporter = ExporterProcess(None, tmp_path, (f"--web.config.file={web_config}",))
    assert exporter.process.wait(30) == 2
    exporter.stop()
    [event] = exporter.log_events()
    assert event["level"] == "error"
    assert event["msg"].startswith(f"{web_config}: basic_auth_users: ")
    assert "bcrypt" in event["msg"] and "Traceback" not in event["msg"]


def program_ids_of(pid: int) -> set[int]:
    """The BPF programs a process holds open, from its fdinfo."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        ids.update(
            int(line.split()[1]) for line in text.splitlines() if line.startswith("prog_id:")
        )
    return ids


def loaded_program_ids() -> set[int]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
    return {program["id"] for program in json.loads(out.stdout or "[]")}


def test_kill_9_mid_scrape_leaves_no_programs_and_a_restart_counts(tmp_path: Path):
    exporter = ExporterProcess(None, tmp_path)
    exporter.wait_ready()
    ours = program_ids_of(exporter.process.pid)
    assert len(ours) >= 4

    def scrape_until_killed() -> None:
        with contextlib.suppress(OSError):  # the exporter dies under it
            exporter.get("/metrics")

    scrapes = [threading.Thread(target=scrape_until_killed) for _ in range(4)]
    for thread in scrapes:
        thread.start()
    exporter.process.send_signal(signal.SIGKILL)
    exporter.process.wait(10)
    for thread in scrapes:
        thread.join()
    exporter.stop()
    deadline = time.monotonic() + 10
    while ours & loaded_program_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours & loaded_program_ids()
    restarted = ExporterProcess(None, tmp_path)
    try:
        restarted.wait_ready()
        counted_connections(restarted, 3)
    finally:
        restarted.stop()


def test_hidden_kernel_symbols_do_not_break_the_exporter(tmp_path: Path):
    """kptr_restrict=2 hides kernel addresses even from root; whatever symbolises them must
    fall back to "unknown", and counting must go on."""
    kptr = Path("/proc/sys/kernel/kptr_restrict")
    saved = kptr.read_text()
    kptr.write_text("2\n")
    try:
        exporter = ExporterProcess(None, tmp_path)
        try:
            exporter.wait_ready()
            series = counted_connections(exporter, 2)
            assert all(
                v == 1
                for (name, _), v in series.items()
                if name == "netsnoop_scrape_collector_success"
            )
            symbols = [
                dict(labels)["symbol"]
                for (_, labels) in series
                if "symbol" in dict(labels) and dict(labels)["symbol"] != ""
            ]
            assert set(symbols) <= {"unknown"}
        finally:
            exporter.stop()
    finally:
        kptr.write_text(saved)


def test_sighup_reload_keeps_counters(tmp_path: Path):
    config = "cardinality:\n  series_per_metric: 2000\n"
    exporter = ExporterProcess(config, tmp_path)
    try:
        exporter.wait_ready()
        port = free_port()
        labels = {"direction": "outbound", "port": str(port), "result": "established"}
        with accepting(port):
            connect(port, 4)
            exporter.wait_for(METRIC, labels, 4)
            (tmp_path / "netsnoop.yaml").write_text("cardinality:\n  series_per_metric: 500\n")
            exporter.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "config reloaded" not in exporter.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "config reloaded" in exporter.log()
            assert value(exporter.scrape(), METRIC, **labels) == 4
            connect(port, 3)
            assert value(exporter.wait_for(METRIC, labels, 7), METRIC, **labels) == 7
            (tmp_path / "netsnoop.yaml").write_text("cardinality: [\n")
            exporter.process.send_signal(signal.SIGHUP)
            time.sleep(1)
            assert "config reload failed, running on" in exporter.log()
            assert value(exporter.scrape(), METRIC, **labels) == 7
        assert exporter.process.poll() is None
    finally:
        exporter.stop()


def prometheus_query(api: str, query: str) -> list[dict]:
    encoded = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"{api}/api/v1/query?{encoded}", timeout=5) as response:
        return json.load(response)["data"]["result"]


def served_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (Debian)")
@pytest.mark.slow
def test_prometheus_scrapes_through_a_certificate_rotation_without_a_restart(tmp_path: Path):
    pki = make_pki(tmp_path)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    web_config = tmp_path / "web.yaml"
    web_config.write_text("tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n")
    # connections idle past 500 ms are closed, so every 2 s scrape makes a new TLS handshake
    exporter = ExporterProcess(
        None, tmp_path, (f"--web.config.file={web_config}", "--web.idle-timeout=500ms")
    )
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        f"""
global: {{scrape_interval: 2s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: n6-rotation
    scheme: https
    tls_config: {{ca_file: {pki.ca}}}
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
"""
    )
    prometheus = start_prometheus(prometheus_config, api_port)
    try:
        deadline = time.monotonic() + 60
        while prometheus_up(api, "n6-rotation") != 1.0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert prometheus_up(api, "n6-rotation") == 1.0, exporter.log()
        old = served_certificate(exporter.port, pki.ca)
        assert old == ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())

        new_cert, new_key = issue_certificate(tmp_path, "rotated", SERVER_EXTENSION)
        for source, target in ((new_cert, cert), (new_key, key)):  # one file, then the other
            shutil.copy(source, target.with_suffix(".next"))
            target.with_suffix(".next").rename(target)
            time.sleep(1.5)
        rotated_at = time.time()
        new = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        deadline = time.monotonic() + 10
        while served_certificate(exporter.port, pki.ca) != new and time.monotonic() < deadline:
            time.sleep(0.3)
        assert served_certificate(exporter.port, pki.ca) == new, exporter.log()
        assert "TLS certificate reloaded" in exporter.log()

        # scrapes after the rotation: new handshakes, all successful
        time.sleep(7)
        samples = prometheus_query(
            api, f'up{{job="n6-rotation"}}[{int(time.time() - rotated_at)}s]'
        )
        values = [(float(t), v) for t, v in samples[0]["values"] if float(t) > rotated_at]
        assert len(values) >= 2 and {v for _, v in values} == {"1"}, values
        assert exporter.process.poll() is None  # the same process throughout
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        exporter.stop()
