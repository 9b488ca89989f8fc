"""A listing that takes longer than its interval (issue 13, item 6): its polls get the time they take, its data stays
on /metrics between them, a gauge says the pace they run at, and one log line says why and what to change. Over
real HTTP against the simulator, its pages slowed down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from exporter.pace import STRETCH_MAX, stretched_limit
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import Endpoint, run_in_thread
from exporter.store import ApiState
from tests.helpers import KEY_ID, SECRET, maxcompute_exporter, running_exporter, scrape

INTERVAL = 1.0  # seconds; the poll time limit is then max(3 x 1 s, 60 s) bounded by stale_after, 3 s


@pytest.mark.parametrize(("took", "timeouts", "limit"), [
    (None, 0, 3.0),  # the first poll: the base limit
    (0.5, 0, 3.0),  # a quick API keeps it
    (2.5, 0, 7.5),  # three times what the last good poll took
    (None, 1, 6.0),  # a poll that timed out gets twice the time next
    (2.5, 2, 24.0),
    (None, 50, 3.0 * STRETCH_MAX),  # never past STRETCH_MAX times the base
])
def test_the_time_limit_follows_what_polls_take(took, timeouts, limit) -> None:
    assert stretched_limit(3.0, took, timeouts) == limit


@pytest.fixture
def slow_listing() -> Iterator[Endpoint]:
    """A simulator whose GetRunningJobs lists 300 jobs, 15 pages of 20, each page taking 250 ms: read one page at a
    time, a poll takes about 4 s, past the 1 s interval, past the 3 s a first poll is given and past the 3 s its data
    would be served without stretching."""
    simulator = Simulator({KEY_ID: SECRET}, seed=3, workload=WorkloadParams(target_running=300))
    simulator.faults.set("GetRunningJobs", latency_ms=250)
    with run_in_thread(simulator) as endpoint:
        yield endpoint


def test_a_listing_slower_than_its_interval_is_polled_at_its_own_pace_and_never_leaves_metrics(slow_listing) -> None:
    exporter = maxcompute_exporter(slow_listing.url, interval="1s", snapshot_interval="1h", finished_jobs=False,
                                   max_concurrency=1)

    async def watch() -> tuple[list[bool], dict]:
        async with running_exporter(exporter) as url:
            deadline = time.monotonic() + 60
            while not exporter.store.states[("mc", "GetRunningJobs")].up:
                assert time.monotonic() < deadline, "GetRunningJobs never completed a poll"
                await asyncio.sleep(0.1)
            served, until = [], time.monotonic() + 15  # three polls or more
            while time.monotonic() < until:
                page = await scrape(url)
                served.append(bool(page.get("maxcompute_running_jobs")))
                await asyncio.sleep(0.25)
            return served, page

    with capture_logs() as logs:
        served, page = asyncio.run(watch())
    assert all(served), f"the running jobs left /metrics at {served.count(False)} of {len(served)} scrapes"
    pace = page["cloud_job_exporter_poll_interval_seconds"][frozenset({("source", "mc"),
                                                                      ("api", "GetRunningJobs")})]
    assert pace >= 3 * INTERVAL and pace % INTERVAL == 0  # whole intervals: the runs in between are skipped
    slow = [e for e in logs if e["event"].startswith("poll takes longer than its interval")]
    assert len(slow) == 1 and slow[0]["api"] == "GetRunningJobs" and "shard" in slow[0]["fix"]
    timeouts = page.get("cloud_job_exporter_poll_errors_total", {})
    assert sum(v for k, v in timeouts.items() if ("reason", "timeout") in k) <= 1  # at most the first poll's


def test_a_slow_apis_data_is_kept_until_its_next_poll_could_end_and_no_longer_once_a_poll_fails() -> None:
    state = ApiState("mc", "maxcompute", "GetRunningJobs", stale_after=90.0, interval=30.0, up=True, took=100.0)
    assert state.keep_for == 30 + 3 * 100  # an interval, then the next poll's time limit
    assert replace(state, took=500.0).keep_for == 30 + STRETCH_MAX * 90  # the limit is bounded, and so is this
    assert replace(state, took=10.0).keep_for == 90  # a quick API: stale_after
    assert replace(state, up=False).keep_for == 90  # the last poll failed: nothing is coming to replace the data
