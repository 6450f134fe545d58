"""The log as operators' pipelines read it: every line parses, in both formats; a venv that
cannot see bcc stops at preflight naming the Python that can."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ONLY_TCP, REPO, ExporterProcess, bpf_unavailable_reason, parse_logfmt

# What a copy of the tree to pip-install leaves out: builds, environments, caches.
NOT_SOURCES = (".git", ".venv", ".tools", "build", "*.egg-info", "__pycache__", ".*_cache")


@pytest.mark.root
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_start_reload_failure_and_stop_log_one_event_per_line(tmp_path: Path, log_format: str):
    if reason := bpf_unavailable_reason():
        pytest.skip(reason)
    exporter = ExporterProcess(ONLY_TCP, tmp_path, (f"--log.format={log_format}",))
    try:
        exporter.wait_ready()
        (tmp_path / "netsnoop.yaml").write_text("cardinality: [\n")
        exporter.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "config reload failed" not in exporter.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        assert exporter.stop() == 0
    events = exporter.log_events()  # each line parsed strictly, or an error
    messages = [event["msg"] for event in events]
    assert f"listening on 127.0.0.1:{exporter.port}" in messages
    assert any(m.startswith("ready in ") for m in messages), messages
    [failed] = [e for e in events if e["msg"].startswith("config reload failed, running on: ")]
    assert failed["level"] == "error" and "netsnoop.yaml" in failed["msg"]
    assert messages[-1] == "shutting down"


def other_python_without_bcc() -> str | None:
    """A python3 on PATH other than the distribution's that cannot import bcc: the pyenv
    `python3` first on PATH on a developer's machine."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("python3", path=directory)
        if not found:
            continue
        probe = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
        )
        executable = probe.stdout.strip()
        if probe.returncode or os.path.realpath(executable).startswith("/usr/bin/"):
            continue
        if subprocess.run([executable, "-c", "import bcc"], capture_output=True).returncode:
            return executable
    return None


@pytest.mark.slow
def test_a_venv_that_cannot_import_bcc_exits_1_naming_the_python_that_can(tmp_path: Path):
    """The user's mistake as made: a venv on the wrong Python, the package pip-installed."""
    if subprocess.run(["/usr/bin/python3", "-c", "import bcc"], capture_output=True).returncode:
        pytest.skip("needs bcc for /usr/bin/python3 (Debian python3-bpfcc)")
    python = other_python_without_bcc()
    if python is None:
        pytest.skip("needs a python3 on PATH, besides /usr/bin/python3, without bcc")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    # from a copy of the tree: pip reuses a build/ left in the repository, with files since
    # moved away, which would then be installed too
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    subprocess.run(
        [venv / "bin" / "pip", "install", "--quiet", source], check=True, capture_output=True
    )
    result = subprocess.run(
        [venv / "bin" / "netsnoop-exporter", "--web.listen-address=127.0.0.1:0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    event = parse_logfmt(line)
    assert event["level"] == "error"
    assert event["msg"].startswith(f"bcc cannot be imported from {venv}/bin/python")
    assert "/usr/bin/python3 has it: run the exporter from a venv made with" in event["msg"]


@pytest.mark.root
def test_bpf_refused_by_seccomp_is_explained_and_bccs_own_output_stays_logfmt(tmp_path: Path):
    """bcc prints "could not open bpf map" on descriptor 2 itself: it must come out as a log
    line, and the collector's error must say who refused bpf()."""
    if reason := bpf_unavailable_reason():
        pytest.skip(reason)
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    deny_bpf = tmp_path / "deny_bpf"
    source = REPO / "tests" / "data" / "c" / "deny_bpf.c"
    subprocess.run(["gcc", "-O2", "-o", deny_bpf, source], check=True)
    exporter = ExporterProcess(ONLY_TCP, tmp_path, prefix=(str(deny_bpf),))
    try:
        deadline = time.monotonic() + 60
        while "not ready" not in exporter.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exporter.get("/healthz")[0] == 503
    finally:
        exporter.stop()
    messages = [(event["level"], event["msg"]) for event in exporter.log_events()]
    assert any(
        level == "warn" and m.startswith("bcc: could not open bpf map: ") and "not permitted" in m
        for level, m in messages
    ), messages
    disabled = [m for level, m in messages if m.startswith("collector tcp_connections disabled")]
    assert (
        disabled
        and "bpf() was refused (EPERM) although the capabilities are there" in (disabled[0])
    )
    assert ("error", "no BPF program could be attached: /healthz stays 503") in messages
