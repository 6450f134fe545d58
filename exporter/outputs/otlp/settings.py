"""The OTLP settings: the config section, overridden by the standard OTEL_* environment
variables, and the check that the optional SDK is installed."""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import unquote, urlsplit

from exporter.settings import OtlpConfig, OtlpProtocol

log = logging.getLogger(__name__)

PIP_INSTALL = "pip install 'netsnoop-exporter[otlp]'"
DEFAULT_ENDPOINTS: dict[OtlpProtocol, str] = {
    "grpc": "http://localhost:4317",
    "http/protobuf": "http://localhost:4318",
}
HTTP_METRICS_PATH = "/v1/metrics"


class OtlpSettingsError(Exception):
    """``VARIABLE: reason`` on one line, for an environment variable that cannot be used."""


@dataclass(frozen=True)
class OtlpSettings:
    enabled: bool
    endpoint: str  # what the SDK exporter takes: a full URL for HTTP, scheme://host:port for gRPC
    protocol: OtlpProtocol
    headers: dict[str, str]
    compression: Literal["none", "gzip"]
    timeout_seconds: float
    interval_seconds: float


def _variable(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """The metrics-specific variable, else the general one; empty values count as unset."""
    for name in (f"OTEL_EXPORTER_OTLP_METRICS_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


Choice = TypeVar("Choice", bound=str)


def _choice(found: tuple[str, str], choices: tuple[Choice, ...], reason: str) -> Choice:
    """The variable's value as one of ``choices`` (so typed), else an error naming it."""
    name, value = found
    for choice in choices:
        if value == choice:
            return choice
    raise OtlpSettingsError(f"{name}: {value!r} {reason}")


def _milliseconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OtlpSettingsError(f"{name}: {text!r} is not a number of milliseconds") from None
    if not 0 < value < math.inf:
        raise OtlpSettingsError(f"{name}: {text!r} must be a positive number of milliseconds")
    return value / 1000


def parse_headers(name: str, text: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` with URL-encoded values (the OTel environment format)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise OtlpSettingsError(f"{name}: {item.strip()!r} is not key=value")
        headers[key.strip()] = unquote(value.strip())
    return headers


def _endpoint_url(name: str, text: str, environ: Mapping[str, str]) -> str:
    if "://" not in text:  # gRPC's host:port form; OTEL_EXPORTER_OTLP_INSECURE picks the scheme
        insecure = (_variable(environ, "INSECURE") or ("", "false"))[1].lower() == "true"
        text = ("http://" if insecure else "https://") + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OtlpSettingsError(f"{name}: {text!r} is not an http:// or https:// URL")
    return text


def resolve_settings(config: OtlpConfig, environ: Mapping[str, str]) -> OtlpSettings:
    """The config section with every standard variable that is set taking precedence."""
    enabled = config.enabled
    if selected := environ.get("OTEL_METRICS_EXPORTER", "").strip():
        enabled = "otlp" in (part.strip().lower() for part in selected.split(","))

    protocol = config.protocol
    if found := _variable(environ, "PROTOCOL"):
        reason = "is not grpc or http/protobuf (http/json is not supported)"
        protocol = _choice(found, tuple(DEFAULT_ENDPOINTS), reason)

    signal_endpoint = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    general_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if signal_endpoint:  # a full URL, used as it is
        endpoint = _endpoint_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", signal_endpoint, environ)
    else:
        base = config.endpoint or DEFAULT_ENDPOINTS[protocol]
        if general_endpoint:
            base = _endpoint_url("OTEL_EXPORTER_OTLP_ENDPOINT", general_endpoint, environ)
        endpoint = base.rstrip("/") + HTTP_METRICS_PATH if protocol == "http/protobuf" else base

    headers = dict(config.headers)
    if found := _variable(environ, "HEADERS"):
        headers = parse_headers(*found)

    compression = config.compression
    if found := _variable(environ, "COMPRESSION"):
        compression = _choice(found, ("none", "gzip"), "is not none or gzip")

    timeout = config.timeout_seconds
    if found := _variable(environ, "TIMEOUT"):
        timeout = _milliseconds(*found)
    interval = config.interval_seconds
    if text := environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip():
        interval = _milliseconds("OTEL_METRIC_EXPORT_INTERVAL", text)
    return OtlpSettings(enabled, endpoint, protocol, headers, compression, timeout, interval)


def missing_package_problem(modules: Sequence[str]) -> str | None:
    """Why the OTLP output cannot start here (the extra is not installed), or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return (
                f"otlp is enabled but {error.name or module} is not installed: {PIP_INSTALL} "
                "(or scripts/install.sh --extras otlp)"
            )
    return None


def sdk_modules(protocol: str) -> tuple[str, ...]:
    exporter = "grpc" if protocol == "grpc" else "http"
    return (
        "opentelemetry.sdk.metrics",
        f"opentelemetry.exporter.otlp.proto.{exporter}.metric_exporter",
    )
