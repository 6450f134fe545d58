"""Keeps a PodDirectory current from the Kubernetes API: list this node's pods, then watch them.

lightkube is the client: synchronous (the exporter has no event loop), typed, and small
(httpx plus generated models: about 8 MiB resident once imported, measured here), with list
resourceVersions and watch that the official client also has but behind a much heavier import.
kr8s is async-first and pulls more dependencies for features a read-only watcher never uses.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.kernel import cgroups
from exporter.kubernetes.workloads import PodDirectory, WorkloadLabeler
from exporter.settings import KubernetesConfig

if TYPE_CHECKING:  # lightkube is imported when the watch starts (the kubernetes extra)
    from lightkube.core.client import FieldSelector

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RETRY_SECONDS = (1, 2, 5, 10, 30)


class PodApiUnavailable(Exception):
    """No way to reach the API; the message says why and how to fix it."""


def node_name(configured: str) -> str:
    return configured or os.environ.get("NODE_NAME") or socket.gethostname()


def api_configured(kubeconfig: str) -> bool:
    """A kubeconfig was given, or we run in a pod with a service account."""
    return bool(kubeconfig) or (
        "KUBERNETES_SERVICE_HOST" in os.environ and (SERVICE_ACCOUNT_DIR / "token").exists()
    )


class PodWatch:
    """A daemon thread feeding ``directory`` with the pods scheduled on ``node``."""

    def __init__(self, directory: PodDirectory, kubeconfig: str, node: str) -> None:
        try:
            from lightkube import Client, ConfigError, KubeConfig
        except ImportError as error:
            raise PodApiUnavailable(
                "kubernetes.enabled needs the lightkube client: install the package with its "
                "kubernetes extra (scripts/install.sh --extras kubernetes)"
            ) from error
        try:
            config = (
                KubeConfig.from_file(kubeconfig)
                if kubeconfig
                else KubeConfig.from_service_account(str(SERVICE_ACCOUNT_DIR))
            )
        except (ConfigError, OSError) as error:
            source = kubeconfig or SERVICE_ACCOUNT_DIR
            raise PodApiUnavailable(f"cannot read the API access in {source}: {error}") from error
        self._client = Client(config=config, trust_env=False)
        for http_logger in ("httpx", "httpx2"):  # one INFO line per request otherwise
            logging.getLogger(http_logger).setLevel(logging.WARNING)
        self.directory = directory
        self.node = node
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._list_and_watch()
                failures = 0
            except Exception as error:  # the API going away must never stop the exporter
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "watching pods of node %s: %s; retrying in %ss", self.node, error, delay
                )
                self._stop.wait(delay)

    def _list_and_watch(self) -> None:
        from lightkube import ALL_NS
        from lightkube.resources.core_v1 import Pod

        fields: FieldSelector = {"spec.nodeName": self.node}
        listing = self._client.list(Pod, namespace=ALL_NS, fields=fields)
        self.directory.replace(pod.to_dict() for pod in listing)
        self.synced.set()
        log.info("watching %d pods of node %s", len(self.directory), self.node)
        for event, pod in self._client.watch(
            Pod, namespace=ALL_NS, fields=fields, resource_version=listing.resourceVersion
        ):
            if self._stop.is_set():
                return
            record = pod.to_dict()
            if event == "DELETED":
                self.directory.delete(record)
            else:
                self.directory.upsert(record)
            metadata = record.get("metadata") or {}
            log.debug("pod %s %s/%s", event, metadata.get("namespace"), metadata.get("name"))


def workload_labeler(settings: KubernetesConfig) -> WorkloadLabeler:
    """A labeler (one per exporter, exporter/services.py); it starts the pod watch when an API
    is configured (names), else labels come from paths."""
    try:
        root: Path | None = cgroups.cgroup2_root(settings.cgroup_root)
    except cgroups.CgroupTreeMissing as error:
        log.error("namespace, pod and container labels stay empty: %s", error)
        root = None
    if not api_configured(settings.kubeconfig):
        log.info("no Kubernetes API configured: container labels come from cgroup paths alone")
        return WorkloadLabeler(root, None, settings.cache_size)
    pods = PodDirectory(settings.deleted_pod_seconds)
    node = node_name(settings.node_name)
    try:
        PodWatch(pods, settings.kubeconfig, node).start()
    except PodApiUnavailable as error:
        log.error("pod and namespace labels stay empty: %s", error)
    return WorkloadLabeler(root, pods, settings.cache_size)
