"""The EMR Serverless Spark source against an in-process ListJobRuns that pages and filters as the vendor documents.

The query serialisation is checked against the request the vendor SDK signed (vector V6 of
shared/api-docs/signing-vectors); paging, the ended-runs window, units and rendering against a fake API.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.auth.aliyun import AliyunAuth
from exporter.config import ConfigError, parse_config
from exporter.contract import PollError, RequestCounter
from exporter.credentials import static
from exporter.exposition.format import pieces
from exporter.sources import KINDS
from exporter.sources.alibaba import AcsCaller
from exporter.sources.emr_serverless_spark.records import (
    ENDED_CU_HOURS,
    ENDED_DURATION,
    ENDED_MEMORY_BYTE_SECONDS,
    ENDED_RUNS,
    ENDED_VCORE_SECONDS,
)
from exporter.sources.emr_serverless_spark.render import job_run_families
from exporter.sources.emr_serverless_spark.source import ACTIVE_STATES, EmrServerlessSparkSource
from tests.helpers import Hang, render_context, rendering, sender, signing_vectors_dir, text_of

NOW = 1_700_000_000.0
MS = 1000
ACTIVE = set(ACTIVE_STATES)
MB = 1024 * 1024


def _vector_v6() -> dict[str, Any]:
    # V6 in ali_vectors_output.txt: EMR Serverless Spark ListJobRuns
    return json.loads((signing_vectors_dir() / "ali_vectors.json").read_text())[5]


def run(i: int, state: str = "Success", *, ended: float | None = None, submitted: float | None = None,
        **fields: Any) -> dict[str, Any]:
    """Returns a ListJobRuns record shaped like the vendor sample, times in milliseconds."""
    submitted = NOW - 600 if submitted is None else submitted
    record = {
        "workspaceId": "w-1", "jobRunId": f"jr-{i:05d}", "name": f"job-{i % 3}", "state": state,
        "submitTime": int(submitted * MS), "codeType": "SQL", "creator": "150978934701", "resourceQueueId": "dev_queue",
        "vcoreSeconds": 100, "mbSeconds": 2048, "cuHours": 0.25, **fields,
    }
    if ended is not None:
        record["endTime"] = int(ended * MS)
    return record


class FakeListJobRuns:
    """ListJobRuns as documented: maxResults at most 100, a nextToken cursor, filters as compact JSON strings."""

    def __init__(self, runs: list[dict[str, Any]] | None = None) -> None:
        self.runs = runs or []
        self.requests: list[httpx.Request] = []
        self.fail: httpx.Response | None = None
        self.token: Any = None  # a fixed nextToken to answer with (a broken server), instead of the cursor

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["x-acs-action"] == "ListJobRuns"
        assert request.headers["x-acs-version"] == "2023-08-08"
        assert request.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=AKID,")
        if self.fail is not None:
            return self.fail
        params = request.url.params
        size = int(params["maxResults"])
        if not 1 <= size <= 100:
            return httpx.Response(400, json={"requestId": "r", "code": "InvalidParameter", "message": "maxResults"})
        workspace = request.url.path.split("/")[4]
        runs = [r for r in self.runs if r["workspaceId"] == workspace]
        if "states" in params:
            states = json.loads(params["states"])
            runs = [r for r in runs if r["state"] in states]
        if "endTime" in params:
            window = json.loads(params["endTime"])
            runs = [r for r in runs if "endTime" in r and window["startTime"] <= r["endTime"] <= window["endTime"]]
        if "resourceQueueId" in params:
            runs = [r for r in runs if r["resourceQueueId"] == params["resourceQueueId"]]
        token = params.get("nextToken", "")
        start = int(token) if token.isdigit() else 0  # an unknown token reads from the start, as a broken cursor would
        page = runs[start:start + size]
        token = str(start + size) if start + size < len(runs) else ""
        body = {"jobRuns": page, "requestId": "r", "nextToken": token if self.token is None else self.token,
                "maxResults": size, "totalCount": len(runs)}
        return httpx.Response(200, json=body)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(**overrides: Any):
    return parse_config({"sources": [{"name": "emr", "kind": "emr_serverless_spark", "region": "cn-hangzhou",
                                      "endpoint": "http://emr.test", "workspaces": ["w-1"], **overrides}]},
                        KINDS).sources[0]


def make_source(api: Any, clock: Clock | None = None, **overrides: Any) -> EmrServerlessSparkSource:
    source = EmrServerlessSparkSource.from_config(config(**overrides), lambda: static("AKID", "secret"),
                                                  RequestCounter(), httpx.MockTransport(api))
    source._clock = clock or Clock()
    for ended in source._ended.values():
        ended.seen._clock = source._clock
    return source


def requests_of(api: FakeListJobRuns, kind: str) -> list[httpx.QueryParams]:
    return [r.url.params for r in api.requests if kind in r.url.params]


# ---- query serialisation ----------------------------------------------------------------------------------------


async def test_query_matches_the_vendor_sdk_byte_for_byte() -> None:
    """V6: the SDK's ListJobRuns with startTime, states and tags; the same request built by the source is signed to
    the same canonical query and the same Authorization header."""
    vector = _vector_v6()
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"jobRuns": [], "requestId": "r", "nextToken": "", "totalCount": 0})

    auth = AliyunAuth(lambda: static("YourAccessKeyId", "YourAccessKeySecret"),
                      clock=lambda: datetime(2023, 10, 26, 10, 22, 32, tzinfo=UTC),
                      nonce=lambda: "3156853299f313e23d1673dc12e1703d")
    passed_through = ("user-agent", "accept", "x-acs-credentials-provider")  # the SDK's own; the signer adds the rest
    headers = {k: v for k, v in vector["headers"].items() if k in passed_through}
    client = httpx.AsyncClient(base_url="https://emr-serverless-spark.cn-hangzhou.aliyuncs.com", auth=auth,
                               headers=headers, transport=httpx.MockTransport(handler))
    caller = AcsCaller(sender(client), "2023-08-08", enveloped=False)
    source = EmrServerlessSparkSource(config(workspaces=["w-1234abcd"]), caller)
    query = source.query(token="1", max_results=20, states=["Running", "Submitted"],
                         startTime={"startTime": 1683612946000, "endTime": 1683785928000},
                         tags=[{"key": "env", "value": "prod"}])
    await caller.call("ListJobRuns", "GET", "/api/v1/workspaces/w-1234abcd/jobRuns", query=query)
    await caller.aclose()

    request = sent[0]
    assert str(request.url) == vector["url"]
    assert request.url.query.decode() == vector["canonical_request"].split("\n")[2]
    assert request.headers["authorization"] == vector["headers"]["Authorization"]


async def test_each_poll_lists_active_states_and_an_end_time_window() -> None:
    api = FakeListJobRuns()
    await make_source(api).poll("w-1")
    active, = requests_of(api, "states")
    ended, = requests_of(api, "endTime")
    assert active["states"] == '["Submitted","Pending","Running","Cancelling"]'
    assert ended["endTime"] == '{"endTime":1700000000000,"startTime":1699999940000}'  # the first window: the overlap
    for params in (active, ended):
        assert (params["maxResults"], params["regionId"]) == ("100", "cn-hangzhou")
        assert "resourceQueueId" not in params and "nextToken" not in params
    assert [r.url.path for r in api.requests] == ["/api/v1/workspaces/w-1/jobRuns"] * 2


async def test_one_queue_is_filtered_by_the_api_several_here() -> None:
    runs = [run(1, "Running", resourceQueueId="a"), run(2, "Running", resourceQueueId="b"),
            run(3, "Running", resourceQueueId="c")]
    api = FakeListJobRuns(runs)
    one = await make_source(api, queues=["a"]).poll("w-1")
    assert {p["resourceQueueId"] for p in requests_of(api, "maxResults")} == {"a"}
    assert [r.queue for r in one.result.active] == ["a"]
    api.requests.clear()
    two = await make_source(api, queues=["a", "c"]).poll("w-1")
    assert not any("resourceQueueId" in p for p in requests_of(api, "maxResults"))
    assert sorted(r.queue for r in two.result.active) == ["a", "c"]


# ---- paging -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "pages"), [(0, 1), (1, 1), (100, 1), (101, 2), (250, 3)])
async def test_every_page_is_read(count: int, pages: int) -> None:
    api = FakeListJobRuns([run(i, "Running") for i in range(count)])
    fetched = await make_source(api).poll("w-1")
    assert sorted(r.job_run_id for r in fetched.result.active) == [f"jr-{i:05d}" for i in range(count)]
    tokens = [p.get("nextToken") for p in requests_of(api, "states")]
    assert tokens == [None, *(str(100 * n) for n in range(1, pages))]
    assert fetched.pages == pages + 1  # and the one page of the (empty) ended-runs window


@pytest.mark.parametrize("token", ["", None])
async def test_an_empty_or_absent_token_ends_the_listing(token: Any) -> None:
    api = FakeListJobRuns([run(1, "Running")])
    api.token = token
    fetched = await make_source(api).poll("w-1")
    assert len(fetched.result.active) == 1 and len(api.requests) == 2


async def test_a_repeated_token_stops_the_listing(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeListJobRuns([run(i, "Running") for i in range(150)])
    api.token = "same"  # a server that keeps answering with the same cursor
    fetched = await make_source(api).poll("w-1")
    assert [p.get("nextToken") for p in requests_of(api, "states")] == [None, "same"]
    assert len(fetched.result.active) == 100  # both pages were the first page: de-duplicated
    assert fetched.skipped == {"duplicate": 100}
    assert "repeated page token" in capsys.readouterr().out


async def test_paging_stops_at_max_pages() -> None:
    api = FakeListJobRuns([run(i, "Running") for i in range(1000)])
    fetched = await make_source(api, max_pages=3).poll("w-1")
    assert len(requests_of(api, "states")) == 3
    assert len(fetched.result.active) == 300
    assert fetched.skipped == {"page_limit": 700}


# ---- records ----------------------------------------------------------------------------------------------------


async def test_units_trimming_and_unknown_states() -> None:
    sample = run(1, "Running\n", codeType="SQL\n", name=" nightly ", submitTime=1684119314000, vcoreSeconds=8236,
                 mbSeconds=33030784, cuHours=2.059)
    odd = run(2, "Suspended", submitted=NOW - 5)  # a state the docs do not list: data, not an error
    api = FakeListJobRuns([sample, odd])
    api_states = api.__call__

    def any_state(request: httpx.Request) -> httpx.Response:  # a server that ignores the states filter
        if "states" in request.url.params:
            request.url = request.url.copy_remove_param("states")
        return api_states(request)

    fetched = await make_source(any_state).poll("w-1")
    by_id = {r.job_run_id: r for r in fetched.result.active}
    first = by_id["jr-00001"]
    assert (first.state, first.code_type, first.job_name) == ("Running", "SQL", "nightly")
    assert first.submitted_at == 1684119314.0
    assert first.memory_byte_seconds == 33030784 * MB and first.vcore_seconds == 8236 and first.cu_hours == 2.059
    assert first.ended_at is None
    assert by_id["jr-00002"].state == "Suspended"


async def test_bad_records_are_skipped_and_counted() -> None:
    api = FakeListJobRuns([run(1, "Running"), run(2, "Running", vcoreSeconds="abc"), run(3, "Running", jobRunId=""),
                           run(4, "Running", mbSeconds=-1)])
    fetched = await make_source(api).poll("w-1")
    assert [r.job_run_id for r in fetched.result.active] == ["jr-00001"]
    assert fetched.skipped == {"bad_field": 3}


# ---- ended runs: once each, across overlapping windows, failures and a restart ---------------------------------


def counts(fetched) -> dict[tuple[str, ...], float]:
    return dict(fetched.result.ended.counters.get(ENDED_RUNS, {}))


async def test_ended_runs_are_counted_once_across_windows_failures_and_a_restart() -> None:
    clock = Clock()
    api = FakeListJobRuns([run(1, ended=NOW - 10)])  # ended before the first poll
    source = make_source(api, clock, interval="30s")
    first = await source.poll("w-1")
    assert counts(first) == {}  # the first window only marks what already ended as seen

    clock.now += 30
    api.runs += [run(2, "Failed", ended=NOW + 5), run(3, "Running", ended=NOW + 6)]  # 3 says ended but is active
    second = await source.poll("w-1")
    window = json.loads(requests_of(api, "endTime")[-1]["endTime"])
    assert window == {"startTime": int((NOW - 60) * MS), "endTime": int((NOW + 30) * MS)}  # overlaps the first
    assert counts(second) == {("dev_queue", "Failed", "SQL"): 1}

    clock.now += 30
    api.runs[2]["state"] = "Cancelled"  # now it has ended; still inside the overlapping window
    api.runs.append(run(4, ended=NOW + 40))
    third = await source.poll("w-1")
    assert counts(third) == {("dev_queue", "Failed", "SQL"): 1, ("dev_queue", "Cancelled", "SQL"): 1,
                             ("dev_queue", "Success", "SQL"): 1}

    clock.now += 30  # a failed poll changes nothing...
    api.runs.append(run(5, ended=NOW + 80))
    api.fail = httpx.Response(503, json={"RequestId": "r", "Code": "ServiceUnavailable", "Message": "down"})
    with pytest.raises(PollError):
        await source.poll("w-1")
    api.fail = None
    clock.now += 300  # ...and the next window reaches back to the last good one, so run 5 is not missed
    fourth = await source.poll("w-1")
    assert json.loads(requests_of(api, "endTime")[-1]["endTime"])["startTime"] == int((NOW + 60 - 60) * MS)
    assert sum(counts(fourth).values()) == 4

    clock.now += 30  # a restart: a new process counts from zero and does not count again what ended before it
    restarted = make_source(api, clock, interval="30s")
    assert counts(await restarted.poll("w-1")) == {}
    clock.now += 30
    api.runs.append(run(6, ended=clock.now - 20))
    after = await restarted.poll("w-1")
    assert counts(after) == {("dev_queue", "Success", "SQL"): 1}


async def test_the_window_reaches_back_at_most_lookback() -> None:
    clock = Clock()
    api = FakeListJobRuns()
    source = make_source(api, clock, interval="1m", lookback="10m")
    await source.poll("w-1")
    clock.now += 3600  # an hour of failed polls (or none)
    await source.poll("w-1")
    window = json.loads(requests_of(api, "endTime")[-1]["endTime"])
    assert window["startTime"] == int((clock.now - 600) * MS)


async def test_ended_run_sums_and_durations() -> None:
    clock = Clock()
    api = FakeListJobRuns()
    source = make_source(api, clock)
    await source.poll("w-1")
    clock.now += 30
    api.runs = [run(1, ended=NOW + 10, submitted=NOW - 50, vcoreSeconds=8236, mbSeconds=33030784, cuHours=2.059),
                run(2, ended=NOW + 20, submitted=NOW + 20 - 4000, vcoreSeconds=None, mbSeconds=None, cuHours=None),
                run(3, ended=NOW + 20, submitTime=None)]
    ended = (await source.poll("w-1")).result.ended
    assert ended.counters[ENDED_VCORE_SECONDS] == {("dev_queue",): 8236 + 100}
    assert ended.counters[ENDED_MEMORY_BYTE_SECONDS] == {("dev_queue",): (33030784 + 2048) * MB}
    assert ended.counters[ENDED_CU_HOURS] == {("dev_queue",): pytest.approx(2.309)}
    histogram = ended.histograms[ENDED_DURATION][("dev_queue", "Success", "SQL")]
    assert sum(histogram.counts) == 2 and histogram.total == 60 + 4000  # run 3 has no submitTime: counted, not timed


async def test_a_failed_page_counts_nothing() -> None:
    clock = Clock()
    api = FakeListJobRuns([])
    source = make_source(api, clock)
    await source.poll("w-1")
    clock.now += 30
    api.runs = [run(i, ended=NOW + 10) for i in range(150)]
    calls = {"n": 0}
    inner = api.__call__

    def second_page_fails(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("nextToken"):
            calls["n"] += 1
            return httpx.Response(500, json={"RequestId": "r", "Code": "InternalError", "Message": "boom"})
        return inner(request)

    source._caller._sender._client._transport = httpx.MockTransport(second_page_fails)
    with pytest.raises(PollError, match="InternalError"):
        await source.poll("w-1")
    source._caller._sender._client._transport = httpx.MockTransport(api)
    assert sum(counts(await source.poll("w-1")).values()) == 150  # none was marked seen by the failed poll


# ---- one API per workspace, and rendering ------------------------------------------------------------------------


def test_one_api_per_workspace() -> None:
    source = make_source(FakeListJobRuns(), workspaces=["w-1", "w-2"], interval="45s")
    assert [(a.name, a.interval) for a in source.apis()] == [("ListJobRuns/w-1", 45), ("ListJobRuns/w-2", 45)]


def _render(fetched, **ctx: Any) -> str:
    families, dropped = job_run_families(render_context("emr", "emr_serverless_spark", "cn-hangzhou", **ctx),
                                         fetched.result)
    return b"".join(pieces(families, openmetrics=False)).decode(), dropped


async def test_rendered_families() -> None:
    clock = Clock()
    api = FakeListJobRuns([run(1, "Pending", submitted=NOW - 100), run(2, "Running", codeType="JAR\n")])
    source = make_source(api, clock)
    await source.poll("w-1")
    clock.now += 30
    api.runs.append(run(3, "Failed", ended=NOW + 10, submitted=NOW - 50))
    text, dropped = _render(await source.poll("w-1"), owner_label="hash")
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    base = {"source": "emr", "region": "cn-hangzhou", "workspace": "w-1", "queue": "dev_queue"}

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset({**base, **labels}.items()))]

    assert value("emr_spark_job_runs", state="Pending", code_type="SQL") == 1
    assert value("emr_spark_job_runs", state="Running", code_type="JAR") == 1
    assert value("emr_spark_job_runs_finished_total", state="Failed", code_type="SQL") == 1
    assert value("emr_spark_job_run_duration_seconds_count", state="Failed", code_type="SQL") == 1
    assert value("emr_spark_job_run_duration_seconds_sum", state="Failed", code_type="SQL") == 60
    assert value("emr_spark_job_run_vcore_seconds_total") == 100
    assert value("emr_spark_job_run_memory_byte_seconds_total") == 2048 * MB
    assert value("emr_spark_job_run_cu_seconds_total") == 0.25 * 3600
    per_run = [(dict(k), v) for (n, k), v in samples.items() if n == "emr_spark_job_run_submitted_timestamp_seconds"]
    assert len(per_run) == 2 and dropped == 0
    labels, submitted = next(p for p in per_run if p[0]["job_run_id"] == "jr-00001")
    assert submitted == NOW - 100
    assert labels["state"] == "Pending" and labels["job_name"] == "job-1"
    assert labels["creator"] != "150978934701" and len(labels["creator"]) == 16  # owner_label: hash


async def test_per_run_series_are_capped_per_workspace_share() -> None:
    """The source's max_job_series is split over its workspaces: one not polled yet claims an equal share, one with
    fewer runs than its share leaves the rest to the others."""
    from exporter.contract import SourceInfo

    api = FakeListJobRuns([run(i, "Running", vcoreSeconds=i) for i in range(10)])  # in w-1 only
    source = make_source(api, workspaces=["w-1", "w-2"], max_job_series=8)
    store, renderer = rendering({a.name: a for a in source.apis()},
                                SourceInfo("emr", "emr_serverless_spark", "cn-hangzhou", max_job_series=8))

    def shown() -> tuple[set[str], float]:
        text = text_of(renderer.render(store.view(NOW)))
        metrics = {f.name: f.samples for f in text_string_to_metric_families(text)}
        kept = {s.labels["job_run_id"] for s in metrics["emr_spark_job_run_submitted_timestamp_seconds"]}
        return kept, metrics["cloud_job_exporter_job_series_dropped"][0].value

    store.record_success(("emr", "ListJobRuns/w-1"), await source.poll("w-1"), end=NOW, duration=0.1)
    assert shown() == ({"jr-00009", "jr-00008", "jr-00007", "jr-00006"}, 6)  # the largest vCore use, 4 of 8
    store.record_success(("emr", "ListJobRuns/w-2"), await source.poll("w-2"), end=NOW, duration=0.1)
    kept, dropped = shown()
    assert len(kept) == 8 and dropped == 2, "w-2 has no active run: w-1 gets the whole cap"
    fetched = await source.poll("w-1")
    assert "job_run_id" not in _render(fetched, per_job_series=False)[0]


async def test_requests_are_counted_under_the_workspace_api_and_sent_as_the_action() -> None:
    api = FakeListJobRuns([run(i, "Running", workspaceId=ws) for i in range(3) for ws in ("w-1", "w-2")])
    counter = RequestCounter()
    source = EmrServerlessSparkSource.from_config(config(workspaces=["w-1", "w-2"]), lambda: static("AKID", "secret"),
                                                  counter, httpx.MockTransport(api))
    for ws in ("w-1", "w-2"):
        await source.poll(ws)
    assert dict(counter.counts) == {("ListJobRuns/w-1", "200"): 2, ("ListJobRuns/w-2", "200"): 2}
    assert {r.headers["x-acs-action"] for r in api.requests} == {"ListJobRuns"}  # the fake checks it on each


async def test_the_caller_counts_under_the_action_unless_told_otherwise() -> None:
    counter = RequestCounter()
    client = httpx.AsyncClient(base_url="http://emr.test", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"requestId": "r", "x-action": request.headers["x-acs-action"]})))
    caller = AcsCaller(sender(client, counter), "2023-08-08", enveloped=False)
    assert (await caller.call("ListJobRuns", "GET", "/a"))["x-action"] == "ListJobRuns"
    assert (await caller.call("ListJobRuns", "GET", "/a", api="ListJobRuns/w-1"))["x-action"] == "ListJobRuns"
    await caller.aclose()
    assert dict(counter.counts) == {("ListJobRuns", "200"): 1, ("ListJobRuns/w-1", "200"): 1}


async def test_a_failing_listing_cancels_the_other() -> None:
    """The active listing fails on its second page while the ended listing's page hangs: the hanging request is
    cancelled with the poll, and the ended listing sends nothing after it."""
    api = FakeListJobRuns([run(i, "Running") for i in range(150)])
    hang = Hang()
    sent: list[httpx.QueryParams] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.params)
        if "endTime" in request.url.params:
            await hang()
            return api(request)
        if request.url.params.get("nextToken"):
            return httpx.Response(500, json={"RequestId": "r", "Code": "InternalError", "Message": "boom"})
        return api(request)

    source = make_source(handler)
    with pytest.raises(PollError, match="InternalError"):
        await source.poll("w-1")
    assert (hang.entered, hang.cancelled) == (1, 1)
    hang.release.set()
    await asyncio.sleep(0.05)
    assert len(sent) == 3  # active pages 1 and 2, ended page 1: nothing after the failure


async def test_ended_run_families_are_cumulative_and_stay_while_the_data_is_stale() -> None:
    """The ended-run counts are counters and a histogram (they count what ended since start-up), the active runs
    gauges: when the workspace's data goes stale, the renderer keeps the former and drops the latter."""
    from exporter.contract import SourceInfo

    clock = Clock()
    api = FakeListJobRuns([run(1, "Running")])
    source = make_source(api, clock)
    await source.poll("w-1")
    clock.now += 30
    api.runs.append(run(2, "Failed", ended=NOW + 10, submitted=NOW - 50))
    fetched = await source.poll("w-1")
    ctx = render_context("emr", "emr_serverless_spark", "cn-hangzhou")
    kinds = {f.name: f.kind for f in job_run_families(ctx, fetched.result)[0]}
    assert kinds == {
        "emr_spark_job_runs": "gauge", "emr_spark_job_run_submitted_timestamp_seconds": "gauge",
        "emr_spark_job_runs_finished_total": "counter", "emr_spark_job_run_duration_seconds": "histogram",
        "emr_spark_job_run_vcore_seconds_total": "counter", "emr_spark_job_run_memory_byte_seconds_total": "counter",
        "emr_spark_job_run_cu_seconds_total": "counter",
    }

    store, renderer = rendering({a.name: a for a in source.apis()}, SourceInfo("emr", "emr_serverless_spark",
                                                                               "cn-hangzhou"))
    store.record_success(("emr", "ListJobRuns/w-1"), fetched, end=clock.now, duration=0.1)
    fresh = {f.name for f in text_string_to_metric_families(text_of(renderer.render(store.view(clock.now))))}
    stale = {f.name for f in text_string_to_metric_families(text_of(renderer.render(store.view(clock.now + 91))))}
    cumulative = {"emr_spark_job_runs_finished", "emr_spark_job_run_duration_seconds",
                  "emr_spark_job_run_vcore_seconds", "emr_spark_job_run_memory_byte_seconds",
                  "emr_spark_job_run_cu_seconds"}  # as the parser names counter families: without `_total`
    present = {"emr_spark_job_runs", "emr_spark_job_run_submitted_timestamp_seconds"}
    assert cumulative | present <= fresh
    assert cumulative <= stale and not present & stale


async def test_the_duration_buckets_are_configurable() -> None:
    clock = Clock()
    api = FakeListJobRuns([run(1, "Running")])
    source = make_source(api, clock, duration_buckets=[60, 600])
    await source.poll("w-1")
    clock.now += 30
    api.runs.append(run(2, "Failed", ended=NOW + 10, submitted=NOW - 50))
    text, _ = _render(await source.poll("w-1"))
    bounds = [s.labels["le"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "emr_spark_job_run_duration_seconds_bucket"]
    assert bounds == ["60.0", "600.0", "+Inf"]
    with pytest.raises(ConfigError, match=r"duration_buckets: .*strictly increasing"):
        config(duration_buckets=[600, 60])
