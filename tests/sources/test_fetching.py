"""Reading the vendors' numbers: a value Prometheus could not take is the record's fault, never the page's or the
scrape's (issue 15's first item: one oversized number used to make promtool, and so Prometheus, refuse the page)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import httpx
import pytest

from exporter.config import parse_config
from exporter.credentials import static
from exporter.runtime import build
from exporter.sources import KINDS
from exporter.sources.fetching import MAX_NUMBER, BadRecord, number
from tests.helpers import body, value

HUGE = 10**400  # a JSON integer of 401 digits: valid JSON, no float


@pytest.mark.parametrize("field", [HUGE, -HUGE, 1e308, -1e308, 2.0**64])
def test_a_number_past_the_bound_is_a_bad_record(field: object) -> None:
    with pytest.raises(BadRecord, match="cuSnapshot is out of range"):
        number({"cuSnapshot": field}, "cuSnapshot")


@pytest.mark.parametrize("field", [0, -0.0, 1.5, 2**53, MAX_NUMBER, -MAX_NUMBER, 1_700_000_000_000])
def test_numbers_within_the_bound_are_kept(field: float) -> None:
    assert number({"x": field}, "x") == field
    assert number({"x": field}, "x", 0.001) == field * 0.001


def running_page(jobs: list[dict[str, Any]], total: object) -> bytes:
    return json.dumps({"requestId": "r1", "httpCode": 200, "errorCode": "success",
                       "data": {"runningJobInfoList": jobs, "totalCount": total, "pageNumber": 1,
                                "pageSize": 20}}).encode()


def job(i: int, cu: object) -> dict[str, Any]:
    return {"instanceId": f"job{i}", "jobOwner": "o", "project": "p1", "quotaNickname": "q1", "cuSnapshot": cu,
            "memorySnapshot": 0.01, "progress": 0.5}


async def poll_running(answer: bytes) -> tuple[str, Any]:
    """Polls GetRunningJobs of a MaxCompute source whose API answers `answer`; returns the text exposition and the
    API's state."""
    config = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                        "endpoint": "http://mc.test", "finished_jobs": False}]}, KINDS)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer,
                                                                   headers={"content-type": "application/json"}))
    exporter = build(config, credentials=lambda cfg: (lambda: static("AKID", "secret")), transport=transport)
    target = next(t for t in exporter.targets if t.api.name == "GetRunningJobs")
    await exporter.poller.poll_once(target)
    return body(exporter.poller.published.exposition).decode(), exporter.store.states[target.key]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (CI installs prometheus)")
@pytest.mark.parametrize("huge", ["10**400", "1e308"])
async def test_an_oversized_number_skips_its_record_and_the_page_stays_valid(huge: str) -> None:
    cu = HUGE if huge == "10**400" else 1e308
    text, state = await poll_running(running_page([job(1, 0.25), job(2, cu), job(3, cu), job(4, 0.5)], 4))
    assert state.up and dict(state.data.skipped) == {"bad_field": 2}
    assert value(text, "maxcompute_running_jobs", source="mc", region="cn-hangzhou", project="p1", quota="q1") == 2
    assert value(text, "maxcompute_quota_cu_snapshot_ratio", source="mc", region="cn-hangzhou", quota="q1") == 0.75
    assert value(text, "cloud_job_exporter_records_skipped_total", source="mc", api="GetRunningJobs",
                 reason="bad_field") == 2
    checked = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


@pytest.mark.parametrize(("answer", "what"), [
    (running_page([job(1, 0.25)], HUGE), "a total of 401 digits"),
    (running_page([job(1, 0.25)], 2**40), "a total past any page limit"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested 100,000 deep"),
])
async def test_an_answer_the_parser_cannot_hold_is_a_bad_response(answer: bytes, what: str) -> None:
    text, state = await poll_running(answer)
    assert not state.up and state.last_reason == "bad_response", what
    assert value(text, "cloud_job_exporter_poll_errors_total", source="mc", api="GetRunningJobs",
                 reason="bad_response") == 1


def test_a_parsed_page_is_out_of_the_collectors_view() -> None:
    """Each page's records are untracked as the page is parsed, while the poll goes on: left tracked until the poll
    ends, they were visited by the full collections during it (the stall while fetching, docs/performance.md)."""
    import gc
    import platform

    from exporter.sources.fetching import Skips, parse_page
    from exporter.sources.maxcompute.source import parse_running_job

    if platform.python_implementation() != "CPython":
        pytest.skip("untracking is CPython's")
    parsed = parse_page([job(i, i / 10) for i in range(30)], parse_running_job, Skips())
    assert len(parsed) == 30 and not any(map(gc.is_tracked, parsed))
