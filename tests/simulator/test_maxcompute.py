"""The MaxCompute simulator over real HTTP on 127.0.0.1: paging, filters, the gateway's signature checks, every
fault switch, the control endpoints, consistency of one job across the three APIs and determinism for a seed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from exporter.auth.aliyun import AliyunAuth
from exporter.credentials import static
from exporter.simulator import FAULT_NAMES, Faults, Simulator, WorkloadParams
from exporter.simulator.maxcompute import MaxComputeService
from exporter.simulator.run import Endpoint, run_in_thread, serve
from tests.helpers import START, FakeClock, signing_vectors_dir

KEY_ID, SECRET = "LTAI5tSimulatorTest01", "simulator-test-secret"
VERSION = "2022-01-04"
RUNNING, SNAPSHOT, INFO = "GetRunningJobs", "ListJobSnapshotInfos", "GetJobInfo"
TERMINAL = {"terminated", "failed", "cancelled"}
GATEWAY_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}



@dataclass
class Api:
    """A signed client of one served simulator."""

    sim: Simulator
    endpoint: Endpoint
    client: httpx.Client
    clock: FakeClock

    def running(self, **params: Any) -> httpx.Response:
        return self.client.get("/api/v1/jobs/runningJobs", params=params, headers=_operation(RUNNING))

    def snapshot(self, body: dict[str, Any] | None = None, **params: Any) -> httpx.Response:
        body = {"to": int(self.clock.now)} if body is None else body
        return self.client.post("/api/v1/jobs/snapshot", params=params, json=body, headers=_operation(SNAPSHOT))

    def info(self, instance_id: str) -> httpx.Response:
        return self.client.get(f"/api/v1/jobs/{instance_id}/info", headers=_operation(INFO))

    def all_running(self, **params: Any) -> list[dict[str, Any]]:
        """Returns every page of GetRunningJobs submitted up to now."""
        jobs, page = [], 1
        while True:
            data = self.running(**{"from": 0, "to": int(self.clock.now), "pageSize": 20, "pageNumber": page, **params})
            batch = data.json()["data"]["runningJobInfoList"]
            jobs += batch
            if len(batch) < 20:
                return jobs
            page += 1

    def all_snapshot(self, to: int | None = None) -> list[dict[str, Any]]:
        """Returns every page of ListJobSnapshotInfos at `to` (now by default)."""
        jobs, page = [], 1
        while True:
            body = {"to": int(self.clock.now) if to is None else to}
            batch = self.snapshot(body, pageSize=100, pageNumber=page).json()["data"]["jobInfoList"]
            jobs += batch
            if len(batch) < 100:
                return jobs
            page += 1


def _operation(action: str) -> dict[str, str]:
    return {"x-acs-action": action, "x-acs-version": VERSION}


def _auth(
    clock: FakeClock, key_id: str = KEY_ID, secret: str = SECRET, token: str | None = None, **kwargs: Any
) -> AliyunAuth:
    return AliyunAuth(lambda: static(key_id, secret, token), clock=clock.as_datetime, **kwargs)


def _simulator(clock: FakeClock, seed: int = 7, **workload: Any) -> Simulator:
    params = WorkloadParams(**{"target_running": 45, "oddity_fraction": 0.0, **workload})
    return Simulator({KEY_ID: SECRET}, seed=seed, clock=clock, workload=params)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def serve_api(clock: FakeClock) -> Iterator[Callable[..., Api]]:
    """Returns a factory serving a simulator (over `clock`) and a client signing with the test key."""
    with ExitStack() as stack:

        def start(sim: Simulator | None = None, auth: httpx.Auth | None = None) -> Api:
            sim = sim or _simulator(clock)
            endpoint = stack.enter_context(run_in_thread(sim))
            client = stack.enter_context(httpx.Client(base_url=endpoint.url, auth=auth or _auth(clock)))
            return Api(sim, endpoint, client, clock)

        yield start


@pytest.fixture(scope="module")
def shared() -> Iterator[Api]:
    clock = FakeClock()
    with run_in_thread(_simulator(clock)) as endpoint, httpx.Client(base_url=endpoint.url) as client:
        yield Api(endpoint.sim, endpoint, client, clock)  # type: ignore[arg-type]


@pytest.fixture
def api(shared: Api) -> Api:
    """The module's simulator as it was at START, faults off, stats empty, signing with the test key.

    Tests using it must leave the workload and the clock as they found them (one server saves a start and a stop
    per test); tests that move either use `fresh`.
    """
    shared.sim.faults.reset()
    shared.sim.stats.reset()
    shared.client.auth = _auth(shared.clock)
    return shared


@pytest.fixture
def fresh(serve_api: Callable[..., Api]) -> Api:
    """A simulator of its own, for tests that advance the clock or change the workload."""
    return serve_api()


# ---- GetRunningJobs -------------------------------------------------------------------------------------------------


def test_pages_cover_every_running_job_once_newest_first(api: Api) -> None:
    pages = [api.running(**{"from": 0, "to": int(START), "pageSize": 20, "pageNumber": n}).json() for n in (1, 2, 3)]
    assert all(p["httpCode"] == 200 and p["errorCode"] == "success" for p in pages)
    assert [p["data"]["totalCount"] for p in pages] == [45, 45, 45]
    assert [(p["data"]["pageNumber"], p["data"]["pageSize"]) for p in pages] == [(1, 20), (2, 20), (3, 20)]
    jobs = [j for p in pages for j in p["data"]["runningJobInfoList"]]
    assert len(jobs) == 45 == len({j["instanceId"] for j in jobs})
    assert [j["submittedAtTime"] for j in jobs] == sorted((j["submittedAtTime"] for j in jobs), reverse=True)
    assert all(j["runningAtTime"] <= START and 0 <= j["progress"] < 1 for j in jobs)
    assert all(0 <= j["cuSnapshot"] <= 1 and 0 <= j["memorySnapshot"] <= 1 for j in jobs)
    assert api.running(**{"from": 0, "to": int(START), "pageNumber": 9}).json()["data"]["runningJobInfoList"] == []


def test_page_size_defaults_to_10_and_above_20_is_an_error(api: Api) -> None:
    assert api.running(**{"from": 0, "to": int(START)}).json()["data"]["pageSize"] == 10
    refused = api.running(**{"from": 0, "to": int(START), "pageSize": 21})
    assert refused.status_code == 400
    assert refused.json() | {"requestId": ""} == {
        "requestId": "",
        "httpCode": 400,
        "errorCode": "INVALID_PARAMETER",
        "errorMsg": "pageSize must be between 1 and 20",
        "data": None,
    }


def test_from_and_to_are_required_and_an_empty_range_returns_null(api: Api) -> None:
    missing = api.running(to=int(START))
    assert missing.status_code == 400
    assert missing.json()["Code"] == "MissingFrom" and set(missing.json()) == GATEWAY_KEYS
    empty = api.running(**{"from": int(START), "to": int(START)})
    assert empty.status_code == 200 and empty.json()["data"] is None


def test_submission_window_is_a_closed_interval(api: Api) -> None:
    jobs = api.all_running()
    moment = jobs[len(jobs) // 2]["submittedAtTime"]
    window = api.all_running(**{"from": moment - 60, "to": moment})
    assert window and all(moment - 60 <= j["submittedAtTime"] <= moment for j in window)
    assert {j["instanceId"] for j in window} == {
        j["instanceId"] for j in jobs if moment - 60 <= j["submittedAtTime"] <= moment
    }


def test_owner_and_quota_lists_are_comma_joined_filters(api: Api) -> None:
    jobs = api.all_running()
    owners, quotas = {"RAM$etl-bot", "ALIYUN$alice@example.com"}, {"os_bigdata"}
    filtered = api.all_running(jobOwnerList=",".join(sorted(owners)), quotaNicknameList="os_bigdata")
    expected = {j["instanceId"] for j in jobs if j["jobOwner"] in owners and j["quotaNickname"] in quotas}
    assert expected and {j["instanceId"] for j in filtered} == expected


# ---- ListJobSnapshotInfos ---------------------------------------------------------------------------------------

SNAPSHOT_FIELDS = {
    "tenantId", "region", "instanceId", "jobOwner", "project", "jobType", "priority", "status", "quotaNickname",
    "quotaType", "cpuUsage", "memoryUsage", "maxCpuPct", "maxMemoryPct", "submittedAtTime", "waitingTime",
    "runningAtTime", "runningTime", "snapshotTime", "totalTime", "signature", "extPlantFrom", "extNodeId",
    "extNodeOnDuty", "cpuRequest", "memoryRequest", "cpuUsageToRequestRatio", "memoryUsageToRequestRatio",
    "extPlatformId",
}  # fmt: skip


def test_snapshot_holds_running_and_waiting_jobs_with_documented_fields(api: Api) -> None:
    jobs = api.all_snapshot()
    running = [j for j in jobs if j["runningAtTime"] is not None]
    waiting = [j for j in jobs if j["runningAtTime"] is None]
    assert len(running) == 45 and waiting
    assert all(set(j) >= SNAPSHOT_FIELDS and j["status"] == "running" and j["snapshotTime"] == START for j in jobs)
    for j in running:
        assert j["waitingTime"] + j["runningTime"] == j["totalTime"] == START - j["submittedAtTime"]
        assert j["cpuUsage"] <= j["cpuRequest"] and j["memoryUsage"] <= j["memoryRequest"]
        assert j["jobType"] in {"SQL", "SQLRT", "SPARK", "MR"}
        assert ("minCpuPct" in j) == (j["quotaType"] == "subscription")
    for j in waiting:
        assert j["runningTime"] is None and j["cpuUsage"] == 0
        assert j["waitingTime"] == j["totalTime"] == START - j["submittedAtTime"]


def test_snapshot_filters_and_ordering(api: Api) -> None:
    jobs = api.all_snapshot()
    body = {"to": int(START), "projectList": ["dw_prod", "ads_report"], "typeList": ["SQL", "SPARK"],
            "priorityList": [1, 3, 5], "statusList": ["running"], "quotaNickname": "os_bigdata"}  # fmt: skip
    expected = {
        j["instanceId"]
        for j in jobs
        if j["project"] in body["projectList"]
        and j["jobType"] in body["typeList"]
        and j["priority"] in body["priorityList"]
        and j["quotaNickname"] == "os_bigdata"
    }
    filtered = api.snapshot(body, pageSize=100).json()["data"]
    assert filtered["totalCount"] == len(expected) and {j["instanceId"] for j in filtered["jobInfoList"]} == expected
    assert api.snapshot({"to": int(START), "statusList": ["terminated"]}).json()["data"]["totalCount"] == 0
    ordered = api.snapshot(orderColumn="cpuUsage", ascOrder="false", pageSize=100).json()["data"]["jobInfoList"]
    assert [j["cpuUsage"] for j in ordered] == sorted((j["cpuUsage"] for j in ordered), reverse=True)
    ascending = api.snapshot(orderColumn="waitingTime", ascOrder="True", pageSize=100).json()["data"]["jobInfoList"]
    assert [j["waitingTime"] for j in ascending] == sorted(j["waitingTime"] for j in ascending)


@pytest.mark.parametrize(
    ("params", "body", "message"),
    [
        ({"pageSize": 101}, {"to": int(START)}, "pageSize must be between 1 and 100"),
        ({"orderColumn": "cost"}, {"to": int(START)}, "orderColumn must be one of"),
        ({}, {"projectList": ["dw_prod"]}, "to is required"),
        ({}, {"to": int(START), "projectList": "dw_prod"}, "projectList must be a JSON array"),
    ],
)
def test_snapshot_rejects_bad_parameters(api: Api, params: dict, body: dict, message: str) -> None:
    response = api.snapshot(body, **params)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_PARAMETER" and message in response.json()["errorMsg"]


# ---- one job across the three APIs ------------------------------------------------------------------------------


def test_a_job_agrees_across_the_apis_while_running_and_after_it_ends(fresh: Api) -> None:
    seen = fresh.all_running()[0]
    in_snapshot = {j["instanceId"]: j for j in fresh.all_snapshot()}[seen["instanceId"]]
    for name in ("jobOwner", "project", "quotaNickname", "submittedAtTime", "runningAtTime"):
        assert in_snapshot[name] == seen[name]
    info = fresh.info(seen["instanceId"]).json()["data"]
    assert info["status"] == "running" and info["runningAtTime"] == seen["runningAtTime"]
    assert "endAtTime" not in info and "cuUsage" not in info  # documented: usage only for complete jobs

    ends = fresh.sim.workload.get(seen["instanceId"]).end_at
    fresh.clock.now = ends + 30.0
    done = fresh.info(seen["instanceId"]).json()["data"]
    assert done["status"] in TERMINAL
    assert done["submittedAtTime"] == seen["submittedAtTime"] and done["runningAtTime"] == seen["runningAtTime"]
    assert done["waitingTime"] == done["runningAtTime"] - done["submittedAtTime"]
    assert done["endAtTime"] == done["runningAtTime"] + done["runningTime"]
    assert done["totalTime"] == done["endAtTime"] - done["submittedAtTime"]
    assert done["cuUsage"] > 0 and done["memoryUsage"] > 0
    assert [s["code"] for s in done["jobSubStatusList"]][:2] == [1010, 1030]
    assert seen["instanceId"] not in {j["instanceId"] for j in fresh.all_running()}
    assert seen["instanceId"] not in {j["instanceId"] for j in fresh.all_snapshot()}
    assert seen["instanceId"] in {j["instanceId"] for j in fresh.all_snapshot(to=done["endAtTime"] - 1)}


def test_unknown_job_is_object_not_exist(api: Api) -> None:
    response = api.info("20230410050036549gfmsdwf60gg")
    assert response.status_code == 404
    assert response.json()["errorCode"] == "OBJECT_NOT_EXIST" and response.json()["data"] is None


def test_arrivals_follow_the_clock_and_keep_the_steady_state(fresh: Api) -> None:
    before = {j["instanceId"] for j in fresh.all_running()}
    fresh.clock.now += 1800
    after = fresh.all_running()
    assert 20 <= len(after) <= 80  # about 45, the target
    assert any(j["submittedAtTime"] > START for j in after) and {j["instanceId"] for j in after} != before


def test_same_seed_and_clock_give_the_same_answers(clock: FakeClock, serve_api: Callable[..., Api]) -> None:
    def session(seed: int) -> list[Any]:
        api = serve_api(_simulator(clock, seed=seed, oddity_fraction=0.3), _auth(clock))
        api.sim.faults.set(error_rate=0.3)
        responses = [api.running(**{"from": 0, "to": int(clock.now), "pageSize": 20}) for _ in range(5)]
        responses.append(api.snapshot(pageSize=50))
        clock.now = START + 900
        responses.append(api.running(**{"from": 0, "to": int(clock.now), "pageSize": 20}))
        clock.now = START
        return [_without_host_id(r.json()) for r in responses]

    first, again, other = session(11), session(11), session(12)
    assert first == again
    assert first != other


def _without_host_id(body: dict[str, Any]) -> dict[str, Any]:
    """Returns a response body without a gateway error's HostId, which names the (per server) port."""
    return {k: v for k, v in body.items() if k != "HostId"}


