"""The `maxcompute` source's config model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from exporter.config import DEFAULT_DURATION_BUCKETS, BucketBounds, Duration, NameList, SourceConfig


class MaxComputeConfig(SourceConfig):
    """A MaxCompute source: GetRunningJobs every `interval`, ListJobSnapshotInfos every `snapshot_interval`."""

    kind: Literal["maxcompute"]
    snapshot_interval: Duration = 60.0
    running_lookback: Duration = 7 * 86400.0
    tenant_id: str | None = None
    quotas: NameList = []
    projects: NameList = []
    owners: NameList = []
    # Finished jobs: GetJobInfo for each job that left the running and snapshot sets.
    finished_jobs: bool = True
    job_info_interval: Duration = 30.0
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
