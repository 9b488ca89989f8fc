"""Reloading the config (issue 14, item 2): an unchanged source keeps its counts and its memory of what it counted, a
changed one starts afresh, a removed one leaves /metrics; a bad config is refused and the running one kept. Over
real HTTP against the simulator: `POST /-/reload` (with --web.enable-lifecycle), and SIGHUP to the process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from exporter.config import ExporterConfig, parse_config
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import Exporter, build, reload
from exporter.simulator.emr_serverless_spark import WORKSPACES
from exporter.sources import KINDS
from tests.helpers import KEY_ID, SECRET, running_exporter, samples, text_of, value

WS = WORKSPACES[1]
ROOT = Path(__file__).resolve().parents[1]


def sources(url: str, **changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Returns an EMR source on one workspace, a MaxCompute and a DataArts source, with `changes` by source name."""
    mc, dataarts, emr = demo_sources(url)
    configs = [{**emr, "name": "emr", "workspaces": [WS], "interval": "1h", "lookback": "2h"},
               {**mc, "name": "mc", "finished_jobs": False}, {**dataarts, "name": "dataarts"}]
    return [{**c, **changes.get(c["name"], {})} for c in configs if changes.get(c["name"]) != {"removed": True}]


def config(url: str, **changes: dict[str, Any]) -> ExporterConfig:
    return parse_config({"sources": sources(url, **changes)}, KINDS)


def exporter_of(url: str) -> Exporter:
    return build(config(url), credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)))


async def poll_all(exporter: Exporter) -> None:
    for target in exporter.targets:
        await exporter.poller.poll_once(target)


def failed_runs_in(page: str) -> float:
    """Returns the EMR source's count of the runs this test submitted (queue `reload_q`) that ended Failed."""
    return sum(v for k, v in samples(page).get("emr_spark_job_runs_finished_total", {}).items()
               if ("queue", "reload_q") in k and ("state", "Failed") in k)


async def poll_emr(exporter: Exporter) -> None:
    await exporter.poller.poll_once(next(t for t in exporter.targets if t.source == "emr"))


async def submit_and_end(simulator, count: int) -> None:
    simulator.sim.emr.control({"submit": {"workspace": WS, "outcome": "Failed", "run_seconds": 0.3, "count": count,
                                          "queue": "reload_q", "code_type": "JAR"}})
    await asyncio.sleep(0.8)


