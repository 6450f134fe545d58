"""Collectors: one per concern, each owning its BPF program, all behind one interface."""

from __future__ import annotations

from exporter.collectors.base import Collector
from exporter.config import Config


def enabled_collectors(config: Config) -> list[Collector]:
    """The collectors the configuration turns on, in a stable order."""
    from exporter.collectors.tcp_connections import TcpConnectionsCollector

    collectors: list[Collector] = []
    if config.collectors.tcp_connections.enabled:
        collectors.append(TcpConnectionsCollector(config))
    return collectors
