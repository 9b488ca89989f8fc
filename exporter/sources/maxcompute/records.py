"""MaxCompute's records: running jobs, snapshot jobs, and the finished-job counts."""

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
    """The result of one ListJobSnapshotInfos poll: the jobs present at `snapshot_time`, of the whole source or of
    the one `quota` the listing was filtered to."""

    jobs: tuple[SnapshotJob, ...]
    snapshot_time: float | None
    quota: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedJobs:
    """The result of one GetJobInfo round: cumulative counts of every finished job recorded since start-up.

    `tally` holds the counters `finished` (project, quota, job_type, status), `cpu_core_seconds`,
    `memory_byte_seconds`, `input_bytes` (project, quota, job_type), `diagnostics` (project, quota, scene, scene_tag,
    severity) and the histograms `wait_seconds`, `run_seconds` (project, quota, job_type).
    """

    tally: FrozenTally
