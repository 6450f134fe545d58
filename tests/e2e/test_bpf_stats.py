"""End to end: per-program run time and count, exported while kernel.bpf_stats_enabled=1.

The programs see every event on the machine, so the counts are bounded from below by what this
test did, not matched exactly. Needs root and BPF (marked ``root``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, value

pytestmark = pytest.mark.root

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
RUNS = "netsnoop_bpf_program_runs_total"
SECONDS = "netsnoop_bpf_program_run_seconds_total"
CONNECTIONS = 50


@pytest.fixture
def bpf_stats_sysctl() -> Iterator[Path]:
    """The sysctl, put back as it was: it is machine-wide, and timing every run has a cost."""
    original = SYSCTL.read_text()
    try:
        yield SYSCTL
    finally:
        SYSCTL.write_text(original)


def connect_and_close(count: int) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port)):
                listener.accept()[0].close()


def test_run_stats_appear_only_while_bpf_stats_are_on(exporter, bpf_stats_sysctl):
    bpf_stats_sysctl.write_text("0\n")
    off = exporter.scrape()
    assert not [name for (name, _) in off if name in (RUNS, SECONDS)]

    bpf_stats_sysctl.write_text("1\n")
    before = exporter.scrape()
    connect_and_close(CONNECTIONS)
    after = exporter.scrape()

    program = {"program": "inet_sock_set_state"}
    runs = value(after, RUNS, **program) - value(before, RUNS, **program)
    # Each connection moves its client and its server socket through at least four states.
    assert runs >= 4 * CONNECTIONS
    assert value(after, SECONDS, **program) > value(before, SECONDS, **program)
    attached = {
        dict(lbls)["program"]
        for (name, lbls), v in after.items()
        if name == "netsnoop_bpf_program_attached" and v == 1
    }
    reported = {dict(lbls)["program"] for (name, lbls) in after if name == RUNS}
    assert reported == attached
