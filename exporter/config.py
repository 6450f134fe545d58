"""The YAML configuration as a typed, validated model; every key has a default."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from exporter.collectors.registry import collectors_model
from exporter.paths import config_dir
from exporter.settings import (
    DEFAULT_KEPT_PORTS,
    WATCH_MAX_ENTRIES,
    WATCH_MAX_RULES,
    CardinalityConfig,
    ConfigError,
    EventLogConfig,
    KubernetesConfig,
    LabelsConfig,
    MapSize,
    OtlpConfig,
    PortsConfig,
    ProgramKey,
    StrictModel,
    TracepointName,
    WatchRule,
    default_watch_rules,
    parse_port_range,
)

__all__ = [  # the building blocks, for modules that take the whole config
    "DEFAULT_KEPT_PORTS",
    "CardinalityConfig",
    "ConfigError",
    "EventLogConfig",
    "KubernetesConfig",
    "LabelsConfig",
    "MapSize",
    "OtlpConfig",
    "PortsConfig",
    "StrictModel",
    "WatchRule",
    "parse_port_range",
]

if TYPE_CHECKING:

    class CollectorsConfig(StrictModel):
        """Its fields are the registered collectors, known only at run time: read a section
        with exporter.collectors.registry.collector_settings, which gives it its type."""

else:
    # collectors: one key per registered collector, with the model it declares.
    CollectorsConfig = collectors_model()


class Config(StrictModel):
    collectors: CollectorsConfig = CollectorsConfig()
    labels: LabelsConfig = Field(
        LabelsConfig(),
        description="Set to false to blank a label's value (the label itself stays).",
    )
    cardinality: CardinalityConfig = CardinalityConfig()
    ports: PortsConfig = PortsConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    watch: list[WatchRule] = Field(
        default_factory=default_watch_rules,
        description="Watched ports: each matching connection, attempt or datagram becomes one "
        "JSON line in the event log, counted in netsnoop_watch_events_total{rule}. Nothing else "
        "leaves the kernel. A rule: name; protocol tcp or udp; direction inbound, outbound or "
        'both (udp: outbound); ports (numbers or "low-high"); remote_cidrs (empty: any); '
        "rate_limit, events per second in one-second windows (0: no limit; the rest count in "
        'netsnoop_watch_events_lost_total{reason="rate_limit"}); hook, a command (argv list) '
        "run per logged event with its JSON on stdin. The first rule that matches names the "
        "event.",
    )
    event_log: EventLogConfig = EventLogConfig()
    otlp: OtlpConfig = Field(
        OtlpConfig(),
        description="OpenTelemetry: push the same metrics /metrics serves over OTLP, every "
        "interval_seconds (docs/otlp.md). Needs the otlp extra: pip install "
        "'netsnoop-exporter[otlp]'. Each standard variable that is set overrides its key here: "
        "OTEL_METRICS_EXPORTER (otlp: on, none: off), "
        "OTEL_EXPORTER_OTLP_[METRICS_]{ENDPOINT,PROTOCOL,HEADERS,COMPRESSION,TIMEOUT}, "
        "OTEL_METRIC_EXPORT_INTERVAL.",
    )
    tracepoints: dict[ProgramKey, TracepointName] = Field(
        default_factory=dict,
        description="Attach a program to another tracepoint ('<collector>.<program>': "
        "'category:event'), e.g. for a kernel that renamed one. A tracepoint the kernel lacks "
        "disables only that program (netsnoop_bpf_program_attached{program} = 0); a program "
        "name that does not exist is an error.",
    )

    @field_validator("watch")
    @classmethod
    def _rules(cls, rules: list[WatchRule]) -> list[WatchRule]:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        if len(rules) > WATCH_MAX_RULES:
            raise ValueError(f"at most {WATCH_MAX_RULES} rules")
        entries = sum(rule.trie_entries_needed() for rule in rules)
        if entries > WATCH_MAX_ENTRIES:
            raise ValueError(
                f"{entries} port x direction x CIDR combinations, over {WATCH_MAX_ENTRIES}"
            )
        return rules


ModelT = TypeVar("ModelT", bound=BaseModel)


def default_config_path() -> Path:
    return config_dir() / "netsnoop.yaml"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    # repr() keeps a hostile key (newlines, control bytes) on the one line of the message
    key = ".".join(
        part if isinstance(part, str) and part.isprintable() else repr(part)
        for part in first["loc"]
    )
    key = key or "(top level)"
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    more = error.error_count() - 1
    return f"{key}: {reason}" + (f" (and {more} more)" if more else "")


def parse_config(text: str, source: str) -> Config:
    return parse_model(text, source, Config)


INT_TAG = "tag:yaml.org,2002:int"


class StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses what PyYAML lets through silently or with a bare exception: a
    key given twice (the last one would win unseen), and integers no setting needs (past 64
    bits; past Python's 4,300 decimal digits they are a ValueError with no line)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            name = key if isinstance(key, str) and key.isprintable() else repr(key)
            if isinstance(key, Hashable):
                if key in seen:
                    raise self._refuse(f"{name}: duplicate key", key_node)
                seen.add(key)
            if value_node.tag == INT_TAG and not self._fits(value_node):
                raise self._refuse(f"{name}: integer too large", value_node)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if not self._fits(node):  # in a list: no key to name
            raise self._refuse("integer too large", node)
        return super().construct_yaml_int(node)

    def _fits(self, node: yaml.ScalarNode) -> bool:
        text = str(node.value)
        return len(text) <= 200 and abs(super().construct_yaml_int(node)).bit_length() <= 64

    @staticmethod
    def _refuse(problem: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
        return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


StrictYamlLoader.add_constructor(INT_TAG, StrictYamlLoader.construct_yaml_int)


def parse_model(text: str, source: str, model: type[ModelT]) -> ModelT:
    """YAML text into a strict model, or a ConfigError naming ``source``, the key and why."""
    try:
        data = yaml.load(text, Loader=StrictYamlLoader)  # a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"{source}: (top level): nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(f"{source}: {where}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{source}: (top level): nested too deeply") from None
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def load_config(path: str | Path) -> Config:
    return load_model(path, Config)


def load_model(path: str | Path, model: type[ModelT]) -> ModelT:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse_model(text, str(path), model)
