"""Alibaba Cloud MaxCompute (OpenAPI 2022-01-04): GetRunningJobs and ListJobSnapshotInfos.

Both APIs are paged by number with a `totalCount`: the first page says how many there are, the rest are fetched
concurrently (the caller bounds the concurrency), and records are de-duplicated by `instanceId` because jobs move
between pages while the pages are read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

import httpx
import structlog

from exporter.contract import Api, Fetched, RequestCounter
from exporter.credentials import Credentials
from exporter.sources.alibaba import AcsCaller, acs_caller
from exporter.sources.fetching import (
    MB,
    BadRecord,
    Page,
    Skips,
    fetch_numbered_pages,
    integer_field,
    number,
    parse_page,
    records_of,
    text,
    unique,
)
from exporter.sources.maxcompute import render
from exporter.sources.maxcompute.config import MaxComputeConfig
from exporter.sources.maxcompute.jobinfo import FinishedJobTracker
from exporter.sources.maxcompute.records import JobSnapshot, RunningJob, RunningJobs, SnapshotJob

VERSION = "2022-01-04"
RUNNING_PAGE_SIZE = 20  # the documented maximum for GetRunningJobs
SNAPSHOT_PAGE_SIZE = 100  # undocumented maximum; Alibaba list APIs commonly cap at 100

log = structlog.get_logger(__name__)
INSTANCE_ID = attrgetter("instance_id")


def parse_running_job(item: Mapping[str, Any]) -> RunningJob:
    """Returns a RunningJob from one `runningJobInfoList` entry."""
    return RunningJob(
        instance_id=text(item, "instanceId", required=True),
        project=text(item, "project"),
        quota=text(item, "quotaNickname"),
        owner=text(item, "jobOwner"),
        cu_snapshot=number(item, "cuSnapshot"),
        memory_snapshot=number(item, "memorySnapshot"),
        progress=number(item, "progress"),
        submitted_at=number(item, "submittedAtTime"),
        running_at=number(item, "runningAtTime"),
    )


def parse_snapshot_job(item: Mapping[str, Any]) -> SnapshotJob:
    """Returns a SnapshotJob from one `jobInfoList` entry, memory converted from MB to bytes."""
    priority = item.get("priority")
    if isinstance(priority, int) and not isinstance(priority, bool):
        number(item, "priority")  # raises BadRecord past MAX_NUMBER: a 400-digit label value is no priority
        priority = str(priority)
    elif priority is not None:
        if not isinstance(priority, str):
            raise BadRecord("priority is not an integer")
        priority = text(item, "priority")
    return SnapshotJob(
        instance_id=text(item, "instanceId", required=True),
        project=text(item, "project"),
        quota=text(item, "quotaNickname"),
        job_type=text(item, "jobType"),
        owner=text(item, "jobOwner"),
        priority=priority or "",
        cpu_usage_cores=number(item, "cpuUsage"),
        cpu_request_cores=number(item, "cpuRequest"),
        memory_usage_bytes=number(item, "memoryUsage", MB),
        memory_request_bytes=number(item, "memoryRequest", MB),
        cpu_usage_to_request=number(item, "cpuUsageToRequestRatio"),
        memory_usage_to_request=number(item, "memoryUsageToRequestRatio"),
        waiting_seconds=number(item, "waitingTime"),
        running_seconds=number(item, "runningTime"),
    )


class MaxComputeSource:
    """Polls one MaxCompute region (or endpoint) with the configured filters."""

    def __init__(self, config: MaxComputeConfig, caller: AcsCaller, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._caller = caller
        self._clock = clock
        self.finished = FinishedJobTracker(config, caller, clock) if config.finished_jobs else None

    @classmethod
    def from_config(
        cls, config: MaxComputeConfig, credentials: Callable[[], Credentials], counter: RequestCounter,
        transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time,
    ) -> MaxComputeSource:
        """Returns a source with its own signed client for the configured (or regional) endpoint, reading `clock`."""
        base_url = config.endpoint or config.default_endpoint()
        return cls(config, acs_caller(config, base_url, credentials, VERSION, counter, transport, clock=clock), clock)

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._caller.aclose()

    def apis(self) -> list[Api[Any]]:
        """Returns the polled APIs with their intervals: the running jobs and the snapshot, each with per-job series,
        and GetJobInfo's finished-job counts when `finished_jobs` is on."""
        apis: list[Api[Any]] = [
            Api("GetRunningJobs", self._config.interval, self.running_jobs, render.running_families, render.job_count),
            Api("ListJobSnapshotInfos", self._config.snapshot_interval, self.snapshot, render.snapshot_families,
                render.job_count),
        ]
        if self.finished:
            apis.append(Api("GetJobInfo", self._config.job_info_interval, self.finished.poll,
                            render.finished_families))
        return apis

    async def _observe(self, api: str, jobs: list[Any], skips: Skips) -> None:
        """Tells the finished-job tracker which jobs are active, unless the listing was cut short."""
        if self.finished and not skips.counts.get("page_limit"):
            # De-duplicating and this each pass over every job held: the event loop gets a turn between the two
            # (scrapes wait for one pass at most, not both).
            await asyncio.sleep(0)
            self.finished.observe(api, frozenset(map(INSTANCE_ID, jobs)))

    def _running_query(self, page: int, now: int) -> dict[str, Any]:
        cfg = self._config
        query: dict[str, Any] = {
            "from": int(now - cfg.running_lookback), "to": now, "pageNumber": page, "pageSize": RUNNING_PAGE_SIZE,
        }
        if cfg.owners:
            query["jobOwnerList"] = ",".join(cfg.owners)
        if cfg.quotas:
            query["quotaNicknameList"] = ",".join(cfg.quotas)
        return query

    async def running_jobs(self) -> Fetched[RunningJobs]:
        """Returns every running job (GetRunningJobs, all pages), filtered by the configured projects."""
        now = int(self._clock())
        skips = Skips(self._config.max_label_length)

        read = [0]

        async def page(n: int, after_send: Callable[[], None] | None) -> Callable[[], Page]:
            decode = await self._caller.call_later(
                "GetRunningJobs", "GET", "/api/v1/jobs/runningJobs", query=self._running_query(n, now),
                after_send=after_send,
            )

            def digest() -> Page:
                data = decode()
                raw = records_of(data, "runningJobInfoList")
                read[0] += len(raw)
                # Parsed page by page: about a ms on the event loop at a time, and the raw JSON is freed early.
                return parse_page(raw, parse_running_job, skips), integer_field(data, "totalCount")

            return digest

        parsed, pages = await fetch_numbered_pages(
            page, RUNNING_PAGE_SIZE, self._config.max_pages, skips, "GetRunningJobs", first=1,
            workers=self._caller.concurrency,
        )
        jobs = unique(parsed, skips, key=INSTANCE_ID)
        if self._config.projects:  # GetRunningJobs has no project filter of its own
            wanted = set(self._config.projects)
            jobs = [j for j in jobs if j.project in wanted]
        await self._observe("GetRunningJobs", jobs, skips)
        return skips.fetched(RunningJobs(tuple(jobs)), pages, read[0])

    def _snapshot_request(self, page: int, at: int) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg = self._config
        query: dict[str, Any] = {"pageNumber": page, "pageSize": SNAPSHOT_PAGE_SIZE, "region": cfg.region}
        if cfg.tenant_id:
            query["tenantId"] = cfg.tenant_id
        body: dict[str, Any] = {"to": at}
        if cfg.projects:
            body["projectList"] = list(cfg.projects)
        if cfg.owners:
            body["jobOwnerList"] = list(cfg.owners)
        if len(cfg.quotas) == 1:  # the API filters on one quota only; several are filtered here
            body["quotaNickname"] = cfg.quotas[0]
        return query, body

    async def snapshot(self) -> Fetched[JobSnapshot]:
        """Returns the jobs present now (ListJobSnapshotInfos at `to` = now, all pages)."""
        at = int(self._clock())
        skips = Skips(self._config.max_label_length)
        snapshot_times: list[float] = []
        read = [0]

        async def page(n: int, after_send: Callable[[], None] | None) -> Callable[[], Page]:
            query, body = self._snapshot_request(n, at)
            decode = await self._caller.call_later(
                "ListJobSnapshotInfos", "POST", "/api/v1/jobs/snapshot", query=query, body=body,
                after_send=after_send,
            )

            def digest() -> Page:
                data = decode()
                raw = records_of(data, "jobInfoList")
                read[0] += len(raw)
                snapshot_times.extend(t for r in raw[:1] if isinstance(r, Mapping)
                                      and isinstance(t := r.get("snapshotTime"), int | float))
                return parse_page(raw, parse_snapshot_job, skips), integer_field(data, "totalCount")

            return digest

        parsed, pages = await fetch_numbered_pages(
            page, SNAPSHOT_PAGE_SIZE, self._config.max_pages, skips, "ListJobSnapshotInfos", first=1,
            workers=self._caller.concurrency,
        )
        jobs = unique(parsed, skips, key=INSTANCE_ID)
        if len(self._config.quotas) > 1:
            wanted = set(self._config.quotas)
            jobs = [j for j in jobs if j.quota in wanted]
        await self._observe("ListJobSnapshotInfos", jobs, skips)
        snapshot_time = max(snapshot_times) if snapshot_times else None
        return skips.fetched(JobSnapshot(tuple(jobs), snapshot_time), pages, read[0])
