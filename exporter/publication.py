"""What the poll side publishes for the HTTP side: one immutable value, swapped in whole after each poll."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.contract import SourceInfo
from exporter.sharding import UNSHARDED, Shard
from exporter.speed.gzip import Exposition
from exporter.store import ApiState


@dataclass(frozen=True, slots=True)
class Publication:
    """The exposition a scrape serves, each API's state as that exposition shows it (for `/` and `/-/ready`), each
    source's description by name, and this replica's shard with the config's units of work, whether it polls each
    (for `/`)."""

    exposition: Exposition
    states: tuple[ApiState, ...]
    sources: Mapping[str, SourceInfo]
    shard: Shard = UNSHARDED
    units: Mapping[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def polled(self) -> int:
        """Returns how many APIs have finished a poll that this exposition shows."""
        return sum(1 for s in self.states if s.polls)

    @property
    def ready(self) -> bool:
        """Returns True once every API's first poll is shown: a scrape then sees every source."""
        return self.polled == len(self.states)
