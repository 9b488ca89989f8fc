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
import ssl
from pathlib import Path
from typing import Annotated

import bcrypt
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from exporter.config import ConfigError
from exporter.files import CONFIG_MAX_BYTES, FileError, load_yaml


def _bcrypt_hash(value: str) -> str:
    if not value.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("expected a bcrypt hash ($2y$..., $2b$... or $2a$...), not a plain password")
    return value


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
        for name in ("cert_file", "key_file", "client_ca_file"):
            file = getattr(config.tls_server_config, name)
            if file is not None and not file.is_file():
                raise ConfigError(f"--web.config.file: tls_server_config.{name}: no such file {file}")
    return config


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes, remembering good pairs (bcrypt is slow on
    purpose; a scrape every 15 s must not pay it each time)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._good: set[bytes] = set()

    def _parse(self, header: str) -> tuple[bytes, bytes, bytes] | None:
        """Returns (password, its user's hash, cache key), or None for a malformed header or an unknown user."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self._users.get(user)
        if not sep or hashed is None:
            return None
        return password.encode(), hashed, hashlib.sha256(hashed + b"\0" + password.encode()).digest()

    def known(self, header: str) -> bool | None:
        """Returns True for a pair already checked, False for a header that cannot pass, None when bcrypt must say."""
        parsed = self._parse(header)
        if parsed is None:
            return False
        return True if any(hmac.compare_digest(parsed[2], good) for good in self._good) else None

    def check(self, header: str) -> bool:
        """Returns True when the header carries a configured user and its password (slow: bcrypt)."""
        parsed = self._parse(header)
        if parsed is None or not bcrypt.checkpw(parsed[0], parsed[1]):
            return False
        if len(self._good) < 1024:
            self._good.add(parsed[2])
        return True
