"""The DataArts Factory source against an in-process job list that checks the signature and pages, selects the
workspace and filters by job type as the vendor documents (`offset` is the page number from 0, `limit` 1 to 100)."""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog

from exporter.auth import huawei
from exporter.config import parse_config
from exporter.contract import PollError, RequestCounter
from exporter.credentials import static
from exporter.exposition.context import split_budget
from exporter.exposition.format import pieces
from exporter.runtime import build
from exporter.sources import KINDS
from exporter.sources.dataarts_factory.records import DataArtsJob, DataArtsJobList
from exporter.sources.dataarts_factory.render import LAST_INSTANCE_STATUSES, job_list_families
from exporter.sources.dataarts_factory.source import DataArtsFactorySource, parse_job
from tests.helpers import Hang, render_context, text_of, value

AK, SK = "HWAKTESTEXAMPLE000000", "HWSKTESTEXAMPLESECRETKEY00000000000000000"
PROJECT = "0123456789abcdef0123456789abcdef"
WS1, WS2 = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", "b0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
DEFAULT = "(default)"
T0_MS = 1_700_000_000_000


def job(i: int, job_type: str = "BATCH", **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": f"job_{i:04d}", "jobType": job_type, "createUser": "test_user",
                              "createTime": T0_MS - 86_400_000, "startTime": T0_MS - 3_600_000 + i}
    if job_type == "BATCH":
        record |= {"status": "SCHEDULING", "lastInstanceStatus": "success", "lastInstanceEndTime": T0_MS + i * 1000}
    else:
        record["status"] = "NORMAL"
    return record | fields


def error(status: int, code: str, msg: str = "m") -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "error_msg": msg}, headers={"X-Request-Id": "rid-1"})


class FakeJobList:
    """`GET /v1/{project_id}/jobs` with the documented rules; `jobs[workspace]` per workspace (DEFAULT: no header)."""

    def __init__(self, jobs: dict[str, list[dict[str, Any]]]) -> None:
        self.jobs = jobs
        self.requests: list[httpx.Request] = []
        self.on_offset: dict[int, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        if not huawei.verify(request.method, request.url.raw_path.split(b"?")[0].decode(), query,
                             request.headers.multi_items(), request.content, SK):
            return error(401, "APIG.0301", "Incorrect IAM authentication information: verify aksk signature fail")
        if request.url.path != f"/v1/{PROJECT}/jobs" or request.headers.get("x-project-id") != PROJECT:
            return error(404, "APIG.0101", "The API does not exist or has not been published in the environment")
        params = dict(query)
        limit, offset = int(params.get("limit", 10)), int(params.get("offset", 0))
        if not 1 <= limit <= 100 or offset < 0:
            return error(400, "DLF.0100", "limit must be between 1 and 100")
        workspace = request.headers.get("workspace", DEFAULT)
        if workspace not in self.jobs:
            return error(400, "DLF.3051", "The workspace does not exist")
        if offset in self.on_offset:
            self.on_offset[offset](self)
        job_type = params.get("jobType", "BATCH")
        matching = [j for j in self.jobs[workspace]
                    if not isinstance(j, dict) or j["jobType"].strip() == job_type]
        return httpx.Response(200, json={"total": len(matching),
                                         "jobs": matching[offset * limit:(offset + 1) * limit]})

    def offsets(self) -> list[int]:
        return sorted(int(r.url.params["offset"]) for r in self.requests)


def make_source(handler: Any, token: str | None = None, **overrides: Any) -> DataArtsFactorySource:
    cfg = parse_config({"sources": [{"name": "dgc", "kind": "dataarts_factory", "region": "cn-north-4",
                                     "endpoint": "http://dgc.test", "project_id": PROJECT, **overrides}]},
                       KINDS).sources[0]
    return DataArtsFactorySource.from_config(cfg, lambda: static(AK, SK, token), RequestCounter(),
                                             httpx.MockTransport(handler))


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 250])
async def test_every_page_is_read_with_offset_as_the_page_number(count: int) -> None:
    api = FakeJobList({DEFAULT: [job(i) for i in range(count)]})
    fetched = await make_source(api).job_list(None, "BATCH")
    assert sorted(j.name for j in fetched.result.jobs) == [f"job_{i:04d}" for i in range(count)]
    pages = max(1, math.ceil(count / 100))
    assert fetched.pages == pages and api.offsets() == list(range(pages))
    assert {r.url.params["limit"] for r in api.requests} == {"100"}


