"""A hostile vendor: a MaxCompute endpoint over real HTTP on 127.0.0.1 that answers every request with one attack
(issue 15's list), each on a port of its own. `tests/hostile/test_attacks.py` points one exporter source at each
port; `benchmarks/hostile_vendors.py` runs each alone and measures what it costs the exporter."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Writer = asyncio.StreamWriter
Answer = Callable[[Writer], Awaitable[None]]


def job(n: int, **fields: Any) -> dict[str, Any]:
    """Returns one running job as GetRunningJobs and ListJobSnapshotInfos list it."""
    return {"instanceId": f"job{n}", "project": "p", "quotaNickname": "q", "jobOwner": "o", "cuSnapshot": 1.5,
            "memorySnapshot": 1024, "progress": 0.5, "submittedAtTime": 1_700_000_000, "runningAtTime": 1_700_000_010,
            **fields}


def page(jobs: list[dict[str, Any]], total: Any = None) -> bytes:
    """Returns a MaxCompute answer listing `jobs` under both listings' keys, `total` its totalCount."""
    data = {"runningJobInfoList": jobs, "jobInfoList": jobs, "totalCount": len(jobs) if total is None else total}
    return json.dumps({"requestId": "hostile", "httpCode": 200, "data": data}).encode()


def whole(body: bytes, *headers: str, status: str = "200 OK") -> Answer:
    """Returns an answer of `body` with a Content-Length."""
    async def answer(writer: Writer) -> None:
        head = "".join(f"{h}\r\n" for h in (*headers, f"Content-Length: {len(body)}"))
        writer.write(f"HTTP/1.1 {status}\r\n{head}\r\n".encode())
        for i in range(0, len(body), 1 << 20):  # as a server writes a large body: a MiB at a time
            writer.write(body[i:i + (1 << 20)])
            await writer.drain()
    return answer


def raw(text: str, *headers: str) -> Answer:
    """Returns an answer of a literal JSON text (numbers Python's json would not write)."""
    return whole(text.encode(), "Content-Type: application/json", *headers)


async def endless(writer: Writer) -> None:
    """A chunked body that never ends, as fast as the client reads."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    while not writer.is_closing():
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()


async def drip(writer: Writer) -> None:
    """A body of a byte a second: the request's total timeout must end it."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    while not writer.is_closing():
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(1)


def gzip_bomb(inflated: int) -> bytes:
    """Returns a gzip body of about `inflated` zero bytes, a thousandth of that in size: one fully flushed deflate
    block of 16 MiB, repeated (a full flush forgets the history, so each copy stands alone). Its trailer is not
    that of the whole: a reader that stops at its bound never gets there."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 24)
    head = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    return head + block * ((inflated >> 24) - 1) + deflater.flush()


@dataclass(frozen=True)
class Attack:
    """One attack: what the vendor answers, and what the exporter must make of it (a failed poll's reason, or a
    skipped record's; the bound counted, if any)."""

    name: str
    what: str  # the words
    answer: Callable[[], Answer]  # built when the vendor starts: a bomb is not built at import
    reason: str | None = None  # poll_errors_total's reason
    skipped: str | None = None  # records_skipped_total's reason
    limit: str | None = None  # limits_reached_total's limit


BIG = "9" * 400
ATTACKS = (
    Attack("huge_integer", "a numeric field of 400 digits",
           lambda: raw(f'{{"httpCode":200,"data":{{"runningJobInfoList":[{{"instanceId":"a","cuSnapshot":{BIG}}}],'
                       f'"jobInfoList":[],"totalCount":1}}}}'), skipped="bad_field"),
    Attack("float_overflow", "a numeric field of 1e308 (sums to +Inf)",
           lambda: whole(page([job(1, cuSnapshot=1e308), job(2, cuSnapshot=1e308)])), skipped="bad_field"),
    Attack("huge_total", "a totalCount of 10^400",
           lambda: raw('{"httpCode":200,"data":{"runningJobInfoList":[],"jobInfoList":[],"totalCount":1' + "0" * 400
                       + "}}"),
           reason="bad_response"),
    Attack("deep_nesting", "JSON nested 100,000 deep", lambda: raw("[" * 100_000 + "]" * 100_000),
           reason="bad_response"),
    Attack("big_body", "a 100 MB body", lambda: whole(b" " * (100 << 20)), reason="too_large",
           limit="max_response_size"),
    Attack("endless_body", "an endless chunked body", lambda: endless, reason="too_large", limit="max_response_size"),
    Attack("gzip_bomb", "a gzip body that inflates to 10 GiB", lambda: whole(gzip_bomb(10 << 30),
                                                                              "Content-Encoding: gzip"),
           reason="too_large", limit="max_response_size"),
    Attack("many_records", "a page of 200,000 records", lambda: whole(page([{}] * 200_000)), reason="too_large",
           limit="max_page_items"),
    Attack("widest_page", "a page just within max_page_items, of the costliest shape to decode: a record of 9,900 "
           "distinct keys, in both listings", lambda: whole(page([job(1, **{f"k{i}": i for i in range(9_900)})]))),
    Attack("long_labels", "label values of 1 MB", lambda: whole(page([job(1, project="p" * (1 << 20))])),
           limit="max_label_length"),
    Attack("huge_retry_after", "throttled with a Retry-After of 10^12 ms",
           lambda: whole(b'{"Code":"Throttling.User","Message":"slow down"}', "x-acs-retry-after: 1000000000000",
                         status="400 Bad Request"), reason="throttled"),
    Attack("drip", "a body of one byte a second", lambda: drip, reason="timeout"),
    Attack("not_json", "an HTML page with a 200", lambda: whole(b"<html>oops</html>", "Content-Type: text/html"),
           reason="bad_response"),
    Attack("corrupt_gzip", "a gzip body that is not gzip", lambda: whole(b"garbage", "Content-Encoding: gzip"),
           reason="bad_response"),
)


async def _serve(answer: Answer, ready: Callable[[int], None], delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(delay)
                await answer(writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass  # the client went, or the vendor is closing (a cancelled callback would be logged as an error)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


@contextmanager
def hostile_vendor(attacks: tuple[Attack, ...] = ATTACKS, delay: float = 0.0) -> Iterator[dict[str, str]]:
    """Serves each attack on a port of its own in a background thread, each answer `delay` seconds after its
    request; yields {attack name: base URL}."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    urls: dict[str, str] = {}
    for attack in attacks:
        port: asyncio.Future[int] = asyncio.Future(loop=loop)
        asyncio.run_coroutine_threadsafe(_serve(attack.answer(), port.set_result, delay), loop)
        bound = asyncio.run_coroutine_threadsafe(asyncio.wait_for(port, 10), loop).result()
        urls[attack.name] = f"http://127.0.0.1:{bound}"
    try:
        yield urls
    finally:
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _cancel_all() -> None:
    """Cancels every other task of the loop (servers, answers still writing) and waits for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
