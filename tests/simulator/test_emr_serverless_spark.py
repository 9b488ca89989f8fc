"""The EMR Serverless Spark simulator over real HTTP on 127.0.0.1, and the exporter's EMR source against it.

The simulator: paging with cursor tokens, each documented filter, failed runs with a reason, the gateway's signature
checks, runs that move through their states as the clock moves, and the official SDK as a client. The source: every
failure mode (one workspace failing alone), ended runs counted once over time, and `promtool check metrics` on the
demo's combined exposition.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog

from exporter.auth.aliyun import AliyunAuth
from exporter.config import parse_config
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.poller import Target
from exporter.runtime import Exporter, build
from exporter.simulator import Simulator
from exporter.simulator.emr_serverless_spark import WORKSPACES
from exporter.simulator.run import Endpoint, run_in_thread
from exporter.sources import KINDS
from tests.helpers import ACS_FAULTS, KEY_ID, SECRET, START, FakeClock, body, samples, text_of

WS, WS2 = WORKSPACES
OPERATION = {"x-acs-action": "ListJobRuns", "x-acs-version": "2023-08-08"}
ACTIVE = {"Submitted", "Pending", "Running", "Cancelling"}



@dataclass
class Api:
    """A signed client of one served simulator."""

    sim: Simulator
    endpoint: Endpoint
    client: httpx.Client
    clock: FakeClock

    def list(self, workspace: str = WS, **params: Any) -> httpx.Response:
        compact = {k: json.dumps(v, separators=(",", ":")) for k, v in params.items() if isinstance(v, list | dict)}
        query = {**params, **compact}
        return self.client.get(f"/api/v1/workspaces/{workspace}/jobRuns", params=query, headers=OPERATION)

    def all(self, workspace: str = WS, **params: Any) -> list[dict[str, Any]]:
        """Returns every page from the first (or from `nextToken`, when given)."""
        runs, token = [], params.pop("nextToken", None)
        while True:
            body = self.list(workspace, maxResults=100, **params, **({"nextToken": token} if token else {})).json()
            runs += body["jobRuns"]
            token = body["nextToken"]
            if not token:
                return runs


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(clock: FakeClock) -> Iterator[Api]:
    with ExitStack() as stack:
        sim = Simulator({KEY_ID: SECRET}, seed=11, clock=clock)
        endpoint = stack.enter_context(run_in_thread(sim))
        auth = AliyunAuth(lambda: static(KEY_ID, SECRET), clock=clock.as_datetime)
        client = stack.enter_context(httpx.Client(base_url=endpoint.url, auth=auth))
        yield Api(sim, endpoint, client, clock)


# ---- the simulated API ----------------------------------------------------------------------------------------------


def test_pages_cover_every_run_once_newest_first(api: Api) -> None:
    first = api.list()
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"jobRuns", "requestId", "nextToken", "maxResults", "totalCount"}
    assert body["maxResults"] == 20 and len(body["jobRuns"]) == 20  # the default page
    runs = api.all()
    assert len(runs) == body["totalCount"] > 1000
    assert len({r["jobRunId"] for r in runs}) == len(runs)
    assert [r["submitTime"] for r in runs] == sorted((r["submitTime"] for r in runs), reverse=True)
    assert api.list(maxResults=101).json()["code"] == "InvalidParameter"
    bad = api.list(nextToken="not-a-token")
    assert (bad.status_code, bad.json()["code"]) == (400, "InvalidParameter")


def test_records_have_the_documented_fields_queues_code_types_and_reasons(api: Api) -> None:
    runs = api.all()
    assert {r["resourceQueueId"] for r in runs} == {"root_queue", "dev_queue", "etl_queue"}
    assert {r["codeType"].strip() for r in runs} == {"SQL", "JAR", "PYTHON"}
    assert ACTIVE & {r["state"] for r in runs} and {"Success", "Failed", "Cancelled"} <= {r["state"] for r in runs}
    for r in runs:
        assert r["workspaceId"] == WS and r["jobRunId"].startswith("jr-")
        assert "jobDriver" not in r and "configurationOverrides" not in r  # not returned by ListJobRuns
        if r["state"] in ("Failed", "Cancelled", "CancelFailed"):
            assert r["stateChangeReason"]["code"] and r["stateChangeReason"]["message"]
        if r["state"] not in ACTIVE:
            assert r["endTime"] >= r["submitTime"] and r["vcoreSeconds"] >= 0 and r["mbSeconds"] >= r["vcoreSeconds"]


def test_filters_as_documented(api: Api) -> None:
    runs = api.all()
    now_ms = int(START * 1000)
    active = api.all(states=["Submitted", "Pending", "Running", "Cancelling"])
    assert {r["jobRunId"] for r in active} == {r["jobRunId"] for r in runs if r["state"] in ACTIVE}
    window = {"startTime": now_ms - 600_000, "endTime": now_ms}
    ended = api.all(endTime=window)
    assert {r["jobRunId"] for r in ended} == {
        r["jobRunId"] for r in runs if "endTime" in r and window["startTime"] <= r["endTime"] <= window["endTime"]}
    assert ended
    submitted = api.all(startTime={"startTime": now_ms - 300_000, "endTime": now_ms - 60_000})
    assert submitted and all(now_ms - 300_000 <= r["submitTime"] <= now_ms - 60_000 for r in submitted)
    assert {r["resourceQueueId"] for r in api.all(resourceQueueId="dev_queue")} == {"dev_queue"}
    assert all("etl" in r["name"] for r in api.all(name="etl"))
    workflow = next(r for r in runs if r["tags"])
    tagged = api.all(tags=workflow["tags"])
    assert workflow["jobRunId"] in {r["jobRunId"] for r in tagged}
    assert all(r["tags"] == workflow["tags"] for r in tagged)
    assert all(not r["tags"] for r in api.all(isWorkflow="false"))
    assert [r["jobRunId"] for r in api.all(jobRunId=runs[5]["jobRunId"])] == [runs[5]["jobRunId"]]
    bad = api.list(states="Running")  # not the JSON array the SDK sends
    assert (bad.status_code, bad.json()["code"]) == (400, "InvalidParameter")


def test_a_cursor_skips_nothing_when_runs_arrive_between_pages(api: Api) -> None:
    body = api.list(maxResults=50).json()
    api.sim.emr.control({"submit": {"workspace": WS, "count": 5}})  # newer than every listed run
    rest = api.all(nextToken=body["nextToken"])
    assert len(body["jobRuns"]) + len(rest) == body["totalCount"]


def test_unknown_workspace_and_signature_checks(api: Api) -> None:
    missing = api.list("w-0000000000000000")
    assert (missing.status_code, missing.json()["code"]) == (404, "WorkspaceNotFound")
    api.client.auth = AliyunAuth(lambda: static(KEY_ID, "wrong"), clock=api.clock.as_datetime)
    refused = api.list()
    assert (refused.status_code, refused.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert set(refused.json()) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_a_run_moves_through_its_states_with_the_clock(api: Api) -> None:
    api.sim.emr.control({"submit": {"workspace": WS2, "outcome": "Failed", "wait_seconds": 30, "run_seconds": 60,
                                    "queue": "etl_queue", "code_type": "PYTHON"}})
    run_id = api.sim.emr.runs(WS2, START)[-1].job_run_id  # the one just submitted

    def ours() -> dict[str, Any]:
        (run,) = api.all(WS2, jobRunId=run_id)
        return run

    run = ours()
    assert (run["resourceQueueId"], run["codeType"]) == ("etl_queue", "PYTHON")
    assert run["state"] == "Submitted" and "endTime" not in run and run["vcoreSeconds"] == 0
    api.clock.now += 10
    assert ours()["state"] == "Pending"
    api.clock.now += 50
    running = ours()
    assert running["state"] == "Running" and running["vcoreSeconds"] > 0
    api.clock.now += 60
    failed = ours()
    assert failed["state"] == "Failed" and failed["stateChangeReason"]["code"]
    assert failed["endTime"] - failed["submitTime"] == 90_000


def test_unknown_outcomes_are_served_as_they_are(api: Api) -> None:
    api.sim.emr.control({"submit": {"workspace": WS, "outcome": "Suspended", "run_seconds": 1}})
    api.clock.now += 5
    assert "Suspended" in {r["state"] for r in api.all()}


def test_same_seed_and_clock_give_the_same_runs(clock: FakeClock) -> None:
    a = Simulator({KEY_ID: SECRET}, seed=5, clock=clock).emr.runs(WS, START)
    b = Simulator({KEY_ID: SECRET}, seed=5, clock=clock).emr.runs(WS, START)
    assert [r.record(START) for r in a] == [r.record(START) for r in b]


def test_the_official_sdk_is_accepted_and_parses_the_answers() -> None:
    from alibabacloud_emr_serverless_spark20230808 import models
    from alibabacloud_emr_serverless_spark20230808.client import Client
    from alibabacloud_tea_openapi.models import Config

    with run_in_thread(Simulator({KEY_ID: SECRET}, seed=2)) as endpoint:
        client = Client(Config(access_key_id=KEY_ID, access_key_secret=SECRET, protocol="http",
                               endpoint=f"127.0.0.1:{endpoint.port}", region_id="cn-hangzhou"))
        request = models.ListJobRunsRequest(
            max_results=100, region_id="cn-hangzhou", states=["Running", "Pending", "Submitted"],
            end_time=None, tags=None,
        )
        first = client.list_job_runs(WS, request).body
        assert first.request_id and first.total_count >= len(first.job_runs) > 0
        assert all(run.state in ("Running", "Pending", "Submitted") for run in first.job_runs)
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        ended = client.list_job_runs(WS, models.ListJobRunsRequest(
            max_results=20, end_time=models.ListJobRunsRequestEndTime(start_time=now_ms - 3_600_000, end_time=now_ms),
        )).body
        assert ended.job_runs and all(now_ms - 3_600_000 <= r.end_time <= now_ms for r in ended.job_runs)
        page2 = client.list_job_runs(WS, models.ListJobRunsRequest(
            max_results=20, next_token=ended.next_token,
            end_time=models.ListJobRunsRequestEndTime(start_time=now_ms - 3_600_000, end_time=now_ms),
        )).body
        assert not {r.job_run_id for r in page2.job_runs} & {r.job_run_id for r in ended.job_runs}
        failed = next(r for r in [*ended.job_runs, *page2.job_runs, *client.list_job_runs(WS, models.ListJobRunsRequest(
            max_results=100, states=["Failed"])).body.job_runs] if r.state == "Failed")
        assert failed.state_change_reason.code and failed.vcore_seconds >= 0 and failed.cu_hours >= 0


# ---- the exporter's source against it ------------------------------------------------------------------------------


def emr_exporter(url: str, workspaces: list[str], secret: str = SECRET, **overrides: Any) -> Exporter:
    config = parse_config({"sources": [{"name": "emr", "kind": "emr_serverless_spark", "region": "cn-hangzhou",
                                        "endpoint": url, "workspaces": workspaces, "interval": "1h",
                                        "lookback": "2h", **overrides}]}, KINDS)
    return build(config, credentials=lambda cfg: (lambda: static(KEY_ID, secret)))


def target(exporter: Exporter, workspace: str) -> Target:
    return next(t for t in exporter.targets if t.api.name == f"ListJobRuns/{workspace}")


def metrics(exporter: Exporter) -> dict[str, dict[frozenset, float]]:
    return samples(text_of(exporter.poller.published.exposition))


def up(m: dict, workspace: str) -> float:
    return m["cloud_job_exporter_source_up"][frozenset(
        {("source", "emr"), ("kind", "emr_serverless_spark"), ("api", f"ListJobRuns/{workspace}")})]


def errors(m: dict, workspace: str, reason: str) -> float:
    key = frozenset({("source", "emr"), ("api", f"ListJobRuns/{workspace}"), ("reason", reason)})
    return m.get("cloud_job_exporter_poll_errors_total", {}).get(key, 0)


def of_workspace(m: dict, name: str, workspace: str) -> dict[frozenset, float]:
    return {k: v for k, v in m.get(name, {}).items() if ("workspace", workspace) in k}


FAULTS = ACS_FAULTS


@pytest.mark.parametrize(("fault", "reason"), [(f, r) for _, f, r in FAULTS], ids=[n for n, _, _ in FAULTS])
async def test_each_failure_mode_keeps_last_good_data_and_recovers(simulator, fault: dict, reason: str) -> None:
    exporter = emr_exporter(simulator.url, [WS, WS2], timeout="1s")
    for ws in (WS, WS2):
        await exporter.poller.poll_once(target(exporter, ws))
    before = metrics(exporter)
    assert up(before, WS) == up(before, WS2) == 1
    good = of_workspace(before, "emr_spark_job_runs", WS)
    assert good

    simulator.sim.faults.set("ListJobRuns", **fault)
    with structlog.testing.capture_logs() as logs:
        await exporter.poller.poll_once(target(exporter, WS))
        await exporter.poller.poll_once(target(exporter, WS))  # the same failure again: no second line
    during = metrics(exporter)
    assert up(during, WS) == 0 and errors(during, WS, reason) >= 1
    assert of_workspace(during, "emr_spark_job_runs", WS) == good, "last good data stays until stale"
    assert up(during, WS2) == 1 and of_workspace(during, "emr_spark_job_runs", WS2), "the other workspace is untouched"
    failures = [e for e in logs if e["event"] == "poll failed"]
    assert len(failures) == 1 and failures[0]["reason"] == reason and failures[0]["api"] == f"ListJobRuns/{WS}"

    simulator.sim.faults.reset()
    exporter.poller._backoff_until.clear()  # the vendor's 60 s retry-after is not worth waiting for here
    await exporter.poller.poll_once(target(exporter, WS))
    assert up(metrics(exporter), WS) == 1


async def test_a_missing_workspace_fails_alone_and_says_which(simulator) -> None:
    missing = "w-0000000000000000"
    exporter = emr_exporter(simulator.url, [missing, WS])
    with structlog.testing.capture_logs() as logs:
        for ws in (missing, WS):
            await exporter.poller.poll_once(target(exporter, ws))
    m = metrics(exporter)
    assert up(m, missing) == 0 and errors(m, missing, "client") == 1
    assert up(m, WS) == 1 and of_workspace(m, "emr_spark_job_runs", WS)
    failure = next(e for e in logs if e["event"] == "poll failed")
    assert failure["api"] == f"ListJobRuns/{missing}" and "WorkspaceNotFound" in failure["error"]


async def test_requests_are_counted_under_the_api_that_source_up_names(simulator) -> None:
    missing = "w-0000000000000000"
    exporter = emr_exporter(simulator.url, [missing, WS])
    for ws in (missing, WS):
        await exporter.poller.poll_once(target(exporter, ws))
    requests = metrics(exporter)["cloud_job_exporter_api_requests_total"]
    counted = {(dict(k)["api"], dict(k)["code"]) for k, v in requests.items() if ("source", "emr") in k and v}
    assert counted == {(f"ListJobRuns/{missing}", "404"), (f"ListJobRuns/{WS}", "200")}


async def test_wrong_secret_is_an_auth_error(simulator) -> None:
    exporter = emr_exporter(simulator.url, [WS], secret="not-the-right-secret-123")
    await exporter.poller.poll_once(target(exporter, WS))
    assert errors(metrics(exporter), WS, "auth") == 1


async def test_bad_records_are_skipped_and_counted(simulator) -> None:
    exporter = emr_exporter(simulator.url, [WS])
    simulator.sim.faults.set("ListJobRuns", bad_field_rate=0.3)
    await exporter.poller.poll_once(target(exporter, WS))
    state = exporter.store.states[("emr", f"ListJobRuns/{WS}")]
    assert state.up and 0 < state.data.skipped["bad_field"] < state.data.records


async def test_ended_runs_are_counted_once_as_they_end(simulator) -> None:
    exporter = emr_exporter(simulator.url, [WS2])
    await exporter.poller.poll_once(target(exporter, WS2))
    assert not of_workspace(metrics(exporter), "emr_spark_job_runs_finished_total", WS2)  # the first poll seeds
    simulator.sim.emr.control({"submit": {"workspace": WS2, "outcome": "Failed", "run_seconds": 0.5, "count": 3,
                                          "queue": "dev_queue", "code_type": "JAR"}})
    simulator.sim.emr.control({"submit": {"workspace": WS2, "outcome": "Suspended", "run_seconds": 0.5,
                                          "queue": "dev_queue", "code_type": "JAR"}})
    await asyncio.sleep(1.6)
    for _ in range(3):  # overlapping windows: each run once
        await exporter.poller.poll_once(target(exporter, WS2))
    finished = of_workspace(metrics(exporter), "emr_spark_job_runs_finished_total", WS2)
    ours = {dict(k)["state"]: v for k, v in finished.items() if dict(k)["code_type"] == "JAR"
            and dict(k)["queue"] == "dev_queue"}
    assert ours.get("Failed", 0) >= 3 and ours.get("Suspended") == 1


# ---- the demo's combined exposition ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_promtool_accepts_the_combined_demo_output(simulator) -> None:
    config = parse_config({"sources": demo_sources(simulator.url)}, KINDS)
    assert {s.kind for s in config.sources} >= {"maxcompute", "emr_serverless_spark"}
    exporter = build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)))
    for t in exporter.targets:
        await exporter.poller.poll_once(t)
    for ws in WORKSPACES:  # runs that end before the second round, so the ended-run families are there too
        simulator.sim.emr.control({"submit": {"workspace": ws, "outcome": "Failed", "run_seconds": 0.2}})
    await asyncio.sleep(0.5)
    for t in exporter.targets:
        await exporter.poller.poll_once(t)
    text = body(exporter.poller.published.exposition)
    for family in (b"maxcompute_running_jobs{", b"dataarts_jobs{", b"emr_spark_job_runs{",
                   b"emr_spark_job_runs_finished_total{", b"emr_spark_job_run_duration_seconds_bucket{",
                   b"emr_spark_job_run_cu_seconds_total{", b"emr_spark_job_run_submitted_timestamp_seconds{"):
        assert family in text, family
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
