"""The shipped dashboards and alert rules as the tests see them: panel queries with Grafana's
variables substituted, the Prometheus rules, and the Grafana-managed rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.helpers import REPO

DASHBOARDS = REPO / "dashboards"
PROMETHEUS_RULES = DASHBOARDS / "alerts" / "netsnoop.rules.yaml"
GRAFANA_RULES = DASHBOARDS / "grafana-alerts" / "netsnoop-telnet.yaml"
PROMTOOL_TESTS = REPO / "tests" / "data" / "promtool" / "netsnoop.rules.test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
QUIET_EMPTY = "Empty on a quiet host"  # the generator's marker in panel descriptions


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    quiet_empty: bool

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def panel_queries(dashboard: dict) -> list[PanelQuery]:
    return [
        PanelQuery(
            dashboard["title"],
            panel["title"],
            target["refId"],
            target["expr"],
            QUIET_EMPTY in panel["description"],
        )
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def grafana_regex(value: str) -> str:
    """A variable value the way Grafana's Prometheus data source puts it into a regex matcher:
    regex metacharacters escaped, the backslash itself escaped for the PromQL string."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replaces $name and ${name}; longest names first so $node never eats $node_x."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name])
        expr = expr.replace("$" + name, variables[name])
    return expr


def prometheus_rules() -> dict[str, dict]:
    """Alert name to rule, over every group."""
    groups = yaml.safe_load(PROMETHEUS_RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def grafana_rules() -> list[dict]:
    document = yaml.safe_load(GRAFANA_RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def grafana_rule_query(rule: dict) -> str:
    """The PromQL of a Grafana-managed rule (its one Prometheus query)."""
    (query,) = [data for data in rule["data"] if data["datasourceUid"] != "__expr__"]
    return query["model"]["expr"]
