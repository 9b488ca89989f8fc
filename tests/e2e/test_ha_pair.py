"""End to end: an HA pair of exporters answers every dashboard query and alert rule as one exporter does.

Three exporters poll one simulator (every source kind) on one clock that stands still but for the steps the test
takes (tests.helpers.FakeClock): exporter a alone is scraped by one Prometheus, the pair b and c (identical copies,
as the chart's replicaCount: 2 runs them) by another, each as job cloud-job-exporter. The clock steps twice by ten
simulated minutes, with starved MaxCompute jobs and failing Spark runs between the steps, so that counters and
histograms grow and alert expressions have something to say. After each step, once the three exporters' pages agree
(all but their own polls' figures) and are stable, a `Hold` (tests/e2e/prom.py) serves them to both Prometheus at
the same instant. Then every dashboard query (variables at "All", `$__rate_interval` covering the whole run) and
every alert rule expression runs at one instant on both, and their answers must be the same: the same label sets
and values within 5 % (see REL). Queries over the replicas' own polls (requests sent, poll durations: each replica
polls on its own) are compared by label set only. The same queries before they took the max over the replicas
differed in 53 of the 92.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.credentials import static
from exporter.poller import Poller, Target
from exporter.runtime import Exporter, build
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from tests.e2e.prom import Hold, Prometheus, answers, differences, every_query, http, run_prometheus, wait_for
from tests.e2e.soak import soak_sources
from tests.helpers import KEY_ID, SECRET, FakeClock, running_exporter

pytestmark = pytest.mark.e2e

STEP = 600.0  # simulated seconds per step of the clock
STEPS = 2
# Prometheus scrapes every SCRAPE and each state is held HOLD seconds: a counter series that appears at the first step
# spans 2 x HOLD seconds or more when the queries run, so that the phases of the two Prometheus' scrapes (up to one
# SCRAPE at each end) move its rate by 2 % at most (0.4 to 1 % in three runs), against the 100 % of a double count.
SCRAPE = "250ms"
HOLD = 6.0
REL = 0.05
STARVED_QUOTA = "os_bigdata"
FAILING_QUEUE = "e2e_failing_queue"
# Series that differ between replicas however alike: each replica's own polls (how many, how long, what they sent),
# reloads and process. Left out when judging whether the exporters agree.
PER_REPLICA = re.compile(
    r"(?:process_|python_|cloud_job_exporter_(?:api_requests_total|poll_duration_seconds|polls_skipped_total"
    r"|config_last_reload))"
)
LAST_SUCCESS = re.compile(r"^cloud_job_exporter_last_success_timestamp_seconds\{[^}]*\} (\S+)$", re.MULTILINE)


def exporter(endpoint: str, clock: FakeClock) -> Exporter:
    """An exporter of every source kind against `endpoint`, polling every API each real second, its data never stale
    across the clock's steps."""
    sources = [
        {**s, "stale_after": "2h"}
        for s in soak_sources(endpoint, interval="5s", snapshot_interval="5s", job_info_interval="5s")
    ]
    built = build(
        parse_config({"sources": sources}, KINDS), credentials=lambda cfg: lambda: static(KEY_ID, SECRET), clock=clock
    )
    targets = [Target(t.source, replace(t.api, interval=1.0)) for t in built.targets]
    return replace(built, poller=Poller(built.store, targets, clock))


@contextmanager
def serving(exporters: Sequence[Exporter]) -> Iterator[list[str]]:
    """Serves the exporters on loopback ports from an event loop of their own, in a thread; yields their /metrics
    URLs."""
    loop = asyncio.new_event_loop()
    urls: list[str] = []
    started, stop = threading.Event(), asyncio.Event()
    failed: list[BaseException] = []

    async def run() -> None:
        try:
            async with AsyncExitStack() as stack:
                for each in exporters:
                    urls.append(await stack.enter_async_context(running_exporter(each)) + "/metrics")
                started.set()
                await stop.wait()
        except BaseException as exc:
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(30)
    try:
        if failed or len(urls) != len(exporters):
            raise RuntimeError(f"the exporters did not start: {failed}")
        yield urls
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def shared(page: str) -> list[str]:
    """The page's samples that every replica of one state must agree on."""
    return sorted(
        line for line in page.splitlines() if line and not line.startswith("#") and not PER_REPLICA.match(line)
    )


