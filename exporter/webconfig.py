"""`--web.config.file`: TLS and basic authentication in the exporter-toolkit's file format.

```yaml
tls_server_config:
  cert_file: /etc/tls/tls.crt
  key_file: /etc/tls/tls.key
  client_auth_type: RequireAndVerifyClientCert   # optional: mutual TLS
  client_ca_file: /etc/tls/client-ca.crt
basic_auth_users:
  prometheus: $2y$10$...   # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':'`
```
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
from pathlib import Path
from typing import Annotated

import bcrypt
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from exporter.config import ConfigError
from exporter.files import CONFIG_MAX_BYTES, FileError, load_yaml

BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72  # what bcrypt reads of a password; the bcrypt module refuses longer ones


def _bcrypt_hash(value: str) -> str:
    if not value.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("expected a bcrypt hash ($2y$..., $2b$... or $2a$...), not a plain password")
    if not BCRYPT_HASH.fullmatch(value) or not _salt_decodes(value):
        raise ValueError("not a whole bcrypt hash: expected $2y$, a cost from 04 to 31, $ and 53 characters of "
                         "./A-Za-z0-9 (60 in all, as `htpasswd -nBC 10` writes)")
    return value


def _salt_decodes(value: str) -> bool:
    """Returns whether bcrypt takes the hash's salt (some of its last character's bits must be 0), hashing at the
    lowest cost rather than the hash's own."""
    try:
        bcrypt.hashpw(b"", f"$2b$04${value[7:29]}".encode())
    except ValueError:
        return False
    return True


# The exporter-toolkit's client_auth_type values that Python's TLS can honour, with what the server then asks of a
# client. The other two, RequestClientCert and RequireAnyClientCert, take a certificate without verifying it, which
# Python's ssl module cannot do.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class TLSConfig(BaseModel):
    """The server certificate and key (PEM files), and whether and how clients' certificates are verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None

    @field_validator("client_auth_type")
    @classmethod
    def _known_client_auth(cls, value: str) -> str:
        if value not in CLIENT_AUTH:
            raise ValueError(f"expected one of {', '.join(CLIENT_AUTH)}, got {value!r} (RequestClientCert and "
                             "RequireAnyClientCert accept a certificate without verifying it, which is not supported)")
        return value

    @model_validator(mode="after")
    def _ca_with_verification(self) -> TLSConfig:
        if self.client_auth_type != "NoClientCert" and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file, the CA certificates "
                             "(PEM) that clients' certificates are verified against")
        if self.client_ca_file is not None and self.client_auth_type == "NoClientCert":
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type to "
                             "RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file")
        return self

    @property
    def cert_reqs(self) -> int:
        """Returns what the server asks of a client's certificate (ssl.CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED)."""
        return CLIENT_AUTH[self.client_auth_type]


class WebConfig(BaseModel):
    """The web configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tls_server_config: TLSConfig | None = None
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_hash)]] = {}


def load_web_config(path: Path) -> WebConfig:
    """Returns the validated web config, or raises ConfigError naming the key."""
    try:
        data = load_yaml(path, CONFIG_MAX_BYTES) or {}
        config = WebConfig.model_validate(data)
    except FileError as exc:
        raise ConfigError(f"--web.config.file: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = "unknown key; remove it or check its spelling" if first["type"] == "extra_forbidden" else \
            str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"--web.config.file: {where}: {message}") from None
    if config.tls_server_config:
        _check_tls_files(config.tls_server_config)
    return config


class _Encrypted(Exception):
    """The private key asks for a password."""


def _refuse_password() -> bytes:
    raise _Encrypted  # rather than OpenSSL's prompt on the terminal, which would hold the start-up


def _check_tls_files(tls: TLSConfig) -> None:
    """Raises ConfigError naming the key when a TLS file is missing or does not load: the certificate and its key
    (they must match), and the client CA certificates."""
    for name in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(tls, name)
        if file is not None and not file.is_file():
            raise ConfigError(f"--web.config.file: tls_server_config.{name}: no such file {file}")
    where = "--web.config.file: tls_server_config"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls.cert_file, tls.key_file, _refuse_password)
    except _Encrypted:
        raise ConfigError(f"{where}.key_file: {tls.key_file} is encrypted; give the key unencrypted (`openssl pkey "
                          "-in KEY -out PLAIN`)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{where}.key_file: {tls.key_file} is not the key of the certificate in cert_file "
                              f"{tls.cert_file}") from None
        if not _holds_certificates(tls.cert_file):
            raise ConfigError(f"{where}.cert_file: {tls.cert_file} holds no PEM certificate") from None
        raise ConfigError(f"{where}.key_file: {tls.key_file} holds no PEM private key") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read cert_file {tls.cert_file} or key_file {tls.key_file}: "
                          f"{exc.strerror}") from None
    if tls.client_ca_file is not None and not _holds_certificates(tls.client_ca_file):
        raise ConfigError(f"{where}.client_ca_file: {tls.client_ca_file} holds no PEM certificate") from None


def _holds_certificates(file: Path) -> bool:
    """Returns whether `file` holds PEM certificates OpenSSL can load."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=file)
    except (ssl.SSLError, OSError):
        return False
    return True


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes, remembering good pairs (bcrypt is slow on
    purpose; a scrape every 15 s must not pay it each time)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._good: set[bytes] = set()
        # An unknown user's password is checked against this hash, of the costliest configured one's cost: the 401
        # then takes as long as a known user's with a wrong password, and does not tell which users exist.
        cost = max(int(h[4:6]) for h in users.values())
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))

    def _parse(self, header: str) -> tuple[bytes, bytes | None, bytes] | None:
        """Returns (password, its user's hash or None for an unknown user, cache key), or None for a malformed
        header."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        hashed = self._users.get(user)
        return password.encode(), hashed, hashlib.sha256((hashed or b"") + b"\0" + password.encode()).digest()

    def known(self, header: str) -> bool | None:
        """Returns True for a pair already checked, False for a malformed header, None when bcrypt must say."""
        parsed = self._parse(header)
        if parsed is None:
            return False
        return True if any(hmac.compare_digest(parsed[2], good) for good in self._good) else None

    def check(self, header: str) -> bool:
        """Returns True when the header carries a configured user and its password (slow: bcrypt, as slow for an
        unknown user or a password longer than bcrypt reads, which are checked against a dummy hash)."""
        parsed = self._parse(header)
        if parsed is None:
            return False
        password, hashed, key = parsed
        if hashed is None or len(password) > MAX_PASSWORD_BYTES:
            bcrypt.checkpw(password[:MAX_PASSWORD_BYTES], self._dummy)  # as long as a wrong password takes
            return False
        if not bcrypt.checkpw(password, hashed):
            return False
        if len(self._good) < 1024:
            self._good.add(key)
        return True
