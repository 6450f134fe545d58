"""Turns the panel and dashboard descriptions into Grafana's dashboard JSON (schema 39):
variables, grid layout and the per-kind panel options, so the dashboards only declare content.

Plain dictionaries rather than grafana-foundation-sdk: five dashboards of time series and
stats do not need a dependency."""

from __future__ import annotations

from dataclasses import dataclass, field

from .promql import CONNECTIONS

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
QUIET_EMPTY = "Empty on a quiet host"  # panels that may legitimately have no data


@dataclass
class Query:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    queries: list[Query]
    kind: str = "timeseries"  # or "stat", "heatmap"
    width: int = 12
    quiet_empty: str = ""  # why the panel may be empty on a healthy, quiet host

    def full_description(self) -> str:
        if self.quiet_empty:
            return f"{self.description} {QUIET_EMPTY}: {self.quiet_empty}"
        return self.description


@dataclass
class Dashboard:
    uid: str
    file: str
    title: str
    description: str
    panels: list[Panel]
    pod_labels: bool = False  # adds the namespace variable
    extra_variables: list[dict] = field(default_factory=list)


def datasource_variable() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, query: str, all_value: str | None) -> dict:
    """A multi-value label_values() variable. Without ``all_value`` "All" expands to the
    options found, which keeps the scope to netsnoop targets (for process_* and up)."""
    variable = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: exporters come and go
        "includeAll": True,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def variables(dashboard: Dashboard) -> list[dict]:
    result = [
        datasource_variable(),
        query_variable("node", "Node", "label_values(netsnoop_build_info, node)", ".*"),
        query_variable(
            "instance",
            "Instance",
            'label_values(netsnoop_build_info{node=~"$node"}, instance)',
            None,
        ),
    ]
    if dashboard.pod_labels:
        result.append(
            query_variable(
                "namespace",
                "Namespace",
                f'label_values({CONNECTIONS}{{instance=~"$instance"}}, namespace)',
                ".*",
            )
        )
    return result + dashboard.extra_variables


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    targets = [
        {
            "refId": chr(ord("A") + index),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": True,
            "instant": False,
        }
        for index, query in enumerate(panel.queries)
    ]
    result = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.full_description(),
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "heatmap":  # buckets as Prometheus gives them, one row per le
        for target in targets:
            target["format"] = "heatmap"
        result["options"] = {
            "calculate": False,
            "yAxis": {"unit": panel.unit},
            "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5},
            "cellGap": 1,
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    elif panel.kind == "stat":
        result["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    else:
        result["options"] = {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return result


def dashboard_json(dashboard: Dashboard) -> dict:
    panels, x, y = [], 0, 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["netsnoop", "ebpf", "network"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "links": [
            {
                "title": "netsnoop",
                "type": "dashboards",
                "tags": ["netsnoop"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables(dashboard)},
        "panels": panels,
    }
