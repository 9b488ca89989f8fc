"""Test helpers: run a configured exporter on a free loopback port and scrape it over real HTTP."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.connections import Limits
from exporter.contract import Api, RequestCounter, SourceInfo
from exporter.credentials import static
from exporter.exposition.context import RenderContext
from exporter.exposition.renderer import Exposition, Renderer
from exporter.runtime import Exporter, build, serve
from exporter.sources import KINDS
from exporter.sources.http import Bounds, Sender
from exporter.store import Store
from exporter.webconfig import WebConfig

KEY_ID, SECRET = "LTAI5tTestKeyId0000", "test-secret-value-0123456789"
START = 1_700_000_000.0


def sender(client: httpx.AsyncClient, counter: RequestCounter | None = None, *, max_size: int = 4 << 20,
           max_items: int = 20_000) -> Sender:
    """Returns a Sender of one request at a time through `client`, with the default bounds unless told others."""
    return Sender(client, counter or RequestCounter(), concurrency=1, timeout=5, bounds=Bounds(max_size, max_items))

# The simulator's fault switches and the poll error reason each must produce, for the Alibaba Cloud sources.
ACS_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("server error", {"error_rate": 1.0}, "server"),
    ("gateway down", {"down": True}, "server"),
    ("throttled 400", {"throttle_rate": 1.0, "retry_after_ms": 60_000}, "throttled"),
    ("throttled 429", {"throttle_rate": 1.0, "throttle_status": 429, "retry_after_ms": 60_000}, "throttled"),
    ("malformed JSON", {"malformed_rate": 1.0}, "bad_response"),
    ("error with HTTP 200", {"envelope_error_rate": 1.0}, "server"),
    ("signature rejected", {"bad_signature": True}, "auth"),
    ("timeout", {"latency_ms": 3000}, "timeout"),
]


def signing_vectors_dir() -> Path:
    """Returns the vendors' signing vectors (tests/fixtures/signing-vectors, copied from the shared API documents)."""
    return Path(__file__).resolve().parent / "fixtures" / "signing-vectors"


@dataclass
class FakeClock:
    """A settable clock in UNIX seconds, shared by a simulator and a signer."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def as_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@asynccontextmanager
async def running_exporter(
    exporter: Exporter, telemetry_path: str = "/metrics", web: WebConfig | None = None, limits: Limits | None = None,
    **serving: Any,
) -> AsyncIterator[str]:
    """Yields the base URL of the exporter served on 127.0.0.1 (polling on its schedule) until the block ends;
    `serving` passes on to `serve` (`load`, `lifecycle`)."""
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(exporter, "127.0.0.1:0", telemetry_path, started=url.set_result, stop=stop,
                                     web=web, limits=limits, **serving))
    done, _ = await asyncio.wait([url, task], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield url.result().removesuffix(telemetry_path)
    finally:
        stop.set()
        await task


def source_apis(kind: str = "maxcompute", **settings: Any) -> dict[str, Api[Any]]:
    """Returns the APIs of a real source of `kind`, never polled (its transport refuses every request), by name:
    what a Renderer needs of them is their `render` and `jobs`."""
    cfg = parse_config({"sources": [{"name": "x", "kind": kind, "region": "cn-hangzhou", **settings}]}, KINDS)
    refuse = httpx.MockTransport(lambda request: httpx.Response(599))
    source = KINDS[kind].open(cfg.sources[0], lambda: static(KEY_ID, SECRET), RequestCounter(), refuse)
    return {api.name: api for api in source.apis()}


def render_context(source: str, kind: str, region: str, budget: int | None = None, **settings: Any) -> RenderContext:
    """Returns what a kind's `render` is given for a source with these settings (SourceInfo's), its share of the
    per-job cap `budget` (default: the whole `max_job_series`)."""
    info = SourceInfo(source, kind, region, **settings)
    return RenderContext(info, info.max_job_series if budget is None else budget)


def rendering(apis: Mapping[str, Api[Any]], info: SourceInfo, stale_after: float = 90.0) -> tuple[Store, Renderer]:
    """Returns a store with `apis` registered for the source `info` describes, and a Renderer of them."""
    store = Store()
    for name in apis:
        store.add_api(info, name, stale_after)
    return store, Renderer({(info.source, name): api for name, api in apis.items()})


def maxcompute_exporter(endpoint: str, secret: str = SECRET, **overrides: Any) -> Exporter:
    """Returns an exporter with one MaxCompute source named `mc` against `endpoint`."""
    config = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                        "endpoint": endpoint, **overrides}]}, KINDS)
    return build(config, credentials=lambda cfg: (lambda: static(KEY_ID, secret)))


def samples(text: str) -> dict[str, dict[frozenset, float]]:
    """Returns {sample name: {frozenset(labels): value}} parsed from a text exposition."""
    out: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def body(exposition: Exposition, *, openmetrics: bool = False, gzipped: bool = False) -> bytes:
    """Returns an exposition's body as one bytes object, as a scrape in that format and encoding receives it (the
    plain body read back with the standard library's gzip, not the exporter's inflating)."""
    gz = b"".join(exposition.om_gz_chunks if openmetrics else exposition.gz_chunks)
    return gz if gzipped else gzip.decompress(gz)


def text_of(exposition: Exposition) -> str:
    """Returns an exposition's text format."""
    return body(exposition).decode()


def value(text: str, name: str, **labels: str) -> float | None:
    """Returns the value of the sample `name` with exactly these labels in a text exposition, None when absent
    (the exporter's own families are written by prometheus-client, which orders labels its own way)."""
    return samples(text).get(name, {}).get(frozenset(labels.items()))


async def scrape(base_url: str, path: str = "/metrics") -> dict[str, dict[frozenset, float]]:
    """Returns the parsed samples of one scrape over HTTP."""
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + path)
    response.raise_for_status()
    return samples(response.text)


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Returns the first truthy result of `await check()`, polling until `timeout` (then fails)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: last result {result!r}")
        await asyncio.sleep(interval)


async def eventually_status(request: Any, check_status: int, timeout: float = 10.0) -> httpx.Response:
    """Returns the first response of `await request()` with the wanted status, polling until `timeout`."""

    async def check() -> httpx.Response | None:
        response = await request()
        return response if response.status_code == check_status else None

    return await eventually(check, timeout)


@dataclass
class Hang:
    """A fake API's wait that lasts until `release` is set, counting the requests that entered it and those
    cancelled in it: for requests that must not outlive their poll."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: int = 0
    cancelled: int = 0

    async def __call__(self) -> None:
        self.entered += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class PageReader(HTMLParser):
    """Reads an HTML page as a person sees it: `rows` holds each table row's text (cells and lines apart by a
    space, entities decoded), `title` the title's text, `elements` how many of each element the page has."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.title = ""
        self.elements: Counter[str] = Counter()
        self._row: list[str] | None = None
        self._in_title = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements[tag] += 1
        self._in_title = tag == "title"
        if tag == "tr":
            self._row = []
        elif tag in ("td", "br") and self._row is not None:
            self._row.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join("".join(self._row).split()))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._row is not None:
            self._row.append(data)

    def row(self, *words: str) -> str:
        """Returns the one row holding every word; fails when none or several do."""
        found = [r for r in self.rows if all(w in r for w in words)]
        assert len(found) == 1, f"{len(found)} rows hold {words}: {self.rows}"
        return found[0]
