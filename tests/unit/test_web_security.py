"""--web.config.file: validation with one-line errors, TLS with client certificates, basic auth
with cached bcrypt, and the HTTP layer's limits. The server is the real one, in-process, on
loopback; the certificates come from the openssl command."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import web
from exporter.config import ConfigError
from exporter.prometheus import Exposition
from exporter.snapshot import MetricFamily, SnapshotSource
from exporter.web import ExporterServer
from exporter.webconfig import WebSecurity, load_web_config
from tests.certs import Pki, bcrypt_hash, make_pki

PASSWORD = "n6-s3cret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt_hash(PASSWORD, rounds=12)  # ~0.25 s a check: slow enough to see caching


def write_web_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def serve(security: WebSecurity) -> Iterator[ExporterServer]:
    family = MetricFamily("n6_things", "counter", "Things.", ("kind",))
    family.add(("a",), 3)
    ready = threading.Event()
    ready.set()
    server = ExporterServer(
        ("127.0.0.1", 0), Exposition(SnapshotSource(lambda: [family])), "/metrics", ready,
        security,
    )  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def authorization(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def client_context(pki: Pki, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_certificate:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  bob: hunter2\n", "basic_auth_users: Value error, user 'bob': "),
        ("tls_server_config:\n  cert_file: x\n", "tls_server_config.key_file: Field required"),
        ("tls_server_cfg: {}\n", "tls_server_cfg: unknown key"),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS9}\n",
            "tls_server_config.min_version: Input should be 'TLS10'",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: "
            "RequireAndVerifyClientCert}\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n",
            "tls_server_config.cert_file: cannot read",
        ),
        ("http_server_config: {headers: {'X-A': \"a\\nb\"}}\n", "not a valid header"),
    ],
)
def test_bad_web_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str):
    path = write_web_config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_certificate_that_does_not_match_its_key_is_refused(tmp_path: Path, pki: Pki):
    path = write_web_config(
        tmp_path,
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.client_key}}}\n",
    )
    with pytest.raises(ConfigError, match=r"tls_server_config\.key_file: certificate and key"):
        load_web_config(path)


def test_basic_auth_over_tls_with_required_client_certificate(
    tmp_path: Path, pki: Pki, password_hash: str
):
    path = write_web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert.name}
  key_file: {pki.server_key.name}
  client_ca_file: {pki.ca}
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS12
basic_auth_users:
  n6-prometheus: {password_hash}
http_server_config:
  headers: {{X-Content-Type-Options: nosniff}}
""",
    )
    (tmp_path / pki.server_cert.name).write_bytes(pki.server_cert.read_bytes())  # relative path
    (tmp_path / pki.server_key.name).write_bytes(pki.server_key.read_bytes())
    with serve(load_web_config(path)) as server:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        good = client_context(pki, with_certificate=True)
        status, body, headers = get(
            url + "/metrics", authorization("n6-prometheus", PASSWORD), good
        )
        assert status == 200 and b'n6_things_total{kind="a"} 3.0' in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        for credentials in (
            authorization("n6-prometheus", "wrong"),
            authorization("nobody", PASSWORD),
            {"Authorization": "Basic !!!"},
            {},
        ):
            status, body, headers = get(url + "/metrics", credentials, good)
            assert (status, body) == (401, b"Unauthorized\n")
            assert headers["WWW-Authenticate"].startswith("Basic ")
        assert get(url + "/healthz", context=good)[0] == 200  # probes need no password
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            get(url + "/healthz", context=client_context(pki, with_certificate=False))
        plain = f"http://127.0.0.1:{server.server_address[1]}/healthz"
        with pytest.raises((ConnectionError, urllib.error.URLError, http_errors())):
            get(plain)


def http_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def test_correct_password_is_bcrypt_checked_once_and_guessing_does_not_starve_it(
    tmp_path: Path, password_hash: str
):
    security = load_web_config(
        write_web_config(tmp_path, f"basic_auth_users:\n  n6-prometheus: {password_hash}\n")
    )
    with serve(security) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        good = authorization("n6-prometheus", PASSWORD)
        assert get(url, good)[0] == 200  # the one bcrypt check
        stop = threading.Event()
        refused: list[int] = []

        def guess() -> None:
            while not stop.is_set():
                refused.append(get(url, authorization("n6-prometheus", "guess"))[0])

        guessers = [threading.Thread(target=guess) for _ in range(6)]
        for thread in guessers:
            thread.start()
        try:
            began = time.monotonic()
            statuses = [get(url, good)[0] for _ in range(20)]
            elapsed = time.monotonic() - began
        finally:
            stop.set()
            for thread in guessers:
                thread.join()
        assert statuses == [200] * 20
        # 20 bcrypt checks at cost 12 would take over 5 s; cached, they take milliseconds
        assert elapsed < 2.0, elapsed
        assert refused and set(refused) == {401}


def raw_exchange(port: int, payload: bytes, timeout: float = 15) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(payload)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_malformed_and_oversized_requests_are_refused():
    with serve(WebSecurity()) as server:
        port = server.server_address[1]
        # a request line that is not HTTP gets an HTTP/0.9-style answer: the error page only
        assert b"Error code: 400" in raw_exchange(port, b"\x16\x03\x01garbage\r\n\r\n")
        huge = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        assert raw_exchange(port, huge).startswith(b"HTTP/1.1 431")
        many = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n"
        assert raw_exchange(port, many).startswith(b"HTTP/1.1 431")
        long_line = raw_exchange(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        assert b"Error code: 431" in long_line
        ok = raw_exchange(port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200") and b'n6_things_total{kind="a"} 3.0' in ok


def test_slow_client_loses_its_connection_at_the_deadline(monkeypatch: pytest.MonkeyPatch):
    """One byte a second never trips a per-read timeout; the whole head has a deadline."""
    monkeypatch.setattr(web, "REQUEST_TIMEOUT_S", 2)
    with serve(WebSecurity()) as server:
        with socket.create_connection(("127.0.0.1", server.server_address[1])) as connection:
            began = time.monotonic()
            closed_after = None
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaa":
                try:
                    connection.sendall(bytes([byte]))
                    time.sleep(0.25)
                    connection.settimeout(0.01)
                    if connection.recv(1024) == b"":
                        closed_after = time.monotonic() - began
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed_after = time.monotonic() - began
                    break
        assert closed_after is not None and 1.5 < closed_after < 4, closed_after


def test_connections_beyond_the_limit_are_closed_and_slots_come_back(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(web, "MAX_CONNECTIONS", 4)
    with serve(WebSecurity()) as server:
        port = server.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert extra.recv(1) == b""  # closed at once, no thread started for it
        extra.close()
        for connection in idle:
            connection.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        else:
            raise AssertionError("slots were not released")
