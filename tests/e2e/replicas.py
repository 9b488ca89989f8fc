"""Exporters against one simulator on one stepping clock, each group of them scraped by a Prometheus of its own, so
that tests can ask every group the same queries at the same instant and compare the answers.

`stepped` runs the scenario the HA pair (tests/e2e/test_ha_pair.py) and the shards (tests/e2e/test_shards_e2e.py)
share. Every exporter polls the simulator whose clock (tests.helpers.FakeClock) stands still but for the steps the
scenario takes: twice by ten simulated minutes, with starved MaxCompute jobs and failing Spark runs between the steps,
so that counters and histograms grow and alert expressions have something to say. After each step, once the
exporters' pages agree (as the test says they must: `agree`) and are stable, a `Hold` (tests/e2e/prom.py) serves
them to every Prometheus at the same instant.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exporter.config import parse_config
from exporter.credentials import static
from exporter.poller import Poller, Target
from exporter.runtime import Exporter, build
from exporter.sharding import UNSHARDED, Shard
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from tests.e2e.prom import Answer, Hold, Prometheus, Query, answers, every_query, http, run_prometheus, wait_for
from tests.e2e.soak import soak_sources
from tests.helpers import KEY_ID, SECRET, FakeClock, running_exporter

STEP = 600.0  # simulated seconds per step of the clock
STEPS = 2
# Prometheus scrapes every SCRAPE; each state is held until every Prometheus has scraped it after HOLD seconds. The
# Hold stamps the samples with the time of the swap, so that each Prometheus stores the same samples at the same
# instants, and instant queries look back LOOKBACK for a sample, less than a state is held: at the last swap, what it
# dropped is gone, as a staleness marker would have it.
SCRAPE = "250ms"
HOLD = 1.0
# How long the pages must stay the same before a state is served: over two of the exporters' 1 s poll intervals, so
# that what one poll leaves to another (GetRunningJobs's ended jobs, for GetJobInfo to count) is in. A state served
# a second sooner could lack the finished jobs, whose counters would then first show at the last state, one sample
# too few for a rate (tests/e2e/test_ha_pair.py failed so, about one run in two).
STABLE = 2.5
LOOKBACK = "1s"
# Values may differ by REL of the larger: the stamps leave the float rounding of sums taken in another order.
REL = 1e-9
STARVED_QUOTA = "os_bigdata"
FAILING_QUEUE = "e2e_failing_queue"
# Series that differ between replicas however alike: each replica's own polls (how many, how long, what they sent),
# reloads and process. Left out when judging whether the exporters agree.
PER_REPLICA = re.compile(
    r"(?:process_|python_|cloud_job_exporter_(?:api_requests_total|poll_duration_seconds|polls_skipped_total"
    r"|config_last_reload))"
)
LAST_SUCCESS = re.compile(r"^cloud_job_exporter_last_success_timestamp_seconds\{[^}]*\} (\S+)$", re.MULTILINE)
Agree = Callable[[list[str]], bool]  # whether the exporters' pages (as `shared` returns them) say the same


def exporter(endpoint: str, clock: FakeClock, sources: list[dict[str, Any]] | None = None,
             shard: Shard = UNSHARDED) -> Exporter:
    """An exporter of `sources` (default: one of every kind, tests/e2e/soak.py) against `endpoint`, polling the units
    `shard` owns, every API each real second, its data never stale across the clock's steps."""
    if sources is None:
        sources = soak_sources(endpoint, interval="5s", snapshot_interval="5s", job_info_interval="5s")
    config = parse_config({"sources": [{**s, "stale_after": "2h"} for s in sources]}, KINDS)
    built = build(config, credentials=lambda cfg: lambda: static(KEY_ID, SECRET), clock=clock, shard=shard)
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
    """The page's samples that every replica of one state must agree on: all but PER_REPLICA's, sorted."""
    return sorted(
        line for line in page.splitlines() if line and not line.startswith("#") and not PER_REPLICA.match(line)
    )


def alike(pages: list[str]) -> bool:
    """Whether the pages say the same, PER_REPLICA's series aside: as an HA pair's replicas must."""
    return all(part == shared(pages[0]) for part in map(shared, pages[1:]))


