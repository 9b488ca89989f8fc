"""Credentials: where a source's keys come from, read at signing time so rotated secrets take effect.

A key is read from an environment variable or from a file (a Kubernetes secret mounted as a file); files are re-read
when their modification time changes. A value must be printable ASCII, as HTTP headers carry it: checked at start-up
and at every read, so a secret rotated into something unusable fails the poll as `auth`. No secret ever reaches a
`repr`, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from exporter.files import SECRET_MAX_BYTES, FileError, read_text


class CredentialError(Exception):
    """A credential is missing or unreadable; the message names where it was looked for, never its value."""


def printable_ascii(value: str) -> bool:
    """Returns whether a value can stand in an HTTP header as it is: ASCII without control characters."""
    return value.isascii() and value.isprintable()


@dataclass(frozen=True, slots=True)
class Credentials:
    """One access key pair, with an optional temporary security token."""

    key_id: str
    secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where one credential value lives: an environment variable or a file."""

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        """Returns where the value is looked for, for error messages."""
        return f"file {self.file}" if self.file else f"environment variable {self.env}"


class _FileCache:
    """Reads a file once per modification time."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[float, str]] = {}

    def read(self, path: Path) -> str:
        """Returns the file's text, stripped; re-reads it only when its mtime changed."""
        try:
            mtime = path.stat().st_mtime
            cached = self._seen.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
            text = read_text(path, SECRET_MAX_BYTES).strip()
        except OSError as exc:
            raise CredentialError(f"cannot read credential file {path}: {exc.strerror}") from None
        except FileError as exc:
            raise CredentialError(f"cannot read credential file {path}: {exc.reason}") from None
        self._seen[path] = (mtime, text)
        return text


class CredentialProvider:
    """Resolves a key id, a secret and an optional token from their sources each time it is called."""

    def __init__(self, key_id: KeySource, secret: KeySource, token: KeySource | None = None) -> None:
        self._key_id = key_id
        self._secret = secret
        self._token = token
        self._files = _FileCache()

    def _value(self, source: KeySource, required: bool) -> str | None:
        value = self._files.read(source.file) if source.file else os.environ.get(source.env or "", "").strip()
        if required and not value:
            raise CredentialError(f"credential not set: {source.describe()} is empty or missing")
        if value and not printable_ascii(value):
            # A header cannot carry it, and the HTTP library's complaint would quote the value.
            raise CredentialError(f"credential unusable: {source.describe()} holds a control or non-ASCII character; "
                                  "a key is printable ASCII")
        return value or None

    def __call__(self) -> Credentials:
        key_id = self._value(self._key_id, True)
        secret = self._value(self._secret, True)
        token = self._value(self._token, False) if self._token else None
        assert key_id is not None and secret is not None  # required=True guarantees both
        return Credentials(key_id, secret, token)

    def check(self) -> None:
        """Raises CredentialError when a required credential cannot be resolved now."""
        self()

    def describe(self) -> str:
        """Returns where the keys are read from, never what they are."""
        token = f"; token: {self._token.describe()}, if set" if self._token else ""
        return f"key id: {self._key_id.describe()}; secret: {self._secret.describe()}{token}"

    def secrets(self) -> list[str]:
        """Returns the current secret values, for the log and error redactor."""
        try:
            creds = self()
        except CredentialError:
            return []
        return [s for s in (creds.secret, creds.security_token) if s]


def static(key_id: str, secret: str, token: str | None = None) -> Credentials:
    """Returns fixed credentials (demo mode and tests)."""
    return Credentials(key_id, secret, token)
