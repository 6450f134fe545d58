"""What several collectors share, made once per exporter and handed to each collector's factory
(exporter/collectors/registry.py): the node's listeners, read once per snapshot for both the
accepted-connection owners and the listen queues, and the workload labeler with its one pod
watch. Injected rather than module-level, so two exporters in one process (tests) share nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.collectors.registry import collector_settings
from exporter.listeners import ListenerDirectory

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.kubernetes.workloads import WorkloadLabeler


class SharedServices:
    def __init__(self, config: Config) -> None:
        self._kubernetes = config.kubernetes
        self._workloads: WorkloadLabeler | None = None
        # imported here: listen_queue imports this module
        from exporter.collectors.listen_queue import ListenQueueSettings

        listen_queue = collector_settings(config, "listen_queue", ListenQueueSettings)
        self.listeners = ListenerDirectory(listen_queue.max_namespaces)

    def workloads(self) -> WorkloadLabeler:
        """Made on first use (kubernetes.enabled): it may start the pod watch."""
        if self._workloads is None:
            from exporter.kubernetes.pod_watch import workload_labeler

            self._workloads = workload_labeler(self._kubernetes)
        return self._workloads

    def new_snapshot(self) -> None:
        """The next listener view reads the node again."""
        self.listeners.expire()
