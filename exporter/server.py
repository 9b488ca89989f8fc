"""The HTTP side: a small ASGI app serving the pre-rendered exposition, health, readiness, a status page and the
configuration.

A scrape never waits on the cloud or on rendering: it picks the current Exposition's gzip chunks (OpenMetrics when
negotiated) and writes them, or, to a client that does not take gzip, inflates them piece by piece as it writes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from exporter import __version__
from exporter.config import ExporterConfig
from exporter.exposition.format import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.pages import CSP, config_yaml, status_page
from exporter.publication import Publication
from exporter.speed.gzip import Inflater
from exporter.webconfig import BasicAuth

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Inflated:
    """A gzip body sent inflated, one piece at a time as it is written; `size` is its inflated length."""

    gz_chunks: tuple[bytes, ...]
    size: int


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response."""

    status: int
    body: bytes | tuple[bytes, ...] | Inflated  # chunks are written in order, never joined
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 9110 12.4.2


def weight(params: str) -> float:
    """Returns the q of an Accept or Accept-Encoding element from its parameters (what follows its first `;`): 1
    without one, 0 for a malformed one (`q=abc`, `q=-1`, `q=1.5`), which is not a preference anyone can have meant."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            return float(value) if QVALUE.fullmatch(value) else 0.0
    return 1.0


def _elements(header: str) -> Iterator[tuple[str, float]]:
    """Yields each element of an Accept or Accept-Encoding header as (lower-case name, q)."""
    for item in header.split(","):
        name, _, params = item.partition(";")
        if name.strip():
            yield name.strip().lower(), weight(params)


def accepts_gzip(accept_encoding: str) -> bool:
    """Returns True when gzip is acceptable: listed with a q above 0, or not listed and `*` is (RFC 9110 12.5.3)."""
    weights = dict(reversed(list(_elements(accept_encoding))))  # the first of repeated names counts
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def prefers_openmetrics(accept: str) -> bool:
    """Returns True when OpenMetrics is the client's first choice among what the exporter serves: of the ranges
    application/openmetrics-text and text/plain, text/* or */* (which get the text format), the first of the highest
    q above 0 is OpenMetrics's."""
    served = [(q, name == "application/openmetrics-text") for name, q in _elements(accept)
              if name in ("application/openmetrics-text", "text/plain", "text/*", "*/*") and q > 0]
    return max(served, key=lambda choice: choice[0], default=(0.0, False))[1]


async def _send_inflated(send: Send, receive: Receive, pieces: Iterable[bytes]) -> None:
    """Writes an inflated body piece by piece, each inflated once the last is written, with a turn of the event loop
    between them (send() returns without one while the socket takes what is written: inflating on would hold the
    loop for the whole body); stops when the client has gone, rather than inflate the rest for no one."""

    async def wait_for_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.create_task(wait_for_disconnect())
    try:
        for piece in pieces:
            if gone.done():
                return
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
    finally:
        gone.cancel()


# The pages are for a person's browser: never sniffed into another type (a config holding `<script>` is not HTML),
# and their address never sent on as a referrer.
PAGE_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
MAX_WAITING_CHECKS = 8
BUSY = Reply(503, b"Too many password checks at once, retry\n", headers=((b"retry-after", b"1"),))
UNAUTHORIZED = Reply(401, b"Unauthorized\n", headers=((b"www-authenticate", b'Basic realm="cloud-job-exporter"'),))


