"""Calling Huawei Cloud APIs (DataArts Factory): one signed request in, the JSON object of a successful answer out.

Every failure becomes a PollError with a reason. Two error shapes arrive: the API gateway's (signature, throttling,
routing) and the service's, both as `{"error_code": "...", "error_msg": "..."}` with a 4xx/5xx status (IAM-style
answers nest them as `{"error": {"code", "message"}}`; both are read). Gateway codes: `APIG.0301` and the other
`APIG.030x` are authentication or authorisation failures (401/403), `APIG.0308` is throttling (429).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx

from exporter.auth.huawei import HuaweiAuth
from exporter.config import SourceConfig
from exporter.contract import PollError, RequestCounter
from exporter.credentials import Credentials
from exporter.sources.http import (
    Sender,
    json_body,
    make_client,
    reason_for,
    retry_after_seconds,
    retry_throttled,
    utc_clock,
)

# Gateway codes are whole (`APIG.` and four digits), so each is matched as its own prefix.
THROTTLE_CODES = ("APIG.0308",)
# APIG.0301 bad AK/SK signature or IAM token, 0302 IAM user denied, 0303 bad app signature, 0304 app not authorised,
# 0305 bad authentication information, 0306 API access denied, 0307 token expired.
AUTH_CODES = ("APIG.0301", "APIG.0302", "APIG.0303", "APIG.0304", "APIG.0305", "APIG.0306", "APIG.0307")
REQUEST_ID_HEADER = "x-request-id"

# The poll error reason for an HTTP status and a Huawei error code.
_reason_for = partial(reason_for, throttle_prefixes=THROTTLE_CODES, auth_prefixes=AUTH_CODES)


def _error_fields(body: Any) -> tuple[str, str]:
    """Returns (error code, error message) from either error shape; empty strings when there are none."""
    if not isinstance(body, Mapping):
        return "", ""
    nested = body.get("error")
    if isinstance(nested, Mapping):
        return str(nested.get("code") or "").strip(), str(nested.get("message") or "")
    return str(body.get("error_code") or "").strip(), str(body.get("error_msg") or "")


def _request_id(body: Any, response: httpx.Response) -> str | None:
    if isinstance(body, Mapping) and isinstance(rid := body.get("request_id"), str) and rid:
        return rid
    return response.headers.get(REQUEST_ID_HEADER)


def parse_response(response: httpx.Response) -> Mapping[str, Any]:
    """Returns the JSON object of a successful (2xx) answer; raises PollError with the reason otherwise.

    A failure status without a JSON body (a load balancer's HTML page) keeps the reason its status gives: a 502 page
    is the vendor's side (`server`), not a response the exporter misread.
    """
    status = response.status_code
    ok = 200 <= status < 300
    retry_after = retry_after_seconds(response)
    try:
        body = json_body(response, response.headers.get(REQUEST_ID_HEADER))
    except PollError as exc:
        if ok:
            raise
        raise PollError(_reason_for(status, ""), f"HTTP {status} with a body that is not JSON",
                        request_id=exc.request_id, retry_after=retry_after) from None
    rid = _request_id(body, response)
    code, message = _error_fields(body)
    if not ok:
        raise PollError(_reason_for(status, code), f"HTTP {status} {code}: {message[:200]}".rstrip(": "),
                        request_id=rid, retry_after=retry_after, code=code)
    if not isinstance(body, Mapping):
        raise PollError("bad_response", f"HTTP {status} with a JSON body that is not an object", request_id=rid)
    if code:  # an error envelope behind a success status (success bodies carry no error code)
        raise PollError(_reason_for(0, code), f"HTTP {status} {code}: {message[:200]}".rstrip(": "), request_id=rid,
                        code=code)
    return body


class HuaweiCaller:
    """Sends one source's signed requests: bounded concurrency, a total timeout each, counted by operation."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    @property
    def concurrency(self) -> int:
        """Returns how many requests the source may have in flight at once (its `max_concurrency`)."""
        return self._sender.concurrency

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._sender.aclose()

    async def call(
        self, operation: str, method: str, path: str, *, query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        """Returns the JSON object of a successful call; retries short throttling waits, raises PollError."""
        decode = await self.call_later(operation, method, path, query=query, headers=headers)
        return decode()

    async def call_later(
        self, operation: str, method: str, path: str, *, query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None, after_send: Callable[[], None] | None = None,
    ) -> Callable[[], Mapping[str, Any]]:
        """Returns, for a call answered with a success status, the decoding of its JSON object, to run when the
        caller chooses. An answer with an error status raises its PollError at once, a short throttling wait being
        retried first; an error inside a success body (an `error_code`, a body that is not JSON) is raised by the
        decoding. `after_send` runs once the request is sent (see `Sender.send`)."""
        params = {k: str(v) for k, v in (query or {}).items()}

        async def once() -> Callable[[], Mapping[str, Any]]:
            response = await self._sender.send(operation, method, path, params=params, headers=headers,
                                               after_send=after_send)
            decode = partial(parse_response, response)
            if not 200 <= response.status_code < 300:
                decode()  # raises this answer's PollError now, so that throttling is retried
            return decode

        return await retry_throttled(once)


def huawei_caller(
    config: SourceConfig, base_url: str, credentials: Callable[[], Credentials], counter: RequestCounter,
    transport: httpx.AsyncBaseTransport | None = None, *, project_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> HuaweiCaller:
    """Returns a caller for one Huawei Cloud source: its client, signed with SDK-HMAC-SHA256 at `clock`'s time (with
    `X-Project-Id` when a project id is given), bounded by its concurrency."""
    auth = HuaweiAuth(credentials, project_id=project_id, clock=utc_clock(clock))
    client = make_client(config, base_url, auth, transport)
    return HuaweiCaller(Sender.of(config, client, counter))