async def test_jobs_created_while_paging_extend_the_read() -> None:
    api = FakeJobList({DEFAULT: [job(i) for i in range(150)]})
    api.on_offset[1] = lambda fake: fake.jobs[DEFAULT].extend(job(i) for i in range(150, 260))
    fetched = await make_source(api).job_list(None, "BATCH")
    assert len(fetched.result.jobs) == 260 and api.offsets() == [0, 1, 2]


async def test_page_loop_stops_at_max_pages_and_counts_what_it_left() -> None:
    api = FakeJobList({DEFAULT: [job(i) for i in range(450)]})
    fetched = await make_source(api, max_pages=2).job_list(None, "BATCH")
    assert len(fetched.result.jobs) == 200 and api.offsets() == [0, 1]
    assert fetched.skipped == {"page_limit": 250}


async def test_default_workspace_is_requested_without_the_header() -> None:
    api = FakeJobList({DEFAULT: [job(1)], WS1: [job(2)]})
    source = make_source(api)
    assert [a.name for a in source.apis()] == ["ListJobs/default/BATCH", "ListJobs/default/REAL_TIME"]
    fetched = await source.apis()[0].fetch()
    assert "workspace" not in api.requests[0].headers
    assert fetched.result.workspace == "default" and [j.name for j in fetched.result.jobs] == ["job_0001"]


async def test_each_workspace_and_job_type_is_its_own_api_with_the_header_signed() -> None:
    api = FakeJobList({WS1: [job(1), job(2, "REAL_TIME")], WS2: [job(3)]})
    source = make_source(api, workspaces=[WS1, WS2], job_types=["REAL_TIME", "BATCH"])
    names = [a.name for a in source.apis()]
    assert names == [f"ListJobs/{WS1}/REAL_TIME", f"ListJobs/{WS1}/BATCH", f"ListJobs/{WS2}/REAL_TIME",
                     f"ListJobs/{WS2}/BATCH"]
    results = {a.name: (await a.fetch()).result for a in source.apis()}
    assert [j.name for j in results[f"ListJobs/{WS1}/REAL_TIME"].jobs] == ["job_0002"]
    assert [j.name for j in results[f"ListJobs/{WS2}/BATCH"].jobs] == ["job_0003"]
    assert results[f"ListJobs/{WS2}/REAL_TIME"].jobs == ()
    for request in api.requests:
        assert request.headers["workspace"] in (WS1, WS2)
        assert "workspace" in request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


async def test_temporary_credentials_send_the_security_token_signed() -> None:
    api = FakeJobList({DEFAULT: [job(1)]})
    await make_source(api, token="sts-token").job_list(None, "BATCH")
    request = api.requests[0]
    assert request.headers["x-security-token"] == "sts-token"
    assert "x-security-token" in request.headers["authorization"]


async def test_vendor_sample_is_trimmed_and_converted_to_seconds() -> None:
    sample = {"createTime": 1680783636000, "createUser": "test_user", "jobType": "BATCH\n",
              "lastInstanceEndTime": 1682519407000, "lastInstanceStatus": " success\n", "name": " myJob ",
              "startTime": 1680783598000, "status": "SCHEDULING\n"}
    parsed = parse_job(sample, "BATCH")
    assert parsed == DataArtsJob("myJob", "BATCH", "SCHEDULING", "success", 1682519407.0, 1680783598.0)
    realtime = parse_job({"name": "rt", "jobType": "REAL_TIME", "status": "EXCEPTION", "createUser": "u",
                          "createTime": 1}, "REAL_TIME")
    assert (realtime.last_instance_status, realtime.last_instance_end, realtime.start) == ("", None, None)


@pytest.mark.parametrize("bad", [
    {"name": None}, {"name": 5}, {"status": None}, {"startTime": "abc"}, {"lastInstanceEndTime": True},
    {"lastInstanceStatus": 3},
])
async def test_a_record_with_a_bad_field_is_skipped_and_counted(bad: dict[str, Any]) -> None:
    api = FakeJobList({DEFAULT: [job(1), job(2, **bad), job(3), "not an object"]})
    fetched = await make_source(api).job_list(None, "BATCH")
    assert [j.name for j in fetched.result.jobs] == ["job_0001", "job_0003"]
    assert fetched.skipped == {"bad_field": 2} and fetched.records == 4


async def test_a_name_seen_twice_is_counted_once() -> None:
    api = FakeJobList({DEFAULT: [job(1), job(1, status="PAUSED"), job(2)]})
    fetched = await make_source(api).job_list(None, "BATCH")
    assert [(j.name, j.status) for j in fetched.result.jobs] == [("job_0001", "SCHEDULING"), ("job_0002", "SCHEDULING")]
    assert fetched.skipped == {"duplicate": 1}


