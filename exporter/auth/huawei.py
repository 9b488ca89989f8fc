"""SDK-HMAC-SHA256, Huawei Cloud's AK/SK request signature (API Gateway "APIG" signing), as an `httpx.Auth`.

The signer is pure: the clock and the credentials are injected, so the same inputs give the same `Authorization`
header byte for byte (tests replay the vectors the vendor SDK produced). The canonicalisation functions are module
level so that a server (the simulator) can verify a signature the same way, see `verify`. The query is rewritten on
the wire in its canonical form, so what is signed is exactly what arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import httpx

from exporter.credentials import Credentials

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
PROJECT_HEADER = "X-Project-Id"
TOKEN_HEADER = "X-Security-Token"
# A caller may declare the body hash itself (the SDK sends `UNSIGNED-PAYLOAD` for non-JSON bodies); the gateway then
# uses this value in place of the hash, so the signer and the verifier must too.
CONTENT_SHA256_HEADER = "x-sdk-content-sha256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Headers a proxy or the HTTP stack may add, drop or rewrite; signing them would break the signature in transit.
# The vendor SDK never signs these either: it signs only the headers it set itself, and its HTTP library adds these
# afterwards. Unlike the Alibaba signer, `accept` and `user-agent` stay signed here as the SDK signs its user agent.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "accept-encoding",
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_AUTHORIZATION_RE = re.compile(
    rf"^{ALGORITHM} Access=(?P<access>[^,\s]+), SignedHeaders=(?P<signed>[^,\s]+), Signature=(?P<sig>[0-9a-f]{{64}})$"
)


def percent_encode(text: str) -> str:
    """Returns `text` UTF-8 percent-encoded with only `A-Za-z0-9-_.~` bare (space is `%20`, `/` is `%2F`)."""
    return quote(text, safe="~")


def canonical_uri(raw_path: str) -> str:
    """Returns the canonical URI: the path decoded, each `/`-separated segment re-encoded, ending in `/`."""
    # Decoding first makes the result independent of how the client chose to escape the path on the wire.
    uri = "/".join(percent_encode(segment) for segment in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Returns the decoded query pairs sorted by key, then value, each encoded as `k=v`, joined by `&`."""
    # The SDK sorts the decoded pairs, not the encoded ones; the orders differ for keys such as `[` versus `A`.
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(pairs))


def signed_header_names(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Returns the names to sign: each header without `_` and not hop-by-hop, lower-cased, sorted, once."""
    # Names with `_` are skipped because nginx-style gateways drop such headers before the verifier sees them.
    return sorted({n.lower() for n, _ in headers if "_" not in n and n.lower() not in UNSIGNED_HEADERS})


def canonical_headers(headers: Iterable[tuple[str, str]], signed: Sequence[str]) -> str:
    """Returns the `name:value\\n` block over the `signed` names (values trimmed, repeats joined by `,`).

    Raises KeyError when a signed name is not among `headers`.
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value.strip())
    return "".join(f"{name}:{','.join(merged[name])}\n" for name in signed)


def payload_hash(body: bytes, headers: Iterable[tuple[str, str]]) -> str:
    """Returns the body hash that goes into the canonical request: a declared `X-Sdk-Content-Sha256`, else the hex
    SHA-256 of the body (of the empty string when there is none)."""
    if not body:
        return EMPTY_SHA256
    declared = [v for n, v in headers if n.lower() == CONTENT_SHA256_HEADER]
    return declared[0].strip() if declared else hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, uri: str, query: str, headers: Iterable[tuple[str, str]], signed: Sequence[str], body_hash: str
) -> str:
    """Returns the canonical request for a canonical URI and query, the headers and the names of those signed."""
    block = canonical_headers(headers, signed)
    return f"{method.upper()}\n{uri}\n{query}\n{block}\n{';'.join(signed)}\n{body_hash}"


