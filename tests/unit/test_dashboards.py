"""The dashboards and alert rules, checked offline: the generator agrees with the committed
files, every dashboard follows the house rules, every query parses (promtool), the Prometheus
rules pass `promtool test rules`, and the Grafana-managed rules have the provisioning shape.
Running them against a real Prometheus is tests/e2e/test_dashboards_alerts.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.generator import rendered
from dashboards.generator.grafana_alerts import grafana_alerts_yaml
from tests.grafana import (
    GRAFANA_RULES,
    PROMETHEUS_RULES,
    PROMTOOL_TESTS,
    RUNBOOKS,
    dashboard_files,
    grafana_rule_query,
    grafana_rules,
    load_dashboard,
    panel_queries,
    prometheus_rules,
    substitute,
)

EXPECTED_UIDS = {
    "netsnoop-overview.json": "netsnoop-overview",
    "netsnoop-connections.json": "netsnoop-connections",
    "netsnoop-drops.json": "netsnoop-drops",
    "netsnoop-traffic.json": "netsnoop-traffic",
    "netsnoop-exporter-health.json": "netsnoop-exporter-health",
}
# Metrics whose series carry namespace/pod/container when Kubernetes enrichment is on.
POD_LABELLED = (
    "netsnoop_tcp_connections_total",
    "netsnoop_socket_sent_bytes_total",
    "netsnoop_socket_received_bytes_total",
)
SAMPLE_VARIABLES = {
    "instance": "127.0.0.1:19435",
    "node": ".*",
    "namespace": ".*",
    "watch_ports": "23",
    "__rate_interval": "1m",
}
RENDERED = rendered()
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)"
)


@pytest.mark.parametrize("path, content", RENDERED.items(), ids=[path.name for path in RENDERED])
def test_generated_files_match_the_generator(path: Path, content: str):
    """Each dashboard, docs/dashboards.md and the Grafana-managed rules, which are derived from
    the Prometheus rules: editing either without regenerating fails here."""
    assert path.read_text() == content, f"{path} is stale: run python -m dashboards.generator"


def test_the_grafana_rules_are_among_the_generated_files():
    assert GRAFANA_RULES in RENDERED


def test_grafana_rules_follow_the_prometheus_rules():
    """The generator takes the PromQL, for, labels and annotations from the Prometheus rule
    (with Grafana's $values.A.Value for $value), not from a copy of its own."""
    source = yaml.safe_load(PROMETHEUS_RULES.read_text())
    (telnet,) = [group for group in source["groups"] if group["name"] == "netsnoop-telnet"]
    rule = telnet["rules"][0]
    rule["expr"] = 'increase(netsnoop_tcp_connections_total{port="2323"}[5m]) > 0\n'
    rule["for"] = "2m"
    rule["labels"] = {"severity": "critical", "team": "security"}
    rule["annotations"]["summary"] = 'about {{ printf "%.0f" $value }} on {{ $labels.port }}'
    generated = yaml.safe_load(grafana_alerts_yaml(source))
    (derived, *_) = [each for group in generated["groups"] for each in group["rules"]]
    assert derived["title"] == rule["alert"]
    assert grafana_rule_query(derived) == rule["expr"]
    assert derived["for"] == "2m"
    assert derived["labels"] == {"severity": "critical", "team": "security"}
    summary = 'about {{ printf "%.0f" $values.A.Value }} on {{ $labels.port }}'
    assert derived["annotations"]["summary"] == summary
    assert derived["annotations"]["description"] == rule["annotations"]["description"].replace(
        "$value ", "$values.A.Value "
    )


def test_dashboard_files_are_the_documented_five_with_stable_uids():
    assert {path.name: load_dashboard(path)["uid"] for path in dashboard_files()} == EXPECTED_UIDS


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.name)
def test_dashboard_rules(path: Path):
    dashboard = load_dashboard(path)
    assert dashboard["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == variables["node"]["type"] == "query"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        where = f"{path.name}: {panel['title']}"
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"]["uid"] == "${datasource}", where
            assert "$__rate_interval" in expr, where
            for match in re.finditer(r"[a-z_:]+_total\b", expr):
                before = expr[: match.start()]
                assert re.search(r"\b(rate|increase)\($", before), f"{where}: {match.group()}"
            used = set(re.findall(r"\$\{?(\w+)", expr)) - {"__rate_interval"}
            assert used <= set(variables), f"{where}: undefined {used - set(variables)}"
            for selector in re.finditer(r"([a-z_:]+)\{([^}]*)\}", expr):
                metric, matchers = selector.groups()
                assert 'instance=~"$instance"' in matchers, f"{where}: {metric}"
                assert 'node=~"$node"' in matchers, f"{where}: {metric}"
                if metric in POD_LABELLED:
                    assert 'namespace=~"$namespace"' in matchers, f"{where}: {metric}"
                    assert "namespace" in variables, where


@needs_promtool
def test_every_panel_query_parses(tmp_path: Path):
    """promtool parses each query (variables substituted) as a recording rule."""
    queries = [query for path in dashboard_files() for query in panel_queries(load_dashboard(path))]
    rules = [
        {"record": f"netsnoop:panel_{index}", "expr": substitute(query.expr, SAMPLE_VARIABLES)}
        for index, query in enumerate(queries)
    ]
    rule_file = tmp_path / "panels.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@needs_promtool
def test_promtool_checks_the_rules():
    result = subprocess.run(
        ["promtool", "check", "rules", str(PROMETHEUS_RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_fire_and_stay_quiet():
    result = subprocess.run(
        ["promtool", "test", "rules", PROMTOOL_TESTS.name],
        cwd=PROMTOOL_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_cover_every_alert():
    tested = {
        case["alertname"]
        for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == set(prometheus_rules())


def test_every_rule_has_annotations_and_a_runbook_section():
    anchors = {
        re.sub(r"[^a-z0-9-]", "", heading.lower().replace(" ", "-"))
        for heading in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), re.MULTILINE)
    }
    rules = list(prometheus_rules().values())
    rules += [{"alert": rule["title"], **rule} for rule in grafana_rules()]
    for rule in rules:
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert annotations["runbook_url"].split("#")[0].endswith("docs/runbooks.md")
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def test_telnet_alerts_are_the_required_ones():
    rules = prometheus_rules()
    inbound = rules["NetsnoopTelnetInboundAttempt"]
    outbound = rules["NetsnoopTelnetOutboundAttempt"]
    assert 'direction="inbound", port="23"' in inbound["expr"]
    assert 'direction="outbound", port="23"' in outbound["expr"]
    assert "{{ $labels.result }}" in inbound["annotations"]["summary"]
    for key in ("comm", "uid"):
        assert f"{{{{ $labels.{key} }}}}" in outbound["annotations"]["description"]


# --- Grafana-managed rules: the file provisioning format (apiVersion 1) ----------------------
# The shape Grafana's provisioning reads (pkg/services/provisioning/alerting/rules_types.go,
# AlertRuleGroupV1 / AlertRuleV1 / QueryV1); no Grafana server can run here to load it.
GROUP_KEYS = {"orgId", "name", "folder", "interval", "rules"}
RULE_KEYS = {
    "uid",
    "title",
    "condition",
    "data",
    "dashboardUid",
    "panelId",
    "noDataState",
    "execErrState",
    "for",
    "keepFiringFor",
    "annotations",
    "labels",
    "isPaused",
    "notification_settings",
}
QUERY_KEYS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}
NO_DATA_STATES = {"Alerting", "NoData", "OK", "KeepLast"}
ERROR_STATES = {"Alerting", "Error", "OK", "KeepLast"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_grafana_rules_have_the_provisioning_shape():
    document = yaml.safe_load(GRAFANA_RULES.read_text())
    assert set(document) == {"apiVersion", "groups"}
    assert document["apiVersion"] == 1
    uids = []
    for group in document["groups"]:
        assert set(group) <= GROUP_KEYS and {"name", "folder", "interval", "rules"} <= set(group)
        assert isinstance(group["orgId"], int) and group["orgId"] >= 1
        assert group["name"].strip() and group["folder"].strip()
        assert DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, set(rule) - RULE_KEYS
            uids.append(rule["uid"])
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", rule["uid"])
            assert rule["title"].strip()
            assert DURATION.match(rule["for"])
            assert rule["noDataState"] in NO_DATA_STATES
            assert rule["execErrState"] in ERROR_STATES
            assert isinstance(rule["isPaused"], bool)
            for mapping in (rule["labels"], rule["annotations"]):
                assert all(isinstance(v, str) for v in mapping.values())
            # labels are expanded like environment variables ($name) by provisioning
            assert "$" not in "".join(rule["labels"].values())
            ref_ids = []
            for query in rule["data"]:
                assert set(query) <= QUERY_KEYS and {"refId", "datasourceUid", "model"} <= set(
                    query
                )
                assert set(query["relativeTimeRange"]) == {"from", "to"}
                assert query["model"]["refId"] == query["refId"]
                ref_ids.append(query["refId"])
            assert rule["condition"] in ref_ids
            condition = next(q for q in rule["data"] if q["refId"] == rule["condition"])
            assert condition["datasourceUid"] == "__expr__"
            assert condition["model"]["expression"] in ref_ids
    assert len(uids) == len(set(uids))


def test_grafana_telnet_rules_are_the_prometheus_ones():
    """Same names, same PromQL (whitespace aside), same labels as the Prometheus rules."""
    prometheus = prometheus_rules()
    grafana = {rule["title"]: rule for rule in grafana_rules()}
    assert set(grafana) == {"NetsnoopTelnetInboundAttempt", "NetsnoopTelnetOutboundAttempt"}
    for title, rule in grafana.items():
        assert " ".join(grafana_rule_query(rule).split()) == " ".join(
            prometheus[title]["expr"].split()
        )
        assert rule["labels"] == prometheus[title]["labels"]
        assert rule["for"] == "0s" and "for" not in prometheus[title]
