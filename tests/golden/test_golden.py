"""Golden expositions: what users see on /metrics, byte for byte, so a refactor can prove it changed nothing.

Two kinds of golden file live in `tests/golden/files/`:

* Per source kind (`<kind>.prom`, `<kind>.om`, and `<kind>_capped.prom`, `<kind>_capped.om`): the fixed poll
  results of `tests/golden/records.py` rendered by the kind's renderers into the text format (0.0.4, `.prom`) and
  OpenMetrics (`.om`) by `exporter.exposition.renderer.Renderer` with the APIs of a real source of the kind (their
  `render` and `jobs`), the exporter's own families left out. The `_capped` variants render with a per-job cap small
  enough that jobs are dropped (the Renderer splits it over the source's APIs) and `owner_label: hash`; the number
  of jobs dropped (the `cloud_job_exporter_job_series_dropped` self-metric) is checked too. Each case is rendered
  twice, the second time from equal new results, so it takes the label prefixes from the first render's caches.
* The simulator (`simulator.prom`): the demo's three sources (`exporter.demo.demo_sources`) polling the simulator
  over real HTTP on 127.0.0.1, with a fixed seed and a frozen clock (`tests.helpers.FakeClock`, left at START),
  scraped once every API has finished a poll (`/-/ready`). Only the job families are compared: the exporter's
  own (`cloud_job_exporter_*`, `process_*`, `python_*`) hold poll durations, timestamps and the process' figures.
  The scrape is made in three separate runs (a new simulator and exporter each time), which must give the same
  bytes. The families stay in
  the order served, which is fixed: the renderer walks the APIs in the order they were registered (the configured
  sources, then each source's APIs), not in the order their polls finished.

  What would vary, and how it is held still, without changing any exporter code:

  - The exporter signs its requests with the wall clock (`build()` offers no clock for the signers), which a frozen
    simulator refuses as out of its 15-minute skew window. The test widens the simulator's window
    (`MAX_CLOCK_SKEW_SECONDS` of `exporter.simulator.app` and `exporter.simulator.dataarts_factory`, test-side
    monkeypatching); what the simulator answers depends on its own clock only.
  - GetRunningJobs asks for the jobs submitted in [now - `running_lookback`, now] by the wall clock; the demo's 7 days
    would miss every job of the frozen simulator's day, so the test sets `running_lookback` to 10000 days (this keeps
    covering the simulator's jobs until about 2050) on the validated config, as a file may say 30 days at most.
    ListJobSnapshotInfos asks for `to` = the wall clock, which the simulator caps at its own now.
  - EMR lists the runs that ended in a window of the wall clock (and its first window only marks them seen), and
    GetJobInfo asks only about jobs that left the running set. Under a frozen simulator no run ends and no job leaves,
    so the ended-run and finished-job families have no samples and are left out of the exposition, whatever the
    number of polls before the scrape: every poll of an API gets the same answer. The per-kind files cover them.
  - The MaxCompute workload is small (`target_running=20`) to keep the file reviewable; the EMR and DataArts
    simulators have fixed sizes.

Regenerating: after an intended change, run

    CJE_UPDATE_GOLDEN=1 PYTHONPATH=. python3 -m pytest tests/golden -rs

which rewrites every golden file (those tests are then reported as skipped, saying which files changed), and review
the diff of `tests/golden/files/` in git. Without the variable the tests compare byte for byte and, on a mismatch,
show where the bytes first differ and a unified diff of the first differing lines.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import exporter.simulator.app as simulator_app
import exporter.simulator.dataarts_factory as simulator_dataarts
from exporter.config import parse_config
from exporter.contract import Fetched, SourceInfo
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import build
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from exporter.sources.emr_serverless_spark.config import DURATION_BUCKETS as EMR_DEFAULT_BUCKETS
from exporter.sources.maxcompute.config import DEFAULT_DURATION_BUCKETS
from tests.golden import records
from tests.helpers import (
    KEY_ID,
    SECRET,
    FakeClock,
    body,
    eventually_status,
    rendering,
    running_exporter,
    samples,
    source_apis,
)

FILES = Path(__file__).parent / "files"
UPDATE = os.environ.get("CJE_UPDATE_GOLDEN") == "1"
DIFF_LINES = 60  # of the unified diff shown on a mismatch
SELF_PREFIXES = (b"cloud_job_exporter_", b"process_", b"python_")  # the exporter's own, and its process'

# ---- comparing with a golden file ----------------------------------------------------------------------------------


def _lines(data: bytes) -> list[str]:
    # Split on "\n" only, so a missing final newline or a stray "\r" shows in the diff.
    return data.decode("utf-8", errors="backslashreplace").split("\n")


def mismatch(name: str, expected: bytes, actual: bytes, hint: bool = True) -> str:
    """Returns a report of how `actual` differs from `expected` (the golden bytes): where, and the first differing
    lines."""
    at = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
              min(len(expected), len(actual)))
    line = expected.count(b"\n", 0, at) + 1
    diff = list(difflib.unified_diff(_lines(expected), _lines(actual), f"tests/golden/files/{name}", "rendered now",
                                     n=2, lineterm=""))
    shown = diff[:DIFF_LINES]
    if len(diff) > DIFF_LINES:
        shown.append(f"... ({len(diff) - DIFF_LINES} more diff lines)")
    return (f"{name}: {len(actual)} bytes rendered, {len(expected)} in the golden file; the first difference is at "
            f"byte {at} (line {line} of the golden file)\n" + "\n".join(shown) +
            ("\nIf the change is intended, regenerate with CJE_UPDATE_GOLDEN=1 (see the module docstring)." if hint
             else ""))


def assert_golden(name: str, actual: bytes) -> None:
    """Compares `actual` with `files/<name>` byte for byte; with CJE_UPDATE_GOLDEN=1, rewrites the file instead."""
    path = FILES / name
    if UPDATE:
        before = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
        pytest.skip(f"CJE_UPDATE_GOLDEN=1: {name} {'unchanged' if before == actual else 'rewritten'}")
    if not path.exists():
        pytest.fail(f"no golden file {path}; create it with CJE_UPDATE_GOLDEN=1", pytrace=False)
    expected = path.read_bytes()
    if actual != expected:
        pytest.fail(mismatch(name, expected, actual), pytrace=False)


# ---- per kind: fixed records, rendered ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One golden exposition of one source kind: the source's kind and settings, its poll results in the order of
    `apis` (the source's API each one came from), and how many jobs the per-job cap is to drop in all."""

    name: str
    source: tuple[str, str, str]  # name, kind, region
    apis: list[str]
    results: Callable[[], list[Any]]
    dropped: int
    settings: dict[str, Any] = field(default_factory=dict)


