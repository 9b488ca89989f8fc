"""The DataArts Factory job list in the simulator over real HTTP on 127.0.0.1: Huawei's gateway checks, paging with
`offset` as the page number, the `workspace` header, both job types' status sets, batch runs that succeed, fail or
hang, every failure mode through the exporter, the vendor SDK as a client, and `promtool check metrics`."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exporter.auth.huawei import HuaweiAuth
from exporter.config import parse_config
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import Exporter, build
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.dataarts_factory import PROJECT_ID, WORKSPACES
from exporter.simulator.run import Endpoint, run_in_thread
from exporter.sources import KINDS
from tests.helpers import START, FakeClock, body, samples, text_of

# The signing vectors' key pair: the simulator accepts what the vendor SDK signs with it.
AK, SK = "HWAKTESTEXAMPLE000000", "HWSKTESTEXAMPLESECRETKEY00000000000000000"
WS_A, WS_B = WORKSPACES[1], WORKSPACES[2]
PATH = f"/v1/{PROJECT_ID}/jobs"
BATCH_STATUSES = {"SCHEDULING", "STOPPED", "PAUSED"}
REALTIME_STATUSES = {"STARTING", "NORMAL", "EXCEPTION", "STOPPING", "STOPPED"}
LAST_INSTANCE = {"waiting", "running", "success", "fail", "running-exception", "manual-stop"}



@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Endpoint]:
    """A simulator on a fake clock (for requests signed here with the same clock)."""
    simulator = Simulator({AK: SK, "HWAKTEMPORARY0000000": "temporary-secret"}, seed=3, clock=clock,
                          workload=WorkloadParams(target_running=20),
                          security_tokens={"HWAKTEMPORARY0000000": "sts-token"})
    with run_in_thread(simulator) as endpoint:
        yield endpoint


@pytest.fixture
def live() -> Iterator[Endpoint]:
    """A simulator on the wall clock, for the exporter (which signs with the wall clock)."""
    with run_in_thread(Simulator({AK: SK}, seed=3, workload=WorkloadParams(target_running=20))) as endpoint:
        yield endpoint


def client(endpoint: Endpoint, clock: FakeClock, secret: str = SK, key: str = AK, token: str | None = None,
           project: str | None = PROJECT_ID) -> httpx.Client:
    auth = HuaweiAuth(lambda: static(key, secret, token), project_id=project, clock=clock.as_datetime)
    return httpx.Client(base_url=endpoint.url, auth=auth)


def get(endpoint: Endpoint, clock: FakeClock, workspace: str | None = None, **query: Any) -> httpx.Response:
    headers = {"workspace": workspace} if workspace else {}
    with client(endpoint, clock) as c:
        return c.get(PATH, params=query, headers=headers)


def all_pages(endpoint: Endpoint, clock: FakeClock, workspace: str | None, job_type: str, limit: int) -> list[dict]:
    first = get(endpoint, clock, workspace, jobType=job_type, offset=0, limit=limit).json()
    jobs = list(first["jobs"])
    for offset in range(1, math.ceil(first["total"] / limit)):
        jobs += get(endpoint, clock, workspace, jobType=job_type, offset=offset, limit=limit).json()["jobs"]
    assert len(jobs) == first["total"]
    return jobs


# ---- the gateway ------------------------------------------------------------------------------------------------


def test_a_good_signature_is_served_in_the_vendor_shape(sim: Endpoint, clock: FakeClock) -> None:
    response = get(sim, clock, jobType="BATCH", offset=0, limit=5)
    assert response.status_code == 200 and response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"total", "jobs"} and len(body["jobs"]) == 5 and body["total"] > 5
    for job in body["jobs"]:
        assert {"name", "jobType", "status", "createUser", "createTime", "startTime"} <= set(job)
        assert isinstance(job["createTime"], int) and job["createTime"] > 1e12  # UNIX milliseconds


@pytest.mark.parametrize(("change", "message"), [
    ({"secret": "wrong"}, "verify aksk signature fail"),
    ({"key": "HWAKUNKNOWN000000000"}, "does not exist"),
])
def test_bad_credentials_are_refused_with_apig_0301(sim: Endpoint, clock: FakeClock, change: dict,
                                                     message: str) -> None:
    with client(sim, clock, **change) as c:
        response = c.get(PATH)
    assert response.status_code == 401
    body = response.json()
    assert body["error_code"] == "APIG.0301" and message in body["error_msg"] and body["request_id"]


def test_a_stale_date_and_a_wrong_token_are_refused(sim: Endpoint, clock: FakeClock) -> None:
    stale = FakeClock(START - 16 * 60)
    with client(sim, stale) as c:
        assert c.get(PATH).json()["error_msg"].endswith("more than 15 minutes off)")
    with client(sim, clock, key="HWAKTEMPORARY0000000", secret="temporary-secret", token="other") as c:
        assert c.get(PATH).status_code == 401
    with client(sim, clock, key="HWAKTEMPORARY0000000", secret="temporary-secret", token="sts-token") as c:
        assert c.get(PATH).status_code == 200


def test_unsigned_and_unknown_paths(sim: Endpoint, clock: FakeClock) -> None:
    assert httpx.get(sim.url + PATH).json()["error_code"] == "APIG.0301"
    with client(sim, clock) as c:
        response = c.get(f"/v1/{PROJECT_ID}/jobs/extra/part")
    assert response.status_code == 404


# ---- the service -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [7, 10, 100])
def test_offset_is_the_page_number_and_the_last_page_is_short(sim: Endpoint, clock: FakeClock, limit: int) -> None:
    total = get(sim, clock, jobType="BATCH", limit=limit).json()["total"]
    assert total % 7 != 0  # the default workload: 60 batch jobs per workspace
    jobs = all_pages(sim, clock, None, "BATCH", limit)
    assert len({j["name"] for j in jobs}) == total
    last = get(sim, clock, jobType="BATCH", offset=total // limit, limit=limit).json()["jobs"]
    assert len(last) == total % limit or (total % limit == 0 and last == [])
    assert get(sim, clock, jobType="BATCH", offset=total, limit=limit).json()["jobs"] == []


def test_paging_parameters_are_checked(sim: Endpoint, clock: FakeClock) -> None:
    assert len(get(sim, clock).json()["jobs"]) == 10  # the documented default limit
    for query in ({"limit": 101}, {"limit": 0}, {"offset": -1}, {"limit": "x"}, {"jobType": "STREAM"}):
        response = get(sim, clock, **query)
        assert response.status_code == 400 and response.json()["error_code"] == "DLF.0100", query


def test_the_workspace_header_selects_the_workspace(sim: Endpoint, clock: FakeClock) -> None:
    names = {ws: {j["name"] for j in all_pages(sim, clock, ws, "BATCH", 100)} for ws in (None, WS_A, WS_B)}
    assert names[None] and names[WS_A] and names[WS_B]
    assert not names[None] & names[WS_A] and not names[WS_A] & names[WS_B]
    response = get(sim, clock, "ffffffffffffffffffffffffffffffff")
    assert response.status_code == 400 and "workspace" in response.json()["error_msg"]


def test_project_in_the_path_must_exist(sim: Endpoint, clock: FakeClock) -> None:
    with client(sim, clock, project=None) as c:
        response = c.get("/v1/ffffffffffffffffffffffffffffffff/jobs")
    assert response.status_code == 400 and response.json()["error_code"] == "DLF.0100"


def test_each_job_type_has_its_own_status_set(sim: Endpoint, clock: FakeClock) -> None:
    batch = [j for ws in (None, WS_A, WS_B) for j in all_pages(sim, clock, ws, "BATCH", 100)]
    realtime = [j for ws in (None, WS_A, WS_B) for j in all_pages(sim, clock, ws, "REAL_TIME", 100)]
    assert {j["jobType"].strip() for j in batch} == {"BATCH"}
    assert {j["jobType"].strip() for j in realtime} == {"REAL_TIME"}
    assert {j["status"].strip() for j in batch} == BATCH_STATUSES
    assert {j["status"].strip() for j in realtime} <= REALTIME_STATUSES
    assert {"NORMAL", "EXCEPTION"} <= {j["status"].strip() for j in realtime}
    assert any(j["status"].endswith("\n") for j in batch + realtime)  # the vendor samples' odd strings
    assert all("lastInstanceStatus" not in j for j in realtime)
    seen = {j.get("lastInstanceStatus") for j in batch}
    assert {"success", "fail", "running"} <= seen <= LAST_INSTANCE | {None}
    for j in batch:
        if j.get("lastInstanceStatus") in ("success", "fail", "running-exception", "manual-stop"):
            assert j["lastInstanceEndTime"] <= clock.now * 1000


def test_batch_runs_move_on_with_the_clock_and_hanging_ones_do_not(sim: Endpoint, clock: FakeClock) -> None:
    def last(ws: str | None) -> dict[str, tuple[str | None, int | None]]:
        return {j["name"]: (j.get("lastInstanceStatus"), j.get("lastInstanceEndTime"))
                for j in all_pages(sim, clock, ws, "BATCH", 100) if j["status"].strip() == "SCHEDULING"}

    response = httpx.post(f"{sim.url}/-/sim/workload", json={"service": "dataarts_factory",
                                                              "hang": {"workspace": WS_A, "count": 3}})
    assert response.status_code == 200
    before = last(WS_A)
    clock.now += 2 * 86400
    after = last(WS_A)
    hung = [n for n, (status, _) in after.items() if status == "running" and after[n][1] == before[n][1]]
    assert len(hung) >= 3
    moved = [n for n in after if after[n][1] != before[n][1]]
    assert len(moved) > len(after) // 2  # every scheduled job ran again in two days, except the hung ones
    summary = httpx.get(f"{sim.url}/-/sim/workload").json()["dataarts_factory"]
    assert summary["workspaces"][WS_A]["last_instance"]["running"] >= 3


def test_same_seed_same_jobs(clock: FakeClock) -> None:
    def summary() -> dict:
        return Simulator({AK: SK}, seed=11, clock=clock, workload=WorkloadParams(target_running=5)).dataarts.summary()

    assert summary() == summary()


# ---- the exporter against the simulator --------------------------------------------------------------------------


def exporter_for(endpoint: Endpoint, secret: str = SK, **overrides: Any) -> Exporter:
    config = parse_config({"sources": [{"name": "dgc", "kind": "dataarts_factory", "region": "cn-north-4",
                                        "endpoint": endpoint.url, "project_id": PROJECT_ID, "timeout": "1s",
                                        **overrides}]}, KINDS)
    return build(config, credentials=lambda cfg: (lambda: static(AK, secret)))


async def poll_all(exporter: Exporter) -> dict[str, dict[frozenset, float]]:
    for target in exporter.targets:
        await exporter.poller.poll_once(target)
    return samples(text_of(exporter.poller.published.exposition))


def up(metrics: dict, api: str) -> float:
    return metrics["cloud_job_exporter_source_up"][frozenset({("source", "dgc"), ("kind", "dataarts_factory"),
                                                              ("api", api)})]


def errors(metrics: dict, api: str, reason: str) -> float:
    key = frozenset({("source", "dgc"), ("api", api), ("reason", reason)})
    return metrics.get("cloud_job_exporter_poll_errors_total", {}).get(key, 0)


async def test_exporter_reads_every_workspace_and_type(live: Endpoint) -> None:
    exporter = exporter_for(live, workspaces=[WS_A, WS_B])
    metrics = await poll_all(exporter)
    for ws in (WS_A, WS_B):
        batch = all_pages(live, FakeClock(time.time()), ws, "BATCH", 100)
        counted = sum(v for k, v in metrics["dataarts_jobs"].items()
                      if ("workspace", ws) in k and ("job_type", "BATCH") in k)
        assert counted == len(batch)
        # Ended last instances (which runs of the wall-clock workload have failed varies with the time of day, so
        # successes and failures are checked together: a workspace always has some of either).
        ended = {(j["name"], j["lastInstanceStatus"]) for j in batch
                 if j.get("lastInstanceStatus") in ("success", "fail")}
        exported = {(dict(k)["job_name"], dict(k)["status"])
                    for k, v in metrics["dataarts_job_last_instance_status"].items()
                    if v == 1 and ("workspace", ws) in k and dict(k)["status"] in ("success", "fail")}
        assert exported == ended and ended
    await asyncio.gather(*(s.aclose() for s in exporter.sources))


async def test_requests_are_counted_under_the_api_that_source_up_names(live: Endpoint) -> None:
    exporter = exporter_for(live, workspaces=[WS_A, WS_B], job_types=["BATCH"])
    metrics = await poll_all(exporter)
    apis = {dict(k)["api"] for k in metrics["cloud_job_exporter_source_up"] if ("source", "dgc") in k}
    counted = {dict(k)["api"] for k in metrics["cloud_job_exporter_api_requests_total"] if ("source", "dgc") in k}
    assert counted == apis == {f"ListJobs/{WS_A}/BATCH", f"ListJobs/{WS_B}/BATCH"}
    await asyncio.gather(*(s.aclose() for s in exporter.sources))


async def test_paging_through_the_simulator_with_drift(live: Endpoint) -> None:
    httpx.post(f"{live.url}/-/sim/workload", json={"service": "dataarts_factory",
                                                   "add": {"batch": 150}}).raise_for_status()  # 210 in all
    httpx.post(f"{live.url}/-/sim/faults", json={"api": "ListJobs", "page_drift": 30}).raise_for_status()
    exporter = exporter_for(live, job_types=["BATCH"])
    await poll_all(exporter)
    state = exporter.store.states[("dgc", "ListJobs/default/BATCH")]
    assert state.up and state.data.pages == 3  # 210, then 270 once the drift arrived: every page was read
    names = [j.name for j in state.data.result.jobs]
    assert len(names) == len(set(names)) == 270 - state.data.skipped.get("duplicate", 0)
    assert state.data.skipped.get("duplicate", 0) > 0  # drift pushed jobs already read onto later pages
    await asyncio.gather(*(s.aclose() for s in exporter.sources))


FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("server error", {"error_rate": 1.0}, "server"),
    ("outage", {"down": True}, "server"),
    ("throttling", {"throttle_rate": 1.0, "retry_after_ms": 60_000}, "throttled"),
    ("bad signature", {"bad_signature": True}, "auth"),
    ("malformed body", {"malformed_rate": 1.0}, "bad_response"),
    ("service error", {"envelope_error_rate": 1.0}, "server"),
    ("latency past the timeout", {"latency_ms": 1500}, "timeout"),
]


@pytest.mark.parametrize(("name", "fault", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_failure_mode_over_http(live: Endpoint, name: str, fault: dict, reason: str) -> None:
    exporter = exporter_for(live, workspaces=[WS_A, WS_B])
    good = await poll_all(exporter)
    api_a, api_b = f"ListJobs/{WS_A}/BATCH", f"ListJobs/{WS_B}/BATCH"
    assert up(good, api_a) == up(good, api_b) == 1
    httpx.post(f"{live.url}/-/sim/faults", json={"api": "ListJobs", **fault}).raise_for_status()
    target = next(t for t in exporter.targets if t.api.name == api_a)
    await exporter.poller.poll_once(target)
    metrics = samples(text_of(exporter.poller.published.exposition))
    assert up(metrics, api_a) == 0 and errors(metrics, api_a, reason) == 1
    assert up(metrics, api_b) == 1  # the other workspace keeps its health
    assert any(("workspace", WS_A) in k for k in metrics["dataarts_jobs"])  # last good data stays until stale
    httpx.post(f"{live.url}/-/sim/faults", json={"reset": True}).raise_for_status()
    exporter.poller._backoff_until.clear()
    await exporter.poller.poll_once(target)
    assert up(samples(text_of(exporter.poller.published.exposition)), api_a) == 1
    await asyncio.gather(*(s.aclose() for s in exporter.sources))


async def test_connection_refused_and_bad_records(live: Endpoint) -> None:
    closed = Endpoint(live.sim, "127.0.0.1", 1)
    exporter = exporter_for(closed, job_types=["BATCH"])
    metrics = await poll_all(exporter)
    assert errors(metrics, "ListJobs/default/BATCH", "connection") == 1
    await asyncio.gather(*(s.aclose() for s in exporter.sources))

    httpx.post(f"{live.url}/-/sim/faults", json={"api": "ListJobs", "bad_field_rate": 0.3}).raise_for_status()
    exporter = exporter_for(live, job_types=["BATCH"])
    metrics = await poll_all(exporter)
    skipped = metrics["cloud_job_exporter_records_skipped_total"]
    assert skipped[frozenset({("source", "dgc"), ("api", "ListJobs/default/BATCH"), ("reason", "bad_field")})] > 0
    assert up(metrics, "ListJobs/default/BATCH") == 1
    await asyncio.gather(*(s.aclose() for s in exporter.sources))


# ---- the vendor SDK as a client ----------------------------------------------------------------------------------


def test_the_vendor_sdk_is_accepted_and_parses_the_answer(live: Endpoint, tmp_path: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK writes into the home folder on import
    sdk_core = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
    dgc = pytest.importorskip("huaweicloudsdkdgc.v1")
    from huaweicloudsdkcore.http.http_config import HttpConfig

    credentials = sdk_core.BasicCredentials(AK, SK, PROJECT_ID)
    sdk = (dgc.DgcClient.new_builder().with_credentials(credentials).with_endpoints([live.url])
           .with_http_config(HttpConfig.get_default_config()).build())
    response = sdk.list_jobs(dgc.ListJobsRequest(workspace=WS_A, job_type="BATCH", offset=1, limit=25))
    expected = get(live, FakeClock(time.time()), WS_A, jobType="BATCH", offset=1, limit=25).json()
    assert response.total == expected["total"] == 60
    assert [j.name for j in response.jobs] == [j["name"] for j in expected["jobs"]] and len(response.jobs) == 25
    assert {j.last_instance_status for j in response.jobs} <= LAST_INSTANCE | {None}


# ---- promtool on the combined output ----------------------------------------------------------------------------


async def test_promtool_accepts_the_combined_demo_output(live: Endpoint) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    config = parse_config({"sources": demo_sources(live.url)}, KINDS)  # the demo's sources, the Alibaba ones and ours
    assert {"maxcompute", "dataarts_factory"} <= {source.kind for source in config.sources}
    exporter = build(config, credentials=lambda cfg: (lambda: static(AK, SK)))
    await poll_all(exporter)
    text = body(exporter.poller.published.exposition)
    families = {line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")}
    assert {"maxcompute_running_jobs", "dataarts_jobs", "dataarts_job_last_instance_status"} <= families
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert json.dumps(result.stdout.decode())  # no lint findings printed
    await asyncio.gather(*(s.aclose() for s in exporter.sources))
