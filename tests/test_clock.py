"""One clock for the whole exporter: the clock given to `build` is what every kind's signatures, polls and
staleness read (the soak, benchmarks/soak.py and tests/e2e/test_soak.py, runs them on an accelerated one)."""

from __future__ import annotations

from exporter.config import parse_config
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import build
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from tests.helpers import KEY_ID, SECRET, START, FakeClock, text_of


async def test_the_clock_given_to_build_signs_polls_and_ages_every_source() -> None:
    clock = FakeClock()  # 2023: the gateways refuse a signature dated more than 15 minutes from their clock
    sim = Simulator({KEY_ID: SECRET}, seed=3, clock=clock, workload=WorkloadParams(target_running=20))
    with run_in_thread(sim) as endpoint:
        config = parse_config({"sources": demo_sources(endpoint.url)}, KINDS)
        exporter = build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), clock=clock)
        try:
            for target in exporter.targets:
                await exporter.poller.poll_once(target)
        finally:
            for source in exporter.sources:
                await source.aclose()
    states = exporter.store.states.values()
    assert {s.kind for s in states} == {"maxcompute", "emr_serverless_spark", "dataarts_factory"}
    assert [(s.api, s.last_reason) for s in states if not s.up] == []
    assert {s.last_success for s in states} == {START}
    assert 'instance_id="' in text_of(exporter.poller.published.exposition)

    clock.now += 3600  # past every API's stale_after: the per-job series leave /metrics at the next publish
    await exporter.poller.publish()
    text = text_of(exporter.poller.published.exposition)
    assert 'instance_id="' not in text and 'job_run_id="' not in text and 'job_name="' not in text
