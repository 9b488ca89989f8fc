"""The MaxCompute source against an in-process API that pages and filters as the vendor documents.

Units, trimming and record skipping come from the vendor's own sample responses (tests/fixtures/maxcompute).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.config import parse_config
from exporter.contract import PollError, RequestCounter
from exporter.credentials import static
from exporter.sources import KINDS
from exporter.sources.maxcompute.source import MaxComputeSource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "maxcompute"
NOW = 1_700_000_000


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def running_job(i: int, **fields: Any) -> dict[str, Any]:
    return {"instanceId": f"job{i:05d}", "jobOwner": "ALIYUN$a@example.com", "project": "p1",
            "quotaNickname": "q1", "cuSnapshot": i / 100, "memorySnapshot": 0.01, "submittedAtTime": NOW - 60,
            "runningAtTime": NOW - 30, "progress": 0.5, **fields}


class FakeRunningJobs:
    """GetRunningJobs with the documented rules: pageSize at most 20, pageNumber from 1, totalCount."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs
        self.requests: list[httpx.Request] = []
        self.on_page: dict[int, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["x-acs-action"] == "GetRunningJobs"
        assert request.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=AKID,")
        params = request.url.params
        size, number = int(params["pageSize"]), int(params["pageNumber"])
        if size > 20:
            return httpx.Response(400, json={"requestId": "r", "httpCode": 400, "errorCode": "INVALID_PARAMETER",
                                             "errorMsg": "pageSize"})
        if number in self.on_page:
            self.on_page[number](self)
        page = self.jobs[(number - 1) * size: number * size]
        return httpx.Response(200, json={"requestId": f"r{number}", "httpCode": 200, "errorCode": "success",
                                         "data": {"runningJobInfoList": page, "totalCount": len(self.jobs),
                                                  "pageNumber": number, "pageSize": size}})


def make_source(handler: Any, **overrides: Any) -> MaxComputeSource:
    cfg = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                     "endpoint": "http://mc.test", **overrides}]}, KINDS).sources[0]
    return MaxComputeSource.from_config(cfg, lambda: static("AKID", "secret"), RequestCounter(),
                                        httpx.MockTransport(handler))


@pytest.mark.parametrize("count", [0, 1, 20, 21, 45])
async def test_every_page_is_read(count: int) -> None:
    api = FakeRunningJobs([running_job(i) for i in range(count)])
    fetched = await make_source(api).running_jobs()
    assert sorted(j.instance_id for j in fetched.result.jobs) == [f"job{i:05d}" for i in range(count)]
    assert fetched.pages == max(1, math.ceil(count / 20))
    assert len(api.requests) == fetched.pages
    assert {r.url.params["pageSize"] for r in api.requests} == {"20"}


async def test_pages_are_read_by_as_many_tasks_as_the_concurrency_in_order() -> None:
    """A thousand pages must not become a thousand tasks made in one event-loop step: no more page reads are under
    way at once than the workers asked for, and the records still come in page order."""
    import asyncio

    from exporter.sources.fetching import Skips, fetch_numbered_pages

    under_way = [0, 0]  # now, most

    async def page(n: int, after_send) -> object:
        under_way[0] += 1
        under_way[1] = max(under_way[1], under_way[0])
        await asyncio.sleep(0.001 * (n % 3))  # pages finish out of order
        under_way[0] -= 1
        return lambda: ([n], 50)

    records, read = await fetch_numbered_pages(page, 1, 100, Skips(), "test", first=1, workers=3)
    assert records == list(range(1, 51)) and read == 50
    assert under_way[1] == 3


async def test_a_worker_digests_its_last_page_once_its_next_request_is_sent() -> None:
    """Decoding and parsing a page overlap the next round trip: page 2 is digested after page 3's request went out
    and before page 3's answer came, and every page is digested, the last one included."""
    import asyncio

    from exporter.sources.fetching import Skips, fetch_numbered_pages

    events: list[str] = []

    async def page(n: int, after_send) -> object:
        events.append(f"sent {n}")
        if after_send:  # none for the first page
            after_send()
        await asyncio.sleep(0)
        events.append(f"answered {n}")

        def digest() -> tuple[list[int], int]:
            events.append(f"digest {n}")
            return [n], 3
        return digest

    records, read = await fetch_numbered_pages(page, 1, 10, Skips(), "test", first=1, workers=1)
    assert records == [1, 2, 3] and read == 3
    assert events == ["sent 1", "answered 1", "digest 1", "sent 2", "answered 2", "sent 3", "digest 2", "answered 3",
                      "digest 3"]


