"""The `maxcompute` source's config model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from exporter.config import DAY, MINUTE, BucketBounds, Interval, NameList, SourceConfig, duration

# From a second to a day: short SQL jobs to daily batch runs.
DEFAULT_DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
                            14400.0, 28800.0, 43200.0, 86400.0)


class MaxComputeConfig(SourceConfig):
    """A MaxCompute source: GetRunningJobs every `interval`, ListJobSnapshotInfos every `snapshot_interval`."""

    kind: Literal["maxcompute"]
    snapshot_interval: Interval = 60.0
    # GetRunningJobs lists the jobs submitted within this: one running longer drops out of the running series.
    running_lookback: Annotated[float, duration(MINUTE, 30 * DAY)] = 7 * DAY
    tenant_id: str | None = None
    quotas: NameList = []
    projects: NameList = []
    owners: NameList = []
    # Finished jobs: GetJobInfo for each job that left the running and snapshot sets.
    finished_jobs: bool = True
    job_info_interval: Interval = 30.0
    job_info_max_attempts: Annotated[int, Field(ge=1)] = 10
    job_info_batch: Annotated[int, Field(ge=1)] = 500
    wait_buckets: BucketBounds = DEFAULT_DURATION_BUCKETS
    run_buckets: BucketBounds = DEFAULT_DURATION_BUCKETS

    def default_endpoint(self) -> str:
        """Returns the regional HTTPS endpoint."""
        return f"https://maxcompute.{self.region}.aliyuncs.com"

    def poll_intervals(self) -> tuple[float, ...]:
        """Returns the interval of each polled API."""
        return (self.interval, self.snapshot_interval, *((self.job_info_interval,) if self.finished_jobs else ()))