def envelope(**fields: Any) -> dict[str, Any]:
    return {"total": 1, "jobs": [job(1)]} | fields


@pytest.mark.parametrize(("response", "reason"), [
    (error(401, "APIG.0301", "Incorrect IAM authentication information"), "auth"),
    (error(403, "DLF.0137", "no permission"), "auth"),
    (error(401, "APIG.0307", "The token must be updated"), "auth"),
    (error(429, "APIG.0308", "The throttling threshold has been reached"), "throttled"),
    (error(400, "APIG.0308", "throttled behind a 400"), "throttled"),
    (error(400, "DLF.0100", "The job does not exist"), "client"),
    (error(404, "APIG.0101", "The API does not exist"), "client"),
    (error(500, "DLF.0001", "internal error"), "server"),
    (error(504, "APIG.0201", "Backend timeout"), "server"),
    (httpx.Response(502, text="<html>Bad Gateway</html>"), "server"),
    (httpx.Response(401, json={"error": {"code": "APIG.0301", "message": "bad sig"}}), "auth"),
    (httpx.Response(200, text='{"total": 1, "jobs": [{"na'), "bad_response"),
    (httpx.Response(200, json=[1, 2]), "bad_response"),
    (httpx.Response(200, json={"error_code": "DLF.0815", "error_msg": "failed"}), "client"),
    (httpx.Response(200, json=envelope(total=None)), "bad_response"),
    (httpx.Response(200, json=envelope(total="1")), "bad_response"),
    (httpx.Response(200, json=envelope(total=-1)), "bad_response"),
    (httpx.Response(200, json=envelope(jobs={})), "bad_response"),
])
async def test_failures_become_poll_errors_with_a_reason(response: httpx.Response, reason: str) -> None:
    with pytest.raises(PollError) as info:
        await make_source(lambda request: response).job_list(None, "BATCH")
    assert info.value.reason == reason


async def test_request_id_and_retry_after_are_kept_on_throttling() -> None:
    response = httpx.Response(429, json={"error_code": "APIG.0308", "error_msg": "m", "request_id": "req-42"},
                              headers={"Retry-After": "60"})
    with pytest.raises(PollError) as info:
        await make_source(lambda request: response).job_list(None, "BATCH")
    assert (info.value.request_id, info.value.retry_after) == ("req-42", 60.0)
    with pytest.raises(PollError) as info:
        await make_source(lambda request: error(401, "APIG.0301")).job_list(None, "BATCH")
    assert info.value.request_id == "rid-1" and "APIG.0301" in str(info.value)


async def test_short_throttling_waits_are_retried_within_the_poll() -> None:
    api = FakeJobList({DEFAULT: [job(i) for i in range(5)]})
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, json={"error_code": "APIG.0308", "error_msg": "m"},
                                  headers={"Retry-After": "0.01"})
        return api(request)

    fetched = await make_source(flaky).job_list(None, "BATCH")
    assert len(fetched.result.jobs) == 5 and calls["n"] == 2


async def test_connection_and_timeout_failures_and_requests_are_counted_per_api() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, reason in ((refuse, "connection"), (slow, "timeout")):
        with pytest.raises(PollError) as info:
            await make_source(handler).job_list(None, "BATCH")
        assert info.value.reason == reason


async def test_a_wrong_secret_is_refused_by_the_verifier() -> None:
    api = FakeJobList({DEFAULT: [job(1)]})
    cfg = parse_config({"sources": [{"name": "dgc", "kind": "dataarts_factory", "region": "cn-north-4",
                                     "endpoint": "http://dgc.test", "project_id": PROJECT}]}, KINDS).sources[0]
    source = DataArtsFactorySource.from_config(cfg, lambda: static(AK, "wrong"), RequestCounter(),
                                               httpx.MockTransport(api))
    with pytest.raises(PollError) as info:
        await source.job_list(None, "BATCH")
    assert info.value.reason == "auth"


def test_budget_split_gives_small_lists_what_they_need_and_splits_the_rest() -> None:
    assert split_budget(100, {"a": 10, "b": 500, "c": 500}) == {"a": 10, "b": 45, "c": 45}
    assert split_budget(100, {"a": 10, "b": None}) == {"a": 10, "b": 90}
    assert split_budget(100, {"a": 500, "b": None}) == {"a": 50, "b": 50}
    assert split_budget(5000, {"a": 3, "b": 4}) == {"a": 3, "b": 4}
    assert sum(split_budget(7, {"a": 9, "b": 9, "c": 9}).values()) == 7


