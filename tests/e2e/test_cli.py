"""The command line as users meet it: bad config and flags give one line and status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, parse_logfmt


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "collectors:\n  tcp_connections:\n    map_size: lots\n",
            "collectors.tcp_connections.map_size: Input should be a valid integer",
        ),
        ("colectors: {}\n", "colectors: unknown key"),
        ("labels: [1, 2\n", "line 2: expected ','"),
        (
            "collectors:\n  tcp_connections:\n    enabled: 'yes'\n",
            "collectors.tcp_connections.enabled: Input should be a valid boolean",
        ),
        (  # checked with the config, before any program loads
            "event_log:\n  path: /nonexistent-netsnoop/events.jsonl\n",
            "event_log.path: Value error, directory /nonexistent-netsnoop does not exist",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line_naming_file_and_key(tmp_path, content, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = run_cli(f"--config.file={bad}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    message = parse_logfmt(line)["msg"]
    assert str(bad) in message and expected in message
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    result = run_cli(f"--config.file={tmp_path / 'nope.yaml'}")
    assert result.returncode == 2
    assert "nope.yaml: cannot read: No such file or directory" in result.stderr


def test_bad_listen_address():
    result = run_cli("--web.listen-address=localhost")
    assert result.returncode == 2
    assert "expected [host]:port" in result.stderr


@pytest.mark.root  # the check follows the privilege check
def test_tracepoint_override_for_an_unknown_program_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracepoints:\n  tcp_connections.no_such_program: tcp:tcp_send_reset\n")
    result = run_cli(f"--config.file={bad}")
    assert result.returncode == 2, result.stderr
    event = parse_logfmt(result.stderr.strip())
    assert event["level"] == "error"
    assert event["msg"] == (
        f"{bad}: tracepoints.tcp_connections.no_such_program: "
        "no such program in an enabled collector"
    )
