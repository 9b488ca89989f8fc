"""ACS3-HMAC-SHA256, Alibaba Cloud's V3 request signature, as an `httpx.Auth`.

The signer is pure: the clock, the nonce and the credentials are injected, so the same inputs give the same
`Authorization` header byte for byte (tests replay the vectors the vendor SDK produced). The query is rewritten on
the wire in its canonical form, so what is signed is exactly what arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from exporter.credentials import Credentials

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Headers a proxy or the HTTP stack may add, drop or rewrite; signing them would break the signature in transit.
UNSIGNED_HEADERS = frozenset(
    {"authorization", "connection", "content-length", "accept-encoding", "transfer-encoding", "keep-alive", "te"}
)


def percent_encode(text: str) -> str:
    """Returns `text` percent-encoded as ACS3 wants it: only `A-Za-z0-9-_.~` bare, space as `%20`."""
    return quote(text, safe="-_.~")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Returns the query pairs encoded and sorted by key, then value, joined by `&`."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """Returns (canonical header block, signed header list) over every signable header."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in UNSIGNED_HEADERS:
            merged.setdefault(lower, []).append(value.strip())
    names = sorted(merged)
    block = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(
    method: str, path: str, query: str, headers: Iterable[tuple[str, str]], payload_hash: str
) -> tuple[str, str]:
    """Returns (canonical request, signed header list) for one request."""
    block, signed = canonical_headers(headers)
    return f"{method.upper()}\n{path or '/'}\n{query}\n{block}\n{signed}\n{payload_hash}", signed


def string_to_sign(canonical: str) -> str:
    """Returns the ACS3 string to sign for a canonical request."""
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret: str, to_sign: str) -> str:
    """Returns the hex HMAC-SHA256 of `to_sign` keyed with the plain secret."""
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(access_key_id: str, signed_headers: str, sig: str) -> str:
    """Returns the `Authorization` header value."""
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={sig}"


def utc_now() -> datetime:
    """Returns the current time in UTC (the default clock)."""
    return datetime.now(UTC)


def random_nonce() -> str:
    """Returns a fresh 128-bit hex nonce (the default nonce source)."""
    return secrets.token_hex(16)


class AliyunAuth(httpx.Auth):
    """Signs each request with ACS3-HMAC-SHA256.

    The caller sets `x-acs-action` and `x-acs-version`; this adds `x-acs-date`, `x-acs-signature-nonce`,
    `x-acs-content-sha256`, `x-acs-security-token` (with STS credentials) and `Authorization`. When `credentials`
    has an async `refresh()` (RRSA, `exporter.credentials_oidc`), an async client awaits it before signing, so
    expiring credentials are renewed without blocking the event loop; `sign()` itself stays synchronous.
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        *,
        clock: Callable[[], datetime] = utc_now,
        nonce: Callable[[], str] = random_nonce,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        refresh = getattr(self._credentials, "refresh", None)
        if refresh is not None:
            await refresh()
        await request.aread()
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Adds the signature headers to `request` in place and canonicalises its query on the wire."""
        creds = self._credentials()
        query = canonical_query(request.url.params.multi_items())
        request.url = request.url.copy_with(query=query.encode() or None)
        body = request.content
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        request.headers["x-acs-date"] = self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        request.headers["x-acs-signature-nonce"] = self._nonce()
        request.headers["x-acs-content-sha256"] = payload_hash
        request.headers.pop("x-acs-security-token", None)  # a re-signed request may carry an old token
        if creds.security_token:
            request.headers["x-acs-security-token"] = creds.security_token
        canonical, signed = canonical_request(
            request.method, request.url.raw_path.split(b"?")[0].decode(), query, request.headers.multi_items(),
            payload_hash,
        )
        sig = signature(creds.secret, string_to_sign(canonical))
        request.headers["Authorization"] = authorization(creds.key_id, signed, sig)
