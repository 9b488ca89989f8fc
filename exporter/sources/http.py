"""What every vendor call layer shares: the source's HTTP client, bounded concurrency, a total time limit per request,
request counting, the mapping of transport failures to poll errors, and the in-poll retry of short throttling waits.

The vendor layers (`alibaba.AcsCaller`, `huawei.HuaweiCaller`) add their own envelopes and error codes on top.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import structlog

from exporter import __version__
from exporter.config import SourceConfig
from exporter.contract import PollError, RequestCounter
from exporter.credentials import CredentialError

T = TypeVar("T")
log = structlog.get_logger("exporter.sources")
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


def utc_clock(clock: Callable[[], float]) -> Callable[[], datetime]:
    """Returns `clock` (UNIX seconds) as the signers read it: an aware UTC datetime."""
    return lambda: datetime.fromtimestamp(clock(), UTC)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one answer may cost: its body's bytes on the wire and inflated, and its JSON items (see `count_items`)."""

    max_size: int
    max_items: int

    @classmethod
    def of(cls, config: SourceConfig) -> Bounds:
        """Returns a source's bounds from its `max_response_size` and `max_page_items`."""
        return cls(config.max_response_size, config.max_page_items)


def count_items(body: bytes) -> int:
    """Returns an upper bound on the items (array elements and object members) of a JSON body, counted in C before
    it is decoded: one more than its commas (a comma inside a string counts too, erring on the safe side)."""
    return body.count(b",") + 1


# An answer's content codings the exporter inflates itself, as zlib's window bits: bounded as it inflates, where
# httpx would inflate a whole chunk at once (a 64 KiB chunk of a gzip bomb is 64 MiB).
INFLATE_BITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
ACCEPT_ENCODING = "gzip, deflate"


class Sender:
    """Sends one source's requests: at most `concurrency` at once, each within `timeout` seconds in total (connect,
    send and the whole body), each body within `bounds`, each counted under its operation name with its status code
    (`error`: no response)."""

    def __init__(
        self, client: httpx.AsyncClient, counter: RequestCounter, *, concurrency: int, timeout: float, bounds: Bounds,
    ) -> None:
        self._client = client
        self._counter = counter
        self.concurrency = concurrency  # `max_concurrency`: the one place it is enforced
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._bounds = bounds

    @classmethod
    def of(cls, config: SourceConfig, client: httpx.AsyncClient, counter: RequestCounter) -> Sender:
        """Returns the sender of a source's requests through its client, as its config bounds them."""
        return cls(client, counter, concurrency=config.max_concurrency, timeout=config.timeout,
                   bounds=Bounds.of(config))

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._client.aclose()

    async def send(
        self, operation: str, method: str, path: str, *, params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None, content: bytes | None = None,
        after_send: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """Returns the response, its body read and inflated, whatever its status; raises PollError (timeout,
        connection, auth, a body past the bounds) without one.

        `after_send` runs once the request is on the wire, while its answer is awaited, as httpcore's `trace`
        extension tells; a transport that tells nothing of the kind (a test's mock) never runs it, and through an
        HTTPS proxy it also runs once the proxy's CONNECT is written. It must not raise: an error there would cut
        this request short."""
        extensions = {"trace": _when_sent(after_send)} if after_send else None
        request = self._client.build_request(
            method, path, params=dict(params or {}), headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
            content=content, extensions=extensions,
        )
        async with self._slots:
            counted = False  # once the answer's status is in, a failure reading its body does not count it again
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._send_once_more_if_stale(request)
                    self._counter.add(operation, response.status_code)
                    counted = True
                    return await self._read(response)
            except (TimeoutError, httpx.TimeoutException):
                error = PollError("timeout", f"no response within {self._timeout:g}s")
            except CredentialError as exc:  # raised by the signer before anything is sent: not a request
                raise PollError("auth", str(exc)) from None
            except httpx.HTTPError as exc:
                error = PollError("connection", f"{type(exc).__name__}: {exc}")
            if not counted:
                self._counter.add(operation, "error")
            raise error

    async def _send_once_more_if_stale(self, request: httpx.Request) -> httpx.Response:
        """Returns the answer (its body still to read), sending the request again once, on a new connection, when a
        kept-alive one turns out to have been closed by the server before it answered (every call here only reads,
        so a second send is safe)."""
        try:
            return await self._client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            log.debug("connection closed before an answer; sending again", error=f"{type(exc).__name__}: {exc}")
        return await self._client.send(request, stream=True)

    async def _read(self, response: httpx.Response) -> httpx.Response:
        """Returns the response with its body read and inflated within the bounds; raises PollError past them."""
        try:
            coding = response.headers.get("content-encoding", "identity").strip().lower()
            if coding not in INFLATE_BITS and coding != "identity":
                raise PollError("bad_response", f"HTTP {response.status_code} in content coding {coding[:40]!r}, "
                                f"which was not asked for (Accept-Encoding: {ACCEPT_ENCODING})")
            body = await _bounded_body(response, self._bounds.max_size, INFLATE_BITS.get(coding))
        finally:
            await response.aclose()
        if (items := count_items(body)) > self._bounds.max_items:
            raise PollError("too_large", f"HTTP {response.status_code} with about {items} JSON items, more than "
                            f"max_page_items ({self._bounds.max_items})", limit="max_page_items")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-encoding"]
        return httpx.Response(response.status_code, headers=headers, content=body, request=response.request,
                              extensions=response.extensions)


async def _already_read(response: httpx.Response) -> AsyncIterator[bytes]:
    """Yields the body of a response that was read already, as one chunk."""
    yield response.content


async def _bounded_body(response: httpx.Response, max_size: int, inflate_bits: int | None) -> bytes:
    """Returns the body, inflated when `inflate_bits` says how; raises PollError(too_large) as soon as the bytes on
    the wire or the inflated ones pass `max_size`, and PollError(bad_response) for a corrupt compressed body."""
    if response.is_stream_consumed:  # an in-process transport's answer (a test's), read and inflated already
        chunks, inflater = _already_read(response), None
    else:
        chunks, inflater = response.aiter_raw(), zlib.decompressobj(inflate_bits) if inflate_bits else None
    pieces: list[bytes] = []
    wire = size = 0
    try:
        async for chunk in chunks:
            wire += len(chunk)
            piece = inflater.decompress(chunk, max_size - size + 1) if inflater else chunk
            size += len(piece)
            if wire > max_size or size > max_size:
                what = "on the wire" if wire > max_size else "inflated"
                raise PollError("too_large", f"HTTP {response.status_code} with a body of more than max_response_size "
                                f"({max_size} bytes) {what}", limit="max_response_size")
            pieces.append(piece)
        if inflater and not inflater.eof:
            raise PollError("bad_response", f"HTTP {response.status_code} with a truncated compressed body")
    except zlib.error:
        raise PollError("bad_response", f"HTTP {response.status_code} with a corrupt compressed body") from None
    return b"".join(pieces)


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