async def test_over_http_each_page_but_the_first_and_last_is_digested_while_the_next_request_waits(
    simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path, over real HTTP to the simulator, one request at a time: the source hands the worker's
    `after_send` to its caller and the caller to httpcore, so every page but the first (read alone) and the last
    (nothing follows it) is parsed while a later page's request is out. Left unwired, none is."""
    import exporter.sources.maxcompute.source as mc_source
    from exporter.sources.http import Sender
    from tests.helpers import maxcompute_exporter

    sending, parsed_while_sending = [0], []
    real_send, real_parse = Sender.send, mc_source.parse_page

    async def send(self, *args, **kwargs):
        sending[0] += 1
        try:
            return await real_send(self, *args, **kwargs)
        finally:
            sending[0] -= 1

    def parse_page(*args, **kwargs):
        parsed_while_sending.append(sending[0] > 0)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(Sender, "send", send)
    monkeypatch.setattr(mc_source, "parse_page", parse_page)
    exporter = maxcompute_exporter(simulator.url, max_concurrency=1)
    try:
        fetched = await exporter.sources[0].running_jobs()
    finally:
        await exporter.sources[0].aclose()
    assert fetched.pages >= 3
    assert parsed_while_sending == [False] + [True] * (fetched.pages - 2) + [False]


async def test_a_page_that_fails_its_digest_fails_the_poll_once_the_next_request_is_done() -> None:
    """A page found malformed while the next request is on the wire fails the poll with its own error, raised by the
    worker after that request is done, not from inside it (where it would cut the request short, uncounted)."""
    import asyncio

    from exporter.sources.fetching import Skips, fetch_numbered_pages

    answered: list[int] = []

    async def page(n: int, after_send) -> object:
        if after_send:  # none for the first page
            after_send()
        await asyncio.sleep(0)
        answered.append(n)

        def digest() -> tuple[list[int], int]:
            if n == 2:
                raise PollError("bad_response", "page 2 is malformed")
            return [n], 4
        return digest

    with pytest.raises(PollError, match="page 2 is malformed"):
        await fetch_numbered_pages(page, 1, 10, Skips(), "test", first=1, workers=1)
    assert answered == [1, 2, 3]


async def test_query_carries_window_and_filters_as_one_comma_joined_value() -> None:
    api = FakeRunningJobs([])
    source = make_source(api, owners=["ALIYUN$a@example.com", "RAM$etl bot"])
    source._clock = lambda: NOW
    await source.running_jobs()
    params = api.requests[0].url.params
    assert params["to"] == str(NOW) and params["from"] == str(NOW - 7 * 86400)
    assert params["jobOwnerList"] == "ALIYUN$a@example.com,RAM$etl bot" and "quotaNicknameList" not in params
    assert "%20" in str(api.requests[0].url) and "+" not in str(api.requests[0].url)


async def test_a_source_listing_quotas_polls_each_quota_as_a_unit_of_its_own() -> None:
    api = FakeRunningJobs([])
    source = make_source(api, quotas=["q1", "q 2"])
    apis = {a.name: a for a in source.apis()}
    assert sorted(apis) == ["GetJobInfo/q 2", "GetJobInfo/q1", "GetRunningJobs/q 2", "GetRunningJobs/q1",
                            "ListJobSnapshotInfos/q 2", "ListJobSnapshotInfos/q1"]
    assert {a.shard_unit for a in apis.values()} == {"quota/q1", "quota/q 2"}
    await apis["GetRunningJobs/q 2"].fetch()
    assert [r.url.params["quotaNicknameList"] for r in api.requests] == ["q 2"]


async def test_a_job_moving_between_pages_is_counted_once() -> None:
    jobs = [running_job(i) for i in range(40)]
    api = FakeRunningJobs(jobs)
    # While page 2 is read, a new job arrives at the front: job00019 slides onto page 2 and is served twice.
    api.on_page[2] = lambda fake: fake.jobs.insert(0, running_job(99))
    fetched = await make_source(api, max_concurrency=1).running_jobs()
    ids = [j.instance_id for j in fetched.result.jobs]
    assert len(ids) == len(set(ids)) == 40
    assert fetched.skipped == {"duplicate": 1}


async def test_page_loop_stops_at_the_bound_and_says_so() -> None:
    class Endless(FakeRunningJobs):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            response = super().__call__(request)
            body = json.loads(response.content)
            body["data"]["totalCount"] = 10**9  # a server that never runs out of pages
            return httpx.Response(200, json=body)

    api = Endless([running_job(i) for i in range(100)])
    fetched = await make_source(api, max_pages=3).running_jobs()
    assert fetched.pages == 3 and len(api.requests) == 3
    assert fetched.skipped["page_limit"] == 10**9 - 60


async def test_vendor_sample_is_trimmed_and_typed() -> None:
    body = sample("get_running_jobs")
    body["data"]["totalCount"] = 1
    body["data"]["runningJobInfoList"][0]["quotaNickname"] = "my_quota\n"
    source = make_source(lambda request: httpx.Response(200, json=body))
    (job,) = (await source.running_jobs()).result.jobs
    assert (job.instance_id, job.quota, job.owner) == ("2023050206371544gomgtp3ljcr4", "my_quota",
                                                       "ALIYUN$xxx@test.aliyunid.com")
    assert (job.cu_snapshot, job.submitted_at, job.progress) == (0.45, 1689746864, 0)


async def test_snapshot_sample_converts_megabytes_to_bytes_and_keeps_ratios() -> None:
    body = sample("list_job_snapshot_infos")
    body["data"]["totalCount"] = 1
    body["data"]["jobInfoList"][0]["jobType"] = "SQL\n"
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=body)

    fetched = await make_source(handler, projects=["projectA"], quotas=["quota_A"]).snapshot("quota_A")
    (job,) = fetched.result.jobs
    assert job.job_type == "SQL"
    assert job.memory_usage_bytes == 409600 * 1024 * 1024
    assert (job.cpu_usage_cores, job.cpu_request_cores, job.cpu_usage_to_request) == (100, 200, 0.5)
    assert (job.waiting_seconds, job.running_seconds, job.priority) == (20, 43, "9")
    assert fetched.result.snapshot_time == 1736821848
    sent = json.loads(requests[0].content)
    assert sent["projectList"] == ["projectA"] and sent["quotaNickname"] == "quota_A" and isinstance(sent["to"], int)
    assert requests[0].headers["content-type"] == "application/json; charset=utf-8"
    assert requests[0].url.params["pageSize"] == "100"


