"""Workload enrichment: the namespace, pod and container labels of a cgroup (workloads.py;
outside Kubernetes, a docker or podman container or a systemd unit), kept current from the
Kubernetes API by a pod watch when an API server is reachable (pod_watch.py)."""
