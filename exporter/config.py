"""The YAML configuration as a typed, validated model; every key has a default."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.paths import config_dir

MapSize = Annotated[int, Field(ge=16, le=1 << 20)]


class StrictModel(BaseModel):
    """Unknown keys and wrong types are errors, not silently coerced or ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TcpConnectionsConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(
        65536,
        description="Distinct {direction, port, comm, uid, result} counters per drain interval.",
    )
    pending_map_size: MapSize = Field(
        65536, description="Connect attempts in flight; when full, attempts are counted as lost."
    )
    listeners_map_size: MapSize = Field(
        4096, description="Listening (network namespace, port) pairs with a known owner."
    )


class SocketTrafficConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(
        4096, description="Distinct {direction, protocol, comm, uid} counters."
    )


class UdpSendsConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(8192, description="Distinct {port, comm, uid} counters kept.")


class PacketDropsConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(
        4096, description="Distinct {kernel location, reason, protocol} drop counters kept."
    )


class UdpUnreachableConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(4096, description="Distinct closed UDP ports counted.")


class ListenQueueConfig(StrictModel):
    enabled: bool = True
    max_namespaces: int = Field(
        1024,
        ge=1,
        le=65536,
        description="Network namespaces read per scrape (listen queues, listener owners); "
        "the exporter's own comes first, the rest by inode.",
    )


class SocketOwnersConfig(StrictModel):
    """A collector that labels kernel events with each TCP socket's owner (socket_owners.h)."""

    enabled: bool = True
    map_size: MapSize = Field(8192, description="Distinct counters per drain interval.")
    socket_owners_map_size: MapSize = Field(
        65536, description="Open TCP sockets whose owner is remembered; past it, unlabeled."
    )
    listeners_map_size: MapSize = Field(
        4096, description="Listening (network namespace, port) pairs with a known owner."
    )


class TcpConnectLatencyConfig(StrictModel):
    enabled: bool = True
    map_size: MapSize = Field(
        8192, description="Distinct {port, comm, bucket} counters per drain interval."
    )
    pending_map_size: MapSize = Field(
        65536, description="Connects in flight whose start time is kept."
    )
    labels: list[Literal["port", "comm"]] = Field(
        default_factory=lambda: ["port"],
        description="Labels with values; the others stay empty. Each (port, comm) pair costs "
        "21 series (19 buckets, sum, count).",
    )


class CollectorsConfig(StrictModel):
    tcp_connections: TcpConnectionsConfig = TcpConnectionsConfig()
    socket_traffic: SocketTrafficConfig = SocketTrafficConfig()
    udp_sends: UdpSendsConfig = UdpSendsConfig()
    packet_drops: PacketDropsConfig = PacketDropsConfig()
    udp_unreachable: UdpUnreachableConfig = UdpUnreachableConfig()
    listen_queue: ListenQueueConfig = ListenQueueConfig()
    tcp_retransmits: SocketOwnersConfig = SocketOwnersConfig()
    tcp_resets: SocketOwnersConfig = SocketOwnersConfig()
    tcp_connect_latency: TcpConnectLatencyConfig = TcpConnectLatencyConfig()


class LabelsConfig(StrictModel):
    """Labels can be blanked (not removed) so every series keeps the documented label set."""

    comm: bool = True
    uid: bool = True


class KubernetesConfig(StrictModel):
    """namespace, pod and container labels on connection series, from each process's cgroup.

    Off, the labels do not exist at all (the series keep the core label set)."""

    enabled: bool = False
    cgroup_root: str = Field(
        "/sys/fs/cgroup", description="The cgroup v2 mount, or a hybrid mount with unified/."
    )
    kubeconfig: str = Field(
        "", description="API access; empty: in-cluster when run in a pod, else names from paths."
    )
    node_name: str = Field("", description="Whose pods to watch; empty: $NODE_NAME, else hostname.")
    cache_size: MapSize = Field(4096, description="cgroups whose labels are kept (LRU).")
    deleted_pod_seconds: float = Field(
        300.0, ge=0, description="A deleted pod's names are kept this long for its last counts."
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
        default_factory=lambda: list(DEFAULT_KEPT_PORTS),
        description="Ports and 'low-high' ranges that always keep their own series.",
    )
    fold_ephemeral: bool = True
    ephemeral_range: str = Field(
        "", description="'low-high'; empty: the kernel's net.ipv4.ip_local_port_range."
    )
    fold_refused_inbound: bool = True

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
        2000, ge=1, le=1_000_000, description="Series a counter may have before folding."
    )
    idle_seconds: float = Field(
        3600.0, ge=1, description="A series without increments this long is dropped."
    )


