"""Fault switches: what the simulator does wrong on purpose, per API or for all APIs, changeable at runtime.

Every random decision comes from one seeded `random.Random`, so a test that issues the same requests in the same
order sees the same faults.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

T = TypeVar("T")

ALL_APIS = "*"
THROTTLE_STATUSES = (400, 429)


def _switch(default: Any, meaning: str) -> Any:
    """Returns a dataclass field whose metadata says what the switch does (the `simulate` command's help)."""
    return field(default=default, metadata={"help": meaning})


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The fault switches in effect for one API.

    Rates are probabilities per request (per record for `bad_field_rate`); all switches are off by default.
    """

    latency_ms: float = _switch(
        0.0, "milliseconds from a request's arrival to its answer (the simulator's own work included)"
    )
    error_rate: float = _switch(0.0, "share of requests answered with gateway 500 InternalError or 503")
    throttle_rate: float = _switch(0.0, "share of requests throttled, with an x-acs-retry-after header")
    throttle_status: int = _switch(400, "400 (Throttling.User, as documented) or 429 (Throttling)")
    retry_after_ms: int = _switch(1000, "the x-acs-retry-after value sent with throttling")
    malformed_rate: float = _switch(0.0, "share of answers sent as HTTP 200 with a truncated JSON body")
    envelope_error_rate: float = _switch(0.0, "share of answers sent as HTTP 200 whose envelope says httpCode 500")
    bad_field_rate: float = _switch(0.0, "share of records with a wrong-typed field or without their id")
    page_drift: int = _switch(0, "jobs that arrive and start before each page after the first")
    down: bool = _switch(False, "answer every request with HTTP 503")
    bad_signature: bool = _switch(False, "reject every signature as not matching")
    forbidden: bool = _switch(False, "refuse every authentic request with 403, as for a key that lacks the API's "
                              "permission")


FAULT_NAMES = tuple(f.name for f in fields(FaultSettings))
_RATES = frozenset(n for n in FAULT_NAMES if n.endswith("_rate"))
_FLAGS = frozenset({"down", "bad_signature", "forbidden"})
_COUNTS = frozenset({"page_drift", "retry_after_ms"})


def validate(name: str, value: Any) -> Any:
    """Returns `value` converted to the type of fault `name`; raises ValueError when it is not acceptable."""
    if name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if name in _RATES and not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1")
    if name == "throttle_status" and value not in THROTTLE_STATUSES:
        raise ValueError("throttle_status must be 400 or 429")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return int(value) if name in _COUNTS or name == "throttle_status" else float(value)


class Faults:
    """Fault settings for all APIs with per-API overrides, and the seeded random source that fires them."""

    def __init__(self, seed: int = 0, **settings: Any) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"faults/{seed}")  # a stream of its own, not a copy of the workload's
        self._all: dict[str, Any] = {}
        self._per_api: dict[str, dict[str, Any]] = {}
        self.set(**settings)

    def set(self, api: str | None = None, **changes: Any) -> None:
        """Changes switches for one API (by operation name, e.g. "GetRunningJobs") or, without `api`, for all."""
        checked = {name: validate(name, value) for name, value in changes.items()}
        with self._lock:
            layer = self._all if api in (None, ALL_APIS) else self._per_api.setdefault(api, {})
            layer.update(checked)

    def reset(self) -> None:
        """Switches every fault off, for all APIs."""
        with self._lock:
            self._all.clear()
            self._per_api.clear()

    def effective(self, api: str) -> FaultSettings:
        """Returns the settings in effect for `api`: its overrides over the settings for all APIs."""
        with self._lock:
            return replace(FaultSettings(), **{**self._all, **self._per_api.get(api, {})})

    def apply(self, body: Mapping[str, Any]) -> None:
        """Applies the JSON form used by `POST /-/sim/faults`.

        `{"reset": true}` clears everything first; `"api"` names the API the other keys apply to (all when absent).
        """
        changes = dict(body)
        if changes.pop("reset", False):
            self.reset()
        api = changes.pop("api", None)
        if api is not None and not isinstance(api, str):
            raise ValueError("api must be an operation name")
        self.set(api, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Returns the current switches: `all` with every value, `apis` with each API's overrides."""
        with self._lock:
            everything = asdict(replace(FaultSettings(), **self._all))
            return {"all": everything, "apis": {api: dict(v) for api, v in self._per_api.items() if v}}

    def roll(self, rate: float) -> bool:
        """Returns True with probability `rate`; a zero rate draws nothing, so it does not shift other decisions."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options: Sequence[T]) -> T:
        """Returns one of `options`, picked by the seeded random source."""
        with self._lock:
            return self._rng.choice(options)

    def corrupt(self, record: dict[str, Any], id_field: str) -> dict[str, Any]:
        """Returns a copy of `record` that breaks its schema: a number turned into "abc", or `id_field` removed."""
        broken = dict(record)
        numeric = sorted(k for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool))
        if numeric and self.choice((True, False)):
            broken[self.choice(numeric)] = "abc"
        else:
            broken.pop(id_field, None)
        return broken
