"""The HTTP endpoint: landing page, metrics and health, in the node_exporter style."""

from __future__ import annotations

import gzip
import html
import http.client
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any
from urllib.parse import urlsplit

from exporter import __version__
from exporter.prometheus import Exposition
from exporter.webconfig import WebSecurity

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10  # a client that stalls longer loses its connection (slowloris)
MAX_REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers; more is refused with 431
MAX_CONNECTIONS = 64  # open connections beyond this are closed at once: threads stay bounded


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


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        exposition: Exposition,
        telemetry_path: str,
        ready: threading.Event,
        security: WebSecurity | None = None,
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET
        if not host:
            address = ("::" if socket.has_ipv6 else "0.0.0.0", address[1])
            if not socket.has_ipv6:
                self.address_family = socket.AF_INET
        self.exposition = exposition
        self.telemetry_path = telemetry_path
        self.ready = ready
        self.security = security or WebSecurity()
        self._connection_slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, ExporterHandler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to MAX_CONNECTIONS; a flood of idle connections
        cannot make the exporter start thousands of threads."""
        if not self._connection_slots.acquire(blocking=False):
            log.debug("connection from %s refused: %d open", client_address, MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connection_slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake runs here, in the connection's own thread and under its timeout,
        so a client that never completes it cannot stall the accept loop."""
        if self.security.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(REQUEST_TIMEOUT_S)
        try:
            tls = self.security.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            log.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that breaks its connection is its own problem, not an error of ours."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class RequestHeadReader:
    """The connection's input, read under a size cap and one deadline per request head.

    A per-read socket timeout alone lets a client that sends a byte every few seconds hold a
    connection forever; here the whole request line and headers must arrive within
    REQUEST_TIMEOUT_S and MAX_REQUEST_HEAD_BYTES.
    """

    def __init__(self, raw: BufferedIOBase, connection: socket.socket) -> None:
        self._raw = raw
        self._connection = connection
        self.start()

    def start(self) -> None:
        self._left = MAX_REQUEST_HEAD_BYTES
        self._deadline = time.monotonic() + REQUEST_TIMEOUT_S

    def readline(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else MAX_REQUEST_HEAD_BYTES + 1
        while wanted > 0:
            remaining_s = self._deadline - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError("request head not complete in time")
            self._connection.settimeout(remaining_s)
            buffered = self._raw.peek(1)  # at most one recv, bounded by the deadline
            if not buffered:
                break
            limit = min(wanted, self._left + 1, len(buffered))
            newline = buffered.find(b"\n", 0, limit)
            chunk = self._raw.read(newline + 1 if newline >= 0 else limit)
            parts.append(chunk)
            wanted -= len(chunk)
            self._left -= len(chunk)
            if self._left < 0:
                raise http.client.LineTooLong("request head")
            if newline >= 0:
                break
        return b"".join(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class ExporterHandler(BaseHTTPRequestHandler):
    server: ExporterServer
    timeout = REQUEST_TIMEOUT_S
    server_version = f"netsnoop-exporter/{__version__}"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile = RequestHeadReader(self.rfile, self.connection)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        self.rfile.start()  # type: ignore[attr-defined]
        # what send_error needs if the request line itself is refused
        self.command, self.requestline = None, ""
        self.request_version = self.default_request_version
        try:
            super().handle_one_request()
        except http.client.LineTooLong:
            self.close_connection = True
            self.send_error(431, "Request header fields too large")

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.connection.settimeout(self.timeout)  # the head is in: back to per-write timeouts
        return parsed

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        auth = self.server.security.auth
        if (
            auth is not None
            and path != "/healthz"
            and not auth.allows(self.headers.get("Authorization"))
        ):
            self._reply(
                401,
                "text/plain; charset=utf-8",
                b"Unauthorized\n",
                {"WWW-Authenticate": 'Basic realm="netsnoop-exporter", charset="UTF-8"'},
            )
        elif path == self.server.telemetry_path:
            self._metrics()
        elif path == "/":
            self._reply(200, "text/html; charset=utf-8", landing_page(self.server.telemetry_path))
        elif path == "/healthz":
            if self.server.ready.is_set():
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            else:
                self._reply(503, "text/plain; charset=utf-8", b"loading BPF programs\n")
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _metrics(self) -> None:
        body, content_type = self.server.exposition.render(self.headers.get("Accept", ""))
        extra = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            extra["Content-Encoding"] = "gzip"
        self._reply(200, content_type, body, extra)

    def _reply(
        self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.security.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)
