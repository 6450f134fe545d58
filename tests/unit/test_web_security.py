"""--web.config.file: validation with one-line errors, TLS with client certificates, basic auth
with cached bcrypt, and the HTTP layer's limits. The server is the real one, in-process, on
loopback; the certificates come from the openssl command."""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config import ConfigError
from exporter.core.snapshot import MetricFamily, SnapshotSource
from exporter.outputs.prometheus import Exposition
from exporter.outputs.web import ExporterServer, Limits
from exporter.outputs.webconfig import WebSecurity, load_web_config
from tests.certs import Pki, bcrypt_hash, make_pki, openssl

PASSWORD = "n6-s3cret"
HASH_TAIL = "$" + "a" * 53  # after a version and cost: salt and hash of valid characters
BAD_SALT = "$" + "a" * 21 + "b" + "a" * 31


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
def serve(security: WebSecurity, limits: Limits | None = None) -> Iterator[ExporterServer]:
    family = MetricFamily("n6_things", "counter", "Things.", ("kind",))
    family.add(("a",), 3)
    ready = threading.Event()
    ready.set()
    server = ExporterServer(
        [("127.0.0.1", 0)], Exposition(SnapshotSource(lambda: [family])), "/metrics", ready,
        security, limits,
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
        ("tls_server_config:\n", "tls_server_config: Value error, empty"),
        ("tls_server_config: null\n", "tls_server_config: Value error, empty"),
        (f"basic_auth_users:\n  bob: $2${HASH_TAIL}\n", "not a bcrypt hash bcrypt accepts"),
        (f"basic_auth_users:\n  bob: $2y$03{HASH_TAIL}\n", "not a bcrypt hash bcrypt accepts"),
        (f"basic_auth_users:\n  bob: $2y$99{HASH_TAIL}\n", "not a bcrypt hash bcrypt accepts"),
        (f"basic_auth_users:\n  bob: $2b$32{HASH_TAIL}\n", "not a bcrypt hash bcrypt accepts"),
        # a salt whose last character has bits bcrypt's decoder refuses
        (f"basic_auth_users:\n  bob: $2b$10{BAD_SALT}\n", "not a bcrypt hash bcrypt accepts"),
        ("rate_limit: {interval: soon, burst: 3}\n", "rate_limit.interval: Value error"),
        ("rate_limit: {interval: 1s, burst: -1}\n", "rate_limit.burst: Input should be"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
            "client_allowed_sans needs RequireAndVerifyClientCert",
        ),
        ("basic_auth_users: {a: x, a: y}\n", "line 1: a: duplicate key"),
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


MALFORMED = {
    "not HTTP": (b"\x16\x03\x01garbage\r\n\r\n", 400),
    "header of 100 KB": (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    "3,000 headers": (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n", 431),
    "request line of 20 KB": (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", 414),
    "request line of 70 KB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    "HTTP/2.0": (b"GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "HTTP/3.7": (b"GET / HTTP/3.7\r\nHost: a\r\n\r\n", 505),
    "body of 1 MB": (
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000,
        413,
    ),
    "bad Content-Length": (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_requests_get_a_complete_response_and_a_close(name: str):
    payload, status = MALFORMED[name]
    with serve(WebSecurity()) as server:
        answer = raw_exchange(server.server_address[1], payload)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head  # the whole body, nothing after


def test_a_get_with_a_body_keeps_the_connection_in_step():
    """The body is read and dropped, so the next request on the connection is parsed as one."""
    with serve(WebSecurity()) as server:
        answer = raw_exchange(
            server.server_address[1],
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 21\r\n\r\n"
            b"GET /nothere HTTP/1.1"
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer
    assert b"404" not in answer and b'n6_things_total{kind="a"} 3.0' in answer


def test_server_header_has_no_versions_and_gzip_follows_q_values():
    with serve(WebSecurity()) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        status, _, headers = get(url, {"Accept-Encoding": "gzip;q=0, identity"})
        assert status == 200 and "Content-Encoding" not in headers
        assert headers["Server"] == "netsnoop-exporter"
        assert get(url, {"Accept-Encoding": "gzip"})[2]["Content-Encoding"] == "gzip"
        assert get(url, {"Accept-Encoding": "*;q=0.5"})[2]["Content-Encoding"] == "gzip"
        assert "Content-Encoding" not in get(url, {"Accept-Encoding": "br, *;q=0"})[2]


def slow_head_closed_after(port: int, byte_interval_s: float) -> float | None:
    """Sends a request head a byte at a time; seconds until the server closed, or None."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        began = time.monotonic()
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                connection.sendall(bytes([byte]))
                time.sleep(byte_interval_s)
                connection.settimeout(0.01)
                if connection.recv(1024) == b"":
                    return time.monotonic() - began
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - began
    return None


def test_slow_client_loses_its_connection_at_the_deadline():
    """One byte every 0.25 s never trips a per-read timeout; the whole head has a deadline."""
    with serve(WebSecurity(), Limits(read_header_timeout_s=2)) as server:
        closed_after = slow_head_closed_after(server.server_address[1], 0.25)
    assert closed_after is not None and 1.5 < closed_after < 4, closed_after


def wait_closed(connection: socket.socket) -> bool:
    connection.settimeout(5)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_full_server_closes_idle_then_slow_connections_for_a_new_scraper():
    with serve(WebSecurity(), Limits(max_connections=3)) as server:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/metrics"
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # now idle, kept alive
        slow = []
        for _ in range(3):
            if len(slow) == 2:  # full: idle, slow[0], slow[1]
                assert get(url)[0] == 200  # the idle keep-alive connection made room
                assert wait_closed(idle)
            slow.append(socket.create_connection(("127.0.0.1", port)))
            slow[-1].sendall(b"GET /metrics HT")
            time.sleep(0.05)  # so that their ages differ
        assert get(url)[0] == 200  # full again: the oldest slow head made room
        assert wait_closed(slow[0])
        slow[1].sendall(b"TP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert slow[1].recv(4096).startswith(b"HTTP/1.1 200")  # the younger ones lived
        for connection in (idle, *slow):
            connection.close()


def test_per_client_cap_counts_each_address_apart():
    """127.0.0.2 filling its share of connections does not touch 127.0.0.1's."""
    with serve(WebSecurity(), Limits(max_connections_per_client=2)) as server:
        port = server.server_address[1]
        mine = socket.create_connection(("127.0.0.1", port))
        mine.sendall(b"GET /healthz HT")
        others = [
            socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            for _ in range(3)
        ]
        for connection in others:
            connection.sendall(b"GET /metrics HT")
            time.sleep(0.05)
        assert wait_closed(others[0])  # the third from 127.0.0.2 pushed out its oldest
        mine.sendall(b"TP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert mine.recv(4096).startswith(b"HTTP/1.1 200")
        for connection in (mine, *others):
            connection.close()


def test_scrapes_over_max_requests_get_503():
    gate = threading.Event()
    family = MetricFamily("n6_things", "counter", "Things.", ())

    def read() -> list[MetricFamily]:
        gate.wait(10)
        return [family]

    ready = threading.Event()
    server = ExporterServer(
        [("127.0.0.1", 0)], Exposition(SnapshotSource(read)), "/metrics", ready, None,
        Limits(max_requests=1),
    )  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        first: list[int] = []
        waiting = threading.Thread(target=lambda: first.append(get(url)[0]))
        waiting.start()
        time.sleep(0.3)  # the first scrape is now rendering, held at the gate
        assert get(url)[0] == 503
        gate.set()
        waiting.join()
        assert first == [200]
        assert get(url)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, pki: Pki):
    """OpenSSL would ask for a pass phrase on the terminal; the loader never lets it."""
    encrypted = tmp_path / "encrypted.key"
    openssl(
        "pkey", "-in", str(pki.server_key), "-aes256", "-passout", "pass:n6", "-out",
        str(encrypted), cwd=tmp_path,
    )  # fmt: skip
    path = write_web_config(
        tmp_path, f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {encrypted}}}\n"
    )
    with pytest.raises(ConfigError, match=r"tls_server_config\.key_file: .* is encrypted"):
        load_web_config(path)


def test_exporter_toolkit_keys_are_accepted(tmp_path: Path, pki: Pki, caplog):
    path = write_web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_ca_file: {pki.ca}
  client_auth_type: RequireAndVerifyClientCert
  client_allowed_sans: [n6-allowed.example]
http_server_config:
  http2: true
  headers: {{X-Frame-Options: deny}}
rate_limit: {{interval: 500ms, burst: 2}}
""",
    )
    security = load_web_config(path)
    assert "http2: HTTP/2 is not supported, serving HTTP/1.1" in caplog.text
    assert security.tls is not None and security.rate_limit is not None
    assert security.tls.peer_allowed({"subjectAltName": (("DNS", "n6-allowed.example"),)})
    assert not security.tls.peer_allowed({"subjectAltName": (("DNS", "other.example"),)})
    assert not security.tls.peer_allowed(None)


def test_client_outside_client_allowed_sans_is_refused(tmp_path: Path, pki: Pki):
    text = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_ca_file: {pki.ca}
  client_auth_type: RequireAndVerifyClientCert
  client_allowed_sans: [ALLOWED]
"""
    context = client_context(pki, with_certificate=True)  # its certificate has no SAN
    for allowed, works in (("n6-allowed.example", False), ("", True)):
        lines = text.replace("ALLOWED", allowed) if allowed else text.rsplit("\n", 2)[0]
        with serve(load_web_config(write_web_config(tmp_path, lines + "\n"))) as server:
            url = f"https://127.0.0.1:{server.server_address[1]}/healthz"
            if works:
                assert get(url, context=context)[0] == 200
            else:
                with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
                    get(url, context=context)


def test_rate_limit_answers_429_past_the_burst(tmp_path: Path):
    security = load_web_config(write_web_config(tmp_path, "rate_limit: {interval: 1m, burst: 2}"))
    with serve(security) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
        assert [get(url)[0] for _ in range(4)] == [200, 200, 429, 429]


def test_unknown_users_are_checked_at_the_configured_cost(tmp_path: Path, password_hash: str):
    """The dummy hash has the users' cost (12 here), not a fixed 10: timing names no user."""
    security = load_web_config(
        write_web_config(tmp_path, f"basic_auth_users:\n  a: {password_hash}\n")
    )
    assert security.auth is not None
    assert security.auth._dummy.startswith(b"$2b$12$")
    assert not security.auth.verify("nobody", PASSWORD.encode())
    assert security.auth.verify("a", PASSWORD.encode())


def test_certificate_rotation_is_picked_up_without_a_restart(tmp_path: Path, pki: Pki):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    path = write_web_config(tmp_path, "tls_server_config: {cert_file: tls.crt, key_file: tls.key}")
    (tmp_path / "second").mkdir()
    second = make_pki(tmp_path / "second")
    with serve(load_web_config(path)) as server:
        port = server.server_address[1]

        def served_by(ca: Path) -> bool:
            try:
                return (
                    get(
                        f"https://127.0.0.1:{port}/healthz",
                        context=ssl.create_default_context(cafile=str(ca)),
                    )[0]
                    == 200
                )
            except (ssl.SSLError, urllib.error.URLError):
                return False

        assert served_by(pki.ca) and not served_by(second.ca)
        key.write_text("half-written")  # a rotation caught in the middle keeps the old pair
        time.sleep(1.1)
        assert served_by(pki.ca)
        cert.write_bytes(second.server_cert.read_bytes())
        key.write_bytes(second.server_key.read_bytes())
        deadline = time.monotonic() + 5
        while not served_by(second.ca) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served_by(second.ca) and not served_by(pki.ca)


def test_a_failing_read_is_a_500_and_the_server_goes_on():
    def broken() -> list[MetricFamily]:
        raise RuntimeError("n6 collector bug")

    ready = threading.Event()
    ready.set()
    server = ExporterServer(
        [("127.0.0.1", 0)], Exposition(SnapshotSource(broken)), "/metrics", ready
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert get(url + "/metrics")[0] == 500
        assert get(url + "/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("request line of 20 KB", ["URL/" + "a" * 20_000], "414 1.1"),
        ("header of 100 KB", ["-H", "X-Big: " + "a" * 100_000, "URL/metrics"], "431 1.1"),
        ("GET with 1 MB body", ["-X", "GET", "--data-binary", "@BODY", "URL/metrics"], "413 1.1"),
        ("DELETE", ["-X", "DELETE", "URL/metrics"], "405 1.1"),
        ("h2c upgrade", ["--http2", "URL/metrics"], "200 1.1"),  # answered in HTTP/1.1
    ],
)
def test_curl_accepts_every_error_response(
    tmp_path: Path, name: str, arguments: list[str], expected: str
):
    """curl refuses a response without a status line ("Received HTTP/0.9"): exit status 0
    and the status code say the response was a proper one."""
    body = tmp_path / "body"
    body.write_bytes(b"x" * 1_000_000)
    with serve(WebSecurity()) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        command = [
            "curl", "-sS", "--max-time", "10", "-o", "/dev/null",
            "-w", "%{http_code} %{http_version}",
            *(a.replace("URL", url).replace("@BODY", f"@{body}") for a in arguments),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    assert (result.returncode, result.stdout) == (0, expected), result.stderr