async def test_an_unchanged_source_keeps_counting_across_reloads_and_counts_nothing_twice(simulator,
                                                                                          tmp_path: Path) -> None:
    """Three reloads by `POST /-/reload` while another source changes, goes and stays; the EMR source's count of the
    runs submitted, read from /metrics, is exact after each (its polls are run by hand between reloads)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": sources(simulator.url)}))
    exporter = exporter_of(simulator.url)
    emr = exporter.opened["emr"].source

    def load() -> ExporterConfig:
        return parse_config(yaml.safe_load(path.read_text()), KINDS)

    async with running_exporter(exporter, load=load, lifecycle=True) as url, httpx.AsyncClient() as client:
        async def counted() -> float:
            return failed_runs_in((await client.get(f"{url}/metrics")).text)

        await poll_emr(exporter)  # the first poll seeds what has ended already
        submitted = 0
        for n, changes in enumerate(({"mc": {"interval": "10s"}}, {"dataarts": {"removed": True}}, {})):
            await submit_and_end(simulator, n + 2)
            submitted += n + 2
            await poll_emr(exporter)
            assert await counted() == submitted
            path.write_text(yaml.safe_dump({"sources": sources(simulator.url, **changes)}))
            assert (await client.post(f"{url}/-/reload")).status_code == 200
            assert exporter.opened["emr"].source is emr, "the unchanged source is the same, with its memory"
            assert await counted() == submitted, "counts kept across the reload"
            await poll_emr(exporter)  # the overlapping window lists the same ended runs again: none counted twice
            assert await counted() == submitted


async def test_a_changed_source_starts_afresh_and_a_removed_one_leaves(simulator) -> None:
    exporter = exporter_of(simulator.url)
    await poll_all(exporter)
    mc = exporter.opened["mc"].source
    text = text_of(exporter.poller.published.exposition)
    assert 'source="dataarts"' in text and value(text, "cloud_job_exporter_source_up", source="mc",
                                                  kind="maxcompute", api="GetRunningJobs") == 1
    await reload(exporter, config(simulator.url, mc={"interval": "10s"}, dataarts={"removed": True}))
    text = text_of(exporter.poller.published.exposition)
    assert 'source="dataarts"' not in text, "a removed source's series leave at the reload's publish"
    assert exporter.opened["mc"].source is not mc
    assert value(text, "cloud_job_exporter_source_up", source="mc", kind="maxcompute", api="GetRunningJobs") is None
    assert value(text, "cloud_job_exporter_api_requests_total", source="mc", api="GetRunningJobs", code="200") is None
    assert {t.source for t in exporter.targets} == {"emr", "mc"}
    await poll_all(exporter)
    text = text_of(exporter.poller.published.exposition)
    assert value(text, "cloud_job_exporter_api_requests_total", source="mc", api="GetRunningJobs", code="200") >= 1


async def test_post_reload_applies_refuses_and_needs_the_lifecycle_flag(simulator, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": sources(simulator.url)}))

    def load() -> ExporterConfig:
        return parse_config(yaml.safe_load(path.read_text()), KINDS)

    exporter = exporter_of(simulator.url)
    async with running_exporter(exporter, load=load, lifecycle=True) as url, httpx.AsyncClient() as client:
        path.write_text(yaml.safe_dump({"sources": sources(simulator.url, dataarts={"removed": True})}))
        answer = await client.post(f"{url}/-/reload")
        assert (answer.status_code, answer.text) == (200, "Reloaded\n")
        page = (await client.get(f"{url}/metrics")).text
        assert 'source="dataarts"' not in page
        assert "name: dataarts" not in (await client.get(f"{url}/config")).text, "/config shows the config in effect"
        assert value(page, "cloud_job_exporter_config_last_reload_successful") == 1
        reloaded_at = value(page, "cloud_job_exporter_config_last_reload_success_timestamp_seconds")

        path.write_text("sources: [{name: mc, kind: nope}]")
        answer = await client.post(f"{url}/-/reload")
        assert answer.status_code == 500 and "unknown kind 'nope'" in answer.text
        page = (await client.get(f"{url}/metrics")).text
        assert value(page, "cloud_job_exporter_config_last_reload_successful") == 0
        assert value(page, "cloud_job_exporter_config_last_reload_success_timestamp_seconds") == reloaded_at
        assert {t.source for t in exporter.targets} == {"emr", "mc"}, "the running config is kept"

    exporter = exporter_of(simulator.url)
    async with running_exporter(exporter, load=load) as url, httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/-/reload")
        assert answer.status_code == 403


def test_sighup_reloads_the_config_file(simulator, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": sources(simulator.url)}))
    port = _free_port()
    env = {**os.environ, **{name: SECRET if name.endswith(("SECRET", "SK")) else KEY_ID for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK")}}
    process = subprocess.Popen([sys.executable, "-m", "exporter", "--config.file", str(path), "--web.listen-address",
                                f"127.0.0.1:{port}", "--log.format", "json"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert _eventually(lambda: 'source="dataarts"' in _get(metrics)), "dataarts polled"
        path.write_text(yaml.safe_dump({"sources": sources(simulator.url, dataarts={"removed": True})}))
        process.send_signal(signal.SIGHUP)
        assert _eventually(lambda: 'source="dataarts"' not in _get(metrics)), "dataarts gone after SIGHUP"
        assert value(_get(metrics), "cloud_job_exporter_config_last_reload_successful") == 1
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b'"event": "config reloaded"' in stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def _eventually(check: Any, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False
