"""deploy/systemd/netsnoop-exporter.service: the chart's capabilities, nothing more, and a unit
systemd itself accepts."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart import chart_capabilities
from tests.helpers import REPO

UNIT = REPO / "deploy" / "systemd" / "netsnoop-exporter.service"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_unit_grants_the_capabilities_of_the_chart_only():
    service = service_section()
    chart = {f"CAP_{name}" for name in chart_capabilities()}
    assert set(service["CapabilityBoundingSet"].split()) == chart
    assert set(service["AmbientCapabilities"].split()) == chart
    assert service["NoNewPrivileges"] == "yes"


def test_systemd_analyze_accepts_the_unit(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    exporter = Path(sys.executable).with_name("netsnoop-exporter")
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace(
            "/opt/netsnoop-exporter/.venv/bin/netsnoop-exporter", str(exporter)
        )
    )
    verify = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    assert (verify.returncode, verify.stderr) == (0, "")