@pytest.mark.parametrize("bad", [{"cuSnapshot": "abc"}, {"instanceId": None}, {"instanceId": 42},
                                 {"progress": True}, {"project": ["x"]}])
async def test_a_record_with_a_bad_field_is_skipped_and_counted(bad: dict[str, Any]) -> None:
    jobs = [running_job(i) for i in range(3)]
    jobs[1] = {**jobs[1], **bad}
    fetched = await make_source(FakeRunningJobs(jobs)).running_jobs()
    assert [j.instance_id for j in fetched.result.jobs] == ["job00000", "job00002"]
    assert fetched.skipped == {"bad_field": 1}


def envelope(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(sample("get_running_jobs"))
    body.update(overrides)
    return body


@pytest.mark.parametrize(("response", "reason"), [
    (httpx.Response(400, json={"RequestId": "g1", "Code": "SignatureDoesNotMatch", "Message": "sig"}), "auth"),
    (httpx.Response(404, json={"RequestId": "g1", "Code": "InvalidAccessKeyId.NotFound", "Message": "x"}), "auth"),
    (httpx.Response(400, json={"RequestId": "g1", "Code": "Throttling.User", "Message": "slow down"},
                    headers={"x-acs-retry-after": "60000"}), "throttled"),
    (httpx.Response(429, json={"RequestId": "g1", "Code": "TooMany"}, headers={"retry-after": "30"}), "throttled"),
    (httpx.Response(500, json={"RequestId": "g1", "Code": "InternalError", "Message": "boom"}), "server"),
    (httpx.Response(503, text="<html>unavailable</html>"), "server"),
    (httpx.Response(200, text='{"requestId": "x", "httpCode": 200, "data": {"runningJobInf'), "bad_response"),
    (httpx.Response(200, json=envelope(httpCode=500, errorCode="InternalError")), "server"),
    (httpx.Response(200, json=envelope(httpCode=403, errorCode="NoPermission")), "auth"),
    (httpx.Response(200, json=envelope(data=None)), "bad_response"),
    (httpx.Response(200, json=envelope(data={"runningJobInfoList": {}, "totalCount": 1})), "bad_response"),
    (httpx.Response(200, json=envelope(data={"runningJobInfoList": [], "totalCount": "7"})), "bad_response"),
])
async def test_failures_become_poll_errors_with_a_reason(response: httpx.Response, reason: str) -> None:
    with pytest.raises(PollError) as info:
        await make_source(lambda request: response).running_jobs()
    assert info.value.reason == reason


async def test_throttled_request_id_and_retry_after_are_kept() -> None:
    response = httpx.Response(400, json={"RequestId": "req-42", "Code": "Throttling.User", "Message": "m"},
                              headers={"x-acs-retry-after": "60000"})
    with pytest.raises(PollError) as info:
        await make_source(lambda request: response).running_jobs()
    assert (info.value.request_id, info.value.retry_after) == ("req-42", 60.0)


async def test_short_throttling_waits_are_retried_within_the_poll() -> None:
    api = FakeRunningJobs([running_job(i) for i in range(5)])
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(400, json={"Code": "Throttling.Api"}, headers={"x-acs-retry-after": "10"})
        return api(request)

    fetched = await make_source(flaky).running_jobs()
    assert len(fetched.result.jobs) == 5 and calls["n"] == 2


async def test_connection_and_timeout_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, reason in ((refuse, "connection"), (slow, "timeout")):
        with pytest.raises(PollError) as info:
            await make_source(handler).running_jobs()
        assert info.value.reason == reason


async def test_no_page_request_outlives_a_failed_poll() -> None:
    import asyncio

    api = FakeRunningJobs([running_job(i) for i in range(200)])  # 10 pages

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["pageNumber"] == "2":
            return httpx.Response(500, json={"Code": "InternalError"})
        await asyncio.sleep(0.05)
        return api(request)

    with pytest.raises(PollError):
        await make_source(handler, max_concurrency=2).running_jobs()
    sent = len(api.requests)
    await asyncio.sleep(0.3)
    assert len(api.requests) == sent < 9, "the pages still queued were cancelled with the poll"
