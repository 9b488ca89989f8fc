"""EMR Serverless Spark's records: one workspace's active runs and its ended-run counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from exporter.tally import FrozenTally


class SparkJobRun(NamedTuple):
    """One EMR Serverless Spark job run from ListJobRuns; `state` is the vendor's string, whatever it is."""

    job_run_id: str
    job_name: str
    queue: str
    state: str
    code_type: str
    creator: str
    submitted_at: float | None
    ended_at: float | None
    vcore_seconds: float | None
    memory_byte_seconds: float | None
    cu_hours: float | None


# The keys of SparkJobRuns.ended: a count and a duration histogram by (queue, state, code_type), and resource sums
# by (queue,): vCore-seconds, memory byte-seconds, CU-hours.
ENDED_RUNS, ENDED_DURATION, ENDED_VCORE_SECONDS, ENDED_MEMORY_BYTE_SECONDS, ENDED_CU_HOURS = (
    "runs", "duration_seconds", "vcore_seconds", "memory_byte_seconds", "cu_hours",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SparkJobRuns:
    """The result of one ListJobRuns poll of one workspace: its active runs now, and the counts of the runs that
    ended since the source started, each counted once (keys ENDED_*)."""

    workspace: str
    active: tuple[SparkJobRun, ...]
    ended: FrozenTally
