from __future__ import annotations

import sys

import pytest

from exporter.kernel.preflight import (
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    EnvironmentProblem,
    check_bcc,
    check_capabilities,
    headers_problem,
    missing_capabilities,
)


def test_capability_sets():
    assert missing_capabilities(0) == ["CAP_BPF", "CAP_PERFMON"]
    assert missing_capabilities(1 << CAP_BPF) == ["CAP_PERFMON"]
    assert missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)) == []
    assert missing_capabilities(1 << CAP_SYS_ADMIN) == []


def test_missing_capability_message_names_it(tmp_path):
    status = tmp_path / "status"
    status.write_text(f"Name:\tx\nCapEff:\t{1 << CAP_PERFMON:016x}\n")
    with pytest.raises(EnvironmentProblem, match="missing capabilities: CAP_BPF"):
        check_capabilities(str(status))


def test_headers_problem_names_the_package(tmp_path):
    assert "apt-get install linux-headers-9.9.9-x" in headers_problem("9.9.9-x", str(tmp_path))
    (tmp_path / "9.9.9-x" / "build" / "include").mkdir(parents=True)
    assert "are incomplete (no include/linux/kconfig.h" in headers_problem("9.9.9-x", str(tmp_path))
    (tmp_path / "9.9.9-x" / "source" / "include" / "linux").mkdir(parents=True)
    (tmp_path / "9.9.9-x" / "source" / "include" / "linux" / "kconfig.h").write_text("")
    assert headers_problem("9.9.9-x", str(tmp_path)) is None


def test_missing_proc_capabilities_are_named_in_a_warning(tmp_path, caplog):
    status = tmp_path / "status"
    status.write_text(f"CapEff:\t{(1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << 19):016x}\n")
    check_capabilities(str(status))  # enough to run
    assert "missing capabilities: CAP_DAC_READ_SEARCH: listeners of other users" in caplog.text
    assert "CAP_SYS_PTRACE" not in caplog.text


def test_bcc_missing_names_the_python_that_has_it(monkeypatch, tmp_path):
    pytest.importorskip("bcc")  # the interpreter that has it is this one, asked in a child
    monkeypatch.setitem(sys.modules, "bcc", None)  # what an interpreter without bcc sees
    with pytest.raises(EnvironmentProblem) as raised:
        check_bcc([str(tmp_path / "absent"), sys.executable])
    assert f"bcc cannot be imported from {sys.executable} (Python " in str(raised.value)
    assert f"{sys.executable} has it: run the exporter from a venv made with" in str(raised.value)
    with pytest.raises(EnvironmentProblem, match="apt-get install python3-bpfcc"):
        check_bcc([str(tmp_path / "absent")])
