"""``--web.config.file``: TLS and basic auth in the YAML format of Prometheus's exporter-toolkit.

Validated like the main config (strict model, one-line errors), and the TLS material is loaded
at start-up, so a bad certificate is a start-up error, not a failure on the first scrape. The
certificate, key and CA files are re-read when they change, as exporter-toolkit does, so they
can rotate without a restart; the rest of the file is re-read on SIGHUP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Literal

import bcrypt
from pydantic import Field, field_validator, model_validator

from exporter.config import ConfigError, StrictModel, load_model

log = logging.getLogger(__name__)

TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Python's ssl verifies any certificate a client presents, so the two "any certificate" modes
# of the toolkit verify it too, against client_ca_file.
CLIENT_VERIFY = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# What the bcrypt library accepts: versions 2a, 2b, 2x, 2y and costs 4 to 31. The salt's
# encoding is checked by bcrypt itself at load (at cost 4, so a cost-31 hash loads at once).
BCRYPT_HASH = re.compile(r"^\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


class TlsServerConfig(StrictModel):
    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str = ""
    client_auth_type: ClientAuthType = "NoClientCert"
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    client_allowed_sans: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        if self.client_auth_type != "NoClientCert" and not self.client_ca_file:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            raise ValueError("client_allowed_sans needs RequireAndVerifyClientCert")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError("min_version is above max_version")
        return self


class HttpServerConfig(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool = True  # accepted for exporter-toolkit files; served over HTTP/1.1 (a warning)

    @field_validator("headers")
    @classmethod
    def _single_line(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or re.search(
                r"[\r\n\0]", value
            ):
                raise ValueError(f"header {name!r}: not a valid header name and value")
        return headers


class RateLimitConfig(StrictModel):
    """exporter-toolkit's token bucket over all requests: one every ``interval``, ``burst``
    at once; ``interval: 0`` turns it off."""

    interval: str | int = 0
    burst: int = Field(0, ge=0, le=1_000_000)

    @field_validator("interval")
    @classmethod
    def _duration(cls, interval: str | int) -> str | int:
        if interval != 0 and parse_duration(str(interval)) is None:
            raise ValueError(f"{interval!r} is not a duration such as 1s or 100ms")
        return interval

    def seconds(self) -> float:
        return parse_duration(str(self.interval)) or 0.0


class WebConfig(StrictModel):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimitConfig = RateLimitConfig()

    @field_validator("tls_server_config", mode="before")
    @classmethod
    def _present(cls, tls: object) -> object:
        if tls is None:  # given but empty: the user meant TLS, and would get plain HTTP
            raise ValueError("empty; give cert_file and key_file, or remove the key")
        return tls

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not BCRYPT_HASH.match(hashed) or not _bcrypt_accepts(hashed):
                raise ValueError(
                    f"user {user!r}: not a bcrypt hash bcrypt accepts ($2y$ or $2b$, cost 04-31)"
                )
        return users


def _bcrypt_accepts(hashed: str) -> bool:
    try:
        bcrypt.checkpw(b"", (hashed[:4] + "04" + hashed[6:]).encode())
    except ValueError:
        return False
    return True


def parse_duration(text: str) -> float | None:
    """Seconds from a Prometheus duration such as ``1m30s`` or ``100ms``; None when invalid."""
    match = DURATION.match(text)
    if text in ("", "0") or not match:
        return 0.0 if text == "0" else None
    hours, minutes, seconds, millis = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


class EncryptedKeyError(Exception):
    pass


def _refuse_passphrase() -> bytes:
    """OpenSSL asks for a pass phrase on the terminal when it has none; never let it."""
    raise EncryptedKeyError


def tls_context(tls: TlsServerConfig, base: Path, source: str) -> ssl.SSLContext:
    """The server's SSLContext; a file that cannot be read or loaded names its key."""
    cert = resolve(base, tls.cert_file, source, "cert_file")
    key = resolve(base, tls.key_file, source, "key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except EncryptedKeyError:
        raise ConfigError(
            f"{source}: tls_server_config.key_file: {key} is encrypted; "
            "give an unencrypted key (openssl pkey -in KEY -out PLAIN)"
        ) from None
    except ssl.SSLError as error:
        raise ConfigError(
            f"{source}: tls_server_config.key_file: certificate and key do not load: "
            f"{error.reason or error}"
        ) from None
    if tls.client_ca_file:
        ca = resolve(base, tls.client_ca_file, source, "client_ca_file")
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as error:
            raise ConfigError(
                f"{source}: tls_server_config.client_ca_file: {error.reason or error}"
            ) from None
    context.verify_mode = CLIENT_VERIFY[tls.client_auth_type]
    return context


def resolve(base: Path, name: str, source: str, key: str) -> str:
    """The file's path, relative to the web config file; unreadable is a ConfigError."""
    path = base / name
    try:
        path.open("rb").close()
    except OSError as error:
        raise ConfigError(
            f"{source}: tls_server_config.{key}: cannot read {path}: {error.strerror}"
        ) from None
    return str(path)


class ReloadingTls:
    """The TLS context, rebuilt when the certificate, key or CA file changes on disk.

    Files are compared by (inode, size, mtime) at most once a second, when a connection asks
    for the context. A change that does not load (a half-written rotation, a key that no longer
    matches) is logged once and the previous context is kept."""

    CHECK_EVERY_S = 1.0

    def __init__(self, tls: TlsServerConfig, base: Path, source: str) -> None:
        self._tls, self._base, self._source = tls, base, source
        names = (tls.cert_file, tls.key_file, tls.client_ca_file)
        self._paths = [base / name for name in names if name]
        self._stamp = self._files_stamp()
        self._context = tls_context(tls, base, source)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.allowed_sans = frozenset(tls.client_allowed_sans)

    def _files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths:
            try:
                stat = path.stat()
            except OSError:
                stat = None
            stamps.append((stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat else (0, 0, 0))
        return tuple(stamps)

    def context(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY_S or not self._lock.acquire(blocking=False):
            return self._context
        try:
            self._checked = now
            stamp = self._files_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._context = tls_context(self._tls, self._base, self._source)
                    log.info("TLS certificate reloaded from %s", self._paths[0])
                except ConfigError as error:
                    log.error("TLS reload failed, keeping the previous certificate: %s", error)
        finally:
            self._lock.release()
        return self._context

    def peer_allowed(self, peer_certificate: dict[str, Any] | None) -> bool:
        """client_allowed_sans: the verified client certificate names one of them."""
        if not self.allowed_sans:
            return True
        names = (peer_certificate or {}).get("subjectAltName", ())
        return any(value in self.allowed_sans for _, value in names)


class BasicAuth:
    """Checks ``Authorization: Basic`` credentials against bcrypt hashes, cheaply.

    A bcrypt check is deliberately slow (tens of milliseconds). Verified credentials are
    cached as a keyed hash, so a scraper with the right password pays for bcrypt once; the
    server throttles the uncached checks (see ExporterServer). Unknown users are checked
    against a dummy hash of the highest configured cost, so the answer's timing does not say
    which users exist."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        cost = max(int(hashed[4:6]) for hashed in users.values())
        # a salt and 31 hash characters: a valid hash that no password matches, made for free
        self._dummy = bcrypt.gensalt(rounds=cost) + b"." * 31
        self._key = os.urandom(32)
        self._verified: set[bytes] = set()

    def _fingerprint(self, user: str, password: bytes) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()

    def cached(self, user: str, password: bytes) -> bool:
        """True for credentials bcrypt has already accepted (at most one per correct password)."""
        return self._fingerprint(user, password) in self._verified

    def verify(self, user: str, password: bytes) -> bool:
        """The bcrypt check: slow, for a worker thread. A success is cached."""
        hashed = self._users.get(user)
        matches = bcrypt.checkpw(password, hashed or self._dummy) and hashed is not None
        if matches:
            self._verified.add(self._fingerprint(user, password))
        return matches


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from ``Basic base64(user:password)``, or None when malformed."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 1024:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", errors="replace"), password[:72]  # bcrypt reads 72 bytes


class TokenBucket:
    """rate_limit: ``burst`` requests at once, then one per ``interval`` seconds."""

    def __init__(self, interval_s: float, burst: int) -> None:
        self._interval_s, self._burst = interval_s, max(burst, 1)
        self._tokens = float(self._burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            refill = (now - self._last) / self._interval_s
            self._tokens = min(self._burst, self._tokens + refill)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class WebSecurity:
    """What the HTTP layer needs from the web config: TLS, auth, rate limit, extra headers."""

    def __init__(
        self,
        tls: ReloadingTls | None = None,
        auth: BasicAuth | None = None,
        headers: dict[str, str] | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.tls = tls
        self.auth = auth
        self.headers = headers or {}
        self.rate_limit = rate_limit


def load_web_config(path: str | Path) -> WebSecurity:
    config = load_model(path, WebConfig)
    base = Path(path).resolve().parent
    tls = (
        ReloadingTls(config.tls_server_config, base, str(path))
        if config.tls_server_config
        else None
    )
    auth = BasicAuth(config.basic_auth_users) if config.basic_auth_users else None
    if "http2" in config.http_server_config.model_fields_set and config.http_server_config.http2:
        log.warning("%s: http_server_config.http2: HTTP/2 is not supported, serving HTTP/1.1", path)
    interval = config.rate_limit.seconds()
    rate_limit = TokenBucket(interval, config.rate_limit.burst) if interval > 0 else None
    return WebSecurity(tls, auth, dict(config.http_server_config.headers), rate_limit)
