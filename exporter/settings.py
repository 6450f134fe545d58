"""The config's building blocks and every section but ``collectors:``, whose models each
collector declares in its own module (exporter/collectors/registry.py); exporter/config.py
assembles the whole and loads it."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MapSize = Annotated[int, Field(ge=16, le=1 << 20)]


class ConfigError(Exception):
    """A one-line reason naming the file and the key."""


class StrictModel(BaseModel):
    """Unknown keys and wrong types are errors, not silently coerced or ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LabelsConfig(StrictModel):
    """Labels can be blanked (not removed) so every series keeps the documented label set."""

    comm: bool = True
    uid: bool = True


class KubernetesConfig(StrictModel):
    """namespace, pod and container labels on connection series, from each process's cgroup.

    Off, the labels do not exist at all (the series keep the core label set)."""

    enabled: bool = Field(
        False,
        description="Add namespace, pod and container labels to connection series, from the "
        "cgroup of the process (recorded in BPF). Off, those labels do not exist at all.",
    )
    cgroup_root: str = Field(
        "/sys/fs/cgroup",
        description="Where cgroup v2 is mounted; on hybrid hosts its unified/ subdirectory is "
        "used.",
    )
    kubeconfig: str = Field(
        "",
        description="Kubernetes API access for pod and container names. Empty: in-cluster "
        "(service account) when run in a pod; elsewhere no API, and container comes from the "
        "cgroup path alone.",
    )
    node_name: str = Field(
        "", description="Whose pods to watch; empty means $NODE_NAME, else the hostname."
    )
    cache_size: MapSize = Field(4096, description="cgroups whose labels are cached (LRU).")
    deleted_pod_seconds: float = Field(
        300.0,
        ge=0,
        description="Seconds a deleted pod's names are kept, so its last counts still carry them.",
    )


# Ports scanners and worms look for: remote shells, mail, DNS, file sharing, web, databases,
# container and cluster APIs. A knock on one of them keeps its own series.
DEFAULT_KEPT_PORTS: tuple[int, ...] = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 587, 636, 993, 995,
    1433, 1521, 2049, 2375, 2376, 2379, 3306, 3389, 5432, 5900, 5985, 5986, 6379, 6443, 8080,
    8443, 9090, 9200, 10250, 11211, 27017,
)  # fmt: skip


def parse_port_range(text: str) -> tuple[int, int]:
    """``"8000-8099"`` or ``"8080"`` into (low, high); ValueError names what is wrong."""
    low_text, _, high_text = text.partition("-")
    if not low_text.strip().isdigit() or not (high_text or low_text).strip().isdigit():
        raise ValueError(f"{text!r} is not a port or a low-high range")
    low, high = int(low_text), int(high_text or low_text)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{text!r} is not within 1-65535 with low <= high")
    return low, high


class PortsConfig(StrictModel):
    """Which port label values keep their own series (docs/security.md, Port policy)."""

    keep: list[int | str] = Field(
        list(DEFAULT_KEPT_PORTS),  # copied per instance by pydantic
        description='Ports and "low-high" ranges that always keep their own series, even past '
        "the budget.",
    )
    fold_ephemeral: bool = Field(
        True,
        description='Fold ports of the ephemeral range (client-side ports) into port="other".',
    )
    ephemeral_range: str = Field(
        "", description='"low-high"; empty means the kernel\'s net.ipv4.ip_local_port_range.'
    )
    fold_refused_inbound: bool = Field(
        True,
        description="Fold inbound refused connections to ports not in keep (port scans) into "
        'port="other"; closed UDP ports too (netsnoop_udp_unreachable_total). Applied in the '
        "kernel, so a scan of every port costs a few kernel keys.",
    )

    @field_validator("keep")
    @classmethod
    def _ports(cls, keep: list[int | str]) -> list[int | str]:
        for entry in keep:
            parse_port_range(str(entry))
        return keep

    @field_validator("ephemeral_range")
    @classmethod
    def _range(cls, text: str) -> str:
        if text:
            parse_port_range(text)
        return text


class CardinalityConfig(StrictModel):
    series_per_metric: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Series one counter metric may have; past it, new label combinations are "
        'folded into an overflow series whose unbounded labels read "other" (sum() stays '
        "exact), counted in netsnoop_series_overflow_total{metric}. See docs/security.md.",
    )
    idle_seconds: float = Field(
        3600.0,
        ge=1,
        description="A series without increments for this long is dropped, freeing its place in "
        "the budget.",
    )


WATCH_MAX_RULES = 64  # also the size of bpf/watch.h's per-rule arrays (a define)
WATCH_MAX_ENTRIES = 65536  # kernel trie entries: ports x directions x CIDRs, over all rules


