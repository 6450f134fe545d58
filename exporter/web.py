"""The HTTP endpoint: landing page, metrics and health, in the node_exporter style."""

from __future__ import annotations

import gzip
import html
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10  # a client that stalls longer loses its connection (slowloris)


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
        registry: CollectorRegistry,
        telemetry_path: str,
        ready: threading.Event,
    ) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET
        if not host:
            address = ("::" if socket.has_ipv6 else "0.0.0.0", address[1])
            if not socket.has_ipv6:
                self.address_family = socket.AF_INET
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.ready = ready
        super().__init__(address, ExporterHandler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class ExporterHandler(BaseHTTPRequestHandler):
    server: ExporterServer
    timeout = REQUEST_TIMEOUT_S
    server_version = f"netsnoop-exporter/{__version__}"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == self.server.telemetry_path:
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
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
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
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)
