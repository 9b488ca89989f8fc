"""Alibaba Cloud MaxCompute (OpenAPI 2022-01-04): GetRunningJobs and ListJobSnapshotInfos, and GetJobInfo for the
jobs that leave them.

A source with no `quotas` is one unit of work: its three APIs, polled by one shard. A source that lists quotas is one
unit per quota (`GetRunningJobs/<quota>` and so on), each with its own finished-job tracker: the vendor filters both
listings by quota, and a quota's finished jobs are the ones its own listings lost, so shards can split a large
source quota by quota.

Both listings are paged by number with a `totalCount`: the first page says how many there are, the rest are fetched
concurrently (the caller bounds the concurrency), and records are de-duplicated by `instanceId` because jobs move
between pages while the pages are read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

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
J = TypeVar("J", RunningJob, SnapshotJob)


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


def _named(action: str, quota: str | None) -> str:
    """Returns the name of one unit's API: the action, and the quota after a slash when the unit is one."""
    return f"{action}/{quota}" if quota else action


def _of_quota(jobs: list[J], quota: str | None, skips: Skips) -> list[J]:
    """Returns the jobs of a quota unit's listing that are of its quota, counting the others (`other_quota`): the
    vendor filters by quota, but a job it listed anyway would be served, and finished, by two units."""
    if quota is None:
        return jobs
    kept = [j for j in jobs if j.quota == quota]
    skips.add("other_quota", len(jobs) - len(kept))
    return kept


class MaxComputeSource:
    """Polls one MaxCompute region (or endpoint) with the configured filters."""

    def __init__(self, config: MaxComputeConfig, caller: AcsCaller, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._caller = caller
        self._clock = clock
        # One finished-job tracker per unit: the whole source (None), or each of its quotas.
        self.trackers: dict[str | None, FinishedJobTracker] = {
            quota: FinishedJobTracker(config, caller, clock, _named("GetJobInfo", quota), quota)
            for quota in (config.quotas or [None])
        } if config.finished_jobs else {}

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
        """Returns the polled APIs of each unit (the source, or each quota) with their intervals: the running jobs and
        the snapshot, each with per-job series, and GetJobInfo's finished-job counts when `finished_jobs` is on."""
        return [api for quota in (self._config.quotas or [None]) for api in self._unit_apis(quota)]

    def _unit_apis(self, quota: str | None) -> list[Api[Any]]:
        unit = f"quota/{quota}" if quota else "all"
        apis: list[Api[Any]] = [
            Api(_named("GetRunningJobs", quota), self._config.interval, partial(self.running_jobs, quota),
                render.running_families, render.job_count, unit),
            Api(_named("ListJobSnapshotInfos", quota), self._config.snapshot_interval, partial(self.snapshot, quota),
                render.snapshot_families, render.job_count, unit),
        ]
        if tracker := self.trackers.get(quota):
            apis.append(Api(_named("GetJobInfo", quota), self._config.job_info_interval, tracker.poll,
                            render.finished_families, None, unit))
        return apis

    async def _observe(self, quota: str | None, api: str, jobs: list[Any], skips: Skips) -> None:
        """Tells the unit's finished-job tracker which jobs are active, unless the listing was cut short."""
        tracker = self.trackers.get(quota)
        if tracker and not skips.counts.get("page_limit"):
            # De-duplicating and this each pass over every job held: the event loop gets a turn between the two
            # (scrapes wait for one pass at most, not both).
            await asyncio.sleep(0)
            tracker.observe(api, frozenset(map(INSTANCE_ID, jobs)))

    def _running_query(self, page: int, now: int, quota: str | None) -> dict[str, Any]:
        cfg = self._config
        query: dict[str, Any] = {
            "from": int(now - cfg.running_lookback), "to": now, "pageNumber": page, "pageSize": RUNNING_PAGE_SIZE,
        }
        if cfg.owners:
            query["jobOwnerList"] = ",".join(cfg.owners)
        if quota:
            query["quotaNicknameList"] = quota
        return query

    async def running_jobs(self, quota: str | None = None) -> Fetched[RunningJobs]:
        """Returns every running job of the source, or of one quota (GetRunningJobs, all pages), filtered by the
        configured projects."""
        now = int(self._clock())
        skips = Skips(self._config.max_label_length)

        read = [0]

        async def page(n: int, after_send: Callable[[], None] | None) -> Callable[[], Page]:
            decode = await self._caller.call_later(
                "GetRunningJobs", "GET", "/api/v1/jobs/runningJobs", query=self._running_query(n, now, quota),
                api=_named("GetRunningJobs", quota), after_send=after_send,
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
        jobs = _of_quota(unique(parsed, skips, key=INSTANCE_ID), quota, skips)
        if self._config.projects:  # GetRunningJobs has no project filter of its own
            wanted = set(self._config.projects)
            jobs = [j for j in jobs if j.project in wanted]
        await self._observe(quota, "GetRunningJobs", jobs, skips)
        return skips.fetched(RunningJobs(tuple(jobs)), pages, read[0])

    def _snapshot_request(self, page: int, at: int, quota: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg = self._config
        query: dict[str, Any] = {"pageNumber": page, "pageSize": SNAPSHOT_PAGE_SIZE, "region": cfg.region}
        if cfg.tenant_id:
            query["tenantId"] = cfg.tenant_id
        body: dict[str, Any] = {"to": at}
        if cfg.projects:
            body["projectList"] = list(cfg.projects)
        if cfg.owners:
            body["jobOwnerList"] = list(cfg.owners)
        if quota:
            body["quotaNickname"] = quota
        return query, body

    async def snapshot(self, quota: str | None = None) -> Fetched[JobSnapshot]:
        """Returns the jobs present now in the source, or in one quota (ListJobSnapshotInfos at `to` = now, all
        pages)."""
        at = int(self._clock())
        skips = Skips(self._config.max_label_length)
        snapshot_times: list[float] = []
        read = [0]

        async def page(n: int, after_send: Callable[[], None] | None) -> Callable[[], Page]:
            query, body = self._snapshot_request(n, at, quota)
            decode = await self._caller.call_later(
                "ListJobSnapshotInfos", "POST", "/api/v1/jobs/snapshot", query=query, body=body,
                api=_named("ListJobSnapshotInfos", quota), after_send=after_send,
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
        jobs = _of_quota(unique(parsed, skips, key=INSTANCE_ID), quota, skips)
        await self._observe(quota, "ListJobSnapshotInfos", jobs, skips)
        snapshot_time = max(snapshot_times) if snapshot_times else None
        return skips.fetched(JobSnapshot(tuple(jobs), snapshot_time, quota), pages, read[0])
