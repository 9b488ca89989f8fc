"""What every vendor call layer shares: the source's HTTP client, bounded concurrency, a total time limit per request,
request counting, the mapping of transport failures to poll errors, and the in-poll retry of short throttling waits.

The vendor layers (`alibaba.AcsCaller`, `huawei.HuaweiCaller`) add their own envelopes and error codes on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from exporter import __version__
from exporter.config import SourceConfig
from exporter.contract import PollError, RequestCounter
from exporter.credentials import CredentialError

T = TypeVar("T")
USER_AGENT = f"cloud-job-exporter/{__version__}"
# Throttled pages are retried in the poll while the vendor asks for at most this long a wait; longer waits fail the
# poll as `throttled` and the scheduler backs off instead of holding a poll open.
MAX_IN_POLL_WAIT = 5.0
THROTTLE_RETRIES = 2


def make_client(
    config: SourceConfig, base_url: str, auth: httpx.Auth, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """Returns the source's one AsyncClient: its keep-alive connections as many as its concurrency, and its timeouts.
    The pool itself sets no limit on connections: the Sender's is the one that holds requests back."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=config.max_concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
    )


class Sender:
    """Sends one source's requests: at most `concurrency` at once, each within `timeout` seconds in total (connect,
    send and the whole body), each counted under its operation name with its status code (`error`: no response)."""

    def __init__(self, client: httpx.AsyncClient, counter: RequestCounter, *, concurrency: int, timeout: float) -> None:
        self._client = client
        self._counter = counter
        self.concurrency = concurrency  # `max_concurrency`: the one place it is enforced
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._client.aclose()

    async def send(
        self, operation: str, method: str, path: str, *, params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None, content: bytes | None = None,
        after_send: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """Returns the response, whatever its status; raises PollError (timeout, connection, auth) without one.

        `after_send` runs once the request is on the wire, while its answer is awaited, as httpcore's `trace`
        extension tells; a transport that tells nothing of the kind (a test's mock) never runs it, and through an
        HTTPS proxy it also runs once the proxy's CONNECT is written. It must not raise: an error there would cut
        this request short."""
        extensions = {"trace": _when_sent(after_send)} if after_send else None
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._client.request(
                        method, path, params=dict(params or {}), headers=dict(headers or {}), content=content,
                        extensions=extensions,
                    )
            except (TimeoutError, httpx.TimeoutException):
                self._counter.add(operation, "error")
                raise PollError("timeout", f"no response within {self._timeout:g}s") from None
            except CredentialError as exc:  # raised by the signer before anything is sent: not a request
                raise PollError("auth", str(exc)) from None
            except httpx.HTTPError as exc:
                self._counter.add(operation, "error")
                raise PollError("connection", f"{type(exc).__name__}: {exc}") from None
        self._counter.add(operation, response.status_code)
        return response


_SENT = frozenset({"http11.send_request_body.complete", "http2.send_request_body.complete"})


def _when_sent(after_send: Callable[[], None]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """Returns an httpcore `trace` callback that runs `after_send` when the request's body has been written."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event in _SENT:
            after_send()

    return trace


async def retry_throttled(
    attempt: Callable[[], Awaitable[T]], *, retries: int = THROTTLE_RETRIES, max_wait: float = MAX_IN_POLL_WAIT
) -> T:
    """Returns `attempt()`'s result, re-trying a `throttled` PollError up to `retries` times when the vendor asked for
    a wait of at most `max_wait` seconds (after that wait); any other failure, or a longer wait, is raised."""
    for n in range(retries + 1):
        try:
            return await attempt()
        except PollError as exc:
            wait = exc.retry_after
            if exc.reason != "throttled" or n == retries or wait is None or wait > max_wait:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable: the last attempt either returns or raises")


def reason_for(status: int, code: str, *, throttle_prefixes: tuple[str, ...], auth_prefixes: tuple[str, ...]) -> str:
    """Returns the poll error reason for an HTTP status and a vendor error code (0 for a status the envelope gave
    none of): `throttled` for 429 or a throttling code, `auth` for 401/403 or an authentication or permission code,
    then `server` for 5xx and `client` for the rest. A code matches a vendor's list when it starts with one of its
    entries (a whole code is its own prefix)."""
    if status == 429 or code.startswith(throttle_prefixes):
        return "throttled"
    if status in (401, 403) or code.startswith(auth_prefixes):
        return "auth"
    if status >= 500:
        return "server"
    return "client"


def retry_after_seconds(response: httpx.Response, *, ms_header: str | None = None) -> float | None:
    """Returns the wait the vendor asked for in seconds: `ms_header` (milliseconds, when given and positive), else a
    standard `Retry-After` in seconds; None when absent or unreadable."""
    try:
        if ms_header and (ms := response.headers.get(ms_header)) and float(ms) > 0:
            return float(ms) / 1000
        if (sec := response.headers.get("retry-after")) and float(sec) >= 0:
            return float(sec)
    except ValueError:
        return None
    return None


def json_body(response: httpx.Response, request_id: str | None) -> Any:
    """Returns the decoded JSON body; raises PollError(bad_response) for a body that is not JSON, or JSON nested too
    deep for the decoder (Python's own limit, about a thousand levels: no vendor answer comes near)."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise PollError(
            "bad_response", f"HTTP {response.status_code} with a body that is not JSON", request_id=request_id
        ) from None
