"""The documentation tables that come from declarations, regenerated with
``python -m exporter.docs`` and checked by tests/unit/test_docs.py: the collectors and metrics
tables of the README and the OTLP table of docs/otlp.md (each between marker comments; the prose
around them is hand-written)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from exporter.collectors.registry import CollectorSpec, registered_collectors
from exporter.metrics import EXPORTER_METRICS, MetricSpec
from exporter.otlp import OtlpMetric, attribute_name

REPO = Path(__file__).resolve().parent.parent


def _code(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def collectors_table(specs: Iterable[CollectorSpec]) -> list[str]:
    lines = ["| Collector | Default | Flag | Metrics | What |", "|---|---|---|---|---|"]
    for spec in specs:
        if spec.settings is None:
            default, flag = "with `watch:` rules", ""
        else:
            default = "on" if spec.enabled_by_default else "off"
            flag = f"`--[no-]collector.{spec.name}`"
        metrics = _code(metric.exposed_name for metric in spec.metrics)
        lines.append(_row((f"`{spec.name}`", default, flag, metrics, spec.summary)))
    return lines


def metrics_table(specs: Iterable[MetricSpec]) -> list[str]:
    lines = ["| Metric | Type | Labels | Meaning |", "|---|---|---|---|"]
    for spec in specs:
        labels = _code(spec.labels)
        if spec.optional_labels:
            labels += f" (+ {_code(spec.optional_labels)} with `kubernetes.enabled`)"
        lines.append(_row((f"`{spec.exposed_name}`", spec.kind, labels, spec.help)))
    return lines


def _attribute(label: str, metric: OtlpMetric) -> str:
    if label == "port" and metric.port == "direction":
        return "`network.peer.port` / `network.local.port`"
    name = attribute_name(label, metric, "")
    if name == "network.type":
        return "`network.type` (or `netsnoop.protocol`)"
    return f"`{name}`"


def otlp_table(specs: Iterable[MetricSpec]) -> list[str]:
    """One row per OTLP name; families that share it are listed with their constants."""
    groups: dict[str, list[MetricSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.otlp.name, []).append(spec)
    lines = [
        "| OTLP metric | Type | Unit | Prometheus metric | Attributes |",
        "|---|---|---|---|---|",
    ]
    for name, group in groups.items():
        first = group[0]
        shared = set(first.otlp.constant).intersection(*(set(s.otlp.constant) for s in group))
        prometheus = ", ".join(
            f"`{spec.exposed_name}`"
            + "".join(f" (`{k}={v}`)" for k, v in spec.otlp.constant if (k, v) not in shared)
            for spec in group
        )
        attributes = [f"`{k}={v}`" for k, v in first.otlp.constant if (k, v) in shared]
        attributes += [f"`{k}`" for k, _ in first.otlp.constant if (k, _) not in shared]
        attributes += [_attribute(label, first.otlp) for label in first.labels]
        if first.optional_labels:
            attributes.append("`k8s.*`")
        unit = f"`{first.otlp.unit}`" if first.otlp.unit else ""
        lines.append(_row((f"`{name}`", first.kind, unit, prometheus, ", ".join(attributes))))
    return lines


def all_metrics() -> list[MetricSpec]:
    return [*(m for spec in registered_collectors() for m in spec.metrics), *EXPORTER_METRICS]


# (file, marker) -> the generated lines between <!-- marker:start --> and <!-- marker:end -->
GENERATED: dict[tuple[str, str], Callable[[], list[str]]] = {
    ("README.md", "collectors-table"): lambda: collectors_table(registered_collectors()),
    ("README.md", "metrics-table"): lambda: metrics_table(all_metrics()),
    ("docs/otlp.md", "otlp-table"): lambda: otlp_table(all_metrics()),
}


def replace_between_markers(text: str, marker: str, lines: list[str]) -> str:
    pattern = re.compile(
        rf"(<!-- {marker}:start[^>]*-->\n).*?(<!-- {marker}:end -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"no <!-- {marker}:start --> ... <!-- {marker}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)


def generated_files(root: Path = REPO) -> dict[Path, str]:
    """Each documentation file as it should read now."""
    texts: dict[Path, str] = {}
    for (name, marker), generate in GENERATED.items():
        path = root / name
        text = texts.get(path) or path.read_text(encoding="utf-8")
        texts[path] = replace_between_markers(text, marker, generate())
    return texts


def main() -> int:
    for path, text in generated_files().items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
