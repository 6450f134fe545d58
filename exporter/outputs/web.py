"""The HTTP endpoint: landing page, metrics and health, in the node_exporter style.

One asyncio event loop serves every connection; requests are parsed by h11. A connection that
is still sending its request head costs a socket and a few kilobytes, never a thread, so slow
or idle clients cannot starve the scrapers: complete requests are answered as they arrive,
heads have a deadline, every client address has a connection cap, and when the server is full
it closes an idle keep-alive connection, or else the slowest unfinished request, to make room.
Rendering /metrics and checking bcrypt passwords run in small thread pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import html
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal
from urllib.parse import urlsplit

import h11

from exporter import __version__
from exporter.outputs.prometheus import Exposition
from exporter.outputs.webconfig import WebSecurity, parse_basic

log = logging.getLogger(__name__)

SERVER_HEADER = "netsnoop-exporter"  # no versions: they only help an attacker pick an exploit
MAX_REQUEST_LINE_BYTES = 8 * 1024  # longer request lines get 414
MAX_REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers; more gets 431
MAX_REQUEST_BODY_BYTES = 64 * 1024  # a GET has no body; a larger one gets 413
LISTEN_BACKLOG = 1024  # parallel scrapers' SYNs wait in the queue instead of being retried
WRITE_TIMEOUT_S = 30.0  # a client that does not read its response loses the connection
AUTH_TURN_WAIT_S = 1.0  # an uncached password waits this long for the bcrypt thread, then 401
RENDER_THREADS = 4


@dataclass(frozen=True)
class Limits:
    """The flags ``--web.*`` that bound what clients can make the server hold."""

    max_requests: int = 40  # /metrics renders in flight; more get 503; 0: unlimited
    max_connections: int = 512
    max_connections_per_client: int = 32  # per source address; 0: unlimited
    read_header_timeout_s: float = 5.0  # TLS handshake, request line and headers
    idle_timeout_s: float = 120.0  # keep-alive between requests (Prometheus reuses connections)


class ListenAddressError(ValueError):
    pass


def parse_listen_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) into (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenAddressError(f"--web.listen-address {address!r}: expected [host]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def landing_page(telemetry_path: str) -> bytes:
    path = html.escape(telemetry_path)
    return (
        "<!DOCTYPE html><html><head><title>netsnoop-exporter</title></head><body>"
        "<h1>netsnoop-exporter</h1>"
        "<p>eBPF network exporter: TCP/UDP connections per port, process and uid.</p>"
        f'<ul><li><a href="{path}">Metrics</a></li><li><a href="/healthz">Health</a></li></ul>'
        f"<p>version {html.escape(__version__)}</p></body></html>"
    ).encode()


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: ``gzip;q=0`` refuses it, ``*`` allows it."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, text = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(text)
                except ValueError:
                    weight = 0.0
        weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def listening_socket(address: tuple[str, int]) -> socket.socket:
    """A bound, listening socket; an empty host is every address, IPv4 and IPv6."""
    host, port = address
    family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET
    if not host:
        host = "::" if socket.has_ipv6 else "0.0.0.0"
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@dataclass(eq=False)
class Connection:
    """What the server knows of one client connection, to pick which to close under pressure."""

    peer: str
    transport: asyncio.WriteTransport | None = None
    state: Literal["head", "idle", "busy"] = "head"
    since: float = field(default_factory=time.monotonic)

    def enter(self, state: Literal["head", "idle", "busy"]) -> None:
        self.state, self.since = state, time.monotonic()


LINGER_S = 2.0  # after an error reply, how long to read what the client still sends
LINGER_BYTES = 4 << 20


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read and drop what the client is still sending, for a bounded time.

    Closing a socket with unread input sends a reset, and a reset makes the client's kernel
    drop the error response it has not read yet: the client would see no status line."""
    deadline = time.monotonic() + LINGER_S
    received = 0
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        if writer.can_write_eof():
            writer.write_eof()
        while received < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                break
            received += len(data)


