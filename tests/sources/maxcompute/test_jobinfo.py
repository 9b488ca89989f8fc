"""MaxCompute finished jobs: each job that left the running set is asked about with GetJobInfo and counted once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.config import parse_config
from exporter.contract import PollError, RequestCounter
from exporter.credentials import static
from exporter.runtime import build
from exporter.sources import KINDS
from exporter.sources.maxcompute.source import MaxComputeSource
from exporter.tally import RecentIds
from tests.helpers import running_exporter, scrape

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "maxcompute" / "get_job_info.json")
                    .read_text())


class FakeMaxCompute:
    """GetRunningJobs over a settable running set, and GetJobInfo over settable job records."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.info: dict[str, dict[str, Any]] = {}
        self.info_calls: list[str] = []
        self.failing: set[str] = set()
        self.forbidden: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        action = request.headers["x-acs-action"]
        if action == "GetRunningJobs":
            jobs = [{"instanceId": i, "project": "p1", "quotaNickname": "q1", "cuSnapshot": 0.1}
                    for i in self.running]
            return ok({"runningJobInfoList": jobs, "totalCount": len(jobs)})
        assert action == "GetJobInfo"
        instance = request.url.path.split("/")[-2]
        self.info_calls.append(instance)
        if instance in self.failing:
            return httpx.Response(503, json={"RequestId": "r", "Code": "ServiceUnavailable", "Message": "busy"})
        if instance in self.forbidden:
            return httpx.Response(403, json={"requestId": "r", "httpCode": 403, "errorCode": "NoPermission",
                                             "errorMsg": "no permission on the project"})
        if instance not in self.info:
            return httpx.Response(404, json={"requestId": "r", "httpCode": 404, "errorCode": "OBJECT_NOT_EXIST",
                                             "errorMsg": "This object does not exist.", "data": None})
        return ok(self.info[instance])

    def finish(self, instance: str, status: str = "terminated", **fields: Any) -> None:
        self.info[instance] = {"instanceId": instance, "project": "p1", "quotaNickname": "q1", "jobType": "SQL",
                               "status": status, "waitingTime": 10, "runningTime": 100, "endAtTime": 1_700_000_000,
                               "cuUsage": 2, "memoryUsage": 3, "inputBytes": 1000, **fields}


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"requestId": "r", "httpCode": 200, "errorCode": "success", "data": data})


def source_for(fake: FakeMaxCompute, **overrides: Any) -> MaxComputeSource:
    cfg = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                     "endpoint": "http://mc.test", **overrides}]}, KINDS).sources[0]
    return MaxComputeSource.from_config(cfg, lambda: static("AKID", "secret"), RequestCounter(),
                                        httpx.MockTransport(fake))


def finished(fetched: Any) -> dict:
    return fetched.result.tally.counters.get("finished", {})


async def test_a_job_that_left_is_counted_once_with_its_status() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    fake.running = ["a", "b"]
    await source.running_jobs()
    fake.running = ["b"]
    fake.finish("a", status="failed\n")
    await source.running_jobs()
    first = await source.trackers[None].poll()
    assert finished(first) == {("p1", "q1", "SQL", "failed"): 1}
    second = await source.trackers[None].poll()
    assert finished(second) == finished(first) and fake.info_calls == ["a"], "asked once, counted once"


async def test_flicker_in_and_out_of_the_running_list_counts_once() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    for running in (["a"], [], ["a"], [], ["a"], []):
        fake.running = running
        await source.running_jobs()
        if not running:
            fake.finish("a")  # each time it leaves, its info says finished: still only one finished job
            await source.trackers[None].poll()
    result = await source.trackers[None].poll()
    assert finished(result) == {("p1", "q1", "SQL", "terminated"): 1}


async def test_overlapping_rounds_do_not_double_count() -> None:
    import asyncio

    fake = FakeMaxCompute()
    source = source_for(fake)
    fake.running = ["a", "b", "c"]
    await source.running_jobs()
    fake.running = []
    for job in "abc":
        fake.finish(job)
    await source.running_jobs()
    rounds = await asyncio.gather(source.trackers[None].poll(), source.trackers[None].poll())
    assert sum(finished(rounds[-1]).values()) == 3


