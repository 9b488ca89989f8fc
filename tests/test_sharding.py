"""Sharding (issue 13): which replica polls which unit of work, how it is told (flags, environment, a StatefulSet
pod's name), what `--config.check --total-shards M` prints, and that the shards of a config together poll each unit
exactly once, with every series of one unsharded exporter served by exactly one shard, over real HTTP against one
simulator whose clock stands still."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.cli import main
from exporter.config import parse_config
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import Exporter, build
from exporter.sharding import UNSHARDED, Shard, assignment, shard_of
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.sources import KINDS
from tests.helpers import KEY_ID, SECRET, FakeClock, eventually, running_exporter, samples

SELF = "cloud_job_exporter_"
JOB_FAMILIES = ("maxcompute_", "emr_spark_", "dataarts_")


def sources(url: str = "https://example.invalid") -> list[dict[str, Any]]:
    """Returns the demo's three sources with more units: MaxCompute split by four quotas, EMR on two workspaces,
    DataArts on two workspaces and both job types."""
    mc, dataarts, emr = demo_sources(url)
    quotas = ["os_bigdata", "etl_quota", "os_PayAsYouGoQuota", "unused_quota"]
    return [{**mc, "name": "mc", "quotas": quotas}, {**dataarts, "name": "dataarts"}, {**emr, "name": "emr"}]


def exporter(url: str, shard: Shard = UNSHARDED, clock: FakeClock | None = None, **extra: Any) -> Exporter:
    config = parse_config({"sources": [*sources(url), *extra.get("more", [])]}, KINDS)
    return build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), shard=shard,
                 **({"clock": clock} if clock else {}))


# ---- telling a replica its shard --------------------------------------------------------------------------------

@pytest.mark.parametrize(("shard", "total", "pod", "expected"), [
    (None, None, None, Shard(0, 1)),
    ("2", "3", None, Shard(2, 3)),
    (None, "4", "cloud-job-exporter-3", Shard(3, 4)),
    (None, "12", "cje-shards-11", Shard(11, 12)),
])
def test_the_shard_comes_from_flags_or_a_statefulset_pod_name(shard, total, pod, expected) -> None:
    assert Shard.of(shard, total, pod) == expected


@pytest.mark.parametrize(("shard", "total", "pod", "message"), [
    ("3", "3", None, "--shard: expected an ordinal from 0 to 2 (--total-shards 3), got 3"),
    ("1", None, None, "--shard: give --total-shards too"),
    (None, "0", None, "--total-shards: expected a whole number of at least 1, got 0"),
    (None, "two", None, "--total-shards: expected a whole number, got 'two'"),
    (None, None, "cje-1", "--pod: give --total-shards too (the StatefulSet's replicas)"),
    (None, "3", "cje", "--pod: expected a StatefulSet pod name ending in its ordinal, such as cje-2, got 'cje'"),
    (None, "3", "cje-5", "--shard: expected an ordinal from 0 to 2 (--total-shards 3), got 5"),
    ("1", "3", "cje-1", "--shard and --pod: give one of them"),
])
def test_a_wrong_shard_names_the_flag_and_the_fix(shard, total, pod, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Shard.of(shard, total, pod)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "HUAWEICLOUD_SDK_AK"):
        monkeypatch.setenv(name, "id")
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "HUAWEICLOUD_SDK_SK"):
        monkeypatch.setenv(name, "secret")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": sources()}))
    return path


def test_config_check_prints_which_shard_polls_each_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys) -> None:
    path = write_config(tmp_path, monkeypatch)
    assert main(["--config.file", str(path), "--config.check", "--total-shards", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: OK, 3 source(s), 10 unit(s) of work"
    rows = {tuple(line.rsplit(None, 1)[0].split()): int(line.rsplit(None, 1)[1]) for line in lines[2:-1]}
    assert ("mc", "quota/etl_quota") in rows and ("emr", "ListJobRuns/w-d2d82aa091551a2b") in rows
    assert all(rows[unit] == shard_of(*unit, 3) for unit in rows)
    counts = Counter(rows.values())
    assert lines[-1] == "units per shard: " + ", ".join(f"{k}: {counts[k]}" for k in range(3))


def test_the_environment_sets_the_shard_as_the_flags_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys) -> None:
    path = write_config(tmp_path, monkeypatch)
    monkeypatch.setenv("CJE_TOTAL_SHARDS", "3")
    monkeypatch.setenv("CJE_POD_NAME", "cje-7")
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert capsys.readouterr().err.strip() == \
        "error: --shard: expected an ordinal from 0 to 2 (--total-shards 3), got 7"
    monkeypatch.setenv("CJE_POD_NAME", "cje-2")
    assert main(["--config.file", str(path), "--config.check"]) == 0
    assert "units per shard" in capsys.readouterr().out


def test_the_demo_refuses_to_be_sharded(capsys) -> None:
    assert main(["--demo", "--total-shards", "2", "--shard", "1"]) == 1
    assert "--demo runs one exporter against a simulator of its own" in capsys.readouterr().err


# ---- the assignment ---------------------------------------------------------------------------------------------

def test_a_units_shard_stays_put_when_other_sources_come() -> None:
    before = {(t.source, t.api.shard_unit) for t in exporter("https://x.invalid").targets}
    more = [{"name": f"emr-{n}", "kind": "emr_serverless_spark", "region": "cn-hangzhou",
             "workspaces": [f"w-{n}a", f"w-{n}b"]} for n in range(20)]
    after = {(t.source, t.api.shard_unit) for t in exporter("https://x.invalid", more=more).targets}
    assert before < after
    for total in (2, 3, 5, 8):
        assert {u: s for u, s in assignment(after, total).items() if u in before} == assignment(before, total)


def test_units_spread_over_the_shards() -> None:
    units = [(f"emr-{n // 8}", f"ListJobRuns/w-{n}") for n in range(4000)]
    for total in (2, 3, 4, 10):
        counts = Counter(assignment(units, total).values())
        assert sorted(counts) == list(range(total))
        assert max(counts.values()) < 1.15 * len(units) / total, counts


def test_shards_split_the_targets_and_keep_a_maxcompute_quota_whole() -> None:
    whole = exporter("https://x.invalid")
    shards = [exporter("https://x.invalid", Shard(n, 3)) for n in range(3)]
    keys = [{t.key for t in s.targets} for s in shards]
    assert set().union(*keys) == {t.key for t in whole.targets}
    assert sum(map(len, keys)) == len(whole.targets)  # no API is polled twice
    for shard in shards:
        units = {t.api.shard_unit for t in shard.targets if t.source == "mc"}
        apis = {t.api.name for t in shard.targets if t.source == "mc"}
        assert apis == {f"{a}/{u.removeprefix('quota/')}" for u in units
                        for a in ("GetRunningJobs", "ListJobSnapshotInfos", "GetJobInfo")}


# ---- the shards add up to one, over real HTTP ---------------------------------------------------------------------

def job_series(page: str) -> dict[tuple[str, frozenset], float]:
    """Returns the samples of job families (not the exporter's own, nor the process'), by (name, labels)."""
    return {(name, labels): v for name, rows in samples(page).items() if name.startswith(JOB_FAMILIES)
            for labels, v in rows.items()}


class CountingSimulator(Simulator):
    """The simulator, noting the unit of work of each listing request it answers, as the vendor sees it: the quota a
    MaxCompute listing filters on, the workspace of an EMR listing, the workspace and job type of a DataArts one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units: Counter[tuple[str, str]] = Counter()

    async def dispatch(self, request: Any) -> Any:
        response = await super().dispatch(request)
        if request.api == "GetRunningJobs":
            self.units[("mc", f"quota/{request.query.get('quotaNicknameList')}")] += 1
        elif request.api == "ListJobSnapshotInfos":
            self.units[("mc", f"quota/{request.json().get('quotaNickname')}")] += 1
        elif request.api == "ListJobRuns":
            self.units[("emr", f"ListJobRuns/{request.path_params['workspaceId']}")] += 1
        elif request.api == "ListJobs":
            self.units[("dataarts", f"ListJobs/{request.headers.get('workspace')}/{request.query.get('jobType')}")] += 1
        return response


