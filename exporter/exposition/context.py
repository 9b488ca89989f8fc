"""What a kind's renderer is given beside a result: the source's labels, its share of the per-job cap, its caches."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.contract import SourceInfo

T = TypeVar("T")


class PrefixCache:
    """The per-job label prefixes of one API's last render, reused by the next: a job keeps its labels from poll to
    poll, and building them is most of a cold render. Holds only the jobs of the last render, in one dict of
    strings to bytes, so it is bounded and costs the garbage collector next to nothing."""

    def __init__(self) -> None:
        self._last: dict[Hashable, bytes] = {}

    def prefixes(self, keys: list[Hashable], jobs: Sequence[T], make: Callable[[T], bytes]) -> list[bytes]:
        """Returns the prefix of each job (keyed by `keys`, in the same order), made by `make` for the keys the last
        render did not have."""
        out = list(map(self._last.get, keys))
        if None in out:
            for i, prefix in enumerate(out):
                if prefix is None:
                    out[i] = make(jobs[i])
        self._last = dict(zip(keys, out, strict=True))
        return out


@dataclass(slots=True)
class RenderContext:
    """What a kind's `render` knows of the source whose result it renders: its labels and per-job settings
    (`info`), this API's share of the source's `max_job_series` (`budget`), and the API's prefix caches."""

    info: SourceInfo
    budget: int
    caches: dict[str, PrefixCache] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def region(self) -> str:
        return self.info.region

    @property
    def owner_label(self) -> str:
        return self.info.owner_label

    def cache(self, name: str) -> PrefixCache:
        """Returns this API's prefix cache for one family set (renders of one API run one at a time)."""
        return self.caches.setdefault(name, PrefixCache())

    def owner(self, value: str) -> tuple[str, str]:
        """Returns the owner label pair as configured: kept, replaced by a stable hash, or dropped (no name)."""
        return self.personal("owner", value)

    def personal(self, name: str, value: str) -> tuple[str, str]:
        """Returns a label pair that may carry personal data (`owner`, `creator`) as `owner_label` says: kept,
        replaced by a stable hash, or dropped (an empty name, which `labels()` leaves out)."""
        if self.info.owner_label == "drop":
            return ("", "")
        if self.info.owner_label == "hash" and value:
            return (name, hashlib.sha256(value.encode()).hexdigest()[:16])
        return (name, value)

    def capped(self, jobs: Sequence[T], use: Callable[[T], float | None]) -> tuple[Sequence[T], int]:
        """Returns (the jobs kept for per-job series, how many were dropped): the largest `use` first, at most this
        API's `budget`; none when the source has per-job series off."""
        if not self.info.per_job_series:
            return (), 0
        if len(jobs) <= self.budget:
            return jobs, 0
        ranked = sorted(jobs, key=lambda j: use(j) or 0.0, reverse=True)
        return ranked[: self.budget], len(jobs) - self.budget


def split_budget(total: int, sizes: Mapping[str, int | None]) -> dict[str, int]:
    """Returns each API's share of a source's `total` per-job series, from the jobs each could show (`sizes`): APIs
    that need less than an equal share get what they need, the rest split what is left equally. An API with no
    result yet (size None) claims a full equal share, so its first poll does not take series from the others."""
    budget: dict[str, int] = {}
    left, remaining = total, len(sizes)
    for key, size in sorted(sizes.items(), key=lambda kv: math.inf if kv[1] is None else kv[1]):
        share = left // remaining
        budget[key] = share if size is None else min(size, share)
        left -= budget[key]
        remaining -= 1
    return budget
