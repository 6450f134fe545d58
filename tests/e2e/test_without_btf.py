"""End to end, in-process: the real BPF programs on a kernel whose BTF the exporter cannot
read (kernel_btf() stood in by None, as when /sys/kernel/btf/vmlinux is missing). Both
programs still load and attach; connected-UDP sends are not counted, sends with an address
are, and listeners fall back to port-only owners of the exporter's own namespace.

Needs root and BPF (marked ``root``).
"""

from __future__ import annotations

import logging
import os
import socket

import pytest

from exporter.collectors.tcp_connections import TcpConnectionsCollector
from exporter.collectors.udp_sends import UdpSendsCollector
from exporter.config import Config
from exporter.kernel import btf
from exporter.runtime import btf_family
from tests.helpers import free_port

pytestmark = pytest.mark.root


@pytest.fixture
def no_btf(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture):
    missing = tmp_path / "vmlinux"
    monkeypatch.setattr(btf, "VMLINUX", missing)
    btf.kernel_btf.cache_clear()
    caplog.set_level(logging.WARNING)
    yield
    btf.kernel_btf.cache_clear()


def test_without_btf_the_namespace_reads_are_left_out_and_said(no_btf, caplog):
    udp, tcp = UdpSendsCollector(Config()), TcpConnectionsCollector(Config())
    try:
        udp.start()
        tcp.start()
        assert all(udp.program_status().values()) and all(tcp.program_status().values())
        assert btf_family(btf.kernel_btf() is not None).samples == {(): 0.0}
        assert "CONFIG_DEBUG_INFO_BTF" in caplog.text
        assert "UDP sends on connected sockets are not counted" in caplog.text

        udp_port, tcp_port = free_port(), free_port()
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
            socket.create_server(("127.0.0.1", tcp_port)) as server,
        ):
            sink.bind(("127.0.0.1", udp_port))
            sender.sendto(b"a", ("127.0.0.1", udp_port))
            sender.connect(("127.0.0.1", udp_port))
            os.write(sender.fileno(), b"b")
            with socket.create_connection(("127.0.0.1", tcp_port)):
                server.accept()[0].close()
        sends = [k for k in udp.read_counters() if k[0].port == udp_port]
        assert sum(v for _, v in sends) == 1  # the sendto(); the write() has no address
        accepted = [(k, v) for k, v in tcp.read_counts() if k.port == tcp_port and k.result == 4]
        assert [(k.netns, v) for k, v in accepted] == [(0, 1)]  # keyed by port alone
    finally:
        udp.close()
        tcp.close()
