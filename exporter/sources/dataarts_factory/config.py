"""The `dataarts_factory` source's config model."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from exporter.config import HUAWEI_ENV, Interval, SourceConfig, trimmed_unique

HuaweiId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _unique_job_types(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("expected BATCH, REAL_TIME or both")
    return list(dict.fromkeys(values))


class DataArtsFactoryConfig(SourceConfig):
    """A DataArts Factory source: the job list of each workspace and job type every `interval`."""

    credential_env: ClassVar[tuple[str, str, str]] = HUAWEI_ENV

    kind: Literal["dataarts_factory"]
    interval: Interval = 60.0
    project_id: HuaweiId
    # Empty: the default workspace only, requested without the `workspace` header.
    workspaces: Annotated[list[HuaweiId], AfterValidator(trimmed_unique)] = []
    job_types: Annotated[list[Literal["BATCH", "REAL_TIME"]], AfterValidator(_unique_job_types)] = [
        "BATCH", "REAL_TIME",
    ]

    def default_endpoint(self) -> str:
        """Returns the regional HTTPS endpoint (cn-east-4 names it `dayu.`, the other regions `dayu-dlf.`)."""
        host = "dayu" if self.region == "cn-east-4" else "dayu-dlf"
        return f"https://{host}.{self.region}.myhuaweicloud.com"
