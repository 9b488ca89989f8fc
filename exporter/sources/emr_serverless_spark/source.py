"""Alibaba Cloud EMR Serverless Spark (OpenAPI 2023-08-08): ListJobRuns, one API per configured workspace.

Each poll of a workspace makes two listings, all pages each: the runs in an active state (Submitted, Pending,
Running, Cancelling), and the runs whose `endTime` falls in a window that reaches back past the end of the previous
window by an overlap. Ended runs are counted once, by `jobRunId`, into counters that start at zero with the process;
the first poll only records the runs that ended in its window as seen (see docs/sources/emr_serverless_spark.md).

Paging follows `nextToken` (a cursor, so pages are read one after the other) and stops at an empty or repeated token
or at `max_pages`. Object and array query parameters are compact JSON strings, as the vendor SDK sends them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

import httpx
import structlog

from exporter.contract import Api, Fetched, PollError, RequestCounter
from exporter.credentials import Credentials
from exporter.sources.alibaba import AcsCaller, acs_caller, json_param
from exporter.sources.emr_serverless_spark import render
from exporter.sources.emr_serverless_spark.config import EmrServerlessSparkConfig
from exporter.sources.emr_serverless_spark.records import (
    ENDED_CU_HOURS,
    ENDED_DURATION,
    ENDED_MEMORY_BYTE_SECONDS,
    ENDED_RUNS,
    ENDED_VCORE_SECONDS,
    SparkJobRun,
    SparkJobRuns,
)
from exporter.sources.fetching import (
    MAX_TOTAL,
    MB,
    Skips,
    amount,
    gather_or_cancel,
    number,
    parse_records,
    records_of,
    text,
)
from exporter.tally import RecentIds, Tally

VERSION = "2023-08-08"
ACTION = "ListJobRuns"
PAGE_SIZE = 100  # the documented maximum of `maxResults`
ACTIVE_STATES = ("Submitted", "Pending", "Running", "Cancelling")
# The ended-runs window starts this long before the end of the previous one (at least a minute), so a run whose
# `endTime` becomes visible late, or is stamped by a clock slightly behind ours, still falls in a window.
MIN_OVERLAP = 60.0
SEEN_MAX = 500_000  # run ids remembered per workspace; far above what one lookback of ended runs holds

log = structlog.get_logger(__name__)
JOB_RUN_ID = attrgetter("job_run_id")
Page = tuple[list[Any], str | None, int | None]  # records, next token, total count


@dataclass(frozen=True, slots=True)
class Listing:
    """Every record of one listing, and whether it was read to its end (no page limit, no repeated token)."""

    records: list[Any]
    pages: int
    complete: bool


async def fetch_token_pages(
    fetch_page: Callable[[str | None], Awaitable[Page]], max_pages: int, skips: Skips, api: str
) -> Listing:
    """Returns every record of a `nextToken`-paged listing; stops at an empty or repeated token, or at `max_pages`."""
    records: list[Any] = []
    tokens: set[str] = set()
    token: str | None = None
    for pages in range(1, max_pages + 1):
        page, token, total = await fetch_page(token)
        records.extend(page)
        if not token:
            return Listing(records, pages, True)
        if token in tokens:
            log.warning("repeated page token; listing stopped", api=api, pages=pages, token=token[:64])
            return Listing(records, pages, False)
        tokens.add(token)
    if total is not None:
        skips.add("page_limit", total - len(records))
        skips.reached("max_pages")
    log.warning("page limit reached", api=api, total_count=total, max_pages=max_pages)
    return Listing(records, max_pages, False)


def _millis(record: Mapping[str, Any], key: str) -> float | None:
    """Returns a millisecond timestamp in seconds; None when absent or not set (0)."""
    value = number(record, key, 0.001)
    return value if value is not None and value > 0 else None


def parse_run(item: Mapping[str, Any]) -> SparkJobRun:
    """Returns a SparkJobRun from one `jobRuns` entry: times in seconds, `mbSeconds` in byte-seconds."""
    return SparkJobRun(
        job_run_id=text(item, "jobRunId", required=True),
        job_name=text(item, "name"),
        queue=text(item, "resourceQueueId"),
        state=text(item, "state"),
        code_type=text(item, "codeType"),
        creator=text(item, "creator"),
        submitted_at=_millis(item, "submitTime"),
        ended_at=_millis(item, "endTime"),
        vcore_seconds=amount(item, "vcoreSeconds"),
        memory_byte_seconds=amount(item, "mbSeconds", MB),
        cu_hours=amount(item, "cuHours"),
    )


def _next_token(data: Mapping[str, Any]) -> str | None:
    token = data.get("nextToken")
    if token is not None and not isinstance(token, str | int):
        raise PollError("bad_response", "nextToken is not a string")
    return str(token).strip() if token is not None else None


def _total(data: Mapping[str, Any]) -> int | None:
    total = data.get("totalCount")
    return total if isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= MAX_TOTAL else None


class EndedRuns:
    """One workspace's ended runs: the window to list next, the run ids already counted, and the counts."""

    def __init__(
        self, lookback: float, overlap: float, clock: Callable[[], float], buckets: tuple[float, ...]
    ) -> None:
        self.lookback = lookback
        self.overlap = overlap
        self.window_end: float | None = None  # end of the last window read to its end; None before the first
        self.seen = RecentIds(ttl=2 * lookback + overlap, max_size=SEEN_MAX, clock=clock)
        self.tally = Tally({ENDED_DURATION: buckets})

    def window(self, now: float) -> tuple[float, float]:
        """Returns the `endTime` window to list at `now`: from the previous end less the overlap, within lookback."""
        if self.window_end is None:
            return now - self.overlap, now
        return max(self.window_end - self.overlap, now - self.lookback), now

    def record(self, runs: list[SparkJobRun], end: float, complete: bool) -> int:
        """Counts the runs not seen before and returns how many; on the first window, only marks them seen."""
        counting = self.window_end is not None
        counted = 0
        for run in runs:
            if run.state in ACTIVE_STATES:
                continue  # not ended yet, whatever its endTime says: counted once it has ended
            if self.seen.add(run.job_run_id) and counting:
                self._count(run)
                counted += 1
        if complete or self.window_end is None:
            self.window_end = end
        return counted

    def _count(self, run: SparkJobRun) -> None:
        group = (run.queue, run.state, run.code_type)
        self.tally.add(ENDED_RUNS, group)
        if run.submitted_at is not None and run.ended_at is not None and run.ended_at >= run.submitted_at:
            self.tally.observe(ENDED_DURATION, group, run.ended_at - run.submitted_at)
        for key, value in (
            (ENDED_VCORE_SECONDS, run.vcore_seconds), (ENDED_MEMORY_BYTE_SECONDS, run.memory_byte_seconds),
            (ENDED_CU_HOURS, run.cu_hours),
        ):  # fmt: skip
            if value is not None:
                self.tally.add(key, (run.queue,), value)


