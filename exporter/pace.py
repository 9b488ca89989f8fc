"""How long a poll may take, and how long its data is served: one API's pace, shared by the poller (which abandons a
poll past its limit) and the store (which keeps good data until the next poll could have replaced it)."""

from __future__ import annotations

STRETCH = 3  # a poll may take this many times what the last good one took (pages vary, so does the machine's load)
STRETCH_MAX = 8  # and never more than this many times `poll_time_limit`


def poll_time_limit(interval: float, stale_after: float) -> float:
    """Returns how long a poll may run, before any stretching: three intervals, at least a minute, and never past the
    point where the API's data goes stale.

    Without a limit, a poll stuck in slow pages would hold `source_up` at its last value while its data went stale
    and every later run was skipped as an overlap."""
    return min(max(3 * interval, 60.0), stale_after)


def stretched_limit(base: float, took: float | None, timeouts: int) -> float:
    """Returns the time limit of an API's next poll: STRETCH times what its last good poll took, doubled for each poll
    in a row that timed out, never under `base` nor over STRETCH_MAX times it.

    A listing that has grown past its interval (100,000 jobs are 5,001 pages) gets the time it takes, and its data
    stays served meanwhile (`ApiState.keep_for`); a stuck one is still abandoned, later."""
    grown = max(base, STRETCH * took if took else base) * 2 ** min(timeouts, STRETCH_MAX)
    return min(grown, STRETCH_MAX * base)


def kept_for(interval: float, stale_after: float, took: float) -> float:
    """Returns how long an API's good data is served after the poll that got it, when that poll took `took` seconds:
    `stale_after`, or, when polls take longer than that allows, an interval and the time the next poll may take
    (STRETCH times `took`, bounded as its limit is), so that the next poll can end before the data leaves."""
    base = poll_time_limit(interval, stale_after)
    return max(stale_after, interval + min(STRETCH * took, STRETCH_MAX * base))
