"""The Renderer: a store View in, one Exposition (both formats, plain and gzipped) out.

Each API's families come from its kind's `render`, given the API's share of the source's per-job cap; the
exporter's own families from `selfmetrics`."""

from __future__ import annotations

import gc
import os
import threading
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from exporter.contract import Api, Fetched
from exporter.exposition.context import RenderContext, split_budget
from exporter.exposition.format import Family, Segment, gzip_member, pieces
from exporter.exposition.selfmetrics import SelfMetrics
from exporter.store import Key, View

CUMULATIVE = frozenset({"counter", "histogram"})
# zlib-ng's level 2: its fastest level that is still as small as stock zlib's level 1 (docs/performance.md has the
# figures); the compression is most of a publish's CPU, the size hardly matters to a scrape.
GZIP_LEVEL = 2
# Pieces at least this long get a deflate segment of their own, kept while the piece lives; shorter ones (headers,
# aggregate and self-metric families) are joined with their neighbours and compressed afresh at each render.
OWN_SEGMENT = 16 * 1024
MAX_COMPRESSORS = 4  # threads; a publish compresses a few dozen families at most


@dataclass(frozen=True, slots=True)
class Exposition:
    """One rendered exposition in both formats, each plain and gzipped, as chunks to write in order (never joined:
    the large ones are the families' own bytes and their deflate streams, shared with the last exposition)."""

    chunks: tuple[bytes, ...]
    gz_chunks: tuple[bytes, ...]
    om_chunks: tuple[bytes, ...]
    om_gz_chunks: tuple[bytes, ...]


def usable_cpus() -> int:
    """Returns the CPUs this process may use: its affinity, limited by a cgroup v2 CPU quota (a container's limit),
    at least 1. Compressing on more threads than that would spend a quota in bursts and pause the whole process,
    event loop included, until the next period."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


@cache
def compressors() -> ThreadPoolExecutor:
    """Returns the process's compression threads (zlib-ng lets go of the GIL, so they run on every usable CPU)."""
    return ThreadPoolExecutor(min(MAX_COMPRESSORS, usable_cpus()), thread_name_prefix="compress")


class Renderer:
    """Renders views of the APIs in `apis`; an API's families are rendered once per poll result (and share of the
    per-job cap) and reused until the next."""

    def __init__(self, apis: Mapping[Key, Api[Any]], gzip_level: int = GZIP_LEVEL) -> None:
        self._apis = apis
        self._contexts: dict[Key, RenderContext] = {}
        self._cache: dict[Key, tuple[Fetched[Any], int, list[Family], int]] = {}
        self._level = gzip_level
        self._segments: dict[int, Segment] = {}  # id(piece) -> its segment, for the pieces of the last render
        self.self_metrics = SelfMetrics()
        # Renders share these caches, so they run one at a time. A lock held on the event loop is not enough: a
        # publish cancelled while its render runs lets go of it, but its thread renders on.
        self._rendering = threading.Lock()

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
            if state.data is None:
                continue
            live.add(key)
            families, n = self._api_families(view, key, state.data, budgets.get(key, 0))
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
        # A render makes hundreds of thousands of short-lived tuples and strings; a full collection among them would
        # hold the GIL for tens of milliseconds and stall the event loop. Nothing it makes forms a cycle, so the
        # collector waits until the render is done.
        with self._rendering:
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                families, dropped = self.families(view)
                return self.expose(families, self.self_metrics.expose(view, dropped))
            finally:
                if was_enabled:
                    gc.enable()

    def expose(self, families: list[Family], tails: tuple[bytes, bytes] = (b"", b"")) -> Exposition:
        """Returns the exposition of the families in both formats, each followed by its tail (the self-metrics,
        already written in that format). Only pieces not seen in the last render are compressed, on every core at
        once: an unchanged API's families reuse their segments, and OpenMetrics reuses the text's."""
        text_tail, om_tail = tails
        om_pieces = pieces(families, openmetrics=True)
        om_pieces.insert(len(om_pieces) - 1, om_tail)  # before `# EOF`
        text, om = self._plan([*pieces(families, openmetrics=False), text_tail]), self._plan(om_pieces)
        todo = {id(unit): unit for unit in (*text, *om) if isinstance(unit, bytes)}  # a family body once
        made = dict(zip(todo, compressors().map(partial(Segment.of, level=self._level), todo.values()), strict=True))
        text_segments = [made[id(u)] if isinstance(u, bytes) else u for u in text]
        om_segments = [made[id(u)] if isinstance(u, bytes) else u for u in om]
        # A large piece's segment is kept for the next render (the piece kept alive by it, so its id stays its own).
        self._segments = {id(seg.data): seg for seg in (*text_segments, *om_segments) if len(seg.data) >= OWN_SEGMENT}
        return Exposition(tuple(s.data for s in text_segments), gzip_member(text_segments),
                          tuple(s.data for s in om_segments), gzip_member(om_segments))

    def _plan(self, parts: list[bytes]) -> list[Segment | bytes]:
        """Returns what covers `parts` in order: a large part's segment from the last render, or the part itself to
        compress, and runs of small parts joined, to compress."""
        out: list[Segment | bytes] = []
        small: list[bytes] = []
        for part in parts:
            if len(part) < OWN_SEGMENT:
                small.append(part)
                continue
            if small:
                out.append(b"".join(small))
                small = []
            seg = self._segments.get(id(part))
            out.append(seg if seg is not None and seg.data is part else part)
        if small:
            out.append(b"".join(small))
        return out