class App:
    """The exporter's ASGI application, serving what `published()` returns at each request."""

    def __init__(
        self, published: Callable[[], Publication], telemetry_path: str = "/metrics", notes: tuple[str, ...] = (),
        auth: BasicAuth | None = None, reload: Callable[[], Awaitable[str | None]] | None = None,
        config: Callable[[], ExporterConfig] | None = None,
    ) -> None:
        self._published = published
        self._path = telemetry_path
        self._notes = notes
        self._auth = auth
        self._reload = reload  # `POST /-/reload`, given with --web.enable-lifecycle; None answers 403
        self._config = config  # the config in effect, which a reload replaces
        self._config_page: tuple[int, bytes] = (0, b"")  # /config, by the id of the config it shows
        self._bcrypt_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt") if auth else None
        self._bcrypt_waiting = 0
        # The last status page, by the id of its publication (holding the publication itself would keep its
        # exposition alive past the next publish) and the second it was rendered in.
        self._page: tuple[tuple[int, int], bytes] = ((0, 0), b"")
        self._inflater = Inflater()  # identity scrapes' text, shared by those of the same exposition at once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # served with lifespan="off": nothing else arrives
            return
        allowed = await self._allowed(scope)
        if not allowed:
            reply = BUSY if allowed is None else UNAUTHORIZED
        elif scope["path"] == "/-/reload" and scope["method"] in ("POST", "PUT"):
            reply = await self.reload()
        else:
            reply = self.route(scope)
        body = reply.body
        if isinstance(body, Inflated):
            size, chunks = body.size, self._inflater.text(body.gz_chunks)
        else:
            chunks = (body,) if isinstance(body, bytes) else body
            size = sum(map(len, chunks))
        headers = [(b"content-type", reply.content_type.encode()), (b"content-length", str(size).encode()),
                   *reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if scope["method"] != "HEAD":
            # One message per chunk: the server's flow control then holds about one chunk in its write buffer, where
            # a body of tens of MB sent whole would be copied whole into it, for every scrape in flight.
            if isinstance(body, Inflated):
                await _send_inflated(send, receive, chunks)
            else:
                for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _allowed(self, scope: Scope) -> bool | None:
        """Returns whether the request may pass; None when too many password checks are already waiting."""
        if self._auth is None:
            return True
        header = _header(scope, b"authorization")
        known = self._auth.known(header)
        if known is not None:
            return known
        # bcrypt is slow by design: a new password is checked off the event loop, in a pool of its own so a flood of
        # wrong passwords cannot starve the renders; beyond a few waiting checks, new passwords get 503 (retry),
        # not 401, so a real scraper caught in a flood is not told its password is wrong.
        if self._bcrypt_waiting >= MAX_WAITING_CHECKS:
            return None
        self._bcrypt_waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._bcrypt_pool, self._auth.check, header)
        finally:
            self._bcrypt_waiting -= 1

    async def reload(self) -> Reply:
        """Returns the answer to `POST /-/reload`, as Prometheus gives it: 200 once the config is read again and
        applied, 500 with the reason it was refused, 403 without --web.enable-lifecycle."""
        if self._reload is None:
            return Reply(403, b"Lifecycle API is not enabled.\n")
        if (error := await self._reload()) is not None:
            return Reply(500, f"failed to reload config: {error}\n".encode())
        return Reply(200, b"Reloaded\n")

    def route(self, scope: Scope) -> Reply:
        """Returns the reply for one request."""
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            return Reply(405, b"Method Not Allowed\n", headers=((b"allow", b"GET, HEAD"),))
        if path == self._path:
            return self.metrics(_header(scope, b"accept"), _header(scope, b"accept-encoding"))
        if path == "/-/healthy":
            return Reply(200, b"Healthy\n")
        if path == "/-/ready":
            published = self._published()
            if published.ready:
                return Reply(200, b"Ready\n")
            return Reply(503, f"Not ready: {published.polled} of {len(published.states)} APIs have finished a poll\n"
                         .encode())
        if path == "/":
            return Reply(200, self.status(), "text/html; charset=utf-8",
                         ((b"content-security-policy", CSP.encode()), *PAGE_HEADERS))
        if path == "/config" and self._config is not None:
            return Reply(200, self.config_page(), headers=PAGE_HEADERS)
        return Reply(404, b"Not Found\n")

    def metrics(self, accept: str, accept_encoding: str) -> Reply:
        """Returns the current exposition in the negotiated format and encoding."""
        exposition = self._published().exposition
        if prefers_openmetrics(accept):
            gz, size, content_type = exposition.om_gz_chunks, exposition.om_size, OPENMETRICS_CONTENT_TYPE
        else:
            gz, size, content_type = exposition.gz_chunks, exposition.size, TEXT_CONTENT_TYPE
        vary = (b"vary", b"Accept, Accept-Encoding")
        if accepts_gzip(accept_encoding):
            return Reply(200, gz, content_type, ((b"content-encoding", b"gzip"), vary))
        return Reply(200, Inflated(gz, size), content_type, (vary,))

    def status(self) -> bytes:
        """Returns the status page, rendered at most once a second for one publication: a flood of page views then
        costs a render a second, not one each, and the scrapes keep the event loop (1000 APIs take 30 to 50 ms)."""
        published, now = self._published(), time.time()
        key = (id(published), int(now))  # an id reused within the second shows a page of that second: no older
        if self._page[0] != key:
            self._page = (key, status_page(published, now, self._path, self._notes, __version__).encode())
        return self._page[1]

    def config_page(self) -> bytes:
        """Returns /config: the config in effect as YAML, secrets redacted; written again only when a reload has
        replaced the config."""
        assert self._config is not None  # routed here only when given
        config = self._config()
        if self._config_page[0] != id(config):
            self._config_page = (id(config), config_yaml(config, __version__).encode())
        return self._config_page[1]