class WatchRule(StrictModel):
    """Connections (tcp) or datagrams (udp) to log as events, and optionally hand to a hook."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    protocol: Literal["tcp", "udp"]
    direction: Literal["inbound", "outbound", "both"]
    ports: list[int | str] = Field(min_length=1, description="Ports and 'low-high' ranges.")
    remote_cidrs: list[str] = Field(
        default_factory=list, description="Remote networks; empty: any address."
    )
    rate_limit: int = Field(
        100, ge=0, le=1_000_000, description="Events per second (one-second windows); 0: no limit."
    )
    hook: list[str] = Field(
        default_factory=list, description="Command (argv) run per event, the event JSON on stdin."
    )

    @field_validator("ports")
    @classmethod
    def _ports(cls, ports: list[int | str]) -> list[int | str]:
        for entry in ports:
            parse_port_range(str(entry))
        return ports

    @field_validator("remote_cidrs")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return cidrs

    def trie_entries_needed(self) -> int:
        ports = sum(high - low + 1 for low, high in map(parse_port_range, map(str, self.ports)))
        return ports * (2 if self.direction == "both" else 1) * max(1, len(self.remote_cidrs))

    @model_validator(mode="after")
    def _udp_outbound(self) -> WatchRule:
        if self.protocol == "udp" and self.direction != "outbound":
            raise ValueError("udp rules watch sent datagrams: direction must be outbound")
        return self


def default_watch_rules() -> list[WatchRule]:
    return [WatchRule(name="telnet", protocol="tcp", direction="both", ports=[23])]


class EventLogConfig(StrictModel):
    """Where watch events go, and how their hooks run."""

    path: str = Field(
        "-",
        description='A file to append the JSON lines to; "-" is standard output. Its directory '
        "must exist. Reopened on SIGHUP and when moved or deleted (logrotate).",
    )
    hook_concurrency: int = Field(
        4,
        ge=1,
        le=256,
        description="Hooks run at once, at most; an event that finds them all busy (and a full "
        "queue) skips its hook, counted in "
        'netsnoop_watch_hook_runs_total{outcome="skipped"}.',
    )
    hook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description='A hook still running after this is killed (outcome="timeout").',
    )
    buffer_pages: int = Field(
        64,
        ge=1,
        le=4096,
        description="Perf buffer pages per CPU for watch events (a power of two); overflow "
        'counts in netsnoop_watch_events_lost_total{reason="buffer"}.',
    )
    pending_map_size: MapSize = Field(
        4096, description="Watched TCP attempts waiting for their outcome."
    )
    lineage_map_size: MapSize = Field(
        65536,
        description="Processes whose parent (pid and name) is remembered for the event log (LRU).",
    )

    @field_validator("path")
    @classmethod
    def _writable(cls, path: str) -> str:
        """Checked with the config, not when the programs are loaded and the log opens."""
        if path == "-":
            return path
        if not path:
            raise ValueError("empty; '-' means standard output")
        target = Path(path)
        if target.is_dir():
            raise ValueError(f"{path} is a directory")
        if not target.parent.is_dir():
            raise ValueError(f"directory {target.parent} does not exist")
        writable = target if target.exists() else target.parent
        if not os.access(writable, os.W_OK):
            raise ValueError(f"{writable} is not writable")
        return path

    @field_validator("buffer_pages")
    @classmethod
    def _power_of_two(cls, pages: int) -> int:
        if pages & (pages - 1):
            raise ValueError("must be a power of two")
        return pages


OtlpProtocol = Literal["grpc", "http/protobuf"]


class OtlpConfig(StrictModel):
    """Periodic OTLP export of the same snapshot /metrics serves (docs/otlp.md). A standard
    OTEL_* variable that is set overrides its key here: the environment carries what differs
    per node or is secret (the node's collector, auth headers), the file what the fleet shares."""

    enabled: bool = False
    endpoint: str = Field(
        "",
        description="http(s)://host:port (for http/protobuf, /v1/metrics is appended); empty "
        "means http://localhost:4317 for grpc and http://localhost:4318 for http/protobuf.",
    )
    protocol: OtlpProtocol = Field("grpc", description="grpc or http/protobuf")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Headers sent with each export, e.g. {authorization: "Bearer ..."}.',
    )
    compression: Literal["none", "gzip"] = Field("none", description="none or gzip")
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="One export may take this long, its retries with backoff included; a "
        "collector that is down counts in netsnoop_otlp_export_failures_total and the next "
        "export sends the totals.",
    )
    interval_seconds: float = Field(
        60.0, gt=0, le=86400, description="Seconds between two exports."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str) -> str:
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return endpoint


ProgramKey = Annotated[str, Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")]
TracepointName = Annotated[str, Field(pattern=r"^[a-z0-9_]+:[a-z0-9_]+$")]