class HttpError(Exception):
    """A request refused before it was understood: answered with this status and closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Reply = tuple[int, str, bytes, dict[str, str]]


class ExporterServer:
    """Binds at construction (so a busy port is a start-up error), serves in serve_forever()."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        exposition: Exposition,
        telemetry_path: str,
        ready: threading.Event,
        security: WebSecurity | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.exposition = exposition
        self.telemetry_path = telemetry_path
        self.ready = ready
        self.security = security or WebSecurity()
        self.limits = limits or Limits()
        self.sockets: list[socket.socket] = []
        try:
            for address in addresses:
                self.sockets.append(listening_socket(address))
        except OSError:
            self.server_close()
            raise
        self.server_address = self.sockets[0].getsockname()[:2]
        self._connections: set[Connection] = set()
        self._by_peer: dict[str, set[Connection]] = {}
        self._renders_in_flight = 0
        self._bcrypt_busy = False
        self._bcrypt_waiters: deque[asyncio.Future[bool]] = deque()
        self._render_pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="http-render")
        self._bcrypt_pool = ThreadPoolExecutor(1, thread_name_prefix="http-bcrypt")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()

    # life cycle, in the style of socketserver: serve_forever() in a thread, shutdown() from
    # another

    def serve_forever(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        if not self._started.wait(5) or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            self._loop.call_soon_threadsafe(self._stop.set)
        self._stopped.wait(10)

    def server_close(self) -> None:
        for sock in self.sockets:
            sock.close()
        if hasattr(self, "_render_pool"):
            self._render_pool.shutdown(wait=False)
            self._bcrypt_pool.shutdown(wait=False)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = [
            await asyncio.start_server(self._accept, sock=sock, backlog=LISTEN_BACKLOG)
            for sock in self.sockets
        ]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            for server in servers:
                server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.abort()

    # admission: which connections to keep when there are too many

    def _admit(self, connection: Connection) -> bool:
        same_peer = self._by_peer.get(connection.peer, set())
        per_client = self.limits.max_connections_per_client
        if per_client and len(same_peer) >= per_client and not self._evict(same_peer):
            return False
        if len(self._connections) >= self.limits.max_connections and not self._evict(
            self._connections
        ):
            return False
        self._connections.add(connection)
        self._by_peer.setdefault(connection.peer, set()).add(connection)
        return True

    def _evict(self, candidates: set[Connection]) -> bool:
        """Closes the longest-idle keep-alive connection, else the oldest unfinished request
        head; never one whose request is being answered."""
        for state in ("idle", "head"):
            waiting = [c for c in candidates if c.state == state]
            if waiting:
                victim = min(waiting, key=lambda c: c.since)
                log.debug("closing a %s connection from %s to make room", state, victim.peer)
                self._forget(victim)
                if victim.transport is not None:
                    victim.transport.abort()
                return True
        return False

    def _forget(self, connection: Connection) -> None:
        self._connections.discard(connection)
        same_peer = self._by_peer.get(connection.peer)
        if same_peer is not None:
            same_peer.discard(connection)
            if not same_peer:
                del self._by_peer[connection.peer]

    # one connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername") or ("?",)
        connection = Connection(str(peername[0]), writer.transport)
        if not self._admit(connection):
            log.debug("connection from %s refused: server full", connection.peer)
            writer.transport.abort()
            return
        try:
            await self._converse(connection, reader, writer)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away, was too slow, or was evicted: nothing to answer
        except Exception:  # a bug of ours: the connection is lost, the server goes on
            log.exception("HTTP connection from %s failed", connection.peer)
        finally:
            self._forget(connection)
            if connection.state == "head":  # slow, evicted or broken: no goodbye
                writer.transport.abort()
            else:  # what was to be sent is drained; TLS says close_notify
                writer.close()
                with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
                writer.transport.abort()

    async def _converse(
        self,
        connection: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        deadline = time.monotonic() + self.limits.read_header_timeout_s
        tls = self.security.tls
        if tls is not None:
            await writer.start_tls(
                tls.context(), ssl_handshake_timeout=self.limits.read_header_timeout_s
            )
            connection.transport = writer.transport
            if not tls.peer_allowed(writer.get_extra_info("peercert")):
                log.debug("client certificate of %s not in client_allowed_sans", connection.peer)
                return
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
        while True:
            try:
                request = await self._read_request(connection, parser, reader, deadline)
            except HttpError as error:
                await self._send_error(writer, error)
                await linger(reader, writer)
                return
            if request is None:
                return
            connection.enter("busy")
            status, content_type, body, headers = await self._respond(request)
            await self._send(parser, writer, request, status, content_type, body, headers)
            if parser.our_state is not h11.DONE or parser.their_state is not h11.DONE:
                return  # Connection: close, or HTTP/1.0
            parser.start_next_cycle()
            connection.enter("idle")
            deadline = time.monotonic() + self.limits.idle_timeout_s

    async def _read_request(
        self,
        connection: Connection,
        parser: h11.Connection,
        reader: asyncio.StreamReader,
        deadline: float,
    ) -> h11.Request | None:
        """The next request, its body read and dropped; None when the client closed."""
        request: h11.Request | None = None
        body_bytes = 0
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as error:
                raise HttpError(error.error_status_hint, str(error)) from None
            if event is h11.NEED_DATA:
                buffered = parser.trailing_data[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                # a head is parsed only once complete, so give the parser at most one byte
                # past the limit: it refuses the head as too large instead of accepting it
                size = 65536 if request else MAX_REQUEST_HEAD_BYTES + 1 - len(buffered)
                data = await asyncio.wait_for(reader.read(max(size, 1)), remaining)
                if connection.state == "idle" and data:  # a new request begins: its deadline
                    connection.enter("head")
                    deadline = time.monotonic() + self.limits.read_header_timeout_s
                parser.receive_data(data)
                buffered = parser.trailing_data[0]
                if (
                    request is None
                    and len(buffered) > MAX_REQUEST_LINE_BYTES
                    and b"\n" not in buffered[:MAX_REQUEST_LINE_BYTES]
                ):
                    raise HttpError(414, "URI Too Long")
            elif isinstance(event, h11.Request):
                if event.http_version not in (b"1.0", b"1.1"):
                    raise HttpError(505, "HTTP Version Not Supported")
                length = dict(event.headers).get(b"content-length", b"0")
                if int(length) > MAX_REQUEST_BODY_BYTES:  # h11 checked it is digits
                    raise HttpError(413, "Content Too Large")
                request = event
            elif isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes > MAX_REQUEST_BODY_BYTES:
                    raise HttpError(413, "Content Too Large")
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _send_error(self, writer: asyncio.StreamWriter, error: HttpError) -> None:
        """A complete response written by hand: the parser may not have seen a request."""
        reason = {
            400: "Bad Request",
            413: "Content Too Large",
            414: "URI Too Long",
            431: "Request Header Fields Too Large",
            505: "HTTP Version Not Supported",
        }.get(error.status, "Bad Request")
        body = f"{reason}\n".encode()
        head = (
            f"HTTP/1.1 {error.status} {reason}\r\nServer: {SERVER_HEADER}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)

    async def _send(
        self,
        parser: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        status: int,
        content_type: str,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        all_headers = {
            "Server": SERVER_HEADER,
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            **self.security.headers,
            **headers,
        }
        response = h11.Response(
            status_code=status,
            headers=list(all_headers.items()),
            reason=HTTPStatus(status).phrase.encode(),
        )
        data = parser.send(response) or b""
        if request.method != b"HEAD":
            data += parser.send(h11.Data(data=body)) or b""
        data += parser.send(h11.EndOfMessage()) or b""
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)

    # one request

    async def _respond(self, request: h11.Request) -> Reply:
        plain = "text/plain; charset=utf-8"
        request_headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers
        }
        path = urlsplit(request.target.decode("latin-1")).path
        if request.method not in (b"GET", b"HEAD"):
            return 405, plain, b"method not allowed\n", {"Allow": "GET, HEAD"}
        security = self.security
        if security.rate_limit is not None and not security.rate_limit.allow():
            return 429, plain, b"too many requests\n", {}
        if (
            security.auth is not None
            and path != "/healthz"
            and not await self._authenticated(request_headers.get("authorization"))
        ):
            challenge = 'Basic realm="netsnoop-exporter", charset="UTF-8"'
            return 401, plain, b"Unauthorized\n", {"WWW-Authenticate": challenge}
        if path == self.telemetry_path:
            return await self._metrics(request_headers)
        if path == "/":
            return 200, "text/html; charset=utf-8", landing_page(self.telemetry_path), {}
        if path == "/healthz":
            if self.ready.is_set():
                return 200, plain, b"ok\n", {}
            return 503, plain, b"loading BPF programs\n", {}
        return 404, plain, b"not found\n", {}

    async def _authenticated(self, header: str | None) -> bool:
        """Cached credentials at once; others take turns on one bcrypt thread, and give up
        after AUTH_TURN_WAIT_S, so guessers cost half a core at most and never hold a scraper."""
        auth = self.security.auth
        credentials = parse_basic(header)
        if auth is None or credentials is None:
            return auth is None
        if auth.cached(*credentials):
            return True
        if not await self._take_bcrypt_turn():
            return False
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            return await loop.run_in_executor(self._bcrypt_pool, auth.verify, *credentials)
        finally:
            # the next turn after a pause as long as the check: bcrypt gets half a core at most
            loop.call_later(loop.time() - began, self._pass_bcrypt_turn)

    async def _take_bcrypt_turn(self) -> bool:
        """Waits up to AUTH_TURN_WAIT_S for the bcrypt thread, first come first served.

        A turn is handed over explicitly (not via wait_for on a lock, which on Python 3.11 can
        lose a lock acquired just as the timeout fires and so block every later check)."""
        if not self._bcrypt_busy:
            self._bcrypt_busy = True
            return True
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._bcrypt_waiters.append(turn)
        expiry = loop.call_later(AUTH_TURN_WAIT_S, _refuse_turn, turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and turn.result():
                self._pass_bcrypt_turn()
            raise
        finally:
            expiry.cancel()

    def _pass_bcrypt_turn(self) -> None:
        while self._bcrypt_waiters:
            turn = self._bcrypt_waiters.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self._bcrypt_busy = False

    async def _metrics(self, request_headers: dict[str, str]) -> Reply:
        limit = self.limits.max_requests
        if limit and self._renders_in_flight >= limit:
            return 503, "text/plain; charset=utf-8", b"too many concurrent scrapes\n", {}
        self._renders_in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._render_pool,
                self._render,
                request_headers.get("accept", ""),
                request_headers.get("accept-encoding", ""),
            )
        except Exception:
            log.exception("rendering %s failed", self.telemetry_path)
            return 500, "text/plain; charset=utf-8", b"rendering the metrics failed\n", {}
        finally:
            self._renders_in_flight -= 1

    def _render(self, accept: str, accept_encoding: str) -> Reply:
        body, content_type = self.exposition.render(accept)
        if accepts_gzip(accept_encoding):
            return (
                200,
                content_type,
                gzip.compress(body, compresslevel=1),
                {"Content-Encoding": "gzip"},
            )
        return 200, content_type, body, {}


def _refuse_turn(turn: asyncio.Future[bool]) -> None:
    """A waiter's time is up, unless it was handed the turn (or cancelled) meanwhile."""
    if not turn.done():
        turn.set_result(False)
