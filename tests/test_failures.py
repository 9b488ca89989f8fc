"""Failure behaviour end to end: the simulator over real HTTP, the exporter served on loopback, /metrics scraped.

For each way an API can fail, that API alone goes down (`source_up` 0, `poll_errors_total{reason}` +1, one log line
with the reason), its last good data stays, the other API keeps its data and health, /metrics answers 200; and
once the fault is gone the API recovers.
"""

from __future__ import annotations

import httpx
import pytest
import structlog

from exporter.poller import Target
from exporter.runtime import Exporter
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from tests.helpers import (
    ACS_FAULTS,
    KEY_ID,
    SECRET,
    eventually,
    maxcompute_exporter,
    running_exporter,
    scrape,
    text_of,
    value,
)

RUNNING, SNAPSHOT = "GetRunningJobs", "ListJobSnapshotInfos"


def up(metrics: dict, api: str) -> float:
    return metrics["cloud_job_exporter_source_up"][frozenset(
        {("source", "mc"), ("kind", "maxcompute"), ("api", api)})]


def errors(metrics: dict, api: str, reason: str) -> float:
    key = frozenset({("source", "mc"), ("api", api), ("reason", reason)})
    return metrics.get("cloud_job_exporter_poll_errors_total", {}).get(key, 0)


def target(exporter: Exporter, api: str) -> Target:
    return next(t for t in exporter.targets if t.api.name == api)


FAULTS = ACS_FAULTS


@pytest.mark.parametrize(("fault", "reason"), [(f, r) for _, f, r in FAULTS], ids=[n for n, _, _ in FAULTS])
async def test_a_failing_api_goes_down_alone_and_recovers(simulator, fault: dict, reason: str) -> None:
    exporter = maxcompute_exporter(simulator.url, interval="1h", snapshot_interval="1h", timeout="1s")
    async with running_exporter(exporter) as url:
        for api in (RUNNING, SNAPSHOT):
            await exporter.poller.poll_once(target(exporter, api))
        before = await scrape(url)
        assert up(before, RUNNING) == up(before, SNAPSHOT) == 1
        good_running = before["maxcompute_running_jobs"]

        simulator.sim.faults.set(RUNNING, **fault)
        with structlog.testing.capture_logs() as logs:
            await exporter.poller.poll_once(target(exporter, RUNNING))
            await exporter.poller.poll_once(target(exporter, RUNNING))  # the same failure again: no second line
        during = await scrape(url)
        assert up(during, RUNNING) == 0
        assert errors(during, RUNNING, reason) >= 1
        assert during["maxcompute_running_jobs"] == good_running, "last good data stays until stale"
        assert up(during, SNAPSHOT) == 1 and during["maxcompute_snapshot_jobs"], "the other API is untouched"
        failures = [e for e in logs if e["event"] == "poll failed"]
        assert len(failures) == 1 and failures[0]["reason"] == reason and failures[0]["api"] == RUNNING
        assert "Traceback" not in str(failures[0]) and "exc_info" not in failures[0]

        simulator.sim.faults.reset()
        exporter.poller._backoff_until.clear()  # the vendor's 60 s retry-after is not worth waiting for here
        await exporter.poller.poll_once(target(exporter, RUNNING))
        after = await scrape(url)
        assert up(after, RUNNING) == 1


async def test_throttling_backs_off_as_the_vendor_asks(simulator) -> None:
    exporter = maxcompute_exporter(simulator.url, interval="1h", snapshot_interval="1h")
    simulator.sim.faults.set(RUNNING, throttle_rate=1.0, retry_after_ms=60_000)
    running = target(exporter, RUNNING)
    await exporter.poller.poll_once(running)
    requests_after_first = simulator.sim.stats.to_dict()
    await exporter.poller.poll_once(running)  # within the 60 s the vendor asked for: not sent
    assert simulator.sim.stats.to_dict() == requests_after_first
    text = text_of(exporter.poller.published.exposition)
    assert value(text, "cloud_job_exporter_polls_skipped_total", source="mc", api="GetRunningJobs",
                 reason="backoff") == 1


async def test_wrong_secret_is_an_auth_error_that_never_shows_the_secret(simulator) -> None:
    exporter = maxcompute_exporter(simulator.url, secret="not-the-right-secret-123", interval="1h",
                                   snapshot_interval="1h")
    with structlog.testing.capture_logs() as logs:
        async with running_exporter(exporter) as url:
            await exporter.poller.poll_once(target(exporter, RUNNING))
            metrics = await scrape(url)
            async with httpx.AsyncClient() as client:
                pages = [(await client.get(url + path)).text for path in ("/", "/metrics")]
    assert errors(metrics, RUNNING, "auth") >= 1
    failure = next(e for e in logs if e["event"] == "poll failed" and e["api"] == RUNNING)
    assert "SignatureDoesNotMatch" in failure["error"]
    for text in [*pages, str(logs)]:
        assert "not-the-right-secret-123" not in text


async def test_connection_refused(simulator) -> None:
    exporter = maxcompute_exporter("http://127.0.0.1:9", interval="1h", snapshot_interval="1h")
    await exporter.poller.poll_once(target(exporter, RUNNING))
    text = text_of(exporter.poller.published.exposition)
    assert value(text, "cloud_job_exporter_poll_errors_total", source="mc", api="GetRunningJobs",
                 reason="connection") == 1
    assert value(text, "cloud_job_exporter_api_requests_total", source="mc", api="GetRunningJobs", code="error") == 1


async def test_bad_records_are_skipped_and_counted_not_the_page(simulator) -> None:
    exporter = maxcompute_exporter(simulator.url, interval="1h", snapshot_interval="1h")
    simulator.sim.faults.set(RUNNING, bad_field_rate=0.2)
    await exporter.poller.poll_once(target(exporter, RUNNING))
    state = exporter.store.states[("mc", RUNNING)]
    assert state.up
    skipped = state.data.skipped["bad_field"]
    assert 0 < skipped < state.data.records
    # Every record read is kept or counted: a job that moved pages while they were read is a `duplicate` besides.
    assert len(state.data.result.jobs) == state.data.records - sum(state.data.skipped.values())


async def test_per_job_series_vanish_when_the_job_finishes() -> None:
    quick = WorkloadParams(target_running=30, median_run_seconds=0.3, median_wait_seconds=0.1)
    with run_in_thread(Simulator({KEY_ID: SECRET}, seed=3, workload=quick)) as simulator:
        exporter = maxcompute_exporter(simulator.url, interval="1h", snapshot_interval="1h")
        running = target(exporter, RUNNING)
        await exporter.poller.poll_once(running)
        first = {j.instance_id for j in exporter.store.states[("mc", RUNNING)].data.result.jobs}
        assert first

        async def some_finished() -> set[str]:
            await exporter.poller.poll_once(running)
            now = {j.instance_id for j in exporter.store.states[("mc", RUNNING)].data.result.jobs}
            return first - now

        gone = await eventually(some_finished, timeout=10, interval=0.2)
    text = text_of(exporter.poller.published.exposition)
    for instance in gone:
        assert f'instance_id="{instance}"' not in text
