"""Malformed --config.file and --web.config.file values through the real command line: exit 2
and one line naming the file, the key and the reason; never a traceback, never a prompt, even
with a terminal on stdin. And a SIGHUP with a bad file keeps the running config."""

from __future__ import annotations

import base64
import os
import pty
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.certs import bcrypt_hash, make_pki, openssl
from tests.helpers import REPO, ExporterProcess, free_port, parse_logfmt

HUGE = "9" * 4301
TAIL = "$" + "a" * 53

CONFIG_CASES = {
    "huge integer": (f"cardinality:\n  idle_seconds: {HUGE}\n", "idle_seconds: integer too large"),
    "duplicate key": ("ports: {}\nports: {}\n", "ports: duplicate key"),
}
WEB_CONFIG_CASES = {
    "huge integer": (f"rate_limit:\n  burst: {HUGE}\n", "burst: integer too large"),
    "duplicate key": ("basic_auth_users: {a: x}\nbasic_auth_users: {}\n", "duplicate key"),
    "null tls_server_config": ("tls_server_config:\n", "tls_server_config: Value error, empty"),
    "$2$ hash": (f"basic_auth_users: {{a: $2${TAIL}}}\n", "user 'a': not a bcrypt hash"),
    "cost 03": (f"basic_auth_users: {{a: $2y$03{TAIL}}}\n", "user 'a': not a bcrypt hash"),
    "cost 99": (f"basic_auth_users: {{a: $2y$99{TAIL}}}\n", "user 'a': not a bcrypt hash"),
    "encrypted key": ("ENCRYPTED", "tls_server_config.key_file: "),
}


def run_with_a_terminal(*args: str) -> subprocess.CompletedProcess:
    """The CLI with a pseudo-terminal on stdin, where OpenSSL would prompt for a pass phrase."""
    controller, terminal = pty.openpty()
    try:
        return subprocess.run(
            [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:0", *args],
            cwd=REPO,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=30,  # a prompt would wait forever: this turns it into a failure
        )
    finally:
        os.close(controller)
        os.close(terminal)


def assert_one_line_exit_2(result: subprocess.CompletedProcess, path: Path, reason: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "PEM pass phrase" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    event = parse_logfmt(lines[0])
    assert event["level"] == "error" and event["msg"].startswith(f"{path}: "), event
    assert reason in event["msg"], event


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_malformed_config_file_is_one_line_and_exit_2(tmp_path: Path, case: str):
    text, reason = CONFIG_CASES[case]
    path = tmp_path / "netsnoop.yaml"
    path.write_text(text)
    assert_one_line_exit_2(run_with_a_terminal(f"--config.file={path}"), path, reason)


@pytest.mark.parametrize("case", WEB_CONFIG_CASES)
def test_malformed_web_config_file_is_one_line_and_exit_2(tmp_path: Path, case: str):
    text, reason = WEB_CONFIG_CASES[case]
    if text == "ENCRYPTED":
        pki = make_pki(tmp_path)
        openssl(
            "pkey", "-in", str(pki.server_key), "-aes256", "-passout", "pass:n6", "-out",
            "encrypted.key", cwd=tmp_path,
        )  # fmt: skip
        text = f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: encrypted.key}}\n"
    path = tmp_path / "web.yaml"
    path.write_text(text)
    assert_one_line_exit_2(run_with_a_terminal(f"--web.config.file={path}"), path, reason)


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("--web.max-connections=0", "--web.max-connections 0: must be at least 1"),
        ("--web.read-header-timeout=soon", "--web.read-header-timeout 'soon': expected"),
        ("--web.listen-address=nowhere", "--web.listen-address 'nowhere'"),
    ],
)
def test_bad_web_flags_are_one_line_and_exit_2(flag: str, reason: str):
    result = run_with_a_terminal(flag)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    event = parse_logfmt(line)
    assert event["level"] == "error" and event["msg"].startswith(reason), event


def status_with(port: int, password: str) -> int:
    token = base64.b64encode(f"n6-prometheus:{password}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_log(exporter: ExporterProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while exporter.log().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exporter.log().count(text) >= count, exporter.log()


@pytest.mark.root
def test_sighup_with_bad_files_logs_and_keeps_the_old_config(tmp_path: Path):
    web_config = tmp_path / "web.yaml"
    web_config.write_text(f"basic_auth_users:\n  n6-prometheus: {bcrypt_hash('first')}\n")
    exporter = ExporterProcess("", tmp_path, (f"--web.config.file={web_config}",))
    try:
        exporter.wait_ready()
        assert status_with(exporter.port, "first") == 200
        for config_text, web_text in (
            (f"cardinality: {{idle_seconds: {HUGE}}}\n", f"rate_limit: {{burst: {HUGE}}}\n"),
            ("ports: {}\nports: {}\n", "tls_server_config:\n"),
        ):
            (tmp_path / "netsnoop.yaml").write_text(config_text)
            web_config.write_text(web_text)
            failures = exporter.log().count("web config reload failed, running on")
            exporter.process.send_signal(signal.SIGHUP)
            wait_for_log(exporter, "web config reload failed, running on", failures + 1)
            assert exporter.process.poll() is None
            assert status_with(exporter.port, "first") == 200  # the old basic auth holds
        # twice for --config.file, twice for --web.config.file
        assert exporter.log().count("config reload failed, running on") == 4
        web_config.write_text(f"basic_auth_users:\n  n6-prometheus: {bcrypt_hash('second')}\n")
        exporter.process.send_signal(signal.SIGHUP)
        wait_for_log(exporter, "web config reloaded")
        assert status_with(exporter.port, "second") == 200
        assert status_with(exporter.port, "first") == 401
    finally:
        exporter.stop()


@pytest.mark.root
def test_two_listen_addresses_and_no_exporter_metrics(tmp_path: Path):
    second_port = free_port()
    exporter = ExporterProcess(
        None,
        tmp_path,
        (f"--web.listen-address=127.0.0.1:{second_port}", "--web.disable-exporter-metrics"),
    )
    try:
        exporter.wait_ready()
        for port in (exporter.port, second_port):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                body = response.read().decode()
                assert response.headers["Server"] == "netsnoop-exporter"
            assert "netsnoop_build_info" in body and "netsnoop_scrape_collector_success" in body
            assert "\nprocess_" not in body and "# TYPE process_" not in body  # RSS, CPU, FDs
        openmetrics = urllib.request.Request(
            f"http://127.0.0.1:{second_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(openmetrics, timeout=5) as response:
            assert "# TYPE process_" not in response.read().decode()
    finally:
        exporter.stop()
