"""Metrics: the only package that knows metric names. It renders a store View into exposition bytes."""

from __future__ import annotations

import gzip
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from exporter.metrics import dataarts_factory, emr_serverless_spark, maxcompute
from exporter.metrics.format import Family, assemble
from exporter.metrics.selfmetrics import self_families
from exporter.sources.base import Fetched
from exporter.store import View

# Result type -> renderer(ctx, result) -> (families, per-job series dropped). One line per result type.
RENDERERS: dict[type, Any] = {**maxcompute.RENDERERS, **emr_serverless_spark.RENDERERS, **dataarts_factory.RENDERERS}
GZIP_LEVEL = 6


@dataclass(slots=True)
class Exposition:
    """One rendered exposition: text-format bytes, their gzip, and the OpenMetrics form made on first demand."""

    text: bytes
    gzipped: bytes
    families: list[Family] = field(repr=False)
    _openmetrics: tuple[bytes, bytes] | None = None

    def openmetrics(self) -> tuple[bytes, bytes]:
        """Returns (OpenMetrics bytes, their gzip), rendered once for this exposition."""
        if self._openmetrics is None:
            body = assemble(self.families, openmetrics=True)
            self._openmetrics = (body, gzip.compress(body, GZIP_LEVEL, mtime=0))
        return self._openmetrics


class Renderer:
    """Renders views; an API's families are rendered once per poll result and reused until the next."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Fetched, list[Family], int]] = {}

    def _api_families(self, view: View, key: tuple[str, str], data: Fetched) -> tuple[list[Family], int]:
        cached = self._cache.get(key)
        if cached and cached[0] is data:
            return cached[1], cached[2]
        families, dropped = RENDERERS[type(data.result)](view.contexts[key[0]], data.result)
        self._cache[key] = (data, families, dropped)
        return families, dropped

    def families(self, view: View) -> list[Family]:
        """Returns every family of the view: each API's fresh data, then the self-metrics."""
        out: list[Family] = []
        dropped: dict[str, int] = defaultdict(int)
        live = set()
        for state in view.states:
            key = (state.source, state.api)
            data = state.fresh_data(view.now)
            if data is None:
                continue
            live.add(key)
            families, n = self._api_families(view, key, data)
            out.extend(families)
            dropped[state.source] += n
        for key in set(self._cache) - live:
            del self._cache[key]
        dropped = {s: dropped[s] for s, ctx in view.contexts.items() if ctx.per_job_series}
        out.extend(self_families(view, dropped))
        return out

    def render(self, view: View) -> Exposition:
        """Returns the exposition of a view, compressed; CPU-bound, meant to run off the event loop."""
        families = self.families(view)
        text = assemble(families, openmetrics=False)
        return Exposition(text, gzip.compress(text, GZIP_LEVEL, mtime=0), families)