def render(result: DataArtsJobList, budget: int | None = None, **settings: Any) -> tuple[str, int]:
    ctx = render_context("dgc", "dataarts_factory", "cn-north-4", budget, **settings)
    families, dropped = job_list_families(ctx, result)
    return b"".join(pieces(families, openmetrics=False)).decode(), dropped


def job_list(jobs: list[DataArtsJob], job_type: str = "BATCH") -> DataArtsJobList:
    return DataArtsJobList(PROJECT, "ws1", job_type, tuple(jobs))


BASE = f'source="dgc",region="cn-north-4",project_id="{PROJECT}",workspace="ws1"'


def test_real_time_status_set_has_every_documented_status() -> None:
    jobs = [DataArtsJob("a", "REAL_TIME", "EXCEPTION", "", None, 1.0), DataArtsJob("b", "REAL_TIME", "EXCEPTION", "",
                                                                                   None, None),
            DataArtsJob("c", "REAL_TIME", "NORMAL", "", None, 2.0)]
    text, _ = render(job_list(jobs, "REAL_TIME"))
    counts = {line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("dataarts_jobs{")}
    assert counts == {"STARTING": 0, "NORMAL": 1, "EXCEPTION": 2, "STOPPING": 0, "STOPPED": 0}
    assert "dataarts_job_last_instance_status" not in text
    assert f'dataarts_job_start_timestamp_seconds{{{BASE},job_name="a"}} 1.0' in text
    assert 'job_name="b"' not in text  # no startTime, no sample


def test_batch_status_set_and_unknown_status_is_data() -> None:
    jobs = [DataArtsJob("a", "BATCH", "SCHEDULING", "success", 10.0, 1.0),
            DataArtsJob("b", "BATCH", "PAUSED", "", None, None),
            DataArtsJob("c", "BATCH", "FROZEN", "", None, None)]
    text, _ = render(job_list(jobs))
    counts = {line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("dataarts_jobs{")}
    assert counts == {"SCHEDULING": 1, "STOPPED": 0, "PAUSED": 1, "FROZEN": 1}


