"""Polling: one APScheduler job per source and API, each poll ending in a fresh, immutable exposition.

A poll never overlaps itself (`max_instances=1`; a skipped run is counted), a throttled API backs off as the vendor
asks, and every result, good or bad, is rendered off the event loop and swapped in whole, so a scrape only reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter.contract import Api, PollError
from exporter.exposition.renderer import Renderer
from exporter.logs import redact
from exporter.pace import poll_time_limit, stretched_limit
from exporter.publication import Publication
from exporter.store import Key, Store

log = structlog.get_logger("exporter.poller")


class _OverlapCounted(logging.Filter):
    """Drops APScheduler's warning for each run skipped because the last one still ran: the exporter counts those
    (`polls_skipped_total{reason="overlap"}`) and says once why (`poll takes longer than its interval`), where
    APScheduler would warn every interval for as long as a listing stays slow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_OverlapCounted())
MAX_BACKOFF = 600.0
MAX_MESSAGE, MAX_REQUEST_ID = 500, 100  # characters of a failure's message and request id kept for the status page
HOUSEKEEPING_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    """One API of one source, as the scheduler runs it."""

    source: str
    api: Api

    @property
    def key(self) -> Key:
        return (self.source, self.api.name)


class Poller:
    """Runs the targets' polls, records their outcome in the store, and publishes a new exposition after each."""

    def __init__(self, store: Store, targets: Sequence[Target], clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.targets = tuple(targets)
        self._clock = clock
        self._renderer = Renderer({t.key: t.api for t in targets})
        self._render_lock = asyncio.Lock()
        self._backoff_until: dict[Key, float] = {}
        self._throttled_in_a_row: dict[Key, int] = {}
        self._failing: dict[Key, str] = {}
        self._timeouts: dict[Key, int] = {}  # polls in a row that ran out of time
        self._slow: set[Key] = set()  # APIs whose last good poll took longer than their interval
        self._stopping = False
        self._running: set[asyncio.Task[Any]] = set()
        view = store.view(clock())
        self.published = Publication(self._renderer.render(view), view.states, view.sources, view.shard, view.units)

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Polls and renders `targets` from now on (a reload's): a poll still running for a target no longer among
        them ends without a trace, and what was kept for it is dropped."""
        # What was kept for a key whose target is new (a source removed, or changed and opened afresh) goes.
        kept_keys = {t.key for t in targets if t in self.targets}
        self.targets = tuple(targets)
        self._renderer.set_apis({t.key: t.api for t in targets})
        for kept in (self._backoff_until, self._throttled_in_a_row, self._failing, self._timeouts):
            for key in set(kept) - kept_keys:
                del kept[key]
        self._slow &= kept_keys

    async def poll_once(self, target: Target) -> None:
        """Polls one API once, unless it is backing off, and publishes the result."""
        key = target.key
        if self._clock() < self._backoff_until.get(key, 0.0):
            self.store.record_skip(key, "backoff", self._clock())
            await self.publish()
            return
        started = time.perf_counter()
        state = self.store.states[key]
        limit = stretched_limit(poll_time_limit(target.api.interval, state.stale_after), state.took,
                                self._timeouts.get(key, 0))
        try:
            async with asyncio.timeout(limit):
                fetched = await target.api.fetch()
        except PollError as exc:
            self._failed(target, exc, time.perf_counter() - started)
        except TimeoutError:
            if target in self.targets:  # not a poll of a source a reload replaced while it ran
                self._timeouts[key] = self._timeouts.get(key, 0) + 1
            self._failed(target, PollError("timeout", f"the poll took longer than {limit:g}s"),
                         time.perf_counter() - started)
        except Exception as exc:  # a bug, not a vendor failure: keep serving, say so loudly once
            self._failed(target, PollError("internal", f"{type(exc).__name__}: {exc}"), time.perf_counter() - started,
                         crash=exc)
        else:
            if target not in self.targets:  # a reload removed or replaced its source while it ran
                return
            duration = time.perf_counter() - started
            self.store.record_success(key, fetched, self._clock(), duration)
            self._throttled_in_a_row.pop(key, None)
            self._timeouts.pop(key, None)
            self._note_pace(target, duration)
            if self._failing.pop(key, None):
                log.info("poll recovered", source=target.source, api=target.api.name)
            log.info("poll", source=target.source, api=target.api.name, pages=fetched.pages, jobs=fetched.records,
                     skipped=sum(fetched.skipped.values()), duration_seconds=round(duration, 3))
        await self.publish()

    def _note_pace(self, target: Target, took: float) -> None:
        """Logs once when an API's polls start taking longer than its interval, and once when they fit again."""
        key, interval = target.key, target.api.interval
        if took > interval and key not in self._slow:
            self._slow.add(key)
            log.warning("poll takes longer than its interval; polling at the pace it allows", source=target.source,
                        api=target.api.name, interval_seconds=interval, duration_seconds=round(took, 3),
                        every_seconds=self.store.states[key].cadence,
                        fix="raise max_concurrency, list quotas and shard the source, or raise the interval")
        elif took <= interval and key in self._slow:
            self._slow.discard(key)
            log.info("poll fits its interval again", source=target.source, api=target.api.name,
                     interval_seconds=interval, duration_seconds=round(took, 3))

    def _failed(self, target: Target, exc: PollError, duration: float, crash: Exception | None = None) -> None:
        if target not in self.targets:  # a reload removed or replaced its source (and closed it) while it ran
            return
        key = target.key
        backoff = {}
        if exc.reason == "throttled":
            n = self._throttled_in_a_row[key] = self._throttled_in_a_row.get(key, 0) + 1
            wait = min(exc.retry_after or target.api.interval * 2 ** (n - 1), MAX_BACKOFF)
            self._backoff_until[key] = self._clock() + wait
            backoff = {"backoff_seconds": round(wait, 3)}
        # The message and request id reach the status page: scrub any secret a library may have echoed into the
        # message, and cut both short, as a vendor's are not bounded (an envelope's errorMsg, a requestId).
        request_id = redact(exc.request_id)[:MAX_REQUEST_ID] if exc.request_id else None
        self.store.record_failure(key, exc.reason, redact(str(exc))[:MAX_MESSAGE], self._clock(), duration, exc.limit,
                                  request_id=request_id, backoff_until=self._backoff_until.get(key))
        # One line when an API starts failing or fails for another reason, not one per failing poll: a long outage
        # is not a log flood (the messages themselves vary: request ids, the gateway's string to sign).
        if self._failing.get(key) != exc.reason:
            self._failing[key] = exc.reason
            traceback = {"exc_info": crash} if crash else {}  # a crash is a bug: its traceback helps; a failure not
            log.warning("poll failed", source=target.source, api=target.api.name, reason=exc.reason,
                        error=str(exc), request_id=exc.request_id, duration_seconds=round(duration, 3), **backoff,
                        **traceback)

    async def publish(self) -> None:
        """Renders the store off the event loop and swaps the new exposition in."""
        async with self._render_lock:
            view = self.store.view(self._clock())
            # Ready means /metrics shows every API's first poll: the states published are the exposition's own.
            self.published = Publication(await asyncio.to_thread(self._renderer.render, view), view.states,
                                         view.sources, view.shard, view.units)

    async def housekeeping(self) -> None:
        """Re-publishes between polls: an API's data that has just gone stale leaves /metrics, and the process'
        own series (CPU, memory) stay at most HOUSEKEEPING_INTERVAL old. An unchanged API's families and their
        deflate segments are reused, so such a publish renders only the exporter's own series."""
        await self.publish()

    async def scheduled(self, job: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Runs `job(*args)` (a poll or a housekeeping publish) for the scheduler, unless the poller is stopping."""
        if self._stopping:
            return
        task = asyncio.current_task()
        assert task is not None  # a scheduled job runs as a task
        self._running.add(task)
        try:
            await job(*args)
        except asyncio.CancelledError:
            # Cut short by stop(): the job ends quietly, where APScheduler would log the cancellation's traceback
            # as a job that raised.
            if not self._stopping:
                raise
        finally:
            self._running.discard(task)

    async def stop(self) -> None:
        """Cancels the scheduled polls and publishes in flight, and returns once they have ended; no job runs after.
        For shutdown: the sources' clients can then close with no poll under them."""
        self._stopping = True
        await asyncio.sleep(0)  # a job just started by the scheduler gets to its first step, and returns at once
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def job_id(target: Target) -> str:
    """Returns the scheduler's id of a target's job."""
    return f"{target.source}/{target.api.name}"


def schedule_target(poller: Poller, scheduler: AsyncIOScheduler, target: Target) -> None:
    """Adds a target's job: its first run now, then every interval, never two at once, through `poller.scheduled`
    (so that `poller.stop()` ends it)."""
    scheduler.add_job(
        poller.scheduled, "interval", args=[poller.poll_once, target], seconds=target.api.interval,
        max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone(), misfire_grace_time=None,
        id=job_id(target), name=job_id(target),
    )


def schedule(poller: Poller, scheduler: AsyncIOScheduler) -> None:
    """Adds one job per target and the housekeeping job, and counts a run skipped because the last still ran."""
    for target in poller.targets:
        schedule_target(poller, scheduler, target)

    def skipped(event: JobSubmissionEvent) -> None:
        for target in poller.targets:
            if job_id(target) == event.job_id:
                poller.store.record_skip(target.key, "overlap", event.scheduled_run_times[-1].timestamp())

    scheduler.add_listener(skipped, EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(poller.scheduled, "interval", args=[poller.housekeeping], seconds=HOUSEKEEPING_INTERVAL,
                      max_instances=1, coalesce=True, id="housekeeping", name="housekeeping")