WATCH_MAX_RULES = 64  # bpf/watch.h WATCH_MAX_RULES
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

    path: str = Field("-", description="A file to append JSON lines to; '-': standard output.")
    hook_concurrency: int = Field(4, ge=1, le=256, description="Hooks running at once.")
    hook_timeout_seconds: float = Field(10.0, gt=0, le=3600, description="A hook is killed after.")
    buffer_pages: int = Field(64, ge=1, le=4096, description="Perf buffer pages per CPU.")
    pending_map_size: MapSize = Field(4096, description="Watched TCP attempts in flight.")
    lineage_map_size: MapSize = Field(65536, description="Processes whose parent is known (LRU).")

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

    enabled: bool = Field(False, description="Also OTEL_METRICS_EXPORTER=otlp (on) or none (off).")
    endpoint: str = Field(
        "", description="http(s)://host:port; empty: localhost:4317 (grpc) or 4318 (http)."
    )
    protocol: OtlpProtocol = "grpc"
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with each export.")
    compression: Literal["none", "gzip"] = "none"
    timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="One export, retries with backoff included."
    )
    interval_seconds: float = Field(60.0, gt=0, le=86400, description="Between two exports.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str) -> str:
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return endpoint


ProgramKey = Annotated[str, Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")]
TracepointName = Annotated[str, Field(pattern=r"^[a-z0-9_]+:[a-z0-9_]+$")]


class Config(StrictModel):
    collectors: CollectorsConfig = CollectorsConfig()
    labels: LabelsConfig = LabelsConfig()
    cardinality: CardinalityConfig = CardinalityConfig()
    ports: PortsConfig = PortsConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    watch: list[WatchRule] = Field(default_factory=default_watch_rules)
    event_log: EventLogConfig = EventLogConfig()
    otlp: OtlpConfig = OtlpConfig()
    tracepoints: dict[ProgramKey, TracepointName] = Field(
        default_factory=dict,
        description="Attach a program elsewhere: '<collector>.<program>' -> 'category:event'. "
        "A tracepoint this kernel lacks disables only that program.",
    )

    @field_validator("watch")
    @classmethod
    def _rules(cls, rules: list[WatchRule]) -> list[WatchRule]:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        if len(rules) > WATCH_MAX_RULES:
            raise ValueError(f"at most {WATCH_MAX_RULES} rules")
        entries = sum(rule.trie_entries_needed() for rule in rules)
        if entries > WATCH_MAX_ENTRIES:
            raise ValueError(
                f"{entries} port x direction x CIDR combinations, over {WATCH_MAX_ENTRIES}"
            )
        return rules


ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """A one-line reason naming the file and the key."""


def default_config_path() -> Path:
    return config_dir() / "netsnoop.yaml"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    # repr() keeps a hostile key (newlines, control bytes) on the one line of the message
    key = ".".join(
        part if isinstance(part, str) and part.isprintable() else repr(part)
        for part in first["loc"]
    )
    key = key or "(top level)"
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    more = error.error_count() - 1
    return f"{key}: {reason}" + (f" (and {more} more)" if more else "")


def parse_config(text: str, source: str) -> Config:
    return parse_model(text, source, Config)


INT_TAG = "tag:yaml.org,2002:int"


class StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses what PyYAML lets through silently or with a bare exception: a
    key given twice (the last one would win unseen), and integers no setting needs (past 64
    bits; past Python's 4,300 decimal digits they are a ValueError with no line)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            name = key if isinstance(key, str) and key.isprintable() else repr(key)
            if isinstance(key, Hashable):
                if key in seen:
                    raise self._refuse(f"{name}: duplicate key", key_node)
                seen.add(key)
            if value_node.tag == INT_TAG and not self._fits(value_node):
                raise self._refuse(f"{name}: integer too large", value_node)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if not self._fits(node):  # in a list: no key to name
            raise self._refuse("integer too large", node)
        return super().construct_yaml_int(node)

    def _fits(self, node: yaml.ScalarNode) -> bool:
        text = str(node.value)
        return len(text) <= 200 and abs(super().construct_yaml_int(node)).bit_length() <= 64

    @staticmethod
    def _refuse(problem: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
        return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


StrictYamlLoader.add_constructor(INT_TAG, StrictYamlLoader.construct_yaml_int)


def parse_model(text: str, source: str, model: type[ModelT]) -> ModelT:
    """YAML text into a strict model, or a ConfigError naming ``source``, the key and why."""
    try:
        data = yaml.load(text, Loader=StrictYamlLoader)  # a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"{source}: (top level): nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(f"{source}: {where}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{source}: (top level): nested too deeply") from None
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def load_config(path: str | Path) -> Config:
    return load_model(path, Config)


def load_model(path: str | Path, model: type[ModelT]) -> ModelT:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse_model(text, str(path), model)
