"""The vendor-neutral vocabulary between sources and metrics: plain, immutable records.

Sources turn API responses into these; the metrics module turns these into series. Times are UNIX seconds, sizes are
bytes, strings are already trimmed. A field the API did not return is None and yields no sample.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunningJob:
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


@dataclass(frozen=True, slots=True)
class SnapshotJob:
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