async def test_a_job_still_running_is_retried_then_given_up() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, job_info_max_attempts=3)
    fake.running = ["a"]
    await source.running_jobs()
    fake.running = []  # gone from the list, but its info still says running (no end time)
    fake.info["a"] = {"instanceId": "a", "project": "p1", "quotaNickname": "q1", "status": "running"}
    await source.running_jobs()
    skipped = {}
    for _ in range(5):
        fetched = await source.trackers[None].poll()
        skipped.update(fetched.skipped)
    assert fake.info_calls == ["a", "a", "a"]
    assert skipped == {"gave_up": 1} and finished(fetched) == {}


async def test_a_running_job_that_finishes_on_a_later_round_is_recorded() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    fake.running = ["a"]
    await source.running_jobs()
    fake.running = []
    fake.info["a"] = {"instanceId": "a", "status": "running"}
    await source.running_jobs()
    await source.trackers[None].poll()
    fake.finish("a")
    assert finished(await source.trackers[None].poll()) == {("p1", "q1", "SQL", "terminated"): 1}


async def test_object_not_exist_is_counted_and_not_asked_again() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    fake.running = ["ghost"]
    await source.running_jobs()
    fake.running = []
    await source.running_jobs()
    first = await source.trackers[None].poll()
    await source.trackers[None].poll()
    assert first.skipped == {"not_found": 1} and fake.info_calls == ["ghost"]


async def test_a_failing_call_marks_the_round_failed_and_keeps_the_job_queued() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    fake.running = ["a", "b"]
    await source.running_jobs()
    fake.running = []
    fake.finish("a")
    fake.finish("b")
    fake.failing = {"b"}
    await source.running_jobs()
    with pytest.raises(PollError) as info:
        await source.trackers[None].poll()
    assert info.value.reason == "server"
    fake.failing = set()
    assert sum(finished(await source.trackers[None].poll()).values()) == 2, "the job whose ask failed stayed queued"


async def test_vendor_sample_units_and_diagnostics() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake)
    instance = SAMPLE["data"]["instanceId"]
    fake.running = [instance]
    await source.running_jobs()
    fake.running = []
    fake.info[instance] = {**SAMPLE["data"], "status": "terminated"}
    await source.running_jobs()
    tally = (await source.trackers[None].poll()).result.tally
    group = ("dp_cdm_prod", "os_bigdata", "SQL")  # the sample's "SQL\n" is trimmed
    assert tally.counters["cpu_core_seconds"] == {group: 10 * 100}
    assert tally.counters["memory_byte_seconds"] == {group: 40 * 1024 * 1024}
    assert tally.counters["input_bytes"] == {group: 1234}
    assert tally.counters["diagnostics"] == {
        ("dp_cdm_prod", "os_bigdata", "LackResource", "SubscriptionLackResource", "warning"): 1}
    assert tally.histograms["wait_seconds"][group].total == 100
    assert tally.histograms["run_seconds"][group].total == 800


def test_recorded_ids_stay_bounded_under_churn() -> None:
    now = [0.0]
    seen = RecentIds(ttl=3600, max_size=10_000, clock=lambda: now[0])
    for i in range(100_000):
        now[0] = i * 0.1  # 100,000 jobs over about three hours
        assert seen.add(f"job{i}")
        assert len(seen) <= 10_000
    assert "job99999" in seen and "job0" not in seen
    assert not seen.add("job99999"), "a recent id is still known"


async def test_histograms_over_http_match_the_known_jobs() -> None:
    fake = FakeMaxCompute()
    runs = {"j1": (3, 20), "j2": (40, 700), "j3": (4000, 50_000)}
    fake.running = list(runs)
    config = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                        "endpoint": "http://mc.test", "interval": "1h", "snapshot_interval": "1h",
                                        "job_info_interval": "1h", "run_buckets": [60, 3600]}]}, KINDS)
    exporter = build(config, credentials=lambda cfg: (lambda: static("AKID", "s")),
                     transport=httpx.MockTransport(fake))
    targets = {t.api.name: t for t in exporter.targets}
    async with running_exporter(exporter) as url:
        await exporter.poller.poll_once(targets["GetRunningJobs"])
        fake.running = []
        for job, (wait, run) in runs.items():
            fake.finish(job, waitingTime=wait, runningTime=run)
        await exporter.poller.poll_once(targets["GetRunningJobs"])
        await exporter.poller.poll_once(targets["GetJobInfo"])
        metrics = await scrape(url)
    group = {("source", "mc"), ("region", "cn-hangzhou"), ("project", "p1"), ("quota", "q1"), ("job_type", "SQL")}
    run = metrics["maxcompute_job_run_duration_seconds_bucket"]
    assert [run[frozenset(group | {("le", le)})] for le in ("60.0", "3600.0", "+Inf")] == [1, 2, 3]
    assert metrics["maxcompute_job_run_duration_seconds_sum"][frozenset(group)] == 50_720
    wait = metrics["maxcompute_job_wait_duration_seconds_bucket"]
    assert wait[frozenset(group | {("le", "5.0")})] == 1 and wait[frozenset(group | {("le", "60.0")})] == 2
    done = metrics["maxcompute_jobs_finished_total"]
    assert done[frozenset(group | {("status", "terminated")})] == 3
    assert metrics["maxcompute_job_cpu_core_seconds_total"][frozenset(group)] == 3 * 2 * 100


