"""cgroup paths -> pod UID, container ID or unit; pod objects -> names; the bounded cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.kernel import cgroups
from exporter.kubernetes.workloads import (
    CgroupOwner,
    PodDirectory,
    WorkloadLabeler,
    parse_cgroup_path,
)

UID = "6d5a6c9e-2d7b-4a8e-9c1f-0b7c3e2f4a11"
SYSTEMD_UID = UID.replace("-", "_")
CID = "3f4e" + "a1" * 30
PEER = "9c" * 32


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        # kubelet, systemd cgroup driver: containerd, CRI-O and docker (cri-dockerd) scopes.
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/"
            f"cri-containerd-{CID}.scope",
            CgroupOwner(UID, CID),
        ),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SYSTEMD_UID}.slice/"
            f"crio-{CID}.scope",
            CgroupOwner(UID, CID),
        ),
        (
            f"/kubepods.slice/kubepods-pod{SYSTEMD_UID}.slice/docker-{CID}.scope",
            CgroupOwner(UID, CID),
        ),
        # CRI-O's conmon belongs to the pod but is not the container.
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/"
            f"crio-conmon-{CID}.scope",
            CgroupOwner(UID),
        ),
        # A process in the pod's own cgroup (no container scope).
        (f"/kubepods.slice/kubepods-pod{SYSTEMD_UID}.slice", CgroupOwner(UID)),
        # kind and nested kubelets prefix the slices.
        (
            f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope",
            CgroupOwner(UID, CID),
        ),
        # kubelet, cgroupfs driver: pod<uid>/<container id>, with or without a QoS level.
        (f"/kubepods/burstable/pod{UID}/{CID}", CgroupOwner(UID, CID)),
        (f"/kubepods/pod{UID}/{CID}", CgroupOwner(UID, CID)),
        (f"/kubepods/besteffort/pod{UID}", CgroupOwner(UID)),
        # A container's own sub-cgroups belong to it.
        (f"/kubepods/pod{UID}/{CID}/init", CgroupOwner(UID, CID)),
        # Outside Kubernetes: docker (systemd and cgroupfs), podman (root and rootless), nerdctl.
        (f"/system.slice/docker-{CID}.scope", CgroupOwner(container_id=CID)),
        (f"/docker/{CID}", CgroupOwner(container_id=CID)),
        (f"/machine.slice/libpod-{CID}.scope/container", CgroupOwner(container_id=CID)),
        (
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope",
            CgroupOwner(container_id=CID),
        ),
        (f"/system.slice/nerdctl-{CID}.scope", CgroupOwner(container_id=CID)),
        (f"/machine.slice/libpod-conmon-{CID}.scope", CgroupOwner()),
        # systemd services; login sessions and the rest are host processes.
        ("/system.slice/nginx.service", CgroupOwner(unit="nginx.service")),
        ("/system.slice/containerd.service/sub", CgroupOwner(unit="containerd.service")),
        ("/user.slice/user-1000.slice/session-3.scope", CgroupOwner()),
        ("/init.scope", CgroupOwner()),
        ("/", CgroupOwner()),
        ("", CgroupOwner()),
        # A 64-hex name means a container only under docker/ or a pod.
        (f"/elsewhere/{CID}", CgroupOwner()),
        (f"/pod{UID}/{CID}", CgroupOwner()),
    ],
)
def test_parse_cgroup_path(path: str, owner: CgroupOwner):
    assert parse_cgroup_path(path) == owner


def pod(uid: str, name: str, containers: dict[str, str], namespace: str = "shop") -> dict:
    return {
        "metadata": {"uid": uid, "name": name, "namespace": namespace},
        "status": {
            "initContainerStatuses": [{"name": "init", "containerID": f"containerd://{PEER}"}],
            "containerStatuses": [
                {"name": n, "containerID": f"containerd://{c}"} for c, n in containers.items()
            ]
            + [{"name": "waiting"}],  # not started yet: no containerID
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pod_directory_keeps_deleted_pods_for_a_while():
    clock = Clock()
    pods = PodDirectory(deleted_pod_seconds=60, clock=clock)
    pods.upsert(pod(UID, "web-1", {CID: "nginx"}))
    names = pods.get(UID)
    assert names is not None and names.name == "web-1" and names.namespace == "shop"
    assert names.containers == {CID: "nginx", PEER: "init"}
    pods.delete(pod(UID, "web-1", {CID: "nginx"}))
    clock.now += 59
    assert pods.get(UID) is not None
    clock.now += 1
    assert pods.get(UID) is None
    assert len(pods) == 0


def test_pod_directory_relist_expires_pods_gone_meanwhile():
    clock = Clock()
    pods = PodDirectory(deleted_pod_seconds=10, clock=clock)
    other = "11111111-2222-3333-4444-555555555555"
    pods.upsert(pod(UID, "web-1", {}))
    pods.upsert(pod(other, "db-0", {}))
    pods.replace([pod(other, "db-0", {})])
    clock.now += 10
    assert pods.get(UID) is None
    assert pods.get(other) is not None


def make_cgroup(root: Path, path: str) -> int:
    directory = root / path.lstrip("/")
    directory.mkdir(parents=True)
    return os.stat(directory).st_ino


def test_labeler_names_pods_containers_and_units(tmp_path: Path):
    """A directory tree stands for the cgroup tree: ids are directory inodes either way."""
    in_pod = make_cgroup(tmp_path, f"/kubepods/pod{UID}/{CID}")
    sandbox = make_cgroup(tmp_path, f"/kubepods/pod{UID}/{PEER[::-1]}")
    unknown_pod = make_cgroup(tmp_path, f"/kubepods/pod11111111-2222-3333-4444-555555555555/{PEER}")
    docker = make_cgroup(tmp_path, f"/system.slice/docker-{PEER}.scope")
    service = make_cgroup(tmp_path, "/system.slice/sshd.service")
    session = make_cgroup(tmp_path, "/user.slice/user-0.slice/session-1.scope")
    pods = PodDirectory(300)
    pods.upsert(pod(UID, "web-1", {CID: "nginx"}))
    labeler = WorkloadLabeler(tmp_path, pods, cache_size=64)
    gone = 2**40  # an id no directory has: a cgroup that ended before we looked
    labeler.resolve([in_pod, sandbox, unknown_pod, docker, service, session, gone, 0])
    assert labeler.labels(in_pod) == ("shop", "web-1", "nginx")
    assert labeler.labels(sandbox) == ("shop", "web-1", "")  # e.g. the pause container
    assert labeler.labels(unknown_pod) == ("", "", PEER[:12])  # not (yet) in the API's list
    assert labeler.labels(docker) == ("", "", PEER[:12])
    assert labeler.labels(service) == ("", "", "sshd.service")
    assert labeler.labels(session) == ("", "", "")
    assert labeler.labels(gone) == ("", "", "")
    assert labeler.labels(0) == ("", "", "")
    # The pod shows up later in the watch: its names apply from then on.
    pods.upsert(pod("11111111-2222-3333-4444-555555555555", "db-0", {PEER: "postgres"}, "data"))
    assert labeler.labels(unknown_pod) == ("data", "db-0", "postgres")


def test_labeler_without_api_labels_containers_from_paths(tmp_path: Path):
    in_pod = make_cgroup(tmp_path, f"/kubepods/pod{UID}/{CID}")
    labeler = WorkloadLabeler(tmp_path, None, cache_size=64)
    labeler.resolve([in_pod])
    assert labeler.labels(in_pod) == ("", "", CID[:12])


def test_labeler_cache_is_bounded(tmp_path: Path):
    ids = [make_cgroup(tmp_path, f"/system.slice/s{n}.service") for n in range(10)]
    labeler = WorkloadLabeler(tmp_path, None, cache_size=4)
    for cgroup_id in ids:
        labeler.resolve([cgroup_id])
    assert len(labeler) == 4
    assert labeler.labels(ids[-1]) == ("", "", "s9.service")
    assert labeler.labels(ids[0]) == ("", "", "")  # the oldest was evicted
    labeler.resolve([ids[0]])  # and is learnt again when it counts again
    assert labeler.labels(ids[0]) == ("", "", "s0.service")


def test_cgroup2_root_finds_the_unified_mount_of_hybrid_hosts(tmp_path: Path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert cgroups.cgroup2_root(str(tmp_path)) == tmp_path / "unified"
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroups.cgroup2_root(str(tmp_path)) == tmp_path
    with pytest.raises(cgroups.CgroupTreeMissing, match=r"kubernetes\.cgroup_root"):
        cgroups.cgroup2_root(str(tmp_path / "unified" / "nothing"))


def test_process_cgroup_id_reads_proc(tmp_path: Path):
    cgroup_id = make_cgroup(tmp_path / "cg", "/system.slice/x.service")
    (tmp_path / "proc" / "42").mkdir(parents=True)
    (tmp_path / "proc" / "42" / "cgroup").write_text(
        "12:cpu:/system.slice/x.service\n0::/system.slice/x.service\n"
    )
    assert cgroups.process_cgroup_id(42, tmp_path / "cg", str(tmp_path / "proc")) == cgroup_id
    assert cgroups.process_cgroup_id(43, tmp_path / "cg", str(tmp_path / "proc")) == 0


def test_connection_series_get_workload_labels_only_when_enabled(tmp_path: Path):
    from exporter.collectors.tcp_connections import LABEL_NAMES, ConnectionKey, connections_family
    from exporter.config import LabelsConfig

    first = make_cgroup(tmp_path, f"/kubepods/pod{UID}/{CID}")
    second = make_cgroup(tmp_path, f"/kubepods/pod{UID}/{CID}/init")  # the same container
    counts = [
        (ConnectionKey(0, 0, 23, 1000, b"telnet", first), 2),
        (ConnectionKey(0, 0, 23, 1000, b"telnet", second), 3),
    ]
    plain = connections_family(counts, LabelsConfig())
    assert plain.label_names == LABEL_NAMES
    assert plain.samples == {("outbound", "23", "telnet", "1000", "established"): 5}
    pods = PodDirectory(300)
    pods.upsert(pod(UID, "web-1", {CID: "nginx"}))
    labeled = connections_family(counts, LabelsConfig(), WorkloadLabeler(tmp_path, pods, 64))
    assert labeled.label_names == (*LABEL_NAMES, "namespace", "pod", "container")
    assert labeled.samples == {
        ("outbound", "23", "telnet", "1000", "established", "shop", "web-1", "nginx"): 5
    }
