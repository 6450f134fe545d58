"""The Helm chart's values as the tests read them: one source for the capability list the
chart grants and the capability test runs the exporter with."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers import REPO

CHART = REPO / "helm" / "netsnoop-exporter"


def chart_values(chart: Path = CHART) -> dict:
    return yaml.safe_load((chart / "values.yaml").read_text())


def chart_capabilities() -> list[str]:
    """The capabilities the DaemonSet adds (Kubernetes names: BPF, PERFMON, ...)."""
    return list(chart_values()["securityContext"]["capabilities"]["add"])
