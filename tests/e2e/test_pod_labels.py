"""End to end: namespace, pod and container labels from real cgroups.

The test builds a real kubepods-style cgroup v2 hierarchy (kubelet's systemd layout with a
containerd scope, its cgroupfs layout, and a docker scope outside Kubernetes), moves real
processes into it, and has them connect to a local listener; the real exporter records the
cgroup ids in BPF. No Kubernetes cluster runs here: the names come from a local stand-in for
the API server (tests/kube_standin.py) serving recorded pod objects, reached through the
exporter's real client with a kubeconfig, as it would reach the API in a cluster.

Needs root and BPF (marked ``root``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.kernel.cgroups import cgroup2_root
from tests.e2e.test_tcp_connections import Listener
from tests.helpers import ExporterProcess, free_port, named_python, remote_host, value
from tests.kube_standin import StandInApi, stand_in_api

pytestmark = pytest.mark.root

METRIC = "netsnoop_tcp_connections_total"
NODE = "n4-node"
DELETED_POD_SECONDS = 3.0
SENT = "netsnoop_socket_sent_bytes_total"
PAYLOAD = 1000  # bytes each connection sends
CONNECT = f"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"x" * {PAYLOAD})
"""


@contextlib.contextmanager
def cgroup(path: str) -> Iterator[Path]:
    """A cgroup v2 directory (and its missing parents), removed afterwards, leaf first."""
    root = cgroup2_root("/sys/fs/cgroup")
    created = []
    directory = root
    for part in path.strip("/").split("/"):
        directory = directory / part
        if not directory.exists():
            directory.mkdir()
            created.append(directory)
    try:
        yield directory
    finally:
        for made in reversed(created):
            with contextlib.suppress(OSError):
                made.rmdir()


def connect_from(cgroup_dir: Path, python: str, port: int, count: int) -> None:
    """A process that joins ``cgroup_dir`` first, then connects ``count`` times."""
    script = f'echo $$ > {cgroup_dir}/cgroup.procs && exec "$0" -c "$1" {port} {count}'
    subprocess.run(
        ["sh", "-c", script, python, CONNECT],
        check=True,
        timeout=60,
    )


def wait_for_log(exporter: ExporterProcess, line: str, timeout: float = 10) -> None:
    """The exporter logs each watch event it applied (at debug level)."""
    deadline = time.monotonic() + timeout
    while line not in exporter.log():
        assert time.monotonic() < deadline, f"no {line!r} in:\n{exporter.log()}"
        time.sleep(0.05)


def outbound(series, port: int, **labels: str) -> float:
    return value(series, METRIC, direction="outbound", port=str(port), **labels)


def pod_labels_config(api: StandInApi, tmp_path: Path) -> str:
    return (
        # Other tests' traffic on this machine must not push these series into the overflow.
        "cardinality:\n  series_per_metric: 1000000\n"
        "kubernetes:\n"
        "  enabled: true\n"
        f"  kubeconfig: {api.kubeconfig(tmp_path)}\n"
        f"  node_name: {NODE}\n"
        f"  deleted_pod_seconds: {DELETED_POD_SECONDS}\n"
    )


def container_scope(pod: dict) -> str:
    """Where kubelet's systemd layout puts the pod's first container (containerd)."""
    container = pod["status"]["containerStatuses"][0]
    return (
        "kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{pod['metadata']['uid'].replace('-', '_')}.slice/"
        f"cri-containerd-{container['containerID'].split('://')[1]}.scope"
    )