CAPPED = {"owner_label": "hash"}
MAXCOMPUTE = ("mc", "maxcompute", "cn-hangzhou")
EMR = ("spark", "emr_serverless_spark", "cn-hangzhou")
DATAARTS = ("dayu", "dataarts_factory", "cn-north-4")
EMR_SETTINGS = {"workspaces": ["w-d2d82aa09155abcd", "w-0123456789abcdef"]}
EMR_APIS = [f"ListJobRuns/{ws}" for ws in EMR_SETTINGS["workspaces"]]
WORKSPACE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DATAARTS_SETTINGS = {"project_id": "0833a5737480d53b2f25c010dc1a7b88", "workspaces": [WORKSPACE]}
DATAARTS_APIS = [f"ListJobs/{WORKSPACE}/BATCH", f"ListJobs/{WORKSPACE}/REAL_TIME"]
MAXCOMPUTE_APIS = ["GetRunningJobs", "ListJobSnapshotInfos", "GetJobInfo"]
CASES = [
    Case("maxcompute", MAXCOMPUTE, MAXCOMPUTE_APIS, records.maxcompute_results, 0),
    # A cap of 3 over two APIs of 6 jobs each: 1 and 2 (split_budget); the cap ranks running jobs by cu_snapshot and
    # snapshot jobs by CPU use.
    Case("maxcompute_capped", MAXCOMPUTE, MAXCOMPUTE_APIS, records.maxcompute_results, 9,
         {"max_job_series": 3, **CAPPED}),
    Case("emr_serverless_spark", EMR, EMR_APIS, records.emr_results, 0, EMR_SETTINGS),
    # A cap of 5 over workspaces of 4 and 2 active runs: 3 and 2.
    Case("emr_serverless_spark_capped", EMR, EMR_APIS, records.emr_results, 1,
         {"max_job_series": 5, **EMR_SETTINGS, **CAPPED}),
    Case("dataarts_factory", DATAARTS, DATAARTS_APIS, records.dataarts_results, 0, DATAARTS_SETTINGS),
    # A cap of 5 over lists of 6 (BATCH) and 4 (REAL_TIME) jobs: 3 and 2.
    Case("dataarts_factory_capped", DATAARTS, DATAARTS_APIS, records.dataarts_results, 5,
         {"max_job_series": 5, **DATAARTS_SETTINGS, **CAPPED}),
]
NOW = 1000.0