def test_trailing_newline_oddity_is_per_job_and_consistent(clock: FakeClock, serve_api: Callable[..., Api]) -> None:
    api = serve_api(_simulator(clock, oddity_fraction=0.5))
    odd = {j["instanceId"] for j in api.all_running() if j["jobOwner"].endswith("\n")}
    assert odd
    snapshot = {j["instanceId"]: j for j in api.all_snapshot()}
    assert all(snapshot[i]["jobType"].endswith("\n") and snapshot[i]["jobOwner"].endswith("\n") for i in odd)


# ---- the gateway --------------------------------------------------------------------------------------------------


def _refusal(response: httpx.Response) -> tuple[int, str]:
    assert set(response.json()) == GATEWAY_KEYS
    return response.status_code, response.json()["Code"]


def test_wrong_secret_is_signature_does_not_match_without_the_secret(api: Api) -> None:
    api.client.auth = _auth(api.clock, secret="not-the-secret")
    response = api.running(**{"from": 0, "to": int(START)})
    assert _refusal(response) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:ACS3-HMAC-SHA256\n" in response.json()["Message"]
    assert SECRET not in response.text and "not-the-secret" not in response.text


def test_unknown_key_missing_and_garbled_authorization(api: Api) -> None:
    api.client.auth = _auth(api.clock, key_id="LTAI5tUnknownKey")
    assert _refusal(api.running(**{"from": 0, "to": int(START)})) == (404, "InvalidAccessKeyId.NotFound")
    plain = api.client.get("/api/v1/jobs/runningJobs?from=0&to=1", headers=_operation(RUNNING), auth=None)
    assert _refusal(plain) == (400, "IncompleteSignature")
    garbled_header = {"Authorization": "ACS3-HMAC-SHA256 Credential=x"}
    garbled = api.client.get(
        "/api/v1/jobs/runningJobs?from=0&to=1", headers=_operation(RUNNING) | garbled_header, auth=None
    )
    assert _refusal(garbled) == (400, "IncompleteSignature")


