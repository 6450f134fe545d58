from __future__ import annotations

from exporter.collectors.tcp_connections import (
    NO_UID,
    ConnectionKey,
    connections_family,
    decode_comm,
)
from exporter.config import LabelsConfig


def key(direction=0, result=0, port=80, uid=1000, comm=b"curl\0\0\0\0"):
    return ConnectionKey(direction, result, port, uid, comm)


def test_labels_from_map_keys():
    family = connections_family([(key(), 3), (key(1, 1, 23, NO_UID, b""), 2)], LabelsConfig())
    assert family.name == "netsnoop_tcp_connections" and family.kind == "counter"
    assert family.label_names == ("direction", "port", "comm", "uid", "result")
    assert family.samples == {
        ("outbound", "80", "curl", "1000", "established"): 3,
        ("inbound", "23", "", "", "refused"): 2,
    }


def test_blanked_labels_merge_series_and_keep_the_sum():
    counts = [(key(comm=b"a"), 1), (key(comm=b"b", uid=7), 2)]
    family = connections_family(counts, LabelsConfig(comm=False, uid=False))
    assert family.samples == {("outbound", "80", "", "", "established"): 3}


def test_hostile_comm_never_raises():
    assert decode_comm(b'x"\\\n\xff\xfe\0junk') == 'x"\\\n\ufffd\ufffd'


def test_unknown_enum_values_are_skipped_not_mislabelled():
    assert (
        connections_family([(key(direction=9), 1), (key(result=9), 1)], LabelsConfig()).samples
        == {}
    )
