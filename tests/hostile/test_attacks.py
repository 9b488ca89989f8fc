"""Every attack of issue 15 at once, against one exporter process over real HTTP: each hostile port is one source,
beside a bystander source on the simulator. Whatever the vendors send, the page stays valid (promtool), each attacked
source fails (or skips records) for its own reason and counts the bound it reached, the bystander stays up, and the
process stays within the chart's memory limit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from exporter.simulator.run import Endpoint
from tests.helpers import KEY_ID, SECRET, value
from tests.hostile.vendor import ATTACKS, Attack, hostile_vendor

ROOT = Path(__file__).resolve().parents[2]
CHART_MEMORY_LIMIT = 256 << 20  # helm/values.yaml: resources.limits.memory 256Mi
BYSTANDER = "bystander"


@dataclass
class Attacked:
    """The exporter after every attack's first poll: its page, its peak resident size, its log lines."""

    page: str
    peak_rss: int
    logs: list[dict]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss(pid: int) -> int:
    """Returns the process' peak resident size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def config(urls: dict[str, str], simulator: Endpoint) -> dict:
    def source(name: str, endpoint: str) -> dict:
        return {"name": name, "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": endpoint, "interval": "30s",
                "snapshot_interval": "30s", "timeout": "3s", "finished_jobs": False,
                "credentials": {"access_key_id_env": "CJE_KEY_ID", "access_key_secret_env": "CJE_SECRET"}}

    return {"sources": [*(source(name, url) for name, url in urls.items()), source(BYSTANDER, simulator.url)]}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, simulator_module: Endpoint) -> Iterator[Attacked]:
    tmp = tmp_path_factory.mktemp("hostile")
    with hostile_vendor() as urls:
        (tmp / "config.yaml").write_text(yaml.safe_dump(config(urls, simulator_module)))
        port = free_port()
        log = (tmp / "exporter.log").open("w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(tmp / "config.yaml"),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "CJE_KEY_ID": KEY_ID, "CJE_SECRET": SECRET},
        )
        try:
            page = wait_for_every_first_poll(f"http://127.0.0.1:{port}/metrics", [*urls, BYSTANDER], process)
            rss = peak_rss(process.pid)
        finally:
            process.terminate()
            process.wait(30)
        log.seek(0)
        yield Attacked(page, rss, [json.loads(line) for line in log if line.startswith("{")])


def wait_for_every_first_poll(url: str, sources: list[str], process: subprocess.Popen) -> str:
    """Returns the page once every source's GetRunningJobs has been polled once (the drip takes its timeout)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the exporter died"
        try:
            page = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            page = ""
        if all(value(page, "cloud_job_exporter_source_up", source=s, api="GetRunningJobs", kind="maxcompute")
               is not None
               for s in sources):
            return page
        time.sleep(0.25)
    raise AssertionError("not every source was polled within 60 s")


@pytest.fixture(scope="module")
def simulator_module() -> Iterator[Endpoint]:
    from exporter.simulator import Simulator, WorkloadParams
    from exporter.simulator.run import run_in_thread

    with run_in_thread(Simulator({KEY_ID: SECRET}, seed=7, workload=WorkloadParams(target_running=60))) as endpoint:
        yield endpoint


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (CI installs prometheus)")
def test_the_page_stays_valid(attacked: Attacked) -> None:
    checked = subprocess.run(["promtool", "check", "metrics"], input=attacked.page.encode(), capture_output=True,
                             check=False)
    problems = [line for line in checked.stdout.decode().splitlines() + checked.stderr.decode().splitlines()
                if "error" in line.lower()]
    assert not problems, problems


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_each_attack_is_told_by_its_reason_and_its_bound(attacked: Attacked, attack: Attack) -> None:
    labels = {"source": attack.name, "api": "GetRunningJobs"}
    page = attacked.page
    if attack.reason:
        assert value(page, "cloud_job_exporter_poll_errors_total", **labels, reason=attack.reason) == 1
        assert value(page, "cloud_job_exporter_source_up", **labels, kind="maxcompute") == 0
    else:
        assert value(page, "cloud_job_exporter_source_up", **labels, kind="maxcompute") == 1
    if attack.skipped:
        assert value(page, "cloud_job_exporter_records_skipped_total", **labels, reason=attack.skipped) >= 1
    if attack.limit:
        assert value(page, "cloud_job_exporter_limits_reached_total", **labels, limit=attack.limit) >= 1


def test_the_bystander_is_up_with_its_jobs(attacked: Attacked) -> None:
    for api in ("GetRunningJobs", "ListJobSnapshotInfos"):
        assert value(attacked.page, "cloud_job_exporter_source_up", source=BYSTANDER, api=api, kind="maxcompute") == 1
    assert f'source="{BYSTANDER}"' in attacked.page.split("maxcompute_", 1)[1]


def test_a_cut_label_is_in_the_page_at_its_bound(attacked: Attacked) -> None:
    assert f'project="{"p" * 1024}"' in attacked.page
    assert "p" * 1025 not in attacked.page


def test_a_huge_retry_after_backs_off_for_ten_minutes_at_most(attacked: Attacked) -> None:
    failed = [e for e in attacked.logs if e.get("event") == "poll failed" and e.get("source") == "huge_retry_after"]
    assert failed and all(e["backoff_seconds"] == 600 for e in failed), failed


def test_each_failure_is_logged_once_with_its_reason(attacked: Attacked) -> None:
    for attack in ATTACKS:
        if attack.reason:
            lines = [e for e in attacked.logs if e.get("event") == "poll failed" and e.get("source") == attack.name
                     and e.get("api") == "GetRunningJobs"]
            assert [e["reason"] for e in lines] == [attack.reason], attack.name


def test_memory_stays_within_the_charts_limit(attacked: Attacked) -> None:
    assert attacked.peak_rss < CHART_MEMORY_LIMIT, f"peak RSS {attacked.peak_rss / 2**20:.0f} MiB"
