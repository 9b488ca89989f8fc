"""The `emr_serverless_spark` source's config model."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from exporter.config import BucketBounds, NameList, SourceConfig, Span
from exporter.files import shorten

# From ten seconds to a day: the bounds of `emr_spark_job_run_duration_seconds` unless `duration_buckets` says.
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)


def _workspace_ids(values: list[str]) -> list[str]:
    """Requires one or more workspace ids, each one that can stand in a URL path segment as it is."""
    if not values:
        raise ValueError("expected one or more workspace ids")
    for value in values:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
            raise ValueError(f"expected workspace ids such as w-d2d82aa09155abcd, got {shorten(value)}")
    return values


class EmrServerlessSparkConfig(SourceConfig):
    """An EMR Serverless Spark source: ListJobRuns of each workspace every `interval` (active and ended runs)."""

    kind: Literal["emr_serverless_spark"]
    workspaces: Annotated[NameList, AfterValidator(_workspace_ids)]
    queues: NameList = []
    # How far back one window of ended runs reaches at most (it reaches back to the last good poll, after failures).
    lookback: Annotated[Span, Field(validate_default=True)] = 3600.0
    duration_buckets: BucketBounds = DURATION_BUCKETS

    @field_validator("lookback")
    @classmethod
    def _lookback_covers_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value < 2 * interval:
            raise ValueError(f"expected at least twice the interval ({2 * interval:g}s), got {value:g}s")
        return value

    def default_endpoint(self) -> str:
        """Returns the regional HTTPS endpoint."""
        return f"https://emr-serverless-spark.{self.region}.aliyuncs.com"
