"""The container image: built from the Dockerfile, run the way a node agent runs, counting.

No image registry is reachable here, so the Debian bookworm base is made with debootstrap and
`podman import` and handed to the Dockerfile as BASE_IMAGE. The run uses runc (crun refuses
this host's hybrid cgroups) with the one podman invocation seen to work here: --privileged,
--network=host and explicit ulimits. Skipped where podman, runc or debootstrap is missing.

Needs root and BPF (marked ``root``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, named_python, parse_metrics, value

pytestmark = [
    pytest.mark.root,
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("podman", "runc", "debootstrap")),
        reason="needs podman, runc and debootstrap (Debian packages)",
    ),
]

BASE = "localhost/netsnoop-bookworm-base:latest"
IMAGE = "localhost/netsnoop-exporter:test"
DEBIAN_MIRROR = os.environ.get("NETSNOOP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PODMAN = ("podman", "--runtime", "runc")
RUN = (
    *PODMAN,
    "run",
    "--rm",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--privileged",
    "--network=host",
)
HOST_MOUNTS = (
    "-v",
    "/lib/modules:/lib/modules:ro",
    "-v",
    "/usr/src:/usr/src:ro",
    "-v",
    "/sys/kernel/tracing:/sys/kernel/tracing:ro",
)


def podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def make_base(tmp_path: Path) -> None:
    """debootstrap bookworm, imported as an image (kept between runs: it is only Debian)."""
    if podman("image", "exists", BASE).returncode == 0:
        return
    root = tmp_path / "rootfs"
    subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR],
        check=True,
        capture_output=True,
        timeout=900,
    )
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [*PODMAN, "import", "-", BASE], stdin=tar.stdout, capture_output=True, timeout=300
    )
    tar.wait()
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    make_base(tmp_path_factory.mktemp("base"))
    build = [
        "build",
        "--network=host",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--build-arg",
        f"BASE_IMAGE={BASE}",
        "-t",
        IMAGE,
    ]
    # The same CA pip trusts here (a TLS-intercepting proxy's), for pip inside the build.
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        build += [
            "--volume",
            f"{ca}:/run/build-ca.crt:ro",
            "--build-arg",
            "PIP_CERT=/run/build-ca.crt",
        ]
    built = podman(*build, str(REPO))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield IMAGE
    podman("rmi", "--force", IMAGE)


def test_image_counts_a_real_connection(image: str, bin_dir: Path):
    port = free_port()
    listen_port = free_port()
    name = f"n4-image-{os.getpid()}"
    container = subprocess.Popen(
        [*RUN, "--name", name, *HOST_MOUNTS, image, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert container.poll() is None, container.stdout.read() if container.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the image's exporter never became ready"
                time.sleep(0.2)
        python = named_python(bin_dir, "n4-imageclient")
        with socket.create_server(("127.0.0.1", listen_port)):
            code = (
                "import socket, sys\n"
                "for _ in range(4):\n"
                "    socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()\n"
            )
            subprocess.run([python, "-c", code, str(listen_port)], check=True, timeout=30)
            labels = {"direction": "outbound", "port": str(listen_port), "comm": "n4-imageclient"}
            deadline = time.monotonic() + 10
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    series = parse_metrics(r.read().decode())
                count = value(series, "netsnoop_tcp_connections_total", **labels)
                if count >= 4 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert count == 4
        assert value(series, "netsnoop_tcp_connections_total", **labels, result="established") == 4
    finally:
        podman("stop", "--time", "5", name, timeout=60)
        container.wait(60)


def test_image_without_host_headers_says_what_to_mount(image: str):
    result = subprocess.run([*RUN, image], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "the container uses the host's" in result.stderr
    assert "-v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro" in result.stderr
