"""The demo as a user runs it: the console script's module in its own process, scraped over HTTP."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import samples

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, subprocess.Popen]]:
    """The exporter in demo mode in a child process, JSON logs captured; yields (base URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}", "--log.format=json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield f"http://127.0.0.1:{port}", process
    process.terminate()
    process.wait(timeout=10)


def wait_for(url: str, predicate, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).text
            if predicate(last):
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not get there within {timeout}s; last body starts {last[:300]!r}")


def test_demo_shows_live_metrics_within_seconds(demo) -> None:
    url, _ = demo
    started = time.monotonic()
    text = wait_for(url + "/metrics", lambda t: "maxcompute_running_jobs{" in t and "maxcompute_snapshot_jobs{" in t)
    assert time.monotonic() - started < 10
    metrics = samples(text)
    assert sum(metrics["maxcompute_running_jobs"].values()) > 0
    assert all(v == 1 for v in metrics["cloud_job_exporter_source_up"].values())
    assert httpx.get(url + "/-/ready").status_code == 200


def test_demo_metrics_change_and_finished_jobs_appear(demo) -> None:
    url, _ = demo
    first = wait_for(url + "/metrics", lambda t: "maxcompute_jobs_finished_total{" in t, timeout=45)
    progress = samples(first)["maxcompute_running_job_progress_ratio"]
    # The workload lives: a later poll shows jobs' progress moved (or other jobs running).
    wait_for(url + "/metrics", lambda t: samples(t)["maxcompute_running_job_progress_ratio"] != progress, timeout=20)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (.ci/run installs prometheus)")
def test_promtool_accepts_the_demo_output(demo) -> None:
    url, _ = demo
    text = wait_for(url + "/metrics", lambda t: "maxcompute_jobs_finished_total{" in t and
                    "maxcompute_job_wait_duration_seconds_bucket{" in t, timeout=45)
    result = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_logs_are_json_lines_with_one_summary_per_poll(demo) -> None:
    url, process = demo
    wait_for(url + "/metrics", lambda t: "maxcompute_running_jobs{" in t)
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert events and len(events) == len([line for line in stderr.splitlines() if line.strip()]), stderr[:500]
    polls = [e for e in events if e["event"] == "poll"]
    assert {"source", "api", "pages", "jobs", "duration_seconds", "timestamp", "level"} <= set(polls[0])