async def served_when_polled(ex: Exporter) -> tuple[str, str]:
    """Serves `ex` until every API it polls has been polled once; returns its /metrics and its landing page."""
    async with running_exporter(ex) as url, httpx.AsyncClient() as client:
        async def polled() -> bool:
            return all(s.polls for s in ex.poller.published.states)

        await eventually(polled, timeout=30)
        return (await client.get(f"{url}/metrics")).text, (await client.get(f"{url}/")).text


def test_three_shards_serve_what_one_exporter_serves_each_series_once() -> None:
    clock = FakeClock()  # stands still: every exporter sees one state of the workload
    simulator = CountingSimulator({KEY_ID: SECRET}, seed=11, clock=clock,
                                  workload=WorkloadParams(target_running=200))
    with run_in_thread(simulator) as endpoint:
        single_page, _ = asyncio.run(served_when_polled(exporter(endpoint.url, clock=clock)))
        single_units, simulator.units = set(simulator.units), Counter()
        shard_pages, shard_units = [], []
        for n in range(3):
            shard_pages.append(asyncio.run(served_when_polled(exporter(endpoint.url, Shard(n, 3), clock))))
            shard_units.append(set(simulator.units))
            simulator.units = Counter()
    single = job_series(single_page)
    per_shard = [job_series(page) for page, _ in shard_pages]
    assert len(single) > 1000
    union = Counter(key for series in per_shard for key in series)
    assert set(union) == set(single)
    assert max(union.values()) == 1, [k for k, n in union.items() if n > 1][:5]  # each series from one shard
    assert {k: v for series in per_shard for k, v in series.items()} == single
    # The vendor saw each unit listed by exactly one shard, and every unit the one exporter listed.
    assert len(single_units) == 10 and set().union(*shard_units) == single_units
    assert sum(map(len, shard_units)) == len(single_units)
    # Each shard says what it owns, on /metrics and on its landing page.
    for n, ((page, landing), units) in enumerate(zip(shard_pages, shard_units, strict=True)):
        own = samples(page)
        assert own[f"{SELF}shard_ordinal"] == {frozenset(): n}
        assert own[f"{SELF}total_shards"] == {frozenset(): 3}
        polled = own[f"{SELF}unit_polled"]
        assert len(polled) == 10 and all(("shard", str(n)) in labels for labels in polled)
        assert {(dict(k)["source"], dict(k)["unit"]) for k, v in polled.items() if v == 1} == units
        assert own[f"{SELF}shard_units"] == {frozenset(): len(units)}
        assert f"Sharding: shard {n} of 3" in landing and f"polls {len(units)} of the config's 10 units" in landing
