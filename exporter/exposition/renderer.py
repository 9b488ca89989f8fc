"""The Renderer: a store View in, one Exposition (both formats, held gzipped) out.

Each API's families come from its kind's `render`, given the API's share of the source's per-job cap; the
exporter's own families from `selfmetrics`."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from exporter.contract import Api, Fetched
from exporter.exposition.context import RenderContext, split_budget
from exporter.exposition.format import Family, pieces
from exporter.exposition.selfmetrics import SelfMetrics
from exporter.speed import Exposition, Gzipper, rendering
from exporter.speed.gzip import Segment
from exporter.store import Key, View

__all__ = ["Exposition", "Renderer"]

CUMULATIVE = frozenset({"counter", "histogram"})


class Renderer:
    """Renders views of the APIs in `apis`; an API's families are rendered once per poll result (and share of the
    per-job cap) and reused until the next."""

    def __init__(self, apis: Mapping[Key, Api[Any]]) -> None:
        self._apis = apis
        self._contexts: dict[Key, RenderContext] = {}
        self._cache: dict[Key, tuple[Fetched[Any], int, list[Family], int]] = {}
        self._gzip = Gzipper()
        self.self_metrics = SelfMetrics()
        # Renders share these caches, so they run one at a time. A lock held on the event loop is not enough: a
        # publish cancelled while its render runs lets go of it, but its thread renders on.
        self._rendering = threading.Lock()

    def set_apis(self, apis: Mapping[Key, Api[Any]]) -> None:
        """Renders `apis` from now on (a reload's); what was kept for an API no longer among them is dropped."""
        with self._rendering:
            self._apis = apis
            for key in set(self._contexts) - set(apis):
                del self._contexts[key]
            for key in set(self._cache) - set(apis):
                del self._cache[key]

    def _api_families(self, view: View, key: Key, data: Fetched[Any], budget: int) -> tuple[list[Family], int]:
        cached = self._cache.get(key)
        if cached and cached[0] is data and cached[1] == budget:
            return cached[2], cached[3]
        ctx = self._contexts.get(key)
        if ctx is None or ctx.info != view.sources[key[0]]:
            ctx = self._contexts[key] = RenderContext(view.sources[key[0]], budget)
        ctx.budget = budget
        families, dropped = self._apis[key].render(ctx, data.result)
        self._cache[key] = (data, budget, families, dropped)
        return families, dropped

    def budgets(self, view: View) -> dict[Key, int]:
        """Returns each API's share of its source's `max_job_series`: the source's APIs with per-job series split it
        by the jobs their fresh results hold (`split_budget`); a stale result shows no per-job series and claims
        none."""
        sizes: dict[str, dict[Key, int | None]] = defaultdict(dict)
        for state in view.states:
            key = (state.source, state.api)
            if key not in self._apis:  # a view taken before a reload changed the APIs
                continue
            jobs = self._apis[key].jobs
            if jobs is not None:
                fresh = state.fresh_data(view.now)
                sizes[state.source][key] = None if state.data is None else jobs(fresh.result) if fresh else 0
        return {key: share for source, apis in sizes.items()
                for key, share in split_budget(view.sources[source].max_job_series, apis).items()}

    def families(self, view: View) -> tuple[list[Family], dict[str, int]]:
        """Returns every job family of the view, and the per-job series the cap left out, by source.

        An API's data older than its `stale_after` loses its gauges (what is present now is unknown) but keeps its
        counters and histograms: they count what finished since start-up, which stays true, and a counter that
        vanished and came back would read as a reset to `rate()`."""
        out: list[Family] = []
        dropped: dict[str, int] = defaultdict(int)
        budgets = self.budgets(view)
        live = set()
        for state in view.states:
            key = (state.source, state.api)
            if state.data is None or key not in self._apis:
                continue
            live.add(key)
            # An API without `jobs` takes no share of the cap; should its render cap jobs, it has the whole of it.
            families, n = self._api_families(view, key, state.data,
                                             budgets.get(key, view.sources[state.source].max_job_series))
            if state.fresh_data(view.now) is None:
                out.extend(f for f in families if f.kind in CUMULATIVE)
                continue
            out.extend(families)
            dropped[state.source] += n
        for key in set(self._cache) - live:
            del self._cache[key]
        return out, {s: dropped[s] for s, info in view.sources.items() if info.per_job_series}

    def render(self, view: View) -> Exposition:
        """Returns the exposition of a view, compressed; CPU-bound, meant to run off the event loop."""
        with self._rendering, rendering():
            families, dropped = self.families(view)
            return self.expose(families, self.self_metrics.expose(view, dropped))

    def expose(self, families: list[Family], tails: tuple[bytes, bytes] = (b"", b"")) -> Exposition:
        """Returns the exposition of the families in both formats, each followed by its tail (the self-metrics,
        already written in that format)."""
        text_tail, om_tail = tails
        om = pieces(families, openmetrics=True)
        om.insert(len(om) - 1, om_tail)  # before `# EOF`
        exposition, compressed = self._gzip.expose([*pieces(families, openmetrics=False), text_tail], om)
        self._hold_compressed(compressed)
        return exposition

    def _hold_compressed(self, compressed: Mapping[int, Segment]) -> None:
        """Replaces, in the families kept for the next render, each text just compressed on its own by its segment:
        the exposition is then held compressed only, and an unchanged family is not compressed again."""
        if not compressed:
            return
        for entry in self._cache.values():
            families = entry[2]
            for i, f in enumerate(families):
                text, om = compressed.get(id(f.text), f.text), compressed.get(id(f.openmetrics), f.openmetrics)
                if text is not f.text or om is not f.openmetrics:
                    families[i] = replace(f, text=text, openmetrics=om)
