"""Generates the Grafana dashboards of dashboards/, docs/dashboards.md and the Grafana-managed
alert rules from one description each, so panels, queries, alerts and their documentation
cannot drift apart.

    python -m dashboards.generator           # rewrite every generated file
    python -m dashboards.generator --check   # exit 1 when a committed file is out of date

engine turns descriptions into Grafana JSON; one module per dashboard holds its panels; docs
writes the page; grafana_alerts derives the Grafana rules from the Prometheus rules.
tests/unit/test_dashboards.py checks the committed files agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .connections import CONNECTIONS_SECURITY
from .docs import docs_markdown
from .drops import DROPS
from .engine import dashboard_json
from .grafana_alerts import grafana_alerts_yaml
from .health import EXPORTER_HEALTH
from .overview import OVERVIEW
from .traffic import TRAFFIC

HERE = Path(__file__).resolve().parent.parent
DOCS = HERE.parent / "docs" / "dashboards.md"
PROMETHEUS_RULES = HERE / "alerts" / "netsnoop.rules.yaml"
GRAFANA_RULES = HERE / "grafana-alerts" / "netsnoop-telnet.yaml"

DASHBOARDS = [OVERVIEW, CONNECTIONS_SECURITY, DROPS, TRAFFIC, EXPORTER_HEALTH]


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        HERE / dashboard.file: json.dumps(dashboard_json(dashboard), indent=2) + "\n"
        for dashboard in DASHBOARDS
    }
    files[DOCS] = docs_markdown(DASHBOARDS)
    files[GRAFANA_RULES] = grafana_alerts_yaml(yaml.safe_load(PROMETHEUS_RULES.read_text()))
    return files