@pytest.mark.parametrize(("skew_minutes", "accepted"), [(14, True), (-14, True), (16, False), (-16, False)])
def test_timestamps_more_than_15_minutes_off_are_expired(api: Api, skew_minutes: int, accepted: bool) -> None:
    api.client.auth = _auth(FakeClock(START + skew_minutes * 60))
    response = api.running(**{"from": 0, "to": int(START)})
    assert response.status_code == 200 if accepted else _refusal(response) == (400, "InvalidTimeStamp.Expired")


def test_a_nonce_is_refused_when_reused_within_15_minutes(fresh: Api) -> None:
    fresh.client.auth = _auth(fresh.clock, nonce=lambda: "the-same-nonce")
    assert fresh.running(**{"from": 0, "to": int(START)}).status_code == 200
    assert _refusal(fresh.running(**{"from": 0, "to": int(START)})) == (400, "SignatureNonceUsed")
    fresh.clock.now += 16 * 60
    assert fresh.running(**{"from": 0, "to": int(fresh.clock.now)}).status_code == 200


def _signed(api: Api, request: httpx.Request) -> httpx.Request:
    _auth(api.clock).sign(request)
    return request


def test_unsigned_acs_headers_and_tampered_bodies_are_refused(api: Api) -> None:
    url = f"{api.endpoint.url}/api/v1/jobs/snapshot"
    extra = _signed(api, httpx.Request("POST", url, json={"to": int(START)}, headers=_operation(SNAPSHOT)))
    extra.headers["x-acs-extra"] = "added after signing"
    assert _refusal(api.client.send(extra, auth=None)) == (400, "IncompleteSignature")
    signed = _signed(api, httpx.Request("POST", url, json={"to": int(START)}, headers=_operation(SNAPSHOT)))
    same_length = signed.content.replace(str(int(START)).encode(), str(int(START) + 1).encode())
    tampered = httpx.Request("POST", url, content=same_length, headers=signed.headers)
    assert _refusal(api.client.send(tampered, auth=None)) == (400, "SignatureDoesNotMatch")


