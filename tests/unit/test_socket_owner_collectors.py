"""Labels of the owner-keyed counters (retransmits, resets) from decoded map keys."""

from __future__ import annotations

from exporter.collectors.socket_owners import OwnedKey
from exporter.collectors.tcp_connections import NO_UID
from exporter.collectors.tcp_resets import TcpResetsCollector
from exporter.collectors.tcp_retransmits import TcpRetransmitsCollector
from exporter.config import Config, LabelsConfig


def collector(labels: LabelsConfig | None = None) -> TcpRetransmitsCollector:
    config = Config() if labels is None else Config(labels=labels)
    return TcpRetransmitsCollector(config)


def test_retransmits_carry_owner_direction_port_and_kind():
    counts = [
        (OwnedKey(0, 443, 1000, b"curl\0\0", 0), 5),
        (OwnedKey(0, 443, 1000, b"curl", 1), 1),
        (OwnedKey(1, 80, 33, b"nginx", 1), 2),
        (OwnedKey(1, 80, NO_UID, b"", 0), 4),  # a connection older than the exporter
        (OwnedKey(0, 0, 0, b"x", 0), 1),  # port 0: folded by the port policy
    ]
    family = collector().family(counts)
    assert family.name == "netsnoop_tcp_retransmits" and family.kind == "counter"
    assert family.label_names == ("direction", "port", "comm", "uid", "kind")
    assert family.increments
    assert family.samples == {
        ("outbound", "443", "curl", "1000", "data"): 5,
        ("outbound", "443", "curl", "1000", "syn"): 1,
        ("inbound", "80", "nginx", "33", "syn"): 2,
        ("inbound", "80", "", "", "data"): 4,
        ("outbound", "other", "x", "0", "data"): 1,
    }


def test_blanked_labels_and_unknown_values():
    counts = [
        (OwnedKey(0, 443, 1, b"a", 0), 1),
        (OwnedKey(0, 443, 2, b"b", 0), 2),
        (OwnedKey(5, 443, 2, b"b", 0), 7),  # no such direction
        (OwnedKey(0, 443, 2, b"b", 9), 7),  # no such kind
    ]
    family = collector(LabelsConfig(comm=False, uid=False)).family(counts)
    assert family.samples == {("outbound", "443", "", "", "data"): 3}


def test_map_sizes_reach_the_kernel_side():
    config = Config.model_validate(
        {"collectors": {"tcp_retransmits": {"map_size": 64, "socket_owners_map_size": 128}}}
    )
    defines = TcpRetransmitsCollector(config).defines()
    assert defines["RETRANSMITS_MAP_SIZE"] == 64
    assert defines["SOCKET_OWNERS_MAP_SIZE"] == 128
    assert defines["LISTENER_OWNERS_MAP_SIZE"] == 4096


def test_resets_direction_is_sent_or_received_and_port_follows_the_connection():
    counts = [
        (OwnedKey(0, 443, 1000, b"curl", 1), 1),  # outbound connection: the remote port
        (OwnedKey(1, 8080, 33, b"nginx", 0), 2),  # accepted connection: the local port
        (OwnedKey(1, 8080, 33, b"nginx", 0), 1),
        (OwnedKey(0, 443, 1000, b"curl", 2), 9),  # no such side
    ]
    family = TcpResetsCollector(Config()).family(counts)
    assert family.name == "netsnoop_tcp_resets"
    assert family.label_names == ("direction", "port", "comm", "uid")
    assert family.samples == {
        ("received", "443", "curl", "1000"): 1,
        ("sent", "8080", "nginx", "33"): 3,
    }
