"""MaxCompute finished jobs: GetJobInfo for each job that left the active sets, each finished job counted once.

GetRunningJobs and ListJobSnapshotInfos say which jobs are active; when a job leaves the set an API listed it in,
it is queued, and each GetJobInfo round asks about the queued jobs (under the source's concurrency limit). A job
whose info is terminal is recorded exactly once (a bounded set of recorded ids guards against flicker, overlap and
retries); one still running is asked again in later rounds up to `job_info_max_attempts`; one the service does not
know (OBJECT_NOT_EXIST) is dropped and counted. A failed call leaves its job queued: nothing is lost to an outage; a
job whose own asks keep being refused (auth, client errors) is given up after `job_info_max_attempts`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from exporter.auth.aliyun import percent_encode
from exporter.contract import Fetched, PollError
from exporter.sources.alibaba import AcsCaller
from exporter.sources.fetching import MB, BadRecord, Skips, amount, parsing, text
from exporter.sources.maxcompute.config import MaxComputeConfig
from exporter.sources.maxcompute.records import FinishedJobs
from exporter.tally import RecentIds, Tally

CU_CORE_SECONDS = 100  # GetJobInfo's cuUsage is in units of 100 x core x seconds
NOT_FOUND = "OBJECT_NOT_EXIST"
# Statuses that end a job. Others (running, waiting, ...) are not final; a status outside both is final only when
# the record has an end time, so a new vendor value is data, not an error.
TERMINAL = frozenset({"terminated", "success", "succeeded", "failed", "cancelled", "canceled", "killed"})
JOB_ERRORS = frozenset({"auth", "client"})  # errors about one job (permission, its id), not about the service
RECORDED_TTL = 2 * 86400.0
RECORDED_MAX = 200_000
PENDING_MAX = 100_000

log = structlog.get_logger(__name__)


def is_final(record: Mapping[str, Any]) -> bool:
    """Returns True when a GetJobInfo record describes a job that has ended."""
    status = text(record, "status").lower()
    if status in TERMINAL:
        return True
    end = record.get("endAtTime")
    return isinstance(end, int | float) and not isinstance(end, bool) and end > 0


def record_finished(tally: Tally, record: Mapping[str, Any], quota: str | None = None) -> None:
    """Adds one finished job's counts to the tally, under `quota` when given (the unit's, for a source split by
    quota: each unit's counts must be its own) or else the record's; raises BadRecord (and adds nothing) for a
    mistyped field."""
    project, job_type = text(record, "project"), text(record, "jobType")
    quota = quota if quota is not None else text(record, "quotaNickname")
    status = text(record, "status") or "unknown"
    waiting, running = amount(record, "waitingTime"), amount(record, "runningTime")
    cu, memory, scanned = amount(record, "cuUsage"), amount(record, "memoryUsage"), amount(record, "inputBytes")
    scenes = record.get("sceneResults") or []
    if not isinstance(scenes, list) or not all(isinstance(s, Mapping) for s in scenes):
        raise BadRecord("sceneResults is not a list of objects")
    diagnostics = [(text(s, "scene"), text(s, "sceneTag"), text(s, "type")) for s in scenes]
    group = (project, quota, job_type)
    tally.add("finished", (*group, status))
    if waiting is not None:
        tally.observe("wait_seconds", group, waiting)
    if running is not None:
        tally.observe("run_seconds", group, running)
    if cu is not None:
        tally.add("cpu_core_seconds", group, cu * CU_CORE_SECONDS)
    if memory is not None:
        tally.add("memory_byte_seconds", group, memory * MB)
    if scanned is not None:
        tally.add("input_bytes", group, scanned)
    for scene, tag, severity in diagnostics:
        tally.add("diagnostics", (project, quota, scene, tag, severity))


class FinishedJobTracker:
    """Queues jobs that left the active sets and records, once each, those GetJobInfo says have finished."""

    def __init__(self, config: MaxComputeConfig, caller: AcsCaller, clock: Callable[[], float] = time.time,
                 api: str = "GetJobInfo", quota: str | None = None) -> None:
        self._config = config
        self._caller = caller
        self._api = api  # the polled API's name, its requests counted under it
        self._quota = quota  # the unit's quota, for a source split by quota
        self._active: dict[str, frozenset[str]] = {}
        self._pending: OrderedDict[str, int] = OrderedDict()  # instance id -> rounds it was still running
        self._recorded = RecentIds(RECORDED_TTL, RECORDED_MAX, clock)  # the source's clock, as its listings read
        self._tally = Tally({"wait_seconds": config.wait_buckets, "run_seconds": config.run_buckets})
        self._skips = Skips(config.max_label_length)  # this round's: records left out, labels cut

    def observe(self, api: str, ids: frozenset[str]) -> None:
        """Takes the complete set of active job ids one listing API returned; queues the ones that left it."""
        previous = self._active.get(api)
        self._active[api] = ids
        for back in [i for i in self._pending if i in ids]:
            del self._pending[back]  # listed again: it flickered, it did not finish
        if previous is None:
            return  # the first listing after start-up: nothing can have left yet
        # Set differences cost the size of their left side: what left this listing is few, what is active is many.
        left = previous - ids
        for active in self._active.values():
            left -= active
        for gone in left:
            if gone not in self._pending and gone not in self._recorded:
                self._pending[gone] = 0
        while len(self._pending) > PENDING_MAX:
            self._pending.popitem(last=False)
            self._skips.add("queue_full")

    async def poll(self) -> Fetched[FinishedJobs]:
        """Asks GetJobInfo about a batch of queued jobs; returns the cumulative counts.

        Raises the first PollError when any call failed (those jobs stay queued, each failure counting as one of
        its attempts; the others are recorded and show at the next successful round)."""
        batch = list(self._pending)[: self._config.job_info_batch]
        outcomes = await asyncio.gather(*(self._ask(i) for i in batch), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for unexpected in (f for f in failures if not isinstance(f, PollError)):
            raise unexpected
        if failures:
            raise failures[0]
        skips, self._skips = self._skips, Skips(self._config.max_label_length)
        return skips.fetched(FinishedJobs(self._tally.freeze()), len(batch), len(batch))

    async def _ask(self, instance_id: str) -> None:
        try:
            record = await self._caller.call("GetJobInfo", "GET", f"/api/v1/jobs/{percent_encode(instance_id)}/info",
                                             api=self._api)
        except PollError as exc:
            if exc.code == NOT_FOUND:
                self._settle(instance_id, "not_found")
                return
            if exc.reason in JOB_ERRORS:
                # A job this key may never read (another project's) must not hold the API down for good; an outage
                # (throttling, 5xx, timeouts) costs no attempts, so its jobs are asked again when it ends.
                self._attempted(instance_id, "failed")
            raise
        try:
            with parsing(self._skips):  # labels cut to the source's max_label_length, and counted
                final = is_final(record)
                if final and self._recorded.add(instance_id):
                    record_finished(self._tally, record, self._quota)
        except BadRecord:
            self._settle(instance_id, "bad_field")
            return
        if final:
            self._settle(instance_id, None)
        else:
            self._attempted(instance_id, "gave_up")

    def _attempted(self, instance_id: str, reason: str) -> None:
        """Counts one round without an answer for the job; after `job_info_max_attempts` it is given up."""
        if instance_id not in self._pending:
            return
        self._pending[instance_id] += 1
        if self._pending[instance_id] >= self._config.job_info_max_attempts:
            log.info("job info not to be had; giving up", instance_id=instance_id, reason=reason)
            self._settle(instance_id, reason)

    def _settle(self, instance_id: str, skipped: str | None) -> None:
        """Takes a job off the queue for good, counting why when it was not recorded."""
        self._pending.pop(instance_id, None)
        if skipped:
            self._recorded.add(instance_id)  # never asked about again
            self._skips.add(skipped)