def test_action_version_and_path_must_match_a_route(api: Api) -> None:
    wrong_action = api.client.get("/api/v1/jobs/runningJobs", params={"from": 0, "to": 1}, headers=_operation(INFO))
    assert _refusal(wrong_action) == (404, "InvalidAction.NotFound")
    headers = {"x-acs-action": RUNNING, "x-acs-version": "2019-01-01"}
    wrong_version = api.client.get("/api/v1/jobs/runningJobs", params={"from": 0, "to": 1}, headers=headers)
    assert _refusal(wrong_version) == (400, "InvalidVersion")
    assert _refusal(api.client.get("/api/v1/nowhere", headers=_operation(RUNNING))) == (404, "InvalidAction.NotFound")


def test_sts_keys_need_their_security_token(clock: FakeClock, serve_api: Callable[..., Api]) -> None:
    sim = Simulator({"STS.Key": "sts-secret"}, seed=1, clock=clock, security_tokens={"STS.Key": "the-token"})
    api = serve_api(sim, _auth(clock, key_id="STS.Key", secret="sts-secret", token="the-token"))
    assert api.running(**{"from": 0, "to": int(START)}).status_code == 200
    api.client.auth = _auth(clock, key_id="STS.Key", secret="sts-secret", token="another-token")
    refused = api.running(**{"from": 0, "to": int(START)})
    assert _refusal(refused) == (400, "InvalidSecurityToken.MismatchWithAccessKey")


