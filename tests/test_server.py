"""The HTTP side over real sockets: content negotiation, gzip, health, readiness, landing page, and clients that are
slow to send their headers or too many."""

from __future__ import annotations

import asyncio
import gzip
from urllib.parse import urlsplit

import httpx
import pytest

from exporter.connections import Limits
from exporter.exposition.format import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.server import accepts_gzip, prefers_openmetrics, weight
from tests.helpers import eventually_status as eventually
from tests.helpers import maxcompute_exporter, running_exporter


def unreachable_exporter():
    # Port 9 on loopback refuses connections: every poll fails fast, which is all these tests need.
    return maxcompute_exporter("http://127.0.0.1:9", interval="1h", snapshot_interval="1h")


async def test_metrics_negotiates_format_and_encoding() -> None:
    async with running_exporter(unreachable_exporter()) as url, httpx.AsyncClient() as client:
        # Once ready, the job families stay the same (polls are an hour apart); the process' own series change.
        await eventually(lambda: client.get(url + "/-/ready"), check_status=200)
        plain = await client.get(url + "/metrics", headers={"Accept-Encoding": "identity"})
        assert plain.headers["content-type"] == TEXT_CONTENT_TYPE
        assert "content-encoding" not in plain.headers
        assert b"cloud_job_exporter_build_info{" in plain.content

        zipped = await client.get(url + "/metrics", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < len(plain.content)

        om = await client.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                                         "Accept-Encoding": "identity"})
        assert om.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
        assert om.text.endswith("# EOF\n")


async def test_gzip_body_is_the_same_exposition() -> None:
    exporter = unreachable_exporter()
    async with running_exporter(exporter) as url, httpx.AsyncClient() as client:
        await eventually(lambda: client.get(url + "/-/ready"), check_status=200)
        for _ in range(5):  # the process' own series change at each publish (every 5 s): compare within one
            wire = await _raw(client, url)
            plain = await client.get(url + "/metrics", headers={"Accept-Encoding": "identity"})
            if await _raw(client, url) == wire:
                break
    assert gzip.decompress(wire) == plain.content


async def _raw(client: httpx.AsyncClient, url: str) -> bytes:
    async with client.stream("GET", url + "/metrics", headers={"Accept-Encoding": "gzip"}) as response:
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_an_identity_scrape_stops_inflating_when_the_client_has_gone() -> None:
    """An abandoned identity scrape (a timed-out curl) must not inflate the rest of a 55 MB body for no one."""
    from exporter.server import Inflated, _send_inflated
    from exporter.speed.gzip import GZIP_LEVEL, Segment, gzip_member, inflate

    text = b"".join(b"job_size{job=\"%d\"} %d\n" % (i, i) for i in range(400_000))
    gz = gzip_member([Segment.of(text, GZIP_LEVEL)])
    made, sent = [0], []

    def counted(chunks: tuple[bytes, ...]):
        for piece in inflate(chunks, piece=64 * 1024):
            made[0] += 1
            yield piece

    async def receive() -> dict:
        return {"type": "http.disconnect"}  # the client is gone from the start

    async def send(message: dict) -> None:
        sent.append(message)

    body = Inflated(gz, len(text))
    await _send_inflated(send, receive, counted(body.gz_chunks))
    assert len(text) // (64 * 1024) > 50 and made[0] <= 2 and len(sent) <= 1


async def test_health_readiness_and_landing_page() -> None:
    exporter = unreachable_exporter()
    async with running_exporter(exporter) as url, httpx.AsyncClient() as client:
        assert (await client.get(url + "/-/healthy")).status_code == 200
        first = await client.get(url + "/-/ready")
        assert first.status_code == 200 or "of 3 APIs have finished a poll" in first.text
        await eventually(lambda: client.get(url + "/-/ready"), check_status=200)  # failed polls count as finished
        page = await client.get(url + "/")
        assert page.headers["content-type"].startswith("text/html")
        assert 'href="/metrics"' in page.text
        assert "GetRunningJobs" in page.text and "ListJobSnapshotInfos" in page.text
        assert "connection" in page.text, "the landing page shows the failure reason"
        assert (await client.get(url + "/nope")).status_code == 404
        assert (await client.post(url + "/metrics")).status_code == 405
        head = await client.head(url + "/metrics")
        assert head.status_code == 200 and head.content == b""


