"""The poll side's state: each API's last result, health and recent polls, and the self-metric counters.

Only the event loop mutates a Store. Each change is followed by `view()`, an immutable copy that a renderer turns
into the exposition off the loop; scrapes read the finished exposition and never this state.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.contract import Fetched, RequestCounter, SourceInfo
from exporter.pace import kept_for
from exporter.sharding import UNSHARDED, Shard
from exporter.speed import hold
from exporter.tally import FrozenTally, Tally

POLL_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HISTORY = 20  # scheduled runs kept per API, for the status page
Key = tuple[str, str]  # (source, api)


@dataclass(frozen=True, slots=True)
class Run:
    """One scheduled run of an API: when it ended, and how: `ok`, `failed` or `skipped` (the last two with their
    reason)."""

    at: float
    outcome: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """An API's last failed poll: its reason (the `poll_errors_total` label), message and the vendor's request id."""

    at: float
    reason: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiState:
    """One API of one source: its health, its last good data, its last failure and its last HISTORY runs."""

    source: str
    kind: str
    api: str
    stale_after: float
    interval: float | None = None
    polls: int = 0
    up: bool = False
    last_poll_end: float | None = None
    last_duration: float | None = None
    last_success: float | None = None
    took: float | None = None  # how long the last successful poll ran
    last_run: float | None = None  # when the last scheduled run (a poll or a skip) began
    backoff_until: float | None = None  # throttled: scheduled runs before this are skipped
    last_failure: Failure | None = None  # kept after the API recovers
    # A tuple, not a deque: the state is shared, whole, with the renderer's thread and the HTTP side.
    history: tuple[Run, ...] = ()
    data: Fetched[Any] | None = None

    @property
    def last_reason(self) -> str | None:
        """Returns why the API is down, None while it is up or not yet polled."""
        return self.last_failure.reason if self.last_failure and not self.up else None

    @property
    def last_error(self) -> str | None:
        """Returns the message of the failure the API is down with, None while it is up or not yet polled."""
        return self.last_failure.message if self.last_failure and not self.up else None

    @property
    def keep_for(self) -> float:
        """Returns how long good data is served after the poll that got it: `stale_after`; or, while an API is up and
        its polls take longer than that allows, an interval and the time limit of the next poll, so that a listing
        that takes two minutes to read does not blink out of /metrics between two polls. Once a poll fails, the data
        keeps only `stale_after`."""
        if self.took is None or not self.up or self.interval is None:
            return self.stale_after
        return kept_for(self.interval, self.stale_after, self.took)

    @property
    def cadence(self) -> float | None:
        """Returns the seconds between two polls as they run: the interval, or the whole number of intervals the last
        poll took (the scheduled runs while it ran are skipped as overlap); None when the interval is unknown."""
        if self.interval is None:
            return None
        if self.took is None or self.took <= self.interval:
            return self.interval
        return math.ceil(self.took / self.interval) * self.interval

    def fresh_data(self, now: float) -> Fetched[Any] | None:
        """Returns the last good data unless it is older than `keep_for`."""
        if self.data is None or self.last_success is None or now - self.last_success > self.keep_for:
            return None
        return self.data

    def next_poll(self) -> float | None:
        """Returns when the API is next polled: the scheduled run one interval after the last, or the first one
        after a backoff; None before the first run, or when the interval is unknown."""
        if self.last_run is None or self.interval is None:
            return None
        due = self.last_run + self.interval
        if self.backoff_until is not None and due < self.backoff_until:
            due += math.ceil((self.backoff_until - due) / self.interval) * self.interval
        return due

    def began(self, start: float) -> float:
        """Returns `last_run` for a poll that began at `start`: a run skipped while it ran is the later one."""
        return start if self.last_run is None else max(start, self.last_run)

    def ran(self, run: Run) -> tuple[Run, ...]:
        """Returns the history with `run` added, the oldest dropped past HISTORY."""
        return (*self.history[1 - HISTORY:], run)


@dataclass(frozen=True, slots=True)
class View:
    """An immutable copy of the store at one instant, for rendering."""

    now: float
    states: tuple[ApiState, ...]
    sources: Mapping[str, SourceInfo]
    poll_errors: Mapping[tuple[str, str, str], int]
    polls_skipped: Mapping[tuple[str, str, str], int]
    records_skipped: Mapping[tuple[str, str, str], int]
    limits_reached: Mapping[tuple[str, str, str], int]
    requests: Mapping[tuple[str, str, str], int]
    durations: FrozenTally  # histogram `poll_duration` by (source, api)
    config: ConfigLoads
    shard: Shard
    units: Mapping[tuple[str, str], bool]  # every (source, unit) of the config: whether this shard polls it


@dataclass(frozen=True, slots=True)
class ConfigLoads:
    """Whether the last (re)load of the config file was applied, and when the last one that was applied ended (the
    start-up's load is the first)."""

    last_successful: bool = True
    last_success: float = field(default_factory=time.time)


class Store:
    """Holds the latest state of every API and the cumulative self-metric counters."""

    def __init__(self, shard: Shard = UNSHARDED) -> None:
        self.shard = shard
        self.units: dict[tuple[str, str], bool] = {}
        self.config = ConfigLoads()
        self.states: dict[Key, ApiState] = {}
        self.sources: dict[str, SourceInfo] = {}
        self.request_counters: dict[str, RequestCounter] = {}
        self.poll_errors: Counter[tuple[str, str, str]] = Counter()
        self.polls_skipped: Counter[tuple[str, str, str]] = Counter()
        self.records_skipped: Counter[tuple[str, str, str]] = Counter()
        self.limits_reached: Counter[tuple[str, str, str]] = Counter()
        self.durations = Tally({"poll_duration": POLL_DURATION_BUCKETS})

    def add_unit(self, source: str, unit: str, polled: bool) -> None:
        """Registers a unit of work of the config, and whether this shard polls it."""
        self.units[(source, unit)] = polled

    def add_api(self, info: SourceInfo, api: str, stale_after: float, interval: float | None = None) -> None:
        """Registers an API before its first poll."""
        self.sources[info.source] = info
        self.states[(info.source, api)] = ApiState(info.source, info.kind, api, stale_after, interval)

    def record_success(self, key: Key, fetched: Fetched[Any], end: float, duration: float) -> None:
        """Stores a successful poll's data (its records out of the garbage collector's view) and health."""
        hold(fetched.result)
        state = self.states[key]
        self.states[key] = replace(
            state, polls=state.polls + 1, up=True, last_poll_end=end, last_duration=duration, last_success=end,
            took=duration, last_run=state.began(end - duration), backoff_until=None, history=state.ran(Run(end, "ok")),
            data=fetched,
        )
        self.durations.observe("poll_duration", key, duration)
        for reason, n in fetched.skipped.items():
            self.records_skipped[(*key, reason)] += n
        for limit, n in fetched.limits.items():
            self.limits_reached[(*key, limit)] += n

    def record_failure(
        self, key: Key, reason: str, message: str, end: float, duration: float, limit: str | None = None, *,
        request_id: str | None = None, backoff_until: float | None = None,
    ) -> None:
        """Marks the API down (counting the bound it broke, if that was why); its last good data stays until it is
        stale."""
        state = self.states[key]
        self.states[key] = replace(
            state, polls=state.polls + 1, up=False, last_poll_end=end, last_duration=duration,
            last_run=state.began(end - duration), backoff_until=backoff_until,
            last_failure=Failure(end, reason, message, request_id), history=state.ran(Run(end, "failed", reason)),
        )
        self.durations.observe("poll_duration", key, duration)
        self.poll_errors[(*key, reason)] += 1
        if limit:
            self.limits_reached[(*key, limit)] += 1

    def remove_source(self, source: str) -> None:
        """Forgets a source: its APIs' states and every count of it (a source removed, or changed and opened
        afresh, by a reload)."""
        self.sources.pop(source, None)
        self.request_counters.pop(source, None)
        self.units = {k: v for k, v in self.units.items() if k[0] != source}
        self.states = {k: v for k, v in self.states.items() if k[0] != source}
        for counts in (self.poll_errors, self.polls_skipped, self.records_skipped, self.limits_reached):
            for key in [k for k in counts if k[0] == source]:
                del counts[key]
        self.durations.forget(lambda group: group[0] == source)

    def record_skip(self, key: Key, reason: str, at: float) -> None:
        """Counts a scheduled poll that did not run at `at` (the previous one still running, or backing off)."""
        self.polls_skipped[(*key, reason)] += 1
        state = self.states[key]
        self.states[key] = replace(state, last_run=at, history=state.ran(Run(at, "skipped", reason)))

    def view(self, now: float) -> View:
        """Returns an immutable copy for rendering."""
        requests = {
            (source, api, code): n
            for source, counter in self.request_counters.items()
            for (api, code), n in counter.counts.items()
        }
        return View(
            now=now,
            states=tuple(self.states.values()),
            sources=dict(self.sources),
            poll_errors=dict(self.poll_errors),
            polls_skipped=dict(self.polls_skipped),
            records_skipped=dict(self.records_skipped),
            limits_reached=dict(self.limits_reached),
            requests=requests,
            durations=self.durations.freeze(),
            config=self.config,
            shard=self.shard,
            units=dict(self.units),
        )
