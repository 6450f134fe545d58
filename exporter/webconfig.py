"""``--web.config.file``: TLS and basic auth in the YAML format of Prometheus's exporter-toolkit.

Validated like the main config (strict model, one-line errors), and the TLS material is loaded
at start-up, so a bad certificate is a start-up error, not a failure on the first scrape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import Field, field_validator, model_validator

from exporter.config import ConfigError, StrictModel, load_model

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
BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")


class TlsServerConfig(StrictModel):
    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str = ""
    client_auth_type: ClientAuthType = "NoClientCert"
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        if self.client_auth_type != "NoClientCert" and not self.client_ca_file:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError("min_version is above max_version")
        return self


class HttpServerConfig(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _single_line(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or re.search(
                r"[\r\n\0]", value
            ):
                raise ValueError(f"header {name!r}: not a valid header name and value")
        return headers


class WebConfig(StrictModel):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not BCRYPT_HASH.match(hashed):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash ($2y$...)")
        return users


def tls_context(tls: TlsServerConfig, base: Path, source: str) -> ssl.SSLContext:
    """The server's SSLContext; a file that cannot be read or loaded names its key."""

    def resolve(key: str, name: str) -> str:
        path = base / name  # relative paths are relative to the web config file
        try:
            path.open("rb").close()
        except OSError as error:
            raise ConfigError(
                f"{source}: tls_server_config.{key}: cannot read {path}: {error.strerror}"
            ) from None
        return str(path)

    cert, key = resolve("cert_file", tls.cert_file), resolve("key_file", tls.key_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"{source}: tls_server_config.key_file: certificate and key do not load: "
            f"{error.reason or error}"
        ) from None
    if tls.client_ca_file:
        ca = resolve("client_ca_file", tls.client_ca_file)
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as error:
            raise ConfigError(
                f"{source}: tls_server_config.client_ca_file: {error.reason or error}"
            ) from None
    context.verify_mode = CLIENT_VERIFY[tls.client_auth_type]
    return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, cheaply.

    A bcrypt check is deliberately slow (tens of milliseconds). Verified credentials are
    cached as a keyed hash, so a scraper with the right password pays for bcrypt once. Wrong
    ones cannot be cached usefully, so they are throttled instead: one bcrypt check at a time,
    and a request that cannot get its turn within a second is refused. Password guessing thus
    costs the host at most one core, however many connections the guesser opens. Unknown users
    are checked against a dummy hash, so the answer's timing does not say which users exist.
    """

    TURN_WAIT_S = 1.0

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._dummy = bcrypt.hashpw(b"-", bcrypt.gensalt(rounds=10))
        self._key = os.urandom(32)
        self._verified: set[bytes] = set()
        self._turn = threading.Lock()

    def _fingerprint(self, user: str, password: bytes) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()

    def allows(self, header: str | None) -> bool:
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        fingerprint = self._fingerprint(user, password)
        if fingerprint in self._verified:  # a set of at most one entry per correct password
            return True
        if not self._turn.acquire(timeout=self.TURN_WAIT_S):
            return False
        try:
            hashed = self._users.get(user)
            matches = bcrypt.checkpw(password, hashed or self._dummy) and hashed is not None
        finally:
            self._turn.release()
        if matches:
            self._verified.add(fingerprint)
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


class WebSecurity:
    """What the HTTP layer needs from the web config: a TLS context, auth, extra headers."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        auth: BasicAuth | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.auth = auth
        self.headers = headers or {}


def load_web_config(path: str | Path) -> WebSecurity:
    config = load_model(path, WebConfig)
    base = Path(path).resolve().parent
    tls = (
        tls_context(config.tls_server_config, base, str(path)) if config.tls_server_config else None
    )
    auth = BasicAuth(config.basic_auth_users) if config.basic_auth_users else None
    return WebSecurity(tls, auth, dict(config.http_server_config.headers))
