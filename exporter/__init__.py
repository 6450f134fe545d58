"""netsnoop-exporter: an eBPF network exporter for Prometheus and OpenTelemetry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("netsnoop-exporter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
