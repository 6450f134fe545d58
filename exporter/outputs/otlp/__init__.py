"""The OTLP view of the shared snapshot: the same numbers /metrics serves, pushed periodically
to an OpenTelemetry Collector over gRPC or HTTP/protobuf (docs/otlp.md).

Each export takes ONE snapshot (shared with any scrape that arrives meanwhile, see
SnapshotSource) and every observable instrument of that collection reads it, so the BPF maps
are read once per export and OTLP and Prometheus always report the same totals.

The OpenTelemetry SDK is an optional extra and imported only when the output starts; settings
and the name mapping are plain Python, testable without it.
"""

from exporter.outputs.otlp.names import (
    ObservedMetric,
    OtlpMetric,
    attribute_name,
    observations,
    otlp_metric,
    otlp_table,
    resource_attributes,
)
from exporter.outputs.otlp.output import OtlpOutput
from exporter.outputs.otlp.settings import (
    OtlpSettings,
    OtlpSettingsError,
    missing_package_problem,
    resolve_settings,
    sdk_modules,
)

__all__ = [
    "ObservedMetric",
    "OtlpMetric",
    "OtlpOutput",
    "OtlpSettings",
    "OtlpSettingsError",
    "attribute_name",
    "missing_package_problem",
    "observations",
    "otlp_metric",
    "otlp_table",
    "resolve_settings",
    "resource_attributes",
    "sdk_modules",
]
