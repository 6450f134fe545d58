from __future__ import annotations

import pytest

from exporter.kernel import hostfs, procfs, sysctl
from exporter.kernel.bpf_stats import stats_enabled
from exporter.kernel.kallsyms import KernelSymbols
from exporter.kernel.tracefs import find_tracefs


@pytest.fixture
def host(tmp_path):
    """A procfs and sysfs written by the test, as --path.procfs/--path.sysfs would name them."""
    (tmp_path / "proc/42").mkdir(parents=True)
    (tmp_path / "proc/42/comm").write_text("n9-hostproc\n")
    (tmp_path / "proc/sys/net/ipv4").mkdir(parents=True)
    (tmp_path / "proc/sys/net/ipv4/ip_local_port_range").write_text("40000\t50000\n")
    (tmp_path / "proc/sys/kernel").mkdir()
    (tmp_path / "proc/sys/kernel/bpf_stats_enabled").write_text("1\n")
    (tmp_path / "proc/kallsyms").write_text("ffffffff81000000 T n9_function\n")
    (tmp_path / "sys/kernel/debug/tracing/events").mkdir(parents=True)
    hostfs.configure(str(tmp_path / "proc"), str(tmp_path / "sys"))
    yield tmp_path
    hostfs.configure("/proc", "/sys")


def test_kernel_reads_follow_the_configured_mounts(host):
    assert procfs.comm(42) == "n9-hostproc"
    assert sysctl.local_port_range() == (40000, 50000)
    assert stats_enabled()
    assert KernelSymbols().resolve([0xFFFFFFFF81000010]) == {0xFFFFFFFF81000010: "n9_function"}
    assert find_tracefs() == host / "sys/kernel/debug/tracing"