def settle(hold: Hold, clock: FakeClock, agree: Agree, timeout: float = 30) -> float:
    """Waits until every exporter's last polls all succeeded at the clock's instant and their pages `agree` and have
    not changed for STABLE seconds; serves those pages; returns when."""
    previous: list[list[str]] = []
    changed = time.monotonic()

    def agreed() -> list[str] | None:
        nonlocal previous, changed
        pages = hold.fetch()
        now = [shared(page) for page in pages]
        polled = all(
            LAST_SUCCESS.findall(page) and {float(v) for v in LAST_SUCCESS.findall(page)} == {clock.now}
            for page in pages
        )
        if now != previous:
            previous, changed = now, time.monotonic()
        stable = time.monotonic() - changed >= STABLE
        if polled and stable and agree(pages):
            return pages
        time.sleep(0.75)
        return None

    return hold.refresh(wait_for(f"the exporters to agree at {clock.now:.0f}", agreed, timeout))


def scraped(prometheus: Sequence[Prometheus], since: float) -> None:
    """Waits until each Prometheus has scraped every target a few times since `since`."""
    for each in prometheus:
        wait_for(f"{each.targets} scraped", lambda each=each: each.scraped_since(since + HOLD), 30, each.logs)


def said_something(found: dict[str, Answer]) -> None:
    """Asserts that answers are not alike for want of anything to say: most dashboard queries have answers, the
    alerts the steps provoke fire, and counters grew."""
    empty = sorted(where for where, answer in found.items() if not answer and not where.startswith("alert "))
    assert len(empty) <= 5, f"dashboard queries with no answer: {empty}"
    fired = {where for where, answer in found.items() if where.startswith("alert ") and answer}
    assert {"alert MaxComputeJobsWaitingTooLong", "alert EmrSparkJobRunsFailing"} <= fired, fired
    finished = found["emr-serverless-spark.json 'Finished runs by state' A"]
    assert finished and max(finished.values()) > 0


@dataclass
class Stepped:
    """The scenario once its last step is scraped: the exporters, the Prometheus scraping each group of them (as
    targets of one job), and their targets."""

    exporters: list[Exporter]
    prometheus: list[Prometheus]
    targets: list[list[str]]
    swaps: list[float]  # when the Hold served each state (UNIX time), the first state first

    def answers(self) -> tuple[dict[str, Query], list[dict[str, Answer]]]:
        """Runs every dashboard query (`$__rate_interval` covering the whole run) and every alert rule expression on
        every Prometheus at the instant of the last swap; returns the queries and each Prometheus' answers."""
        at = self.swaps[-1]
        queries = every_query(rate_interval=f"{math.ceil(at - self.swaps[0]) + 10}s")
        return queries, [answers(each, at, queries) for each in self.prometheus]


@contextmanager
def stepped(
    tmp: Path,
    make: Callable[[str, FakeClock], list[Exporter]],
    groups: Sequence[Sequence[int]],
    agree: Agree,
) -> Iterator[Stepped]:
    """Runs the scenario (see the module's docstring): the exporters `make` returns for the simulator's URL and the
    clock, each group of them (indices into that list) scraped by a Prometheus of its own with data in `tmp`; yields
    once the clock has stepped STEPS times and every Prometheus has scraped the last state a few times."""
    clock = FakeClock(float(math.floor(time.time())) - STEPS * STEP)  # the last step ends about now
    sim = Simulator({KEY_ID: SECRET}, seed=13, clock=clock, workload=WorkloadParams(target_running=40))
    with run_in_thread(sim) as endpoint:
        exporters = make(endpoint.url, clock)
        with serving(exporters) as urls:
            hold = Hold(urls)
            try:
                swaps = [settle(hold, clock, agree)]
                targets = [[hold.targets[i] for i in group] for group in groups]
                with scraping(tmp, targets) as prometheus:
                    scraped(prometheus, swaps[0])
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
                        swaps.append(settle(hold, clock, agree))
                        scraped(prometheus, swaps[-1])
                    yield Stepped(exporters, prometheus, targets, swaps)
            finally:
                hold.close()


@contextmanager
def scraping(tmp: Path, targets: list[list[str]]) -> Iterator[list[Prometheus]]:
    """Runs a Prometheus per group of targets, scraping every SCRAPE, with data in tmp/0, tmp/1, ..."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(run_prometheus(tmp / str(n), group, interval=SCRAPE, lookback=LOOKBACK))
            for n, group in enumerate(targets)
        ]
