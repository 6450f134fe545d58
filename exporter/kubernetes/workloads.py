"""Who runs in a cgroup: the namespace, pod and container labels of connection series.

The BPF side records each process's cgroup v2 id. Here the id becomes a path (the cgroup tree),
the path a pod UID and container ID (kubelet's systemd and cgroupfs layouts; containerd, CRI-O
and docker scopes) or a docker/podman container or systemd service, and the pod UID and
container ID become names from the pods the Kubernetes API lists for this node.

Outside Kubernetes ``container`` is still useful: a docker, podman or nerdctl container's short
ID (the 12 characters ``docker ps`` shows), or a system service's unit name (``nginx.service``).
``namespace`` and ``pod`` are then empty, and so is everything for login sessions, kernel
threads and the root cgroup.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.kernel import cgroups

log = logging.getLogger(__name__)

WORKLOAD_LABEL_NAMES = ("namespace", "pod", "container")
NO_WORKLOAD = ("", "", "")
SHORT_ID_LENGTH = 12

# kubelet's pod cgroup: systemd driver "kubepods-burstable-pod<uid with _>.slice", cgroupfs
# driver "pod<uid>" under kubepods/<qos>/.
# kind and other nested kubelets prefix the slices ("kubelet-kubepods-...").
_POD_SLICE = re.compile(r"^(?:[a-z]+-)?kubepods(?:-[a-z]+)?-pod([0-9a-f_]{36})\.slice$")
_POD_DIR = re.compile(r"^pod([0-9a-f-]{36})$")
# Container scopes under a pod or on their own: systemd driver names.
_SCOPE = re.compile(
    r"^(?P<runtime>cri-containerd|crio|docker|libpod|nerdctl)-(?P<id>[0-9a-f]{64})\.scope$"
)
# Container monitors (CRI-O's and podman's conmon) run beside the container, not in it.
_CONMON = re.compile(r"^(?:crio|libpod)-conmon-[0-9a-f]{64}\.scope$")
_BARE_ID = re.compile(r"^[0-9a-f]{64}$")  # cgroupfs driver: the directory is the ID
_SERVICE = re.compile(r"^[^/]+\.service$")


@dataclass(frozen=True)
class CgroupOwner:
    """What a cgroup path says about its processes."""

    pod_uid: str = ""
    container_id: str = ""
    unit: str = ""  # a systemd service, for processes that are in neither a pod nor a container


def parse_cgroup_path(path: str) -> CgroupOwner:
    """Pod UID, container ID or systemd unit from a cgroup v2 path ("/kubepods.slice/...")."""
    parts = [part for part in path.split("/") if part]
    pod_uid = ""
    for index, part in enumerate(parts):
        if match := _POD_SLICE.match(part):
            pod_uid = match.group(1).replace("_", "-")
        elif (match := _POD_DIR.match(part)) and "kubepods" in parts[:index]:  # cgroupfs
            pod_uid = match.group(1)
        elif _CONMON.match(part):
            return CgroupOwner(pod_uid=pod_uid)
        elif match := _SCOPE.match(part):
            return CgroupOwner(pod_uid=pod_uid, container_id=match.group("id"))
        elif _BARE_ID.match(part) and (pod_uid or (index > 0 and parts[index - 1] == "docker")):
            return CgroupOwner(pod_uid=pod_uid, container_id=part)
    if pod_uid:
        return CgroupOwner(pod_uid=pod_uid)
    if len(parts) >= 2 and parts[0] == "system.slice" and _SERVICE.match(parts[1]):
        return CgroupOwner(unit=parts[1])
    return CgroupOwner()


@dataclass(frozen=True)
class PodNames:
    namespace: str
    name: str
    containers: Mapping[str, str]  # container ID (without the runtime:// prefix) -> name


def pod_names(pod: Mapping) -> tuple[str, PodNames]:
    """(UID, names) from a Pod object as the API serves it (JSON)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    containers: dict[str, str] = {}
    for kind in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for container in status.get(kind) or ():
            container_id = container.get("containerID") or ""
            if container_id:
                containers[container_id.split("://", 1)[-1]] = container["name"]
    return metadata.get("uid", ""), PodNames(
        metadata.get("namespace", ""), metadata.get("name", ""), containers
    )


class PodDirectory:
    """This node's pods by UID, kept current by a watch (``PodWatch``); a deleted pod stays
    for ``deleted_pod_seconds`` so the counts it made last still carry its names."""

    def __init__(self, deleted_pod_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._pods: dict[str, PodNames] = {}
        self._deleted_at: dict[str, float] = {}
        self._keep = deleted_pod_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def upsert(self, pod: Mapping) -> None:
        uid, names = pod_names(pod)
        with self._lock:
            self._pods[uid] = names
            self._deleted_at.pop(uid, None)

    def delete(self, pod: Mapping) -> None:
        uid, names = pod_names(pod)
        with self._lock:
            self._pods[uid] = names
            self._deleted_at[uid] = self._clock()

    def replace(self, pods: Iterable[Mapping]) -> None:
        """A full list (after a watch restarts): pods missing from it were deleted meanwhile."""
        listed = dict(pod_names(pod) for pod in pods)
        now = self._clock()
        with self._lock:
            for uid in self._pods.keys() - listed.keys():
                self._deleted_at.setdefault(uid, now)
            for uid in listed:
                self._deleted_at.pop(uid, None)
            self._pods.update(listed)

    def get(self, uid: str) -> PodNames | None:
        with self._lock:
            self._expire()
            return self._pods.get(uid)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._pods)

    def _expire(self) -> None:
        now = self._clock()
        for uid, deleted in list(self._deleted_at.items()):
            if now - deleted >= self._keep:
                del self._deleted_at[uid]
                self._pods.pop(uid, None)


class WorkloadLabeler:
    """cgroup id -> (namespace, pod, container). Paths are cached per id (LRU, bounded); names
    are looked up on every read, so counts read after the watch learns a pod carry its names."""

    def __init__(
        self, cgroup_root: Path | None, pods: PodDirectory | None, cache_size: int
    ) -> None:
        self.root = cgroup_root
        self.pods = pods
        self._owners: OrderedDict[int, CgroupOwner] = OrderedDict()
        self._cache_size = cache_size

    def resolve(self, cgroup_ids: Iterable[int]) -> None:
        """Learn the paths of ids not seen before, in one walk of the tree. An id that no
        longer exists is remembered as unknown: cgroup ids are never reused."""
        new = {i for i in cgroup_ids if i and i not in self._owners}
        if not new or self.root is None:
            return
        paths = cgroups.cgroup_paths(self.root, new)
        for cgroup_id in new:
            self._remember(cgroup_id, parse_cgroup_path(paths.get(cgroup_id, "")))

    def _remember(self, cgroup_id: int, owner: CgroupOwner) -> None:
        self._owners[cgroup_id] = owner
        while len(self._owners) > self._cache_size:
            self._owners.popitem(last=False)

    def labels(self, cgroup_id: int) -> tuple[str, str, str]:
        owner = self._owners.get(cgroup_id)
        if owner is None:
            return NO_WORKLOAD
        self._owners.move_to_end(cgroup_id)
        short_id = owner.container_id[:SHORT_ID_LENGTH]
        if owner.pod_uid:
            names = self.pods.get(owner.pod_uid) if self.pods is not None else None
            if names is None:
                return ("", "", short_id)
            return (names.namespace, names.name, names.containers.get(owner.container_id, ""))
        return ("", "", short_id or owner.unit)

    def __len__(self) -> int:
        return len(self._owners)