async def test_custom_telemetry_path() -> None:
    async with running_exporter(unreachable_exporter(), telemetry_path="/custom") as url, httpx.AsyncClient() as c:
        assert (await c.get(url + "/custom")).status_code == 200
        assert (await c.get(url + "/metrics")).status_code == 404
        assert 'href="/custom"' in (await c.get(url + "/")).text




@pytest.mark.parametrize(("params", "q"), [
    ("", 1.0), (" q=0.5", 0.5), ("Q = 1", 1.0), ("q=1.000", 1.0), ("q=0", 0.0), ("version=1.0.0; q=0.25", 0.25),
    ("q=abc", 0.0), ("q=-1", 0.0), ("q=1.5", 0.0), ("q=0.1234", 0.0), ("q=", 0.0), ("q=.5", 0.0),
])
def test_weight_is_q_and_a_malformed_q_is_zero(params: str, q: float) -> None:
    assert weight(params) == q


@pytest.mark.parametrize(("header", "gzip_ok"), [
    ("gzip", True), ("gzip;q=0.5", True), ("deflate, gzip;q=1.0, br", True), ("*", True), ("", False),
    ("gzip;q=0", False), ("gzip;q=-1", False), ("gzip;q=abc", False), ("identity", False),
    ("*;q=0.5, gzip;q=0", False), ("gzip;q=0, *", False), ("*;q=0", False),
])
def test_gzip_is_accepted_only_with_a_q_above_zero(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;"
                "version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;"
                "q=0.3,*/*;q=0.2")


@pytest.mark.parametrize(("accept", "openmetrics"), [
    (PROMETHEUS_3, True), ("application/openmetrics-text", True), ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;q=abc", False), ("text/plain;q=0.9, application/openmetrics-text;q=0.1", False),
    ("application/openmetrics-text;q=0.5, */*;q=0.5", True), ("text/plain;version=0.0.4;q=0.3,*/*;q=0.1", False),
    ("", False), ("application/json", False),
])
def test_openmetrics_only_when_preferred(accept: str, openmetrics: bool) -> None:
    assert prefers_openmetrics(accept) is openmetrics


async def test_refused_codings_and_formats_are_not_served() -> None:
    async with running_exporter(unreachable_exporter()) as url, httpx.AsyncClient() as client:
        for encoding in ("gzip;q=-1", "gzip;q=abc"):
            response = await client.get(url + "/metrics", headers={"Accept-Encoding": encoding})
            assert "content-encoding" not in response.headers and b"build_info{" in response.content
        zipped = await client.get(url + "/metrics", headers={"Accept-Encoding": "gzip;q=0.5"})
        assert zipped.headers["content-encoding"] == "gzip"
        text = await client.get(url + "/metrics", headers={"Accept": "application/openmetrics-text;q=0"})
        assert text.headers["content-type"] == TEXT_CONTENT_TYPE and not text.text.endswith("# EOF\n")


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _trickle(writer: asyncio.StreamWriter) -> None:
    """Sends a request line, then a header line every 0.2 s, never ending the head."""
    writer.write(b"GET /metrics HTTP/1.1\r\n")
    while not writer.is_closing():
        await asyncio.sleep(0.2)
        writer.write(b"x-slow: 1\r\n")


async def test_a_request_head_sent_too_slowly_is_cut_off_and_scrapes_go_on() -> None:
    limits = Limits(header_timeout=1.0, max_connections=50)
    async with running_exporter(unreachable_exporter(), limits=limits) as url, httpx.AsyncClient() as client:
        slow = [await _open(url) for _ in range(20)]
        trickles = [asyncio.create_task(_trickle(writer)) for _, writer in slow]
        assert (await client.get(url + "/metrics")).status_code == 200, "scrapes are served among them"
        for reader, _ in slow:  # each is closed unanswered, though it keeps sending: a hang here is the failure
            assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        for task in trickles:
            task.cancel()
        assert (await client.get(url + "/metrics")).status_code == 200


async def test_past_the_connection_cap_new_connections_get_503_until_others_close() -> None:
    limits = Limits(max_connections=10)
    async with running_exporter(unreachable_exporter(), limits=limits) as url:
        held = [await _open(url) for _ in range(10)]
        async with httpx.AsyncClient() as client:
            refused = await client.get(url + "/metrics")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        for _, writer in held:
            writer.close()
        async with httpx.AsyncClient() as client:
            await eventually(lambda: client.get(url + "/metrics"), check_status=200)
