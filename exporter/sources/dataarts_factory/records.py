"""DataArts Factory's records: the jobs of one workspace and job type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


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

    `workspace` is the label value: the workspace id, or `default` for the default workspace.
    """

    project_id: str
    workspace: str
    job_type: str
    jobs: tuple[DataArtsJob, ...]
