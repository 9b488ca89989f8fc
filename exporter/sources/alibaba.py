"""Calling Alibaba Cloud ROA APIs (MaxCompute, EMR Serverless Spark): one request in, the result object out.

MaxCompute wraps its result in an envelope's `data`; EMR Serverless Spark returns it as the body. Every failure
becomes a PollError with a reason: the gateway's errors (signature, throttling) come as `{"RequestId","Code",
"Message"}` with 4xx/5xx; the service's as `{"requestId","httpCode","errorCode","errorMsg"}` (or, as the SDK also
reads them, `{"requestId","code","message"}`), with HTTP 4xx or with HTTP 200 and `httpCode != 200`. All are handled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx

from exporter.auth.aliyun import AliyunAuth
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

THROTTLE_CODE_PREFIXES = ("Throttling",)  # Throttling, Throttling.User, Throttling.Api, Throttling.Resource, ...
AUTH_CODE_PREFIXES = (
    "SignatureDoesNotMatch", "IncompleteSignature", "InvalidTimeStamp", "SignatureNonceUsed", "InvalidAccessKeyId",
    "InvalidSecurityToken", "Forbidden", "NoPermission", "InvalidAccessKeySecret",
)  # fmt: skip


def _retry_after(response: httpx.Response) -> float | None:
    """Returns the vendor's requested wait in seconds (`x-acs-retry-after` is ms, `Retry-After` is s), if any."""
    return retry_after_seconds(response, ms_header="x-acs-retry-after")


# The poll error reason for an HTTP status and an Alibaba Cloud error code.
_reason_for = partial(reason_for, throttle_prefixes=THROTTLE_CODE_PREFIXES, auth_prefixes=AUTH_CODE_PREFIXES)


def _decode(response: httpx.Response, retry_after: float | None) -> Any:
    """Returns the JSON body; raises PollError for a body that is not JSON: `bad_response` with a success status, the
    reason the status gives otherwise (a load balancer's 503 HTML page is the vendor's side, `server`)."""
    try:
        return json_body(response, response.headers.get("x-acs-request-id"))
    except PollError as exc:
        status = response.status_code
        if 200 <= status < 300:
            raise
        raise PollError("throttled" if retry_after else _reason_for(status, ""),
                        f"HTTP {status} with a body that is not JSON", request_id=exc.request_id,
                        retry_after=retry_after) from None


def _request_id(body: Any, response: httpx.Response) -> str | None:
    if isinstance(body, Mapping):
        rid = body.get("requestId") or body.get("RequestId")
        if isinstance(rid, str):
            return rid
    return response.headers.get("x-acs-request-id")


def json_param(value: Any) -> str:
    """Returns an object or array query parameter as the vendor SDK sends it (style `json`): one compact JSON string,
    keys sorted, e.g. `states=["Running","Submitted"]` or `startTime={"endTime":1,"startTime":0}`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _refused(response: httpx.Response, retry_after: float | None) -> bool:
    """Whether an answer is an error whatever its body says: a status other than 200, or a wait asked for."""
    return response.status_code != 200 or bool(retry_after)


def parse_envelope(response: httpx.Response, *, enveloped: bool = True) -> Mapping[str, Any]:
    """Returns `data` of a successful response (the whole body when the product does not wrap it, `enveloped=False`,
    as EMR Serverless Spark does); raises PollError with the reason otherwise."""
    retry_after = _retry_after(response)
    body = _decode(response, retry_after)
    rid = _request_id(body, response)
    if not isinstance(body, Mapping):
        raise PollError("bad_response", f"HTTP {response.status_code} with a JSON body that is not an object",
                        request_id=rid)
    code = str(body.get("Code") or body.get("code") or body.get("errorCode") or "")
    if _refused(response, retry_after):
        message = str(body.get("Message") or body.get("message") or body.get("errorMsg") or "")[:200]
        raise PollError(
            "throttled" if retry_after else _reason_for(response.status_code, code),
            f"HTTP {response.status_code} {code}: {message}".rstrip(": "),
            request_id=rid, retry_after=retry_after, code=code,
        )
    http_code = body.get("httpCode")
    if http_code is not None and http_code != 200:
        status = http_code if isinstance(http_code, int) else 0
        raise PollError(_reason_for(status, code), f"envelope httpCode {http_code} {code}: {body.get('errorMsg')}",
                        request_id=rid, code=code)
    if not enveloped:
        return body
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise PollError("bad_response", "response has no `data` object", request_id=rid)
    return data


class AcsCaller:
    """Sends ROA requests for one source: signs through the client's auth, bounds concurrency, counts requests.

    `enveloped` says whether the product wraps its result in `{"data": ...}` (MaxCompute) or not (EMR Serverless
    Spark); `call()` returns the result either way.
    """

    def __init__(self, sender: Sender, version: str, *, enveloped: bool = True) -> None:
        self._sender = sender
        self._version = version
        self._enveloped = enveloped

    @property
    def concurrency(self) -> int:
        """Returns how many requests the source may have in flight at once (its `max_concurrency`)."""
        return self._sender.concurrency

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._sender.aclose()

    async def call(
        self, action: str, method: str, path: str, *, query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None, api: str | None = None,
    ) -> Mapping[str, Any]:
        """Returns the result object of a successful call; retries short throttling waits, raises PollError.

        `action` is the `x-acs-action` header; `api` the polled API the request is counted under (the `api` label of
        `cloud_job_exporter_api_requests_total`, as of `source_up`), the action when not given."""
        decode = await self.call_later(action, method, path, query=query, body=body, api=api)
        return decode()

    async def call_later(
        self, action: str, method: str, path: str, *, query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None, api: str | None = None, after_send: Callable[[], None] | None = None,
    ) -> Callable[[], Mapping[str, Any]]:
        """Returns, for a call answered with HTTP 200, the decoding of its result, to run when the caller chooses (a
        page's JSON is most of its work on the event loop: a page reader decodes it once its next request is on the
        wire). An answer with an error status or a wait asked for raises its PollError at once, a short throttling
        wait being retried first; an error inside a 200 body (an envelope's `httpCode`, a body that is not JSON) is
        raised by the decoding. `after_send` runs once the request is sent (see `Sender.send`)."""
        return await retry_throttled(lambda: self._once(action, method, path, query, body, api or action, after_send))

    async def _once(
        self, action: str, method: str, path: str, query: Mapping[str, Any] | None, body: Mapping[str, Any] | None,
        api: str, after_send: Callable[[], None] | None,
    ) -> Callable[[], Mapping[str, Any]]:
        headers = {"x-acs-action": action, "x-acs-version": self._version}
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            headers["content-type"] = "application/json; charset=utf-8"
        response = await self._sender.send(
            api, method, path, params={k: str(v) for k, v in (query or {}).items()}, headers=headers,
            content=content, after_send=after_send,
        )
        decode = partial(parse_envelope, response, enveloped=self._enveloped)
        if _refused(response, _retry_after(response)):
            decode()  # raises this answer's PollError now, so that throttling is retried
        return decode


def acs_caller(
    config: SourceConfig, base_url: str, credentials: Callable[[], Credentials], version: str,
    counter: RequestCounter, transport: httpx.AsyncBaseTransport | None = None, *, enveloped: bool = True,
    clock: Callable[[], float] = time.time,
) -> AcsCaller:
    """Returns a caller for one Alibaba Cloud source: its client, signed with ACS3 at `clock`'s time, bounded by its
    concurrency."""
    client = make_client(config, base_url, AliyunAuth(credentials, clock=utc_clock(clock)), transport)
    return AcsCaller(Sender.of(config, client, counter), version, enveloped=enveloped)
