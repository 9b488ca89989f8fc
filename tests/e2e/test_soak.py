"""The soak, short: two simulated hours of churn over every source in about half a minute, over real HTTP.

The simulator, the exporter (its sources, signers and poller) and the checker share one accelerated clock
(tests/e2e/soak.py). Each scrape of /metrics is checked against the simulator's truth: no counter or histogram sample
decreases or vanishes, and no per-job series outlives its job by more than stale_after (and the exposition's
refresh). Once the clock stops, the exporter drains what ended, and each finished job must be counted exactly once:
MaxCompute's GetJobInfo answers and EMR's ended runs. benchmarks/soak.py runs the same for a simulated day, with RSS.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from exporter.config import parse_config
from exporter.credentials import static
from exporter.runtime import build
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from tests.e2e.soak import (
    Checks,
    SoakClock,
    SoakSimulator,
    accelerated,
    exactly_once,
    scrape,
    soak_clock,
    soak_ends,
    soak_sources,
    soak_truth,
    warmed_up,
)
from tests.helpers import KEY_ID, SECRET, eventually, running_exporter

pytestmark = pytest.mark.e2e

HOURS = 2
FACTOR = 240.0  # a simulated hour in 15 real seconds
WARMUP = 4.0  # real seconds at the start instant: every API's first poll
# Polls every 1.25 to 2.5 real seconds at this factor (the defaults, 30 s, would be every 0.125 s).
INTERVALS = {"interval": "5m", "snapshot_interval": "10m", "job_info_interval": "5m"}


async def test_hours_of_churn_leave_no_ghost_series_keep_counters_monotonic_and_count_each_job_once() -> None:
    clock = soak_clock(WARMUP, FACTOR, HOURS * 3600.0)
    sim = SoakSimulator({KEY_ID: SECRET}, seed=5, clock=clock, running=40, emr_active=10)
    with run_in_thread(sim) as endpoint:
        config = parse_config({"sources": soak_sources(endpoint.url, **INTERVALS)}, KINDS)
        exporter = accelerated(build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), clock=clock),
                               clock)
        checks = Checks.for_exporter(exporter, clock)
        async with running_exporter(exporter) as url, httpx.AsyncClient(timeout=30) as client:
            metrics = url + "/metrics"
            first = await eventually(lambda: _polled(client, metrics, clock, len(exporter.targets)), timeout=WARMUP)
            assert not warmed_up(first, clock, exporter.store.states), "an API's first poll missed the start"
            while clock() < clock.end:
                now = await scrape(client, metrics, clock)
                checks.counters(now)
                checks.ghosts_of(now, await soak_ends(client, endpoint.url, now))
                await asyncio.sleep(1.0)
            result = await _drained(client, metrics, endpoint.url, clock, checks)
    assert checks.failures() == []
    assert result["failures"] == []
    assert checks.scrapes >= 20 and checks.jobs_checked > 1000
    assert result["maxcompute_counted"] > 300 and result["emr_counted"] > 100  # churn there was


async def _polled(client: httpx.AsyncClient, url: str, clock: SoakClock, apis: int) -> Any:
    """Returns the scrape once every API has polled once, else None."""
    first = await scrape(client, url, clock)
    return first if len(first.last_success) == apis and all(first.last_success.values()) else None


async def _drained(client: httpx.AsyncClient, url: str, sim_url: str, clock: SoakClock, checks: Checks,
                   timeout: float = 20.0) -> dict[str, Any]:
    """Returns the exactly-once figures once they hold, or the last ones after `timeout` real seconds: the clock stands
    at the end, and GetJobInfo asks about the last jobs that ended while EMR lists its last runs. Each scrape is
    checked like the others."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        now = await scrape(client, url, clock)
        checks.counters(now)
        checks.ghosts_of(now, await soak_ends(client, sim_url, now))
        truth = await soak_truth(client, sim_url, clock.start)
        result = exactly_once(now, truth, truth["emr_ended"])
        if not result["failures"] or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.5)