def settle(hold: Hold, clock: FakeClock, timeout: float = 30) -> float:
    """Waits until every exporter's last polls all succeeded at the clock's instant and their pages agree with each
    other and with those a second before; serves those pages; returns when."""
    previous: list[list[str]] = []

    def agreed() -> list[str] | None:
        nonlocal previous
        pages = hold.fetch()
        now = [shared(page) for page in pages]
        polled = all(
            LAST_SUCCESS.findall(page) and {float(v) for v in LAST_SUCCESS.findall(page)} == {clock.now}
            for page in pages
        )
        stable, previous = now == previous, now
        if polled and stable and all(part == now[0] for part in now):
            return pages
        time.sleep(0.75)
        return None

    return hold.refresh(wait_for(f"the exporters to agree at {clock.now:.0f}", agreed, timeout))


def scraped(prometheus: Sequence[Prometheus], since: float) -> None:
    """Waits until each Prometheus has scraped every target a few times since `since`."""
    for each in prometheus:
        wait_for(f"{each.targets} scraped", lambda each=each: each.scraped_since(since + HOLD), 30, each.logs)


def test_an_ha_pair_answers_every_query_as_one_exporter(tmp_path: Path) -> None:
    clock = FakeClock(float(math.floor(time.time())) - STEPS * STEP)  # the last step ends about now
    sim = Simulator({KEY_ID: SECRET}, seed=13, clock=clock, workload=WorkloadParams(target_running=40))
    with run_in_thread(sim) as endpoint, serving([exporter(endpoint.url, clock) for _ in range(3)]) as urls:
        hold = Hold(urls)
        try:
            start = settle(hold, clock)
            with (
                run_prometheus(tmp_path / "one", hold.targets[:1], interval=SCRAPE) as one,
                run_prometheus(tmp_path / "pair", hold.targets[1:], interval=SCRAPE) as pair,
            ):
                scraped((one, pair), start)
                workload = f"{endpoint.url}/-/sim/workload"
                workspace = next(iter(http("GET", workload)["emr_serverless_spark"]))
                for _ in range(STEPS):
                    http("POST", workload, {"starve": {"count": 5, "waited_seconds": 3600, "quota": STARVED_QUOTA}})
                    http(
                        "POST",
                        workload,
                        {
                            "service": "emr_serverless_spark",
                            "submit": {
                                "workspace": workspace,
                                "outcome": "Failed",
                                "wait_seconds": 0,
                                "run_seconds": 1,
                                "queue": FAILING_QUEUE,
                                "code_type": "SQL",
                                "count": 5,
                            },
                        },
                    )
                    clock.now += STEP
                    scraped((one, pair), settle(hold, clock))
                at = time.time()
                queries = every_query(rate_interval=f"{math.ceil(at - start) + 10}s")
                single, double = answers(one, at, queries), answers(pair, at, queries)
        finally:
            hold.close()

    per_replica = {where for where, query in queries.items() if PER_REPLICA.search(query.promql)}
    assert differences(single, double, rel=REL, labels_only=per_replica.__contains__) == []

    # Not equal for want of anything to say: most queries have answers, with counters that grew.
    empty = sorted(where for where, found in single.items() if not found and not where.startswith("alert "))
    assert len(empty) <= 5, f"dashboard queries with no answer: {empty}"
    fired = {where for where, found in single.items() if where.startswith("alert ") and found}
    assert {"alert MaxComputeJobsWaitingTooLong", "alert EmrSparkJobRunsFailing"} <= fired, fired
    finished = single["emr-serverless-spark.json 'Finished runs by state' A"]
    assert finished and max(finished.values()) > 0
