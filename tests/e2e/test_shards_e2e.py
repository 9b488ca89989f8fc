"""End to end: three shards of a config answer every dashboard query and alert rule as one unsharded exporter does.

Four exporters of one config poll one simulator on one clock that stands still but for the steps the test takes
(tests/e2e/replicas.py): exporter a, unsharded, is scraped by one Prometheus; shards 0, 1 and 2 of 3 by another, as
three targets of job cloud-job-exporter. After each step of the clock, once the shards' job series together are the
unsharded exporter's, each series on one shard, a `Hold` (tests/e2e/prom.py) serves the four pages to both
Prometheus at the same instant, stamped with it. Then every dashboard query and every alert rule expression runs at
the last swap's instant on both, and their answers must be the same: the same label sets and values but for float
rounding (see REL). As for an HA pair, the queries over the replicas' own polls (requests sent, poll durations) are
compared by label set only: the unsharded exporter polls every API at its own pace, each shard a third of them at
its. No other query needed to be left out: every series the queries read, the exporter's own included, is a unit's
(a source's API), and is served by the one shard that polls it, so the max over the replicas is the shard's value.

One series is per source rather than per unit: cloud_job_exporter_job_series_dropped, which each shard reports for
what max_job_series (a per-shard cap) left out of its own units. "Per-job series dropped" joins each replica's shard
label onto it (from cloud_job_exporter_unit_polled) before the max over replicas, so shards add up and an HA pair's
copies fold; nothing is dropped here (asserted), since with drops the job series themselves differ between 1 and 3
processes, so that query is compared at zero only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exporter.runtime import Exporter
from exporter.sharding import Shard
from exporter.simulator import dataarts_factory as dataarts_sim
from exporter.simulator import emr_serverless_spark as emr_sim
from tests.e2e.prom import differences
from tests.e2e.replicas import PER_REPLICA, REL, exporter, said_something, stepped
from tests.e2e.soak import REGION
from tests.helpers import FakeClock

pytestmark = pytest.mark.e2e

SHARDS = 3
JOB_SERIES = re.compile(r"(?:maxcompute|emr_spark|dataarts)_")


def sources(endpoint: str) -> list[dict[str, Any]]:
    """A config whose units of work give each of 3 shards one of every kind at least: MaxCompute by its three quotas
    (shards 2, 0, 1), two EMR sources on both workspaces (emr-a: 2, 0; emr-b: 0, 1) and DataArts on two workspaces
    and both job types (1, 2, 0, 1). The source names were picked for that spread."""
    emr = {"kind": "emr_serverless_spark", "region": REGION, "endpoint": endpoint,
           "workspaces": list(emr_sim.WORKSPACES)}
    return [
        {"name": "mc-1", "kind": "maxcompute", "region": REGION, "endpoint": endpoint,
         "quotas": ["os_bigdata", "etl_quota", "os_PayAsYouGoQuota"]},
        {"name": "emr-a", **emr},
        {"name": "emr-b", **emr},
        {"name": "dataarts-factory", "kind": "dataarts_factory", "region": "cn-north-4", "endpoint": endpoint,
         "project_id": dataarts_sim.PROJECT_ID, "workspaces": list(dataarts_sim.WORKSPACES[1:])},
    ]


def exporters(endpoint: str, clock: FakeClock) -> list[Exporter]:
    """The unsharded exporter, then the shards in order."""
    return [exporter(endpoint, clock, sources(endpoint)),
            *(exporter(endpoint, clock, sources(endpoint), Shard(n, SHARDS)) for n in range(SHARDS))]


def job_series(page: str) -> list[str]:
    """The page's samples of job families (not the exporter's own, nor the process'), sorted."""
    return sorted(line for line in page.splitlines() if JOB_SERIES.match(line))


def add_up(pages: list[str]) -> bool:
    """Whether the shards' job series (pages 1 on) are the unsharded exporter's (page 0), each on one shard."""
    whole, *shards = pages
    return job_series(whole) == sorted(line for page in shards for line in job_series(page))


def units(exporter: Exporter) -> set[tuple[str, str, str]]:
    """The units of work the exporter polls: (kind, source, unit)."""
    return {(exporter.opened[t.source].config.kind, t.source, t.api.shard_unit) for t in exporter.targets}


def test_three_shards_answer_every_query_as_one_exporter(tmp_path: Path) -> None:
    with stepped(tmp_path, exporters, groups=[[0], [1, 2, 3]], agree=add_up) as run:
        queries, (single, sharded) = run.answers()
        whole, *shards = run.exporters
        # The series the sharding rules read are there: leave one shard out, and its units are the unpolled ones.
        unpolled = queries["alert CloudJobExporterUnitUnpolled"].promql
        prometheus, targets = run.prometheus[1], run.targets[1]
        left_out = [
            {(s["metric"]["source"], s["metric"]["unit"]) for s in prometheus.query(unpolled.replace(
                "cloud_job_exporter_unit_polled", f'cloud_job_exporter_unit_polled{{instance!="{target}"}}'),
                run.swaps[-1])}
            for target in targets
        ]

    # Each shard polls units of every kind, and together they poll the unsharded exporter's, each once.
    kinds = {kind for kind, _, _ in units(whole)}
    assert len(kinds) == 3 and all({kind for kind, _, _ in units(shard)} == kinds for shard in shards)
    assert sum(len(units(shard)) for shard in shards) == len(units(whole)) == 11
    assert set().union(*map(units, shards)) == units(whole)
    assert left_out == [{(source, unit) for _, source, unit in units(shard)} for shard in shards]

    per_replica = {where for where, query in queries.items() if PER_REPLICA.search(query.promql)}
    assert differences(single, sharded, rel=REL, labels_only=per_replica.__contains__) == []
    said_something(single)
    # max_job_series applies per shard: well under it, the shards' per-job series are the unsharded exporter's.
    assert set(single["overview.json 'Per-job series dropped' A"].values()) == {0}
    # The sharding rules stay quiet for three healthy shards.
    for alert in ("CloudJobExporterShardsDisagree", "CloudJobExporterUnitUnpolled", "CloudJobExporterUnitPolledTwice"):
        assert sharded[f"alert {alert}"] == {}, alert
