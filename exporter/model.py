"""The vendor-neutral vocabulary between sources and metrics: plain, immutable records.

Sources turn API responses into these; the metrics module turns these into series. Per-job records are NamedTuples
of plain values (str, int, float, None): small, fast to build and read, and unable to form a reference cycle, so the
sources take them out of the garbage collector's view as they parse them (`exporter.heap.untrack`). Times are UNIX
seconds, sizes are bytes, strings are already trimmed. A field the API did not return is None and yields no sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from exporter.tally import FrozenTally


class RunningJob(NamedTuple):
    """One MaxCompute job from GetRunningJobs."""

    instance_id: str
    project: str
    quota: str
    owner: str
    cu_snapshot: float | None
    memory_snapshot: float | None
    progress: float | None
    submitted_at: float | None
    running_at: float | None


class SnapshotJob(NamedTuple):
    """One MaxCompute job from ListJobSnapshotInfos at one instant."""

    instance_id: str
    project: str
    quota: str
    job_type: str
    owner: str
    priority: str
    cpu_usage_cores: float | None
    cpu_request_cores: float | None
    memory_usage_bytes: float | None
    memory_request_bytes: float | None
    cpu_usage_to_request: float | None
    memory_usage_to_request: float | None
    waiting_seconds: float | None
    running_seconds: float | None


@dataclass(frozen=True, slots=True)
class RunningJobs:
    """The result of one GetRunningJobs poll: every running job, de-duplicated."""

    jobs: tuple[RunningJob, ...]


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """The result of one ListJobSnapshotInfos poll: the jobs present at `snapshot_time`."""

    jobs: tuple[SnapshotJob, ...]
    snapshot_time: float | None


@dataclass(frozen=True, slots=True)
class FinishedJobs:
    """The result of one GetJobInfo round: cumulative counts of every finished job recorded since start-up.

    `tally` holds the counters `finished` (project, quota, job_type, status), `cpu_core_seconds`,
    `memory_byte_seconds`, `input_bytes` (project, quota, job_type), `diagnostics` (project, quota, scene, scene_tag,
    severity) and the histograms `wait_seconds`, `run_seconds` (project, quota, job_type).
    """

    tally: FrozenTally


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
    ended since the source started, each counted once (keys ENDED_*). `job_series_budget` is this workspace's
    share of the source's `max_job_series`, which its workspaces split evenly."""

    workspace: str
    active: tuple[SparkJobRun, ...]
    ended: FrozenTally
    job_series_budget: int


# DataArts Factory (Huawei Cloud): the job list of one workspace and job type.


class DataArtsJob(NamedTuple):
    """One DataArts Factory job from the job list (ListJobs); times in UNIX seconds."""

    name: str
    job_type: str  # BATCH or REAL_TIME, as the record says
    status: str  # SCHEDULING, STOPPED, PAUSED (batch); STARTING, NORMAL, EXCEPTION, STOPPING, STOPPED (real-time)
    last_instance_status: str  # batch only; '' when the job has no instance yet
    last_instance_end: float | None  # batch only
    start: float | None


@dataclass(frozen=True, slots=True)
class DataArtsJobList:
    """The result of one job-list poll (all pages) of one workspace and job type.

    `workspace` is the label value: the workspace id, or `default` for the default workspace. `job_series_budget` is
    this list's share of the source's `max_job_series`, which all its workspace and job-type lists split.
    """

    project_id: str
    workspace: str
    job_type: str
    jobs: tuple[DataArtsJob, ...]
    job_series_budget: int