async def test_the_official_sdk_signing_vectors_pass_the_gateway() -> None:
    """The requests the official SDK signed (shared/api-docs/signing-vectors) pass the gateway byte for byte."""
    every = json.loads((signing_vectors_dir() / "ali_vectors.json").read_text())
    vectors = [v for v in every if "maxcompute" in v["url"]]
    assert len(vectors) == 5
    for vector in vectors:
        signed_at = datetime.strptime(vector["headers"]["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        sim = Simulator(
            {"YourAccessKeyId": "YourAccessKeySecret"},
            clock=signed_at.timestamp,
            workload=WorkloadParams(target_running=5),
            security_tokens={"YourAccessKeyId": vector["headers"].get("x-acs-security-token", "")},
        )
        if "x-acs-security-token" not in vector["headers"]:
            sim.security_tokens.clear()
        url = urlsplit(vector["url"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim)) as client:
            request = httpx.Request(
                vector["method"], f"http://{url.netloc}{url.path}?{url.query}", headers=vector["headers"],
                content=(vector["body"] or "").encode(),
            )  # fmt: skip
            response = await client.send(request)
        assert "Code" not in response.json(), response.text  # not a gateway refusal
        assert response.json()["errorCode"] in ("success", "OBJECT_NOT_EXIST")




# ---- faults -------------------------------------------------------------------------------------------------------


def _post(api: Api, path: str, body: Any) -> httpx.Response:
    return api.client.post(f"/-/sim/{path}", json=body, auth=None)  # control endpoints need no signature


def _control(api: Api, method: str, path: str) -> httpx.Response:
    return api.client.request(method, f"/-/sim/{path}", auth=None)


def test_latency_applies_to_the_chosen_api_only(api: Api) -> None:
    assert _post(api, "faults", {"api": RUNNING, "latency_ms": 200}).status_code == 200
    started = time.perf_counter()
    assert api.running(**{"from": 0, "to": int(START)}).status_code == 200
    assert time.perf_counter() - started >= 0.2
    assert api.sim.faults.effective(SNAPSHOT).latency_ms == 0


def test_latency_counts_the_simulators_own_work(
    serve_api: Callable[..., Api], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real service's latency includes its work: an answer that takes 0.3 s to make, under a latency of 0.6 s,
    arrives after about 0.6 s, not 0.9 s (the simulator's work would otherwise be counted against its client)."""
    answer = MaxComputeService.get_running_jobs

    def slow(self: MaxComputeService, request: Any) -> Any:
        time.sleep(0.3)
        return answer(self, request)

    monkeypatch.setattr(MaxComputeService, "get_running_jobs", slow)
    api = serve_api()
    api.sim.faults.set(RUNNING, latency_ms=600)
    started = time.perf_counter()
    assert api.running(**{"from": 0, "to": int(START)}).status_code == 200
    assert 0.6 <= time.perf_counter() - started < 0.85


def test_error_rate_gives_gateway_500_and_503(api: Api) -> None:
    api.sim.faults.set(error_rate=1.0)
    refusals = {_refusal(api.running(**{"from": 0, "to": int(START)})) for _ in range(12)}
    assert refusals == {(500, "InternalError"), (503, "ServiceUnavailable")}


def test_throttling_as_documented_and_as_429(api: Api) -> None:
    api.sim.faults.set(RUNNING, throttle_rate=1.0, retry_after_ms=2500)
    throttled = api.running(**{"from": 0, "to": int(START)})
    assert _refusal(throttled) == (400, "Throttling.User") and throttled.headers["x-acs-retry-after"] == "2500"
    api.sim.faults.set(RUNNING, throttle_status=429)
    assert _refusal(api.running(**{"from": 0, "to": int(START)})) == (429, "Throttling")
    assert api.snapshot().status_code == 200


def test_malformed_bodies_are_truncated_json_with_status_200(api: Api) -> None:
    api.sim.faults.set(INFO, malformed_rate=1.0)
    malformed = api.info(api.all_running()[0]["instanceId"])
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()


def test_envelope_errors_come_with_http_200(api: Api) -> None:
    api.sim.faults.set(envelope_error_rate=1.0)
    response = api.snapshot()
    assert response.status_code == 200
    assert response.json()["httpCode"] == 500 and response.json()["errorCode"] == "INTERNAL_ERROR"
    assert response.json()["data"] is None


def test_bad_fields_break_each_record(api: Api) -> None:
    api.sim.faults.set(RUNNING, bad_field_rate=1.0)
    records = api.running(**{"from": 0, "to": int(START), "pageSize": 20}).json()["data"]["runningJobInfoList"]
    assert len(records) == 20
    assert all("instanceId" not in r or "abc" in r.values() for r in records)
    assert {"instanceId" in r for r in records} == {True, False}


def test_page_drift_pushes_jobs_onto_later_pages(fresh: Api) -> None:
    fresh.sim.faults.set(RUNNING, page_drift=3)
    query = {"from": 0, "to": int(START), "pageSize": 20}
    first = fresh.running(**query, pageNumber=1).json()["data"]
    second = fresh.running(**query, pageNumber=2).json()["data"]
    assert second["totalCount"] == first["totalCount"] + 3
    ids = [j["instanceId"] for j in first["runningJobInfoList"]]
    assert [j["instanceId"] for j in second["runningJobInfoList"][:3]] == ids[-3:]


def test_down_answers_503_while_the_control_endpoints_work(api: Api) -> None:
    _post(api, "faults", {"down": True})
    assert _refusal(api.info("x")) == (503, "ServiceUnavailable")
    assert _control(api, "GET", "health").json() == {"status": "ok"}
    _post(api, "faults", {"reset": True})
    assert api.running(**{"from": 0, "to": int(START)}).status_code == 200


def test_bad_signature_rejects_the_right_keys(api: Api) -> None:
    api.sim.faults.set(bad_signature=True)
    assert _refusal(api.snapshot()) == (400, "SignatureDoesNotMatch")


def test_fault_switches_over_http(api: Api) -> None:
    _post(api, "faults", {"error_rate": 0.25})
    _post(api, "faults", {"api": INFO, "latency_ms": 5, "down": True})
    current = _control(api, "GET", "faults").json()
    assert set(current["all"]) == set(FAULT_NAMES) and current["all"]["error_rate"] == 0.25
    assert current["apis"] == {INFO: {"latency_ms": 5.0, "down": True}}
    for bad in ({"error_rate": 2}, {"no_such_fault": 1}, {"down": "yes"}, {"throttle_status": 418}, [1]):
        assert _post(api, "faults", bad).status_code == 400
    assert _post(api, "faults", {"reset": True}).json()["all"]["error_rate"] == 0


def test_fault_decisions_repeat_for_a_seed() -> None:
    def rolls(seed: int) -> list[bool]:
        faults = Faults(seed, error_rate=0.5)
        return [faults.roll(faults.effective(RUNNING).error_rate) for _ in range(40)]

    assert rolls(3) == rolls(3) != rolls(4)


# ---- control endpoints ------------------------------------------------------------------------------------------


def test_target_running_changes_at_once(fresh: Api) -> None:
    grown = _post(fresh, "workload", {"target_running": 120}).json()["maxcompute"]
    assert grown["running"] == grown["target_running"] == 120
    assert len(fresh.all_running()) == 120
    assert _post(fresh, "workload", {"target_running": 10}).json()["maxcompute"]["running"] == 10
    assert len(fresh.all_running()) == 10
    assert _post(fresh, "workload", {"target_running": -1}).status_code == 400
    assert _post(fresh, "workload", {"nonsense": 1}).status_code == 400


def test_starved_jobs_show_long_waits_and_a_diagnosis(fresh: Api) -> None:
    body = {"starve": {"count": 3, "waited_seconds": 2400, "remaining_seconds": 600, "quota": "etl_quota"}}
    assert _post(fresh, "workload", body).status_code == 200
    starving = [j for j in fresh.all_snapshot() if j["waitingTime"] >= 2400]
    assert len(starving) >= 3 and {j["quotaNickname"] for j in starving} >= {"etl_quota"}
    info = fresh.info(next(j for j in starving if j["quotaNickname"] == "etl_quota")["instanceId"]).json()["data"]
    assert info["status"] == "running" and "runningAtTime" not in info
    assert info["sceneResults"][0]["sceneTag"] == "SubscriptionLackResource"
    assert _post(fresh, "workload", {"starve": {"count": 1, "quota": "nope"}}).status_code == 400


def test_stats_count_requests_per_api_and_status(api: Api) -> None:
    api.running(**{"from": 0, "to": int(START)})
    api.running(**{"from": 0, "to": int(START), "pageSize": 99})
    api.info("unknown")
    stats = _control(api, "GET", "stats").json()
    assert stats == {
        RUNNING: {"requests": 2, "status": {"200": 1, "400": 1}},
        INFO: {"requests": 1, "status": {"404": 1}},
    }
    _control(api, "DELETE", "stats")
    assert _control(api, "GET", "stats").json() == {}
    assert _control(api, "GET", "nothing").status_code == 404


# ---- serving ------------------------------------------------------------------------------------------------------


async def test_serve_inside_a_running_loop_on_a_free_port(clock: FakeClock) -> None:
    handle = await serve(_simulator(clock))
    try:
        assert handle.port > 0 and handle.url == f"http://127.0.0.1:{handle.port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{handle.url}/-/sim/health")).status_code == 200
        with pytest.raises(OSError):
            await serve(_simulator(clock), port=handle.port)
    finally:
        await handle.stop()


def test_a_large_steady_state_is_there_from_the_start(clock: FakeClock, serve_api: Callable[..., Api]) -> None:
    api = serve_api(_simulator(clock, target_running=5000))
    assert api.sim.workload.summary()["running"] == 5000
    started = time.perf_counter()
    for page in range(1, 51):
        response = api.running(**{"from": 0, "to": int(START), "pageSize": 20, "pageNumber": page})
        assert response.json()["data"]["totalCount"] == 5000
    assert time.perf_counter() - started < 5
