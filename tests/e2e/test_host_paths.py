"""--path.procfs and --path.sysfs: the host's procfs and sysfs mounted elsewhere, as in a
container given /host/proc and /host/sys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_web_and_faults import counted_connections
from tests.helpers import ONLY_TCP, ExporterProcess, value

# A private mount namespace (unshare -m) where /proc and /sys, with their submounts such as
# tracefs, are also at $0/proc and $0/sys; the exporter then runs with the flags given.
MOUNT_HOST = 'mount --rbind /proc "$0/proc" && mount --rbind /sys "$0/sys" && exec "$@"'


@pytest.mark.root
def test_exporter_runs_on_procfs_and_sysfs_mounted_elsewhere(tmp_path: Path):
    host = tmp_path / "host"
    (host / "proc").mkdir(parents=True)
    (host / "sys").mkdir()
    exporter = ExporterProcess(
        ONLY_TCP,
        tmp_path,
        (f"--path.procfs={host / 'proc'}", f"--path.sysfs={host / 'sys'}"),
        prefix=("unshare", "-m", "sh", "-c", MOUNT_HOST, str(host)),
    )
    try:
        exporter.wait_ready()
        series = counted_connections(exporter, 3)  # asserts the exact count
    finally:
        exporter.stop()
    assert value(series, "netsnoop_bpf_program_attached") >= 4


@pytest.mark.root
def test_a_sysfs_without_tracefs_is_named_in_the_error(tmp_path: Path):
    empty = tmp_path / "sys"
    empty.mkdir()
    exporter = ExporterProcess(ONLY_TCP, tmp_path, (f"--path.sysfs={empty}",))
    assert exporter.process.wait(60) == 1
    exporter.stop()
    [event] = exporter.log_events()
    assert event["msg"] == (
        f"tracefs is not mounted and mounting it at {empty}/kernel/tracing failed (No such file "
        f"or directory): mount it with 'mount -t tracefs tracefs {empty}/kernel/tracing' or "
        "bind-mount the host's /sys/kernel/tracing"
    )
