"""What a renderer knows of the source whose data it renders: its identity and its per-job tier settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceContext:
    """A source's labels and per-job settings, as the renderers need them."""

    source: str
    kind: str
    region: str
    per_job_series: bool = True
    max_job_series: int = 5000
    owner_label: str = "keep"  # keep, hash or drop

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

    def capped(self, jobs: Sequence[T], use: Callable[[T], float | None]) -> tuple[Sequence[T], int]:
        """Returns (the jobs kept for per-job series, how many were dropped): the largest `use` first."""
        if not self.per_job_series:
            return (), 0
        if len(jobs) <= self.max_job_series:
            return jobs, 0
        ranked = sorted(jobs, key=lambda j: use(j) or 0.0, reverse=True)
        return ranked[: self.max_job_series], len(jobs) - self.max_job_series
