"""The YAML configuration as a typed, validated model; every key has a default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.paths import config_dir

MapSize = Annotated[int, Field(ge=16, le=1 << 20)]


class StrictModel(BaseModel):
    """Unknown keys and wrong types are errors, not silently coerced or ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TcpConnectionsConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(
        16384, description="Distinct {direction, port, comm, uid, result} counters kept."
    )
    pending_map_size: MapSize = Field(
        8192, description="Connect attempts in flight (LRU: the oldest is evicted when full)."
    )
    listeners_map_size: MapSize = Field(4096, description="Listening ports with a known owner.")


class CollectorsConfig(StrictModel):
    tcp_connections: TcpConnectionsConfig = TcpConnectionsConfig()


class LabelsConfig(StrictModel):
    """Labels can be blanked (not removed) so every series keeps the documented label set."""

    comm: bool = True
    uid: bool = True


class Config(StrictModel):
    collectors: CollectorsConfig = CollectorsConfig()
    labels: LabelsConfig = LabelsConfig()


class ConfigError(Exception):
    """A one-line reason naming the file and the key."""


def default_config_path() -> Path:
    return config_dir() / "netsnoop.yaml"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    more = error.error_count() - 1
    return f"{key}: {reason}" + (f" (and {more} more)" if more else "")


def parse_config(text: str, source: str) -> Config:
    try:
        data = yaml.safe_load(text)
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
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse_config(text, str(path))
