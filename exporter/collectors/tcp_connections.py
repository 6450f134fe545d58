"""netsnoop_tcp_connections_total: TCP connections and attempts by direction, port, process,
uid and result, counted in BPF (bpf/tcp_connections.c) and read on each snapshot."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from exporter.collectors.base import BpfCollector
from exporter.config import Config, LabelsConfig
from exporter.kernel import sockets
from exporter.kernel.bpf import ProgramSpec
from exporter.kernel.tracefs import Tracefs
from exporter.snapshot import MetricFamily

log = logging.getLogger(__name__)

DIRECTIONS = ("outbound", "inbound")  # index = DIR_* in the BPF source
RESULTS = ("established", "refused", "timeout", "error", "accepted")  # index = RESULT_*
NO_UID = 0xFFFFFFFF  # the BPF side's marker for "no process" (inbound refused)
RESULT_ERROR = RESULTS.index("error")
DIRECTION_OUTBOUND = DIRECTIONS.index("outbound")

# An attempt whose socket closed without an error report (connect() failed at once, or the
# caller closed it while SYN_SENT) is counted as an error once it is this old.
UNREPORTED_CLOSE_AFTER_S = 5.0

LABEL_NAMES = ("direction", "port", "comm", "uid", "result")


@dataclass(frozen=True)
class ConnectionKey:
    """A decoded key of the BPF ``connections`` map."""

    direction: int
    result: int
    port: int
    uid: int
    comm: bytes


def decode_comm(raw: bytes) -> str:
    """The kernel's comm is bytes up to a NUL; anything not UTF-8 is replaced, never raised."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def connection_labels(key: ConnectionKey, labels: LabelsConfig) -> tuple[str, ...]:
    has_process = key.uid != NO_UID
    comm = decode_comm(key.comm) if has_process and labels.comm else ""
    uid = str(key.uid) if has_process and labels.uid else ""
    return (DIRECTIONS[key.direction], str(key.port), comm, uid, RESULTS[key.result])


def connections_family(
    counts: Iterable[tuple[ConnectionKey, int]], labels: LabelsConfig
) -> MetricFamily:
    family = MetricFamily(
        "netsnoop_tcp_connections",
        "counter",
        "TCP connections and connection attempts by direction, port, process, uid and result.",
        LABEL_NAMES,
    )
    for key, value in counts:
        if key.direction < len(DIRECTIONS) and key.result < len(RESULTS):
            family.add(connection_labels(key, labels), value)
    return family


class TcpConnectionsCollector(BpfCollector):
    name: ClassVar[str] = "tcp_connections"
    source_file: ClassVar[str] = "tcp_connections.c"
    programs: ClassVar[tuple[ProgramSpec, ...]] = (
        ProgramSpec("sock:inet_sock_set_state", ("skaddr", "oldstate", "newstate", "protocol")),
        ProgramSpec("tcp:tcp_receive_reset", ("skaddr",)),
        ProgramSpec("sock:inet_sk_error_report", ("error", "protocol", "sport", "dport")),
        # Only 6.10+ traces RSTs sent without a socket, with both sockaddrs (28 bytes).
        ProgramSpec("tcp:tcp_send_reset", ("skaddr", "saddr"), (("saddr", 28),)),
    )
    map_names: ClassVar[tuple[str, ...]] = (
        "connections",
        "connecting",
        "closing",
        "socket_errors",
        "listeners",
    )

    def __init__(self, config: Config, tracefs: Tracefs | None = None) -> None:
        super().__init__(tracefs)
        self.settings = config.collectors.tcp_connections
        self.labels = config.labels
        self._unreported: Counter[ConnectionKey] = Counter()

    def defines(self) -> dict[str, int | str]:
        defines: dict[str, int | str] = {
            "CONNECTIONS_MAP_SIZE": self.settings.map_size,
            "PENDING_MAP_SIZE": self.settings.pending_map_size,
            "LISTENERS_MAP_SIZE": self.settings.listeners_map_size,
        }
        reset = self.tracefs.format("tcp:tcp_send_reset")
        if reset is not None:
            no_socket = {name: n for n, name in reset.symbols("reason").items()}.get("NO_SOCKET")
            if no_socket is not None:
                defines["RST_REASON_NO_SOCKET"] = no_socket
        return defines

    def start(self) -> None:
        super().start()
        self._seed_listeners()

    def _seed_listeners(self) -> None:
        """Listeners opened before we started never pass CLOSE->LISTEN: learn them from
        sock_diag and /proc so their accepted connections carry the owner."""
        assert self.bpf is not None
        table = self.bpf.table("listeners")
        try:
            owners = sockets.listening_socket_owners()
        except OSError as error:
            log.warning("could not seed listening sockets: %s", error)
            return
        for port, (uid, comm) in owners.items():
            owner = table.Leaf()
            owner.uid = uid
            owner.comm = comm.encode()[:15]
            table[table.Key(port)] = owner

    def _sweep_unreported(self) -> None:
        assert self.bpf is not None
        closing = self.bpf.table("closing")
        now_ns = time.monotonic_ns()
        for tuple_key, attempt in list(closing.items()):
            if now_ns - attempt.closed_ns < UNREPORTED_CLOSE_AFTER_S * 1e9:
                continue
            try:
                del closing[tuple_key]
            except KeyError:
                continue  # the error report arrived meanwhile and counted it in BPF
            key = ConnectionKey(
                DIRECTION_OUTBOUND,
                RESULT_ERROR,
                attempt.port,
                attempt.owner.uid,
                bytes(attempt.owner.comm),
            )
            self._unreported[key] += 1

    def read_counts(self) -> list[tuple[ConnectionKey, int]]:
        assert self.bpf is not None
        counts = [
            (ConnectionKey(k.direction, k.result, k.port, k.uid, bytes(k.comm)), int(v))
            for k, v in self.bpf.table("connections").items_lookup_batch()
        ]
        self.note_entries("connections", len(counts))
        return counts + list(self._unreported.items())

    def collect(self) -> Iterable[MetricFamily]:
        if self.bpf is None:
            return []
        self._sweep_unreported()
        return [connections_family(self.read_counts(), self.labels)]