def string_to_sign(canonical: str, sdk_date: str) -> str:
    """Returns the string to sign for a canonical request and its `X-Sdk-Date` value."""
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret: str, to_sign: str) -> str:
    """Returns the hex HMAC-SHA256 of `to_sign` keyed with the plain SK."""
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(access_key_id: str, signed: Sequence[str], sig: str) -> str:
    """Returns the `Authorization` header value (note the comma and space between the parts)."""
    return f"{ALGORITHM} Access={access_key_id}, SignedHeaders={';'.join(signed)}, Signature={sig}"


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """Returns (AK, signed header names, signature) from an `Authorization` value, or None when it is malformed."""
    match = _AUTHORIZATION_RE.match(value.strip())
    if not match:
        return None
    return match["access"], match["signed"].split(";"), match["sig"]


def format_sdk_date(moment: datetime) -> str:
    """Returns `moment` as an `X-Sdk-Date` value, `YYYYMMDDTHHMMSSZ` in UTC."""
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """Returns the aware UTC instant of an `X-Sdk-Date` value; raises ValueError when it is malformed."""
    return datetime.strptime(value.strip(), DATE_FORMAT).replace(tzinfo=UTC)


def verify(
    method: str,
    raw_path: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    body: bytes,
    secret: str,
) -> bool:
    """Returns whether the request's `Authorization` header is a valid SDK-HMAC-SHA256 signature under `secret`.

    `raw_path` is the path as received (escaped or not), `query_pairs` the decoded query (as `parse_qsl` with
    `keep_blank_values=True` gives it), `headers` every received header, repeats included. A verifier first takes
    the AK from `parse_authorization` to find the secret, and checks the `X-Sdk-Date` skew itself (`parse_sdk_date`).
    The date header and `host` must be among the signed headers.
    """
    headers = list(headers)
    found = {n.lower(): v for n, v in headers}
    parsed = parse_authorization(found.get("authorization", ""))
    if parsed is None:
        return False
    _, signed, sig = parsed
    if signed != sorted(set(signed)) or not {"host", DATE_HEADER.lower()} <= set(signed) <= set(found):
        return False
    canonical = canonical_request(
        method, canonical_uri(raw_path), canonical_query(query_pairs), headers, signed, payload_hash(body, headers)
    )
    expected = signature(secret, string_to_sign(canonical, found[DATE_HEADER.lower()].strip()))
    return hmac.compare_digest(expected, sig)


def utc_now() -> datetime:
    """Returns the current time in UTC (the default clock)."""
    return datetime.now(UTC)


class HuaweiAuth(httpx.Auth):
    """Signs each request with SDK-HMAC-SHA256.

    The caller sets its own headers (`workspace`, `Content-Type`, ...); this adds `X-Sdk-Date`, `X-Project-Id` (when
    a project id is given), `X-Security-Token` (with temporary credentials) and `Authorization`.
    """

    requires_request_body = True

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        *,
        project_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._credentials = credentials
        self._project_id = project_id
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Adds the signature headers to `request` in place and canonicalises its query on the wire."""
        creds = self._credentials()
        query = canonical_query(request.url.params.multi_items())
        request.url = request.url.copy_with(query=query.encode() or None)
        sdk_date = format_sdk_date(self._clock())
        request.headers[DATE_HEADER] = sdk_date
        if self._project_id:
            request.headers[PROJECT_HEADER] = self._project_id
        # Credentials are read per request: drop a token left by an earlier signing when the key is no longer temporary.
        request.headers.pop(TOKEN_HEADER, None)
        if creds.security_token:
            request.headers[TOKEN_HEADER] = creds.security_token
        headers = request.headers.multi_items()
        signed = signed_header_names(headers)
        canonical = canonical_request(
            request.method,
            canonical_uri(request.url.raw_path.split(b"?")[0].decode()),
            query,
            headers,
            signed,
            payload_hash(request.content, headers),
        )
        sig = signature(creds.secret, string_to_sign(canonical, sdk_date))
        request.headers["Authorization"] = authorization(creds.key_id, signed, sig)
