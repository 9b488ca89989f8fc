"""Huawei Cloud DataArts Studio, DataArts Factory: the job list (`GET /v1/{project_id}/jobs`, the SDK's ListJobs).

One polled API per (workspace, job type), named `ListJobs/<workspace>/<job type>` (`default` for the default
workspace): each pair has its own health, errors, back-off and last good data, so a workspace that fails (a wrong id,
a missing permission) neither hides the others nor goes unnoticed (`cloud_job_exporter_source_up{api=...}` names it).

Paging: `offset` is the page number counted from 0 (the vendor page: "start page of the paging list, default 0"; the
SDK's model calls it the page number), `limit` 100 (the vendor page's maximum). Page 0 gives `total`; the other
pages are read concurrently, and more while a page reports a larger total, up to `max_pages`. Job names are unique in
a workspace (they are the jobs' ids in the API's paths): a name seen twice is counted once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from operator import attrgetter
from typing import Any

import httpx
import structlog

from exporter.contract import Api, Fetched, PollError, RequestCounter
from exporter.credentials import Credentials
from exporter.sources.dataarts_factory import render
from exporter.sources.dataarts_factory.config import DataArtsFactoryConfig
from exporter.sources.dataarts_factory.records import DataArtsJob, DataArtsJobList
from exporter.sources.fetching import (
    MAX_TOTAL,
    BadRecord,
    Page,
    Skips,
    fetch_numbered_pages,
    number,
    parse_page,
    text,
    unique,
)
from exporter.sources.huawei import HuaweiCaller, huawei_caller

OPERATION = "ListJobs"
PAGE_SIZE = 100  # the vendor page's maximum `limit`
DEFAULT_WORKSPACE = "default"  # the label value for the workspace selected without the `workspace` header
MS = 0.001

log = structlog.get_logger(__name__)
JOB_NAME = attrgetter("name")


def api_name(workspace: str | None, job_type: str) -> str:
    """Returns the polled API's name for a workspace (None: the default one) and a job type."""
    return f"{OPERATION}/{workspace or DEFAULT_WORKSPACE}/{job_type}"


def read_page(body: Mapping[str, Any]) -> Page:
    """Returns (the page's job records, `total`); raises PollError(bad_response) when either is missing or wrong."""
    total, jobs = body.get("total"), body.get("jobs")
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= MAX_TOTAL:
        raise PollError("bad_response", f"total is missing or not an integer from 0 to {MAX_TOTAL}")
    if jobs is None:
        jobs = []
    if not isinstance(jobs, list):
        raise PollError("bad_response", "jobs is not a list")
    return jobs, total


def parse_job(item: Any, requested_type: str) -> DataArtsJob:
    """Returns a DataArtsJob from one `jobs` entry, times converted from UNIX milliseconds to seconds."""
    if not isinstance(item, Mapping):
        raise BadRecord("record is not an object")
    return DataArtsJob(
        name=text(item, "name", required=True),
        job_type=text(item, "jobType") or requested_type,
        status=text(item, "status", required=True),
        last_instance_status=text(item, "lastInstanceStatus"),
        last_instance_end=number(item, "lastInstanceEndTime", MS),
        start=number(item, "startTime", MS),
    )


class DataArtsFactorySource:
    """Polls the job lists of one project's workspaces."""

    def __init__(self, config: DataArtsFactoryConfig, caller: HuaweiCaller) -> None:
        self._config = config
        self._caller = caller
        self._pairs = [(ws, jt) for ws in (config.workspaces or [None]) for jt in config.job_types]

    @classmethod
    def from_config(
        cls, config: DataArtsFactoryConfig, credentials: Callable[[], Credentials], counter: RequestCounter,
        transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time,
    ) -> DataArtsFactorySource:
        """Returns a source with its own signed client for the configured (or regional) endpoint; its signatures read
        `clock`."""
        base_url = config.endpoint or config.default_endpoint()
        caller = huawei_caller(config, base_url, credentials, counter, transport, project_id=config.project_id,
                               clock=clock)
        return cls(config, caller)

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._caller.aclose()

    def apis(self) -> list[Api[DataArtsJobList]]:
        """Returns one polled API per (workspace, job type)."""
        return [Api(api_name(ws, jt), self._config.interval, partial(self.job_list, ws, jt), render.job_list_families,
                    render.job_count) for ws, jt in self._pairs]

    async def job_list(self, workspace: str | None, job_type: str) -> Fetched[DataArtsJobList]:
        """Returns every job of one workspace and job type (all pages: `offset` is the page number from 0)."""
        name = api_name(workspace, job_type)
        skips = Skips(self._config.max_label_length)
        headers = {"workspace": workspace} if workspace else None
        read = [0]

        def parse(item: Mapping[str, Any]) -> DataArtsJob:
            return parse_job(item, job_type)

        async def page(offset: int, after_send: Callable[[], None] | None) -> Callable[[], Page]:
            decode = await self._caller.call_later(
                name, "GET", f"/v1/{self._config.project_id}/jobs",
                query={"jobType": job_type, "offset": offset, "limit": PAGE_SIZE}, headers=headers,
                after_send=after_send,
            )

            def digest() -> Page:
                raw, total = read_page(decode())
                read[0] += len(raw)
                return parse_page(raw, parse, skips), total  # parsed page by page

            return digest

        parsed, pages = await fetch_numbered_pages(page, PAGE_SIZE, self._config.max_pages, skips, name, first=0,
                                                   workers=self._caller.concurrency)
        jobs = unique(parsed, skips, key=JOB_NAME)
        if skips.counts["duplicate"] > PAGE_SIZE // 2:
            # Many repeats mean the endpoint reads `offset` as a count of records, not as a page number.
            log.warning("job names repeat across pages", api=name, duplicates=skips.counts["duplicate"],
                        records=read[0])
        result = DataArtsJobList(self._config.project_id, workspace or DEFAULT_WORKSPACE, job_type, tuple(jobs))
        return skips.fetched(result, pages, read[0])
