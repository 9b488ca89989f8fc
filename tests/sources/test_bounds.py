"""What one answer may cost (issue 15): the Sender reads a body over a real socket within `max_response_size` on
the wire and inflated, refuses a page of more than `max_page_items` JSON items before decoding it, sends once more
when a kept-alive connection was closed under it, and label values are cut to `max_label_length`."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from exporter.contract import PollError, RequestCounter
from exporter.sources.fetching import BadRecord, Skips, parse_page, text
from tests.helpers import sender

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def vendor(*answers: Answer) -> AsyncIterator[str]:
    """Serves one answer per request on 127.0.0.1 (the last one again once they run out); yields the base URL."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                answer = answers[min(served, len(answers) - 1)]
                served += 1
                await answer(writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def whole(body: bytes, *headers: str) -> Answer:
    """Returns an answer of a 200 with `body` and a Content-Length."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        head = "".join(f"{h}\r\n" for h in (*headers, f"Content-Length: {len(body)}"))
        writer.write(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body)
        await writer.drain()
    return answer


async def endless(writer: asyncio.StreamWriter) -> None:
    """A chunked body that never ends."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" + b"1," * 32767 + b"1"
    while not writer.is_closing():
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()


async def send(url: str, *, max_size: int = 1 << 20, max_items: int = 20_000) -> tuple[httpx.Response, dict]:
    counter = RequestCounter()
    async with httpx.AsyncClient(base_url=url) as client:
        response = await sender(client, counter, max_size=max_size, max_items=max_items).send("Op", "GET", "/")
    return response, dict(counter.counts)


async def refused(url: str, **bounds: int) -> PollError:
    with pytest.raises(PollError) as failed:
        await send(url, **bounds)
    return failed.value


async def test_a_body_within_the_bound_arrives_whole() -> None:
    body = b'{"data": [' + b",".join(b"1" for _ in range(1000)) + b"]}"
    async with vendor(whole(body)) as url:
        response, counts = await send(url)
    assert response.json() == {"data": [1] * 1000}
    assert counts == {("Op", "200"): 1}


async def test_a_gzip_body_is_inflated() -> None:
    async with vendor(whole(gzip.compress(b'{"a": 1}'), "Content-Encoding: gzip")) as url:
        response, _ = await send(url)
    assert response.json() == {"a": 1}
    assert "content-encoding" not in response.headers


async def test_a_body_past_the_bound_on_the_wire_is_refused_and_counted_by_its_status() -> None:
    async with vendor(whole(b" " * (2 << 20))) as url:
        error = await refused(url, max_size=1 << 20)
    assert (error.reason, error.limit) == ("too_large", "max_response_size")
    assert "on the wire" in str(error)


async def test_an_endless_body_is_cut_at_the_bound_not_at_the_timeout() -> None:
    async with vendor(endless) as url:
        error = await refused(url, max_size=1 << 20)
    assert (error.reason, error.limit) == ("too_large", "max_response_size")


async def test_a_gzip_bomb_is_refused_once_its_inflated_bytes_pass_the_bound() -> None:
    # 64 MiB of zeros in 64 KiB (a thousand to one, deflate's most): this stops once 1 MiB is out.
    bomb = gzip.compress(bytes(64 << 20), compresslevel=1)
    async with vendor(whole(bomb, "Content-Encoding: gzip")) as url:
        error = await refused(url, max_size=1 << 20)
    assert (error.reason, error.limit) == ("too_large", "max_response_size")
    assert "inflated" in str(error)


@pytest.mark.parametrize(("body", "coding", "what"), [
    (gzip.compress(b'{"a": 1}')[:-12], "gzip", "truncated"),
    (b"not gzip at all", "gzip", "corrupt"),
    (b'{"a": 1}', "br", "content coding 'br'"),
])
async def test_a_body_in_a_broken_or_unasked_coding_is_a_bad_response(body: bytes, coding: str, what: str) -> None:
    async with vendor(whole(body, f"Content-Encoding: {coding}")) as url:
        error = await refused(url)
    assert error.reason == "bad_response"
    assert what in str(error)


async def test_a_page_of_too_many_items_is_refused_before_it_is_decoded() -> None:
    page = b'{"data": {"jobs": [' + b",".join(b"{}" for _ in range(200_000)) + b"]}}"
    async with vendor(whole(page)) as url:
        error = await refused(url, max_items=20_000)
    assert (error.reason, error.limit) == ("too_large", "max_page_items")


async def test_a_kept_alive_connection_closed_by_the_server_is_replaced_once() -> None:
    """The vendor closes an idle kept-alive connection just as the next poll sends on it: the request goes again on
    a new connection instead of failing the poll with "Server disconnected without sending a response"."""
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    counter = RequestCounter()
    async with vendor(whole(b"{}"), hang_up, whole(b"[]")) as url, httpx.AsyncClient(base_url=url) as client:
        send_one = sender(client, counter).send
        assert (await send_one("Op", "GET", "/")).json() == {}
        assert (await send_one("Op", "GET", "/")).json() == []
    assert dict(counter.counts) == {("Op", "200"): 2}


def test_a_label_value_past_the_bound_is_cut_and_counted() -> None:
    skips = Skips(max_label_length=100)
    parsed = parse_page([{"id": "a", "name": "x" * 5000}, {"id": "b", "name": "short"}],
                        lambda r: (text(r, "id", required=True), text(r, "name")), skips)
    assert parsed == [("a", "x" * 100), ("b", "short")]
    assert skips.limits == {"max_label_length": 1}
    assert skips.counts == {}


def test_an_id_past_the_bound_skips_its_record() -> None:
    skips = Skips(max_label_length=100)
    parsed = parse_page([{"id": "a" * 101}, {"id": "b"}], lambda r: text(r, "id", required=True), skips)
    assert parsed == ["b"]
    assert skips.counts == {"bad_field": 1}
    assert skips.limits == {"max_label_length": 1}


def test_outside_a_page_the_default_bound_applies() -> None:
    assert text({"name": "y" * 5000}, "name") == "y" * 1024
    with pytest.raises(BadRecord):
        text({"id": "y" * 5000}, "id", required=True)
