"""Numbers both sides share are written in Python only and reach the BPF sources as defines."""

from __future__ import annotations

import re

from exporter.collectors import socket_traffic, tcp_connections, udp_sends
from exporter.config import Config
from exporter.core.cardinality import port_fold_defines
from exporter.kernel.bpf import enum_defines
from exporter.watch import watch_defines
from tests.helpers import REPO

PASSED_FROM_PYTHON = re.compile(
    r"^\s*#define\s+(DIR_|RESULT_|MAP_|UDP_RESULT_|WATCH_DIR_|WATCH_PROTO_|WATCH_MAX_RULES|"
    r"PORT_OTHER|PORT_FOLD_|NO_UID)",
    re.MULTILINE,
)


def test_enum_defines_number_a_tuple_in_order():
    assert enum_defines("RESULT", tcp_connections.RESULTS) == {
        "RESULT_ESTABLISHED": 0,
        "RESULT_REFUSED": 1,
        "RESULT_TIMEOUT": 2,
        "RESULT_ERROR": 3,
        "RESULT_ACCEPTED": 4,
    }
    assert enum_defines("DIR", socket_traffic.DIRECTIONS) == {"DIR_SENT": 0, "DIR_RECEIVED": 1}
    assert enum_defines("UDP_RESULT", udp_sends.RESULTS) == {"UDP_RESULT_SENT": 0}


def test_no_bpf_source_defines_what_python_passes():
    for source in sorted((REPO / "bpf").iterdir()):
        found = PASSED_FROM_PYTHON.findall(source.read_text())
        assert not found, f"{source.name} defines {found}: pass them from Python"


def test_watch_and_port_fold_constants_come_from_python():
    defines = watch_defines(Config().watch, 4096)
    assert defines["WATCH_MAX_RULES"] == 64
    assert (defines["WATCH_DIR_OUTBOUND"], defines["WATCH_DIR_INBOUND"]) == (0, 1)
    assert (defines["WATCH_PROTO_TCP"], defines["WATCH_PROTO_UDP"]) == (6, 17)
    assert port_fold_defines() == {
        "PORT_OTHER": 0,
        "PORT_FOLD_ALWAYS": 1,
        "PORT_FOLD_REFUSED_INBOUND": 2,
    }
