"""End to end: an HA pair of exporters answers every dashboard query and alert rule as one exporter does.

Three exporters poll one simulator (every source kind) on one clock that stands still but for the steps the test
takes (tests/e2e/replicas.py): exporter a alone is scraped by one Prometheus, the pair b and c (identical copies,
as the chart's replicaCount: 2 runs them) by another, each as job cloud-job-exporter. After each step of the clock,
once the three exporters' pages agree (all but their own polls' figures) and are stable, a `Hold`
(tests/e2e/prom.py) serves them to both Prometheus at the same instant, stamped with it. Then every dashboard query
(variables at "All", `$__rate_interval` covering the whole run) and every alert rule expression runs at the last
swap's instant on both, and their answers must be the same: the same label sets and values but for float rounding
(see REL). Queries over the replicas' own polls (requests sent, poll durations: each replica polls on its own) are
compared by label set only. The same queries before they took the max over the replicas differed in 53 of the 92.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.prom import differences
from tests.e2e.replicas import PER_REPLICA, REL, alike, exporter, said_something, stepped

pytestmark = pytest.mark.e2e


def test_an_ha_pair_answers_every_query_as_one_exporter(tmp_path: Path) -> None:
    make = lambda endpoint, clock: [exporter(endpoint, clock) for _ in range(3)]  # noqa: E731
    with stepped(tmp_path, make, groups=[[0], [1, 2]], agree=alike) as run:
        queries, (single, double) = run.answers()

    per_replica = {where for where, query in queries.items() if PER_REPLICA.search(query.promql)}
    assert differences(single, double, rel=REL, labels_only=per_replica.__contains__) == []

    said_something(single)