async def test_a_job_whose_asks_always_fail_is_given_up_and_the_api_recovers() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, job_info_max_attempts=3)
    fake.running = ["locked", "fine"]
    await source.running_jobs()
    fake.running = []
    fake.finish("fine")
    fake.forbidden = {"locked"}  # a project this key may not read: every ask is refused
    await source.running_jobs()
    for _ in range(3):
        with pytest.raises(PollError):
            await source.trackers[None].poll()
    recovered = await source.trackers[None].poll()
    assert recovered.skipped == {"failed": 1}
    assert finished(recovered) == {("p1", "q1", "SQL", "terminated"): 1}
    assert fake.info_calls.count("locked") == 3


async def test_jobs_of_projects_not_configured_are_not_asked_about() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, projects=["other"])
    fake.running = ["a"]  # FakeMaxCompute's jobs are in project p1
    await source.running_jobs()
    fake.running = []
    fake.finish("a")
    await source.running_jobs()
    await source.trackers[None].poll()
    assert fake.info_calls == []


async def test_a_listing_cut_short_by_the_page_limit_queues_nothing() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, max_pages=1)
    fake.running = [f"j{i}" for i in range(30)]  # two pages of 20; only the first is read
    await source.running_jobs()
    fake.running = [f"j{i}" for i in range(10, 40)]  # the first page now holds other jobs
    await source.running_jobs()
    await source.trackers[None].poll()
    assert fake.info_calls == [], "jobs merely not read are not taken for finished"


async def test_an_outage_longer_than_the_attempts_loses_no_job() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, job_info_max_attempts=3)
    fake.running = ["a", "b"]
    await source.running_jobs()
    fake.running = []
    fake.finish("a")
    fake.finish("b")
    fake.failing = {"a", "b"}  # the service answers 503 for a while
    await source.running_jobs()
    for _ in range(6):
        with pytest.raises(PollError):
            await source.trackers[None].poll()
    fake.failing = set()
    recovered = await source.trackers[None].poll()
    assert sum(finished(recovered).values()) == 2 and recovered.skipped == {}


async def test_a_finished_jobs_labels_are_cut_to_the_sources_max_label_length() -> None:
    fake = FakeMaxCompute()
    source = source_for(fake, max_label_length=64)
    fake.running = ["a"]
    await source.running_jobs()
    fake.running = []
    await source.running_jobs()
    fake.finish("a", project="p" * 100)
    fetched = await source.trackers[None].poll()
    assert finished(fetched) == {("p" * 64, "q1", "SQL", "terminated"): 1}
    assert fetched.limits == {"max_label_length": 1}


async def test_a_source_split_by_quota_counts_a_job_once_even_when_the_vendor_ignores_the_filter() -> None:
    fake = FakeMaxCompute()  # lists every job to every quota's request, all of them in quota q1
    source = source_for(fake, quotas=["q1", "q2"])
    fake.running = ["a"]
    q2 = await source.running_jobs("q2")
    assert q2.result.jobs == () and q2.skipped == {"other_quota": 1}
    await source.running_jobs("q1")
    fake.running = []
    await source.running_jobs("q1")
    await source.running_jobs("q2")
    fake.finish("a", quotaNickname=None)  # GetJobInfo does not say the quota: the unit's is the label
    assert finished(await source.trackers["q1"].poll()) == {("p1", "q1", "SQL", "terminated"): 1}
    assert finished(await source.trackers["q2"].poll()) == {}
    assert fake.info_calls == ["a"]
