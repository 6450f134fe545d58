"""The Helm chart's capability list is enough, and each capability on it is needed.

The real exporter runs under capsh with a bounding set of exactly the capabilities the chart
adds (helm/netsnoop-exporter/values.yaml), as root like the chart's container, so its effective
set is exactly that list; it must count a real connection, and name the owner of a listener of
another user that existed before it started (read from /proc/<pid>/fd). With one capability
removed it must fail, or lose that owner, as the issue says it would.

Needs root and BPF (marked ``root``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart import chart_capabilities
from tests.e2e.test_namespaces import HOLD, listener_in
from tests.e2e.test_tcp_connections import Listener
from tests.helpers import ExporterProcess, Series, free_port, remote_host, value

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh (libcap2-bin)"),
]

METRIC = "netsnoop_tcp_connections_total"
NOBODY = 65534


def capability_bits(names: list[str]) -> int:
    """Kubernetes names (BPF) -> a capability mask, through capsh's own table."""
    bits = 0
    for name in names:
        out = subprocess.run(
            ["capsh", f"--supports=cap_{name.lower()}"], capture_output=True, text=True
        )
        assert out.returncode == 0, f"capsh does not know CAP_{name}"
        bits |= 1 << capability_number(name)
    return bits


def capability_number(name: str) -> int:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for number in range(last + 1):
        decoded = subprocess.run(
            ["capsh", f"--decode={1 << number:x}"], capture_output=True, text=True
        ).stdout
        if decoded.strip().endswith(f"=cap_{name.lower()}"):
            return number
    raise AssertionError(f"no number for CAP_{name}")


def only_capabilities(names: list[str]) -> tuple[str, ...]:
    """A capsh prefix whose bounding set holds ``names`` only: root's exec then gets them all
    as effective capabilities, and nothing else."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    every = (
        subprocess.run(
            ["capsh", f"--decode={(1 << (last + 1)) - 1:x}"], capture_output=True, text=True
        )
        .stdout.split("=", 1)[1]
        .strip()
        .split(",")
    )
    keep = {f"cap_{name.lower()}" for name in names}
    drop = ",".join(cap for cap in every if cap not in keep)
    return ("capsh", f"--drop={drop}", "--", "-c", 'exec "$@"', "capsh")


def effective(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


def run_with(names: list[str], tmp_path: Path) -> ExporterProcess:
    # Other tests' traffic on this machine must not push these series into the overflow.
    config = "cardinality:\n  series_per_metric: 1000000\n"
    return ExporterProcess(config, tmp_path, prefix=only_capabilities(names))


ACCEPTED = {"direction": "inbound", "result": "accepted"}


@contextlib.contextmanager
def exporter_beside_a_listener_of_nobody(
    names: list[str], tmp_path: Path, bin_dir: Path, port: int, connections: int
) -> Iterator[tuple[ExporterProcess, Series]]:
    """A listener of another user that exists before the exporter (so its owner can only come
    from /proc/<pid>/fd), the exporter with ``names``, and the series after ``connections``
    connections to the listener."""
    as_nobody = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    with Listener(bin_dir, "n4-capowner", "127.0.0.1", port, prefix=as_nobody):
        exporter = run_with(names, tmp_path)
        try:
            exporter.wait_ready()
            for _ in range(connections):
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pass
            yield exporter, exporter.wait_for(METRIC, {**ACCEPTED, "port": str(port)}, connections)
        finally:
            exporter.stop()


def test_chart_capabilities_are_enough(tmp_path: Path, bin_dir: Path):
    names = chart_capabilities()
    port = free_port()
    with exporter_beside_a_listener_of_nobody(names, tmp_path, bin_dir, port, 3) as (
        exporter,
        series,
    ):
        assert effective(exporter.process.pid) == capability_bits(names)
    accepted = {**ACCEPTED, "port": str(port)}
    assert value(series, METRIC, **accepted, comm="n4-capowner", uid=str(NOBODY)) == 3
    outbound = {"direction": "outbound", "port": str(port), "result": "established"}
    assert value(series, METRIC, **outbound) == 3


@pytest.mark.parametrize("missing", ["BPF", "PERFMON"])
def test_without_a_bpf_capability_the_exporter_says_which(tmp_path: Path, missing: str):
    """Without SYS_ADMIN too, which the kernel takes for either (the chart keeps BPF and
    PERFMON so that removing SYS_ADMIN leaves them)."""
    names = [name for name in chart_capabilities() if name not in (missing, "SYS_ADMIN")]
    exporter = run_with(names, tmp_path)
    assert exporter.process.wait(60) == 1
    log = exporter.log()
    exporter.stop()
    assert f"missing capabilities: CAP_{missing} (needed to load BPF programs" in log


@pytest.mark.parametrize("missing", ["DAC_READ_SEARCH", "SYS_PTRACE"])
def test_without_a_proc_capability_listeners_of_other_users_lose_their_owner(
    tmp_path: Path, bin_dir: Path, missing: str
):
    names = [name for name in chart_capabilities() if name != missing]
    port = free_port()
    with exporter_beside_a_listener_of_nobody(names, tmp_path, bin_dir, port, 2) as (
        exporter,
        series,
    ):
        log = exporter.log()
    accepted = {**ACCEPTED, "port": str(port)}
    assert value(series, METRIC, **accepted) == 2
    assert value(series, METRIC, **accepted, comm="n4-capowner") == 0
    assert f"missing capabilities: CAP_{missing}: listeners of other users" in log


@pytest.mark.parametrize("sys_admin", [True, False])
def test_listen_queues_of_other_namespaces_need_sys_admin(
    tmp_path: Path, bin_dir: Path, sys_admin: bool
):
    """A pod-like network namespace with a listener: with the chart's capabilities its queue
    is read; without SYS_ADMIN (setns) it is not, and the exporter says so."""
    names = [name for name in chart_capabilities() if sys_admin or name != "SYS_ADMIN"]
    port = free_port()
    with remote_host() as pod, listener_in(pod, bin_dir, "n4-podlisten", 0, port, HOLD, "7"):
        exporter = run_with(names, tmp_path)
        try:
            exporter.wait_ready()
            series = exporter.scrape()
            log = exporter.log()
        finally:
            exporter.stop()
    capacity = value(series, "netsnoop_listen_queue_capacity", port=str(port), comm="n4-podlisten")
    denied = value(series, "netsnoop_listen_namespaces", state="denied")
    if sys_admin:
        assert (capacity, denied) == (7, 0)
    else:
        assert capacity == 0 and denied >= 1
        assert "setns needs CAP_SYS_ADMIN" in log
