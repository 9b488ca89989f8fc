"""What a renderer knows of the source whose data it renders: its identity and its per-job tier settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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


@dataclass(frozen=True, slots=True)
class SourceContext:
    """A source's labels and per-job settings, as the renderers need them."""

    source: str
    kind: str
    region: str
    per_job_series: bool = True
    max_job_series: int = 5000
    owner_label: str = "keep"  # keep, hash or drop
    caches: dict[str, PrefixCache] = field(default_factory=dict, compare=False, repr=False)

    def cache(self, name: str) -> PrefixCache:
        """Returns this source's prefix cache for one family set (renders of one API run one at a time)."""
        return self.caches.setdefault(name, PrefixCache())

    def owner(self, value: str) -> tuple[str, str]:
        """Returns the owner label pair as configured: kept, replaced by a stable hash, or dropped (no name)."""
        return self.personal("owner", value)

    def personal(self, name: str, value: str) -> tuple[str, str]:
        """Returns a label pair that may carry personal data (`owner`, `creator`) as `owner_label` says: kept,
        replaced by a stable hash, or dropped (an empty name, which `labels()` leaves out)."""
        if self.owner_label == "drop":
            return ("", "")
        if self.owner_label == "hash" and value:
            return (name, hashlib.sha256(value.encode()).hexdigest()[:16])
        return (name, value)

    def capped(
        self, jobs: Sequence[T], use: Callable[[T], float | None], budget: int | None = None
    ) -> tuple[Sequence[T], int]:
        """Returns (the jobs kept for per-job series, how many were dropped): the largest `use` first, at most
        `max_job_series`, or `budget` when one list gets only a share of the source's cap."""
        if not self.per_job_series:
            return (), 0
        cap = self.max_job_series if budget is None else min(self.max_job_series, budget)
        if len(jobs) <= cap:
            return jobs, 0
        ranked = sorted(jobs, key=lambda j: use(j) or 0.0, reverse=True)
        return ranked[:cap], len(jobs) - cap