@pytest.mark.parametrize("current", [*LAST_INSTANCE_STATUSES, "queued"])
def test_last_instance_status_is_a_state_set(current: str) -> None:
    text, _ = render(job_list([DataArtsJob("daily_load", "BATCH", "SCHEDULING", current, 1682519407.0, 1.0)]))
    values = {line.split('status="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
              for line in text.splitlines() if line.startswith("dataarts_job_last_instance_status{")}
    expected = {s: "0" for s in LAST_INSTANCE_STATUSES} | {current: "1"}
    assert values == expected
    assert f'dataarts_job_last_instance_status{{{BASE},job_name="daily_load",status="{current}"}} 1' in text
    assert f'dataarts_job_last_instance_end_timestamp_seconds{{{BASE},job_name="daily_load"}} 1682519407.0' in text


def test_per_job_cap_keeps_failed_and_unfinished_jobs_first_within_the_budget() -> None:
    jobs = [DataArtsJob(f"ok{i}", "BATCH", "SCHEDULING", "success", 100.0 + i, None) for i in range(5)]
    jobs += [DataArtsJob("bad", "BATCH", "SCHEDULING", "fail", 1.0, None),
             DataArtsJob("slow", "BATCH", "SCHEDULING", "running", None, None)]
    text, dropped = render(job_list(jobs), budget=3)
    assert dropped == 4
    kept = {line.split('job_name="')[1].split('"')[0] for line in text.splitlines() if 'job_name="' in line}
    assert kept == {"bad", "slow", "ok4"}
    text, dropped = render(job_list(jobs), max_job_series=2)
    assert dropped == 5
    text, dropped = render(job_list(jobs), per_job_series=False)
    assert dropped == 0 and "job_name" not in text and "dataarts_jobs{" in text


async def test_one_failing_workspace_does_not_hide_the_others() -> None:
    api = FakeJobList({WS1: [job(1), job(2, "REAL_TIME", status="EXCEPTION")]})  # WS2 does not exist
    config = parse_config({"sources": [{"name": "dgc", "kind": "dataarts_factory", "region": "cn-north-4",
                                        "endpoint": "http://dgc.test", "project_id": PROJECT,
                                        "workspaces": [WS1, WS2]}]}, KINDS)
    exporter = build(config, lambda cfg: lambda: static(AK, SK), httpx.MockTransport(api))
    for target in exporter.targets:
        await exporter.poller.poll_once(target)
    text = text_of(exporter.poller.published.exposition)
    for ws, up in ((WS1, 1), (WS2, 0)):
        for jt in ("BATCH", "REAL_TIME"):
            assert value(text, "cloud_job_exporter_source_up", source="dgc", kind="dataarts_factory",
                         api=f"ListJobs/{ws}/{jt}") == up
    assert value(text, "cloud_job_exporter_poll_errors_total", source="dgc", api=f"ListJobs/{WS2}/BATCH",
                 reason="client") == 1
    assert value(text, "cloud_job_exporter_api_requests_total", source="dgc", api=f"ListJobs/{WS1}/BATCH",
                 code="200") == 1
    assert (f'dataarts_jobs{{source="dgc",region="cn-north-4",project_id="{PROJECT}",workspace="{WS1}",'
            'job_type="REAL_TIME",status="EXCEPTION"} 1') in text
    assert f'workspace="{WS2}"' not in text.split("# HELP cloud_job_exporter")[0]
    for source in exporter.sources:
        await source.aclose()


def config_of(**fields: Any) -> Any:
    return parse_config({"sources": [{"name": "dgc", "kind": "dataarts_factory", "region": "cn-north-4",
                                      "project_id": PROJECT, **fields}]}, KINDS).sources[0]


def test_config_defaults_endpoint_and_credential_variables() -> None:
    from exporter.config import credential_provider

    cfg = config_of()
    assert (cfg.interval, cfg.workspaces, cfg.job_types) == (60.0, [], ["BATCH", "REAL_TIME"])
    assert cfg.default_endpoint() == "https://dayu-dlf.cn-north-4.myhuaweicloud.com"
    assert config_of(region="cn-east-4").default_endpoint() == "https://dayu.cn-east-4.myhuaweicloud.com"
    assert config_of(workspaces=[f" {WS1} ", WS1], job_types=["REAL_TIME", "REAL_TIME"]).workspaces == [WS1]
    assert type(cfg).credential_env == ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")
    assert credential_provider(cfg)._key_id.env == "HUAWEICLOUD_SDK_AK"


@pytest.mark.parametrize(("fields", "message"), [
    ({"project_id": None}, "sources[0].project_id: "),
    ({"project_id": "a/b"}, "sources[0].project_id: String should match pattern"),
    ({"workspaces": ["x y"]}, "sources[0].workspaces[0]: String should match pattern"),
    ({"job_types": ["batch"]}, "sources[0].job_types[0]: Input should be 'BATCH' or 'REAL_TIME'"),
    ({"job_types": []}, "sources[0].job_types: expected BATCH, REAL_TIME or both"),
])
def test_config_errors_name_the_key(fields: dict[str, Any], message: str) -> None:
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as info:
        config_of(**fields)
    assert str(info.value).startswith(message)


async def test_an_offset_read_as_a_record_count_is_warned_about() -> None:
    api = FakeJobList({DEFAULT: [job(i) for i in range(250)]})

    def records_not_pages(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json={"total": 250, "jobs": api.jobs[DEFAULT][offset:offset + 100]})

    with structlog.testing.capture_logs() as logs:
        fetched = await make_source(records_not_pages).job_list(None, "BATCH")
    assert len(fetched.result.jobs) == 102 and fetched.skipped == {"duplicate": 198} and fetched.records == 300
    warning, = [e for e in logs if e["event"] == "job names repeat across pages"]
    assert (warning["api"], warning["duplicates"], warning["records"]) == ("ListJobs/default/BATCH", 198, 300)


async def test_a_failing_page_cancels_the_pages_still_queued() -> None:
    """Page 0 says 6 pages; page 1 fails while pages 2 to 5 hang (up to the concurrency) or wait for a slot: none
    of them outlives the failed poll, and none is sent after it."""
    hang = Hang()
    sent: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        sent.append(offset)
        if offset == 0:
            return httpx.Response(200, json={"total": 600, "jobs": [job(i) for i in range(100)]})
        if offset == 1:
            await asyncio.sleep(0.01)
            return error(500, "DLF.0001", "internal error")
        await hang()
        return httpx.Response(200, json={"total": 600, "jobs": []})

    with pytest.raises(PollError, match=r"DLF\.0001"):
        await make_source(handler, max_concurrency=3).job_list(None, "BATCH")
    assert hang.cancelled == hang.entered >= 2  # each hanging request was cancelled with the poll
    before = sorted(sent)
    assert 5 not in before  # at most 3 at once: page 5 was still waiting for a slot
    hang.release.set()
    await asyncio.sleep(0.05)
    assert sorted(sent) == before  # and it never gets one
