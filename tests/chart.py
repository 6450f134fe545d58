"""The Helm chart as the tests read it: its values (one source for the capability list the chart
grants and the capability test runs the exporter with) and the real `helm` that renders it."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.helpers import REPO

CHART = REPO / "helm" / "netsnoop-exporter"
HELM = next(
    (str(p) for p in (REPO / ".tools" / "bin" / "helm",) if p.exists()), shutil.which("helm")
)

Manifest = dict


@functools.cache
def build_chart() -> None:
    """files/ is filled at build time (copies, not symlinks), as before a release: once per run,
    before the first `helm` call on the repository's chart, whichever test module comes first."""
    subprocess.run([REPO / "scripts" / "build-chart.sh"], check=True, capture_output=True)


def helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess:
    if chart == CHART:
        build_chart()
    return subprocess.run(
        [HELM, *args, str(chart)], capture_output=True, text=True, timeout=120, check=False
    )


def render(*args: str, chart: Path = CHART) -> list[Manifest]:
    result = helm("template", "nsn", "--namespace", "monitoring", *args, chart=chart)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def values_args(path: Path | None) -> tuple[str, ...]:
    return ("--values", str(path)) if path else ()


def chart_values(chart: Path = CHART) -> dict:
    return yaml.safe_load((chart / "values.yaml").read_text())


def chart_capabilities() -> list[str]:
    """The capabilities the DaemonSet adds (Kubernetes names: BPF, PERFMON, ...)."""
    return list(chart_values()["securityContext"]["capabilities"]["add"])
