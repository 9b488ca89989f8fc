"""Cumulative counts for finished jobs: exactly-once bookkeeping and counters that only grow.

Sources that report finished jobs (GetJobInfo, ListJobRuns' ended runs) keep a `RecentIds` to count each job once,
and a `Tally` of counters and histograms by label values. Each poll hands the renderer `Tally.freeze()`, an
immutable copy, so rendering stays a pure function of a poll's result.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

LabelValues = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """A cumulative histogram: per-bucket (non-cumulative) counts, the last for +Inf, and the sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float


@dataclass(frozen=True, slots=True)
class FrozenTally:
    """An immutable copy of a Tally: counters and histograms, each by metric key, then label values."""

    counters: Mapping[str, Mapping[LabelValues, float]]
    histograms: Mapping[str, Mapping[LabelValues, HistogramValue]]


class Tally:
    """Counters and histograms that start at zero with the process and only grow."""

    def __init__(self, buckets: Mapping[str, Sequence[float]]) -> None:
        self._bounds = {name: tuple(b) for name, b in buckets.items()}
        self._counters: dict[str, dict[LabelValues, float]] = {}
        self._histograms: dict[str, dict[LabelValues, tuple[list[int], list[float]]]] = {}

    def add(self, name: str, labels: LabelValues, amount: float = 1.0) -> None:
        """Adds `amount` (never negative) to a counter."""
        if amount < 0:
            raise ValueError(f"counter {name} cannot decrease")
        series = self._counters.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + amount

    def observe(self, name: str, labels: LabelValues, value: float) -> None:
        """Adds one observation to a histogram (its buckets are given at construction)."""
        bounds = self._bounds[name]
        counts, total = self._histograms.setdefault(name, {}).setdefault(labels, ([0] * (len(bounds) + 1), [0.0]))
        counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value: `le` is inclusive
        total[0] += value

    def forget(self, which: Callable[[LabelValues], bool]) -> None:
        """Drops every series whose label values `which` picks (a source that a reload removed)."""
        for by_labels in (*self._counters.values(), *self._histograms.values()):
            for labels in [lab for lab in by_labels if which(lab)]:
                del by_labels[labels]

    def freeze(self) -> FrozenTally:
        """Returns an immutable copy of every counter and histogram."""
        return FrozenTally(
            counters={n: dict(s) for n, s in self._counters.items()},
            histograms={
                n: {lab: HistogramValue(self._bounds[n], tuple(c), t[0]) for lab, (c, t) in s.items()}
                for n, s in self._histograms.items()
            },
        )


class RecentIds:
    """Ids seen recently, forgotten after `ttl` seconds or beyond `max_size` (oldest first): bounded memory."""

    def __init__(self, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_size
        self._clock = clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, item: Hashable) -> bool:
        self._expire()
        return item in self._seen

    def add(self, item: Hashable) -> bool:
        """Records `item`; returns False when it was already there (so the caller counts it once)."""
        self._expire()
        if item in self._seen:
            return False
        self._seen[item] = self._clock()
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True

    def _expire(self) -> None:
        cutoff = self._clock() - self._ttl
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= cutoff:
                break
            self._seen.popitem(last=False)