class EmrServerlessSparkSource:
    """Polls the job runs of each configured workspace in one region (or endpoint), one API per workspace, so a
    failing workspace is down on its own while the others keep their series."""

    def __init__(
        self, config: EmrServerlessSparkConfig, caller: AcsCaller, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._caller = caller
        self._clock = clock
        overlap = min(max(MIN_OVERLAP, 2 * config.interval), config.lookback / 2)
        self._ended = {ws: EndedRuns(config.lookback, overlap, clock, config.duration_buckets)
                       for ws in config.workspaces}

    @classmethod
    def from_config(
        cls, config: EmrServerlessSparkConfig, credentials: Callable[[], Credentials], counter: RequestCounter,
        transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time,
    ) -> EmrServerlessSparkSource:
        """Returns a source with its own signed client for the configured (or regional) endpoint, reading `clock`."""
        base_url = config.endpoint or config.default_endpoint()
        caller = acs_caller(config, base_url, credentials, VERSION, counter, transport, enveloped=False, clock=clock)
        return cls(config, caller, clock)

    async def aclose(self) -> None:
        """Closes the source's HTTP client."""
        await self._caller.aclose()

    def apis(self) -> list[Api[SparkJobRuns]]:
        """Returns one API per workspace, named `ListJobRuns/<workspace id>`."""
        return [Api(f"{ACTION}/{ws}", self._config.interval, partial(self.poll, ws), render.job_run_families,
                    render.active_runs) for ws in self._config.workspaces]

    def query(self, *, token: str | None = None, max_results: int = PAGE_SIZE, **filters: Any) -> dict[str, Any]:
        """Returns one page's query: the filters (objects and arrays as compact JSON), region, queue and paging."""
        query: dict[str, Any] = {"maxResults": max_results, "regionId": self._config.region}
        if len(self._config.queues) == 1:  # the API filters on one queue; several are filtered here
            query["resourceQueueId"] = self._config.queues[0]
        for key, value in filters.items():
            query[key] = json_param(value) if isinstance(value, list | dict) else value
        if token:
            query["nextToken"] = token
        return query

    async def _list(self, workspace: str, skips: Skips, **filters: Any) -> Listing:
        path = f"/api/v1/workspaces/{workspace}/jobRuns"
        api = f"{ACTION}/{workspace}"  # the polled API's name: requests are counted under it, as its health is

        async def page(token: str | None) -> Page:
            data = await self._caller.call(ACTION, "GET", path, query=self.query(token=token, **filters), api=api)
            return records_of(data, "jobRuns"), _next_token(data), _total(data)

        return await fetch_token_pages(page, self._config.max_pages, skips, api)

    def _runs(self, listing: Listing, skips: Skips) -> list[SparkJobRun]:
        runs = parse_records(listing.records, parse_run, skips, key=JOB_RUN_ID)
        if len(self._config.queues) > 1:
            wanted = set(self._config.queues)
            runs = [r for r in runs if r.queue in wanted]
        return runs

    async def poll(self, workspace: str) -> Fetched[SparkJobRuns]:
        """Returns the workspace's active runs and its ended-run counts; nothing is counted unless both listings
        were read, so a failed poll leaves the window and the counts as they were (and when one listing fails, the
        other is cancelled: no request outlives the poll)."""
        ended = self._ended[workspace]
        start, end = ended.window(self._clock())
        skips = Skips(self._config.max_label_length)
        active, finished = await gather_or_cancel((
            self._list(workspace, skips, states=list(ACTIVE_STATES)),
            self._list(workspace, skips, endTime={"startTime": int(start * 1000), "endTime": int(end * 1000)}),
        ))
        counted = ended.record(self._runs(finished, skips), end, finished.complete)
        log.debug("ended runs", workspace=workspace, window_seconds=round(end - start, 3), listed=len(finished.records),
                  counted=counted)
        result = SparkJobRuns(workspace, tuple(self._runs(active, skips)), ended.tally.freeze())
        return skips.fetched(result, active.pages + finished.pages, len(active.records) + len(finished.records))
