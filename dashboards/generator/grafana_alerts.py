"""The Grafana-managed alert rules (file provisioning, apiVersion 1), derived from the
Prometheus rules so that their PromQL, labels and annotations have one home: only what
Grafana adds (uids, folder, data source, the threshold step) is declared here."""

from __future__ import annotations

import re

import yaml

SOURCE_GROUP = "netsnoop-telnet"  # the Prometheus rule group Grafana gets as well
FOLDER = "netsnoop"
INTERVAL = "1m"
DATASOURCE_UID = "prometheus"  # the one kube-prometheus-stack provisions
QUERY = "A"
CONDITION = "C"
# Grafana identifies a provisioned rule by its uid: a new one would leave the old rule behind
# in every Grafana that loaded this file, so each is declared, not derived from the name
# (a new rule in SOURCE_GROUP needs its line here).
UIDS = {
    "NetsnoopTelnetInboundAttempt": "netsnoop-telnet-inbound",
    "NetsnoopTelnetOutboundAttempt": "netsnoop-telnet-outbound",
}
# In a Grafana annotation $value is a text listing every query's value; the number of the
# query is $values.<refId>.Value.
PROMETHEUS_VALUE = re.compile(r"\$value\b")

HEADER = f"""\
# Grafana-managed alert rules (file provisioning, apiVersion 1): the rules of the group
# {SOURCE_GROUP} of dashboards/alerts/netsnoop.rules.yaml, same PromQL, for teams that alert
# from Grafana. Generated from that file by `python -m dashboards.generator`: edit it there.
# Put this file in Grafana's provisioning/alerting/ directory, or let the Helm chart ship it as
# a ConfigMap labelled grafana_alert for Grafana's sidecar (grafana.alerts.enabled).
#
# datasourceUid must be the UID of your Prometheus data source in Grafana: "{DATASOURCE_UID}" is
# the one kube-prometheus-stack provisions; change it (every rule) if yours differs.
"""


class Folded(str):
    """Prose written as a folded block (>-), wrapped for reading, one line once loaded."""


class Inline(dict):
    """A small mapping written on one line ({from: 600, to: 0})."""


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key, wraps only folded prose, and writes multi-line text
    (PromQL) as a literal block so that it reads as in the Prometheus rules."""

    FOLD_WIDTH = 92
    NO_WRAP = 1 << 16

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def write_folded(self, text: str) -> None:
        self.best_width = self.FOLD_WIDTH
        try:
            super().write_folded(text)
        finally:
            self.best_width = self.NO_WRAP


def _represent_text(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = ">" if isinstance(value, Folded) else "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_inline(dumper: _Dumper, value: Inline) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)


_Dumper.add_representer(str, _represent_text)
_Dumper.add_representer(Folded, _represent_text)
_Dumper.add_representer(Inline, _represent_inline)


def grafana_rule(rule: dict) -> dict:
    """One Prometheus alerting rule as a Grafana-managed rule: its query, then a threshold
    that fires for every series the query returns above 0, as Prometheus does."""
    annotations = {
        key: PROMETHEUS_VALUE.sub(f"$values.{QUERY}.Value", text)
        for key, text in rule.get("annotations", {}).items()
    }
    if "description" in annotations:
        annotations["description"] = Folded(annotations["description"])
    return {
        "uid": UIDS[rule["alert"]],
        "title": rule["alert"],
        "condition": CONDITION,
        "data": [
            {
                "refId": QUERY,
                # 10 minutes back: the 5m window and the offset 5m of the telnet alerts
                "relativeTimeRange": Inline({"from": 600, "to": 0}),
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": QUERY,
                    "instant": True,
                    "range": False,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                    "expr": rule["expr"],
                },
            },
            {
                "refId": CONDITION,
                "relativeTimeRange": Inline({"from": 0, "to": 0}),
                "datasourceUid": "__expr__",
                "model": {
                    "refId": CONDITION,
                    "type": "threshold",
                    "expression": QUERY,
                    "conditions": [{"evaluator": Inline({"type": "gt", "params": [0]})}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": rule.get("for", "0s"),
        "labels": rule.get("labels", {}),
        "annotations": annotations,
        "isPaused": False,
    }


def grafana_alerts_yaml(prometheus_rules: dict) -> str:
    """The provisioning file for the rules of SOURCE_GROUP in ``prometheus_rules`` (the
    parsed rule file)."""
    (group,) = [group for group in prometheus_rules["groups"] if group["name"] == SOURCE_GROUP]
    document = {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": SOURCE_GROUP,
                "folder": FOLDER,
                "interval": INTERVAL,
                "rules": [grafana_rule(rule) for rule in group["rules"]],
            }
        ],
    }
    return HEADER + yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, width=_Dumper.NO_WRAP, allow_unicode=True
    )