def render(case: Case, openmetrics: bool) -> tuple[bytes, bytes, float]:
    """Returns the job families of the case's results rendered by a Renderer of the source's own APIs, the same
    families rendered again from equal new results (label prefixes then come from the first render's caches), and
    the jobs the per-job cap dropped."""
    name, kind, region = case.source
    apis = source_apis(kind, **case.settings)
    info = SourceInfo(name, kind, region, **{k: v for k, v in case.settings.items()
                                             if k in ("max_job_series", "owner_label")})
    store, renderer = rendering({api: apis[api] for api in case.apis}, info)
    out = []
    for _ in range(2):
        for api, result in zip(case.apis, case.results(), strict=True):
            store.record_success((name, api), Fetched(result, 1, 1), end=NOW, duration=0.1)
        exposition = renderer.render(store.view(NOW))
        out.append(body(exposition, openmetrics=openmetrics))
    dropped = samples(out[0].decode()).get("cloud_job_exporter_job_series_dropped", {})
    eof = b"# EOF\n" if openmetrics else b""
    return job_families(out[0]) + eof, job_families(out[1]) + eof, sum(dropped.values())


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kind_exposition_matches_golden(case: Case, openmetrics: bool) -> None:
    exposition, again, dropped = render(case, openmetrics)
    assert again == exposition, mismatch(f"{case.name} (first render)", exposition, again, hint=False)
    assert dropped == case.dropped, "jobs dropped by the per-job cap"
    assert_golden(f"{case.name}.{'om' if openmetrics else 'prom'}", exposition)


def test_record_buckets_are_the_sources_defaults() -> None:
    """The records' histograms use the bounds users get by default (copied into records.py as literals)."""
    assert tuple(DEFAULT_DURATION_BUCKETS) == records.MAXCOMPUTE_DURATION_BUCKETS
    assert tuple(EMR_DEFAULT_BUCKETS) == records.EMR_DURATION_BUCKETS


# ---- the simulator: a fixed state, polled and scraped over HTTP --------------------------------------------------

SEED = 20240229
RUNS = 3
RUNNING_LOOKBACK = 10000 * 86400.0  # from the wall clock back past the frozen simulator's jobs (see the docstring)
EXPECTED_APIS = 9  # GetRunningJobs, ListJobSnapshotInfos, GetJobInfo; 2 x 2 DataArts lists; 2 EMR workspaces


def job_families(exposition: bytes) -> bytes:
    """Returns the text exposition without the exporter's own families (`cloud_job_exporter_*`, `process_*`,
    `python_*`), each family kept whole (HELP, TYPE and samples), in the order served."""
    blocks: list[list[bytes]] = []
    for line in exposition.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            blocks.append([])
        assert blocks, f"the exposition does not start with a HELP line: {line!r}"
        blocks[-1].append(line)
    return b"".join(b"".join(block) for block in blocks if not block[0].split(b" ")[2].startswith(SELF_PREFIXES))


async def scrape_frozen_simulator() -> bytes:
    """Serves a simulator on a frozen clock, runs the demo's sources against it, and returns the job families of the
    first scrape once every API has finished a poll."""
    simulator = Simulator({KEY_ID: SECRET}, seed=SEED, clock=FakeClock(), workload=WorkloadParams(target_running=20))
    with run_in_thread(simulator) as endpoint:
        sources = demo_sources(endpoint.url)
        assert {s["kind"] for s in sources} == {"maxcompute", "emr_serverless_spark", "dataarts_factory"}
        config = parse_config({"sources": sources}, KINDS)
        config = config.model_copy(update={"sources": [  # beyond what a config file may say: not validated again
            s.model_copy(update={"running_lookback": RUNNING_LOOKBACK}) if s.kind == "maxcompute" else s
            for s in config.sources]})
        exporter = build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)))
        async with running_exporter(exporter) as url, httpx.AsyncClient() as client:
            await eventually_status(lambda: client.get(url + "/-/ready"), 200, timeout=30)
            response = await client.get(url + "/metrics")
            identity = await client.get(url + "/metrics", headers={"Accept-Encoding": "identity"})
    response.raise_for_status()
    # httpx asks for gzip and inflates it; the identity scrape is the exporter's own inflating, piece by piece
    assert job_families(identity.content) == job_families(response.content)
    up = samples(response.text)["cloud_job_exporter_source_up"]
    assert len(up) == EXPECTED_APIS and set(up.values()) == {1}, f"every API's first poll must succeed: {up}"
    return job_families(response.content)


async def test_frozen_simulator_exposition_matches_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exporter signs with the wall clock; the frozen simulator is to accept it (see the module docstring).
    monkeypatch.setattr(simulator_app, "MAX_CLOCK_SKEW_SECONDS", math.inf)
    monkeypatch.setattr(simulator_dataarts, "MAX_CLOCK_SKEW_SECONDS", math.inf)
    runs = [await scrape_frozen_simulator() for _ in range(RUNS)]
    for n, other in enumerate(runs[1:], start=2):
        assert other == runs[0], mismatch(f"simulator.prom (run 1 against run {n})", runs[0], other, hint=False)
    for family in (b"maxcompute_running_jobs{", b"maxcompute_snapshot_jobs{", b"emr_spark_job_runs{",
                   b"dataarts_jobs{", b"dataarts_job_last_instance_status{"):
        assert family in runs[0], f"{family.decode()} is missing from the simulator's exposition"
    assert_golden("simulator.prom", runs[0])
