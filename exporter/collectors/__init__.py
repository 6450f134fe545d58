"""Collectors: one per concern, each owning its BPF program, all behind one interface."""

from __future__ import annotations

from exporter.collectors.base import BpfCollector, Collector
from exporter.config import Config, ConfigError


def enabled_collectors(config: Config) -> list[Collector]:
    """The collectors the configuration turns on, in a stable order."""
    from exporter.collectors.listen_queue import ListenQueueCollector
    from exporter.collectors.packet_drops import PacketDropsCollector
    from exporter.collectors.socket_traffic import SocketTrafficCollector
    from exporter.collectors.tcp_connect_latency import TcpConnectLatencyCollector
    from exporter.collectors.tcp_connections import TcpConnectionsCollector
    from exporter.collectors.tcp_resets import TcpResetsCollector
    from exporter.collectors.tcp_retransmits import TcpRetransmitsCollector
    from exporter.collectors.udp_sends import UdpSendsCollector
    from exporter.collectors.udp_unreachable import UdpUnreachableCollector
    from exporter.collectors.watch import WatchCollector

    collectors: list[Collector] = []
    watch_sources = []  # programs that emit watch events; the watch collector starts after them
    if config.collectors.tcp_connections.enabled:
        tcp = TcpConnectionsCollector(config)
        collectors.append(tcp)
        watch_sources.append(tcp)
    if config.collectors.socket_traffic.enabled:
        collectors.append(SocketTrafficCollector(config))
    if config.collectors.udp_sends.enabled:
        udp = UdpSendsCollector(config)
        collectors.append(udp)
        watch_sources.append(udp)
    if config.collectors.packet_drops.enabled:
        collectors.append(PacketDropsCollector(config))
    if config.collectors.udp_unreachable.enabled:
        collectors.append(UdpUnreachableCollector(config))
    if config.collectors.listen_queue.enabled:
        collectors.append(ListenQueueCollector(config))
    if config.collectors.tcp_retransmits.enabled:
        collectors.append(TcpRetransmitsCollector(config))
    if config.collectors.tcp_resets.enabled:
        collectors.append(TcpResetsCollector(config))
    if config.collectors.tcp_connect_latency.enabled:
        collectors.append(TcpConnectLatencyCollector(config))
    if config.watch and watch_sources:
        collectors.append(WatchCollector(config, watch_sources))
    apply_attach_points(collectors, config.tracepoints)
    return collectors


def apply_attach_points(collectors: list[Collector], tracepoints: dict[str, str]) -> None:
    """Hands each ``<collector>.<program>: category:event`` of the config to its collector;
    a name that matches no program of an enabled collector is a config error."""
    programs = {
        f"{collector.name}.{spec.name}": collector
        for collector in collectors
        if isinstance(collector, BpfCollector)
        for spec in collector.programs
    }
    for key, tracepoint in tracepoints.items():
        if key not in programs:
            raise ConfigError(f"tracepoints.{key}: no such program in an enabled collector")
        programs[key].attach_points[key.split(".", 1)[1]] = tracepoint
