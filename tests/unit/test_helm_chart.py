"""The Helm chart, rendered by the real `helm` (installed by scripts/install-helm.sh from the
npm package that ships it) and checked against the Kubernetes API schemas
(kubernetes-validate) and against what the exporter needs.

Skipped, with the reason, where helm is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from exporter.config import OtlpConfig, parse_config
from exporter.outputs.otlp import resolve_settings
from tests.chart import CHART, HELM, Manifest, chart_capabilities, helm, only, render, values_args
from tests.helpers import REPO

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

pytestmark = pytest.mark.skipif(
    HELM is None, reason="needs helm: scripts/install-helm.sh installs it into .tools/bin"
)


def container(manifests: list[Manifest]) -> dict:
    return only(manifests, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]


VALUE_SETS = [None, *CI_VALUES]
VALUE_IDS = ["default", *(p.stem for p in CI_VALUES)]


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_lint_strict(values: Path | None):
    result = helm("lint", "--strict", *values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_every_manifest_is_valid_kubernetes(values: Path | None):
    import kubernetes_validate

    manifests = render(*values_args(values))
    assert {m["kind"] for m in manifests} >= {"DaemonSet", "ConfigMap"}
    for manifest in manifests:
        if manifest["kind"] in OPERATOR_KINDS:
            # No schema ships for the operator's CRDs; their fields are asserted below.
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
            assert manifest["spec"]
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_rendered_config_is_accepted_by_the_exporter(values: Path | None):
    """The ConfigMap's netsnoop.yaml goes through the exporter's own strict config model."""
    config_map = next(
        m for m in render(*values_args(values)) if "netsnoop.yaml" in m.get("data", {})
    )
    parse_config(config_map["data"]["netsnoop.yaml"], "configmap")


def test_daemonset_defaults():
    manifests = render()
    daemonset = only(manifests, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    main = container(manifests)
    security = main["securityContext"]
    assert "privileged" not in security
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["capabilities"]["add"] == chart_capabilities()
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert pod["hostPID"] is True and pod["hostNetwork"] is False
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert daemonset["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]
    assert {"name": "metrics", "containerPort": 19435, "protocol": "TCP"} in main["ports"]


def test_host_mounts_are_read_only():
    manifests = render()
    host_paths = {
        v["name"]: v["hostPath"]["path"]
        for v in only(manifests, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
        if "hostPath" in v
    }
    assert set(host_paths.values()) == {
        "/lib/modules",
        "/usr/src",
        "/sys/kernel/tracing",
        "/sys/kernel/debug",
        "/sys/fs/cgroup",
    }
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    for name, path in host_paths.items():
        assert mounts[name]["readOnly"] is True, name
        expected = "/host/sys/fs/cgroup" if path == "/sys/fs/cgroup" else path
        assert mounts[name]["mountPath"] == expected


def test_pod_labels_config_points_at_the_host_cgroup_mount():
    config_map = only(render(), "ConfigMap")
    config = parse_config(config_map["data"]["netsnoop.yaml"], "configmap")
    assert config.kubernetes.enabled is True
    assert config.kubernetes.cgroup_root == "/host/sys/fs/cgroup"
    env = {e["name"]: e for e in container(render())["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_privileged_switch():
    manifests = render("--set", "privileged=true")
    security = container(manifests)["securityContext"]
    assert security["privileged"] is True
    assert "capabilities" not in security


def test_config_change_rolls_the_pods():
    def checksum(*args: str) -> str:
        daemonset = only(render(*args), "DaemonSet")
        return daemonset["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.labels.uid=false")


def test_labels_are_on_every_object():
    manifests = render(
        "--set", "commonLabels.team=net", *values_args(CHART / "ci" / "monitoring-values.yaml")
    )
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "netsnoop-exporter", manifest["kind"]
        assert labels["team"] == "net", manifest["kind"]
    selector = only(manifests, "DaemonSet")["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "netsnoop-exporter",
        "app.kubernetes.io/instance": "nsn",
    }


def test_service_and_monitors_use_the_metrics_port():
    manifests = render(*values_args(CHART / "ci" / "monitoring-values.yaml"))
    service = only(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 19435, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    pod_monitor = only(manifests, "PodMonitor")
    assert pod_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    policy = only(manifests, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 19435, "protocol": "TCP"}]


def test_monitors_keep_the_workload_labels_of_the_series():
    """Under kube-prometheus-stack the operator sets namespace/pod/container target labels of
    the exporter's own pod; both monitors keep the exporter's values (no exported_* renames)
    and drop those target labels, after the node label is taken and before user relabelings."""
    manifests = render(
        *values_args(CHART / "ci" / "monitoring-values.yaml"),
        "--set-json",
        'prometheus.monitor.relabelings=[{"targetLabel":"cluster","replacement":"c1"}]',
    )
    [service_endpoint] = only(manifests, "ServiceMonitor")["spec"]["endpoints"]
    [pod_endpoint] = only(manifests, "PodMonitor")["spec"]["podMetricsEndpoints"]
    for endpoint in (service_endpoint, pod_endpoint):
        assert endpoint["honorLabels"] is True
        node, drop = endpoint["relabelings"][:2]
        assert node == {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
        assert drop == {"action": "labeldrop", "regex": "namespace|pod|container"}
    assert service_endpoint["relabelings"][2] == {"targetLabel": "cluster", "replacement": "c1"}


def test_rbac_reads_pods_only():
    manifests = render()
    role = only(manifests, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = only(manifests, "ClusterRoleBinding")
    account = only(manifests, "ServiceAccount")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
    assert (
        only(manifests, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


def test_otlp_points_at_the_node_collector():
    env = {e["name"]: e for e in container(render("--set", "otlp.enabled=true"))["env"]}
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://$(HOST_IP):4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    settings = resolve_settings(OtlpConfig(), {k: v.get("value", "") for k, v in env.items()})
    assert settings.enabled and settings.protocol == "grpc"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {e["name"] for e in container(render())["env"]}


def test_helm_test_hook_fetches_metrics():
    [pod] = [m for m in render() if m["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = " ".join(pod["spec"]["containers"][0]["command"])
    assert "/metrics" in command and "nsn-netsnoop-exporter.monitoring.svc:19435" in command


@pytest.fixture
def chart_with_bundled_files(tmp_path: Path) -> Path:
    """A copy of the chart whose files/ holds one dashboard, one rule file and one Grafana
    alert file, so the templates are tested whatever the repository bundles today."""
    chart = tmp_path / "netsnoop-exporter"
    shutil.copytree(CHART, chart, symlinks=False, ignore=shutil.ignore_patterns("files"))
    files = chart / "files"
    for sub in ("dashboards", "alerts", "grafana-alerts"):
        (files / sub).mkdir(parents=True)
    for name in ("netsnoop-overview", "netsnoop_security"):
        (files / "dashboards" / f"{name}.json").write_text(json.dumps({"uid": name}))
    rule = {"alert": "NetsnoopTelnetInboundAttempt", "expr": "vector(1)"}
    (files / "alerts" / "telnet.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "netsnoop-telnet", "rules": [rule]}]})
    )
    (files / "grafana-alerts" / "telnet.yaml").write_text("apiVersion: 1\ngroups: []\n")
    return chart


def test_dashboards_rules_and_grafana_alerts(chart_with_bundled_files: Path):
    manifests = render(
        *values_args(CHART / "ci" / "monitoring-values.yaml"),
        "--set",
        "grafana.dashboards.labelValue=yes",
        "--set",
        "prometheus.rules.enabled=true",
        "--set",
        "prometheus.rules.additionalLabels.release=kube-prometheus-stack",
        chart=chart_with_bundled_files,
    )
    config_maps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    for name in ("netsnoop-overview", "netsnoop_security"):
        dashboard = config_maps[f"nsn-netsnoop-exporter-dashboard-{name.replace('_', '-')}"]
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "yes"
        assert json.loads(dashboard["data"][f"{name}.json"]) == {"uid": name}
    alerts = config_maps["nsn-netsnoop-exporter-grafana-alerts"]
    assert alerts["metadata"]["labels"]["grafana_alert"] == "1"
    assert yaml.safe_load(alerts["data"]["telnet.yaml"]) == {"apiVersion": 1, "groups": []}
    rule = only(manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"][0]["rules"][0]["alert"] == "NetsnoopTelnetInboundAttempt"


def test_chart_bundles_every_repository_dashboard():
    """scripts/build-chart.sh copies the repository's dashboards, so the chart ships all."""
    bundled = {p.name for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert bundled == {p.name for p in (REPO / "dashboards").glob("*.json")}
    manifests = render("--set", "grafana.dashboards.enabled=true")
    shipped = [m for m in manifests if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(shipped) == len(bundled)


def test_rules_without_rule_files_fail_clearly(tmp_path: Path):
    chart = tmp_path / "netsnoop-exporter"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("files"))
    result = helm("template", "nsn", "--set", "prometheus.rules.enabled=true", chart=chart)
    assert result.returncode != 0
    assert "no alert rules in files/alerts/*.yaml" in result.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("containerPort=http", "at '/containerPort': got string, want integer"),
        ("privileged=yes", "at '/privileged': got string, want boolean"),
        ("hostNetwork=1", "at '/hostNetwork': got number, want boolean"),
        ("prometheus.monitor.interval=5", "at '/prometheus/monitor/interval'"),
        ("service.type=Ingress", "at '/service/type'"),
        ("otlp.protocol=udp", "at '/otlp/protocol'"),
        ("hostPaths.modules=lib/modules", "at '/hostPaths/modules'"),
        ("prometheus.monitr.enabled=true", "additional properties 'monitr' not allowed"),
        ("tolerations=all", "at '/tolerations': got string, want array"),
    ],
)
def test_schema_rejects_wrong_values(setting: str, message: str):
    result = helm("template", "nsn", "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_package_holds_the_chart_and_its_shipped_files_only(tmp_path: Path):
    """No generator script, no second copy of the rules, no CI values, no symlink."""
    packaged = subprocess.run(
        [REPO / "scripts" / "build-chart.sh", "--package", tmp_path], capture_output=True, text=True
    )
    assert packaged.returncode == 0, packaged.stderr
    [archive] = tmp_path.glob("netsnoop-exporter-*.tgz")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(member.isfile() for member in members)
    names = {member.name.removeprefix("netsnoop-exporter/") for member in members}
    templates = {str(p.relative_to(CHART)) for p in (CHART / "templates").rglob("*") if p.is_file()}
    shipped = {
        *(f"files/dashboards/{p.name}" for p in (REPO / "dashboards").glob("*.json")),
        *(f"files/alerts/{p.name}" for p in (REPO / "dashboards" / "alerts").glob("*.yaml")),
        *(
            f"files/grafana-alerts/{p.name}"
            for p in (REPO / "dashboards" / "grafana-alerts").glob("*.yaml")
        ),
    }
    chart_files = {"Chart.yaml", "values.yaml", "values.schema.json", ".helmignore"}
    assert names == chart_files | templates | shipped
