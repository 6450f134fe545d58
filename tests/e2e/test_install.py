"""scripts/install.sh as the README runs it, twice: kernel headers without a kernel image, the
systemd unit, and a venv that sees bcc. Everything it writes goes under tmp_path (its
NETSNOOP_* overrides), so the machine's own /lib/modules links are left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ONLY_TCP, REPO, ExporterProcess

pytestmark = [pytest.mark.root, pytest.mark.slow]


def installed_packages() -> dict[str, str]:
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        fields[1]: fields[2]
        for fields in (line.split() for line in listing.splitlines())
        if fields[0] == "ii"
    }


def run_install(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REPO / "scripts" / "install.sh", "--systemd"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_install_twice_adds_no_kernel_image_and_installs_a_valid_unit(tmp_path: Path):
    if shutil.which("apt-get") is None or shutil.which("systemd-analyze") is None:
        pytest.skip("needs apt-get (Debian/Ubuntu) and systemd-analyze")
    release = os.uname().release
    env = {
        "NETSNOOP_VENV": str(tmp_path / "venv"),
        "NETSNOOP_HEADERS_ROOT": str(tmp_path / "headers"),
        "NETSNOOP_MODULES_ROOT": str(tmp_path / "modules"),
        "NETSNOOP_SYSTEMD_DIR": str(tmp_path / "systemd"),
        "NETSNOOP_CONFIG_DIR": str(tmp_path / "etc"),
        "NETSNOOP_SKIP_APT_UPDATE": "1",
    }
    before = installed_packages()
    first = run_install(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    after_first = installed_packages()
    second = run_install(env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after_second = installed_packages()

    images = {name: v for name, v in before.items() if name.startswith("linux-image-")}
    for after in (after_first, after_second):
        assert {n: v for n, v in after.items() if n.startswith("linux-image-")} == images
        assert not {n for n in after if n.startswith(("initramfs-tools", "grub"))} - set(before)
    assert after_second == after_first  # the second run changes nothing

    build = tmp_path / "modules" / release / "build"
    assert (build / "include").is_dir(), first.stdout
    assert f"kernel headers for {release}: present" in second.stdout

    unit = tmp_path / "systemd" / "netsnoop-exporter.service"
    text = unit.read_text()
    assert f"ExecStart={tmp_path}/venv/bin/netsnoop-exporter --config.file={tmp_path}/etc/" in text
    assert (tmp_path / "etc" / "netsnoop.yaml").read_text() == (
        REPO / "config" / "netsnoop.yaml"
    ).read_text()
    verify = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr

    venv_python = tmp_path / "venv" / "bin" / "python"
    assert subprocess.run([venv_python, "-c", "import bcc"]).returncode == 0

    # bcc compiles against the headers it set up: the exporter, in a mount namespace where
    # they are /lib/modules, attaches its programs and becomes ready.
    mount = f'mount --bind "{tmp_path / "modules"}" /lib/modules && exec "$@"'
    exporter = ExporterProcess(
        ONLY_TCP, tmp_path, prefix=("unshare", "-m", "sh", "-c", mount, "sh")
    )
    try:
        exporter.wait_ready(120)
    finally:
        exporter.stop()