def test_connections_carry_pod_names(tmp_path: Path, bin_dir: Path):
    with stand_in_api(NODE) as (api, recording):
        web, _ = recording["pods"]
        later = recording["added_later"]
        later_container = later["status"]["containerStatuses"][0]
        config = pod_labels_config(api, tmp_path)
        web_scope = container_scope(web)
        later_dir = (
            f"kubepods/besteffort/pod{later['metadata']['uid']}/"
            f"{later_container['containerID'].split('://')[1]}"
        )
        docker_id = os.urandom(32).hex()
        port = free_port()
        python = named_python(bin_dir, "n4-podclient")
        exporter = ExporterProcess(config, tmp_path, ("--log.level=debug",))
        with (
            cgroup(web_scope) as in_web,
            cgroup(later_dir) as in_later,
            cgroup(f"system.slice/docker-{docker_id}.scope") as in_docker,
            Listener(bin_dir, "n4-podlisten", "127.0.0.1", port),
        ):
            try:
                exporter.wait_ready()
                deadline = time.monotonic() + 10
                while api.watchers() == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert api.watchers() == 1, exporter.log()

                connect_from(in_web, python, port, 3)
                connect_from(in_docker, python, port, 2)
                connect_from(in_later, python, port, 1)  # not announced by the watch yet
                series = exporter.wait_for(METRIC, {"port": str(port)}, 2 * 6)
                assert outbound(series, port, comm="n4-podclient") == 6
                web_labels = {"namespace": "shop", "pod": web["metadata"]["name"]}
                assert outbound(series, port, **web_labels, container="nginx") == 3
                # Traffic series carry the same labels.
                sent = {"comm": "n4-podclient", "protocol": "tcp"}
                assert value(series, SENT, **sent, **web_labels, container="nginx") == 3 * PAYLOAD
                assert value(series, SENT, **sent, container=docker_id[:12]) == 2 * PAYLOAD
                assert outbound(series, port, namespace="", pod="", container=docker_id[:12]) == 2
                short_later = later_container["containerID"].split("://")[1][:12]
                assert outbound(series, port, namespace="", pod="", container=short_later) == 1
                # The listener is a host process in the root cgroup: no workload.
                inbound = value(series, METRIC, direction="inbound", port=str(port))
                host = {"namespace": "", "pod": "", "container": ""}
                assert value(series, METRIC, direction="inbound", port=str(port), **host) == 6
                assert inbound == 6

                # The watch announces the pod: its connections from then on carry its names
                # (what was counted before keeps the labels it was read with).
                api.push("ADDED", later)
                wait_for_log(exporter, f"pod ADDED batch/{later['metadata']['name']}")
                connect_from(in_later, python, port, 2)
                later_labels = {
                    "namespace": "batch",
                    "pod": later["metadata"]["name"],
                    "container": "report",
                }
                series = exporter.wait_for(METRIC, {"port": str(port), **later_labels}, 2)
                assert outbound(series, port, **later_labels) == 2
                assert outbound(series, port, container=short_later) == 1

                # A deleted pod keeps its names for deleted_pod_seconds, then they expire.
                api.push("DELETED", later)
                wait_for_log(exporter, f"pod DELETED batch/{later['metadata']['name']}")
                connect_from(in_later, python, port, 1)
                series = exporter.wait_for(METRIC, {"port": str(port), **later_labels}, 3)
                assert outbound(series, port, **later_labels) == 3
                time.sleep(DELETED_POD_SECONDS)
                connect_from(in_later, python, port, 1)
                series = exporter.wait_for(METRIC, {"port": str(port), "container": short_later}, 2)
                assert outbound(series, port, container=short_later) == 2
                assert outbound(series, port, **later_labels) == 3
                assert outbound(series, port, comm="n4-podclient") == 10
            finally:
                exporter.stop()


HOLD = """
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(6)
print("listening", flush=True)
time.sleep(600)
"""


def test_a_pods_listener_carries_its_pod_in_accepted_counts_and_listen_queue(
    tmp_path: Path, bin_dir: Path
):
    """A listener in the web pod's cgroup and its own network namespace, that never accepts:
    its accepted connections and its listen queue both name the pod."""
    port = free_port()
    with stand_in_api(NODE) as (api, recording), remote_host() as pod_net:
        web, _ = recording["pods"]
        labels = {"namespace": "shop", "pod": web["metadata"]["name"], "container": "nginx"}
        exporter = ExporterProcess(pod_labels_config(api, tmp_path), tmp_path)
        with cgroup(container_scope(web)) as in_web:
            join = f'echo $$ > {in_web}/cgroup.procs && exec ip netns exec {pod_net.name} "$@"'
            python = named_python(bin_dir, "n4-podserver")
            listener = subprocess.Popen(
                ["sh", "-c", join, "sh", python, "-c", HOLD, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert listener.stdout is not None
                assert listener.stdout.readline().strip() == "listening"
                exporter.wait_ready()
                for _ in range(2):
                    socket.create_connection((pod_net.peer_v4, port), timeout=10).close()
                inbound = {"direction": "inbound", "port": str(port)}
                series = exporter.wait_for(METRIC, inbound, 2)
            finally:
                exporter.stop()
                listener.kill()
                listener.wait()
    assert value(series, METRIC, **inbound, comm="n4-podserver", **labels) == 2
    queue = {"port": str(port), "comm": "n4-podserver", **labels}
    assert value(series, "netsnoop_listen_queue_length", **queue) == 2
    assert value(series, "netsnoop_listen_queue_capacity", **queue) == 6
