"""What comes from declarations, regenerated with ``python -m exporter.docs`` and checked by
tests/unit/test_registry.py: the collectors and metrics tables of the README and the OTLP table
of docs/otlp.md (each between marker comments; the prose around them is hand-written), and the
bundled config/netsnoop.yaml, whose comments are the settings' descriptions."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from exporter.collectors.registry import CollectorSpec, registered_collectors
from exporter.core.metrics import EXPORTER_METRICS, MetricSpec
from exporter.outputs.otlp import OtlpMetric, attribute_name

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
        # a histogram's le is its buckets, not a label of its own
        labels = _code(spec.labels[:-1] if spec.kind == "histogram" else spec.labels)
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
    groups: dict[str, list[tuple[MetricSpec, OtlpMetric]]] = {}
    for spec in specs:
        if spec.otlp is not None:  # a histogram: not exported over OTLP
            groups.setdefault(spec.otlp.name, []).append((spec, spec.otlp))
    lines = [
        "| OTLP metric | Type | Unit | Prometheus metric | Attributes |",
        "|---|---|---|---|---|",
    ]
    for name, group in groups.items():
        first, otlp = group[0]
        shared = set(otlp.constant).intersection(*(set(other.constant) for _, other in group))
        prometheus = ", ".join(
            f"`{spec.exposed_name}`"
            + "".join(f" (`{k}={v}`)" for k, v in other.constant if (k, v) not in shared)
            for spec, other in group
        )
        attributes = [f"`{k}={v}`" for k, v in otlp.constant if (k, v) in shared]
        attributes += [f"`{k}`" for k, _ in otlp.constant if (k, _) not in shared]
        attributes += [_attribute(label, otlp) for label in first.labels]
        if first.optional_labels:
            attributes.append("`k8s.*`")
        unit = f"`{otlp.unit}`" if otlp.unit else ""
        lines.append(_row((f"`{name}`", first.kind, unit, prometheus, ", ".join(attributes))))
    return lines


def all_metrics() -> list[MetricSpec]:
    return [*(m for spec in registered_collectors() for m in spec.metrics), *EXPORTER_METRICS]


CONFIG_HEADER = """\
# netsnoop-exporter's bundled default configuration. Every key is optional;
# the values below are the defaults. Unknown keys are errors.
# Generated from the settings' descriptions by python -m exporter.docs: edit those.
"""
COMMENT_WIDTH = 93  # lines stay within 95 columns


def _flow(value: Any, indent: str, key: str) -> str:
    """One value in YAML flow style; a long list continues on lines indented under its key."""
    width = COMMENT_WIDTH - len(indent) - len(key) - 8  # a soft limit: one item may pass it
    text = yaml.safe_dump(value, default_flow_style=True, width=width)
    text = text.removesuffix("\n...\n").rstrip("\n")
    return text.replace("\n  ", "\n" + indent + "  ")


def config_lines(settings: BaseModel, depth: int = 0) -> list[str]:
    """A model's values as commented YAML: each key's description above it, sections nested,
    ``enabled`` first."""
    indent = "  " * depth
    names = sorted(type(settings).model_fields, key=lambda name: name != "enabled")
    lines = []
    for name in names:
        info = type(settings).model_fields[name]
        value = getattr(settings, name)
        if info.description:
            width = COMMENT_WIDTH - len(indent)
            lines += [f"{indent}# {line}" for line in textwrap.wrap(info.description, width)]
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines += config_lines(value, depth + 1)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines.append(f"{indent}{name}:")
            items = yaml.safe_dump(
                [item.model_dump() for item in value], sort_keys=False, default_flow_style=None
            )
            lines += [f"{indent}  {line}" for line in items.splitlines()]
        else:
            lines.append(f"{indent}{name}: {_flow(value, indent, name)}")
    return lines


def bundled_config() -> str:
    from exporter.config import Config

    return CONFIG_HEADER + "\n".join(config_lines(Config())) + "\n"


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
    """Each generated file as it should read now."""
    texts: dict[Path, str] = {root / "config" / "netsnoop.yaml": bundled_config()}
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
