"""Sharding: which replica polls which unit of work, as kube-state-metrics shards its objects.

A unit is one polled listing of one source (`Api.unit`): an EMR workspace, a DataArts workspace and job type, a
MaxCompute source or one of its quotas. Its shard is a stable hash of (source, unit) modulo the number of shards, so
a unit stays on its shard when other sources or units are added, and every replica, reading the same config, agrees
on the whole assignment without talking to the others. Changing the number of shards moves most units (see "Moving
from one to the other" in docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

POD_ORDINAL = re.compile(r"-(\d+)$")  # a StatefulSet pod's name ends in its ordinal: cje-2


def shard_of(source: str, unit: str, total: int) -> int:
    """Returns the ordinal of the shard that polls `unit` of `source` among `total` shards."""
    digest = hashlib.sha256(f"{source}\0{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


@dataclass(frozen=True, slots=True)
class Shard:
    """This replica's place among the shards: `ordinal` of `total` (0 of 1 when not sharded)."""

    ordinal: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"--total-shards: expected a whole number of at least 1, got {self.total}")
        if not 0 <= self.ordinal < self.total:
            raise ValueError(f"--shard: expected an ordinal from 0 to {self.total - 1} (--total-shards "
                             f"{self.total}), got {self.ordinal}")

    def owns(self, source: str, unit: str) -> bool:
        """Returns whether this shard polls `unit` of `source`."""
        return self.total == 1 or shard_of(source, unit, self.total) == self.ordinal

    @classmethod
    def of(cls, shard: str | None, total: str | None, pod: str | None) -> Shard:
        """Returns the shard the command line (or the environment) names: `--shard N --total-shards M`, or the
        ordinal taken from a StatefulSet pod's name (`--pod cje-2 --total-shards M`); raises ValueError naming the
        flag and the fix."""
        count = _whole("--total-shards", total) if total is not None else 1
        if shard is not None and pod is not None:
            raise ValueError("--shard and --pod: give one of them (--pod derives the shard from a StatefulSet "
                             "pod's name)")
        if pod is not None:
            match = POD_ORDINAL.search(pod)
            if match is None:
                raise ValueError(f"--pod: expected a StatefulSet pod name ending in its ordinal, such as cje-2, "
                                 f"got {pod!r}")
            if total is None:
                raise ValueError("--pod: give --total-shards too (the StatefulSet's replicas)")
            return cls(int(match.group(1)), count)
        if shard is not None and total is None:
            raise ValueError("--shard: give --total-shards too")
        return cls(_whole("--shard", shard) if shard is not None else 0, count)


def _whole(flag: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value.strip()):
        raise ValueError(f"{flag}: expected a whole number, got {value!r}")
    return int(value)


def assignment(units: Iterable[tuple[str, str]], total: int) -> Mapping[tuple[str, str], int]:
    """Returns the shard of each (source, unit), in the order given."""
    return {(source, unit): shard_of(source, unit, total) for source, unit in units}


def assignment_table(units: Iterable[tuple[str, str]], total: int) -> str:
    """Returns the assignment as `--config.check --total-shards M` prints it: one line per unit, then the units
    per shard."""
    table = assignment(units, total)
    width = max((len(f"{s} {u}") for s, u in table), default=0)
    lines = [f"{'source unit'.ljust(width)}  shard"]
    lines += [f"{f'{s} {u}'.ljust(width)}  {n}" for (s, u), n in table.items()]
    counts = [sum(1 for n in table.values() if n == k) for k in range(total)]
    lines.append("units per shard: " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts)))
    return "\n".join(lines)


UNSHARDED = Shard()  # one replica polls every unit
