"""What the vendor call layers share: the one mapping of an HTTP status and a vendor error code to a poll error
reason, used by Alibaba Cloud (`alibaba`) and Huawei Cloud (`huawei`) with their own code lists."""

from __future__ import annotations

import pytest

from exporter.sources import alibaba, huawei
from exporter.sources.http import reason_for

ALIBABA = {"throttle_prefixes": alibaba.THROTTLE_CODE_PREFIXES, "auth_prefixes": alibaba.AUTH_CODE_PREFIXES}
HUAWEI = {"throttle_prefixes": huawei.THROTTLE_CODES, "auth_prefixes": huawei.AUTH_CODES}


@pytest.mark.parametrize(("codes", "status", "code", "reason"), [
    (ALIBABA, 429, "", "throttled"),
    (ALIBABA, 400, "Throttling.User", "throttled"),
    (ALIBABA, 400, "Throttling", "throttled"),
    (ALIBABA, 503, "Throttling.Resource", "throttled"),
    (ALIBABA, 400, "SignatureDoesNotMatch", "auth"),
    (ALIBABA, 404, "InvalidAccessKeyId.NotFound", "auth"),
    (ALIBABA, 0, "Forbidden.NoPermission", "auth"),
    (ALIBABA, 403, "", "auth"),
    (ALIBABA, 500, "InternalError", "server"),
    (ALIBABA, 404, "InvalidWorkspace.NotFound", "client"),
    (ALIBABA, 0, "APIG.0308", "client"),
    (HUAWEI, 429, "", "throttled"),
    (HUAWEI, 400, "APIG.0308", "throttled"),
    (HUAWEI, 401, "", "auth"),
    (HUAWEI, 400, "APIG.0307", "auth"),
    (HUAWEI, 403, "DLF.0137", "auth"),
    (HUAWEI, 504, "APIG.0201", "server"),
    (HUAWEI, 0, "DLF.0815", "client"),
    (HUAWEI, 400, "Throttling.User", "client"),
])
def test_one_mapping_with_each_vendors_codes(codes, status, code, reason):
    assert reason_for(status, code, **codes) == reason


def test_both_vendors_use_it():
    assert alibaba._reason_for.func is huawei._reason_for.func is reason_for


async def test_after_send_runs_while_the_answer_is_awaited() -> None:
    """A page reader digests its last page while its next request is out: over a real socket, `after_send` runs once
    the request is written, long before a slow answer comes."""
    import asyncio
    import time

    import httpx

    from tests.helpers import sender as make_sender

    async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(4)  # the body
        await asyncio.sleep(0.4)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_late, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ran: list[float] = []

    def after_send() -> None:
        ran.append(time.monotonic())

    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        sender = make_sender(client)
        started = time.monotonic()
        response = await sender.send("Op", "POST", "/x", content=b"body", after_send=after_send)
        answered = time.monotonic()
    assert response.status_code == 200
    assert len(ran) == 1
    assert ran[0] - started < 0.2 < answered - ran[0], "after_send waited for the answer"
