"""The process heap: what the garbage collector watches, and handing what a publish freed back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from exporter.speed.switches import enabled


def _libc(name: str, argtypes: list[type], restype: type) -> Callable[..., int] | None:
    """Returns one of glibc's functions, typed; None when the C library is not glibc (nothing to call then)."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, restype
    return function


MALLOC_TRIM = _libc("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
MALLOPT = _libc("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
M_MMAP_THRESHOLD = -3  # glibc's malloc.h
# Blocks at least this large are mapped on their own and unmapped when freed: a per-job family's text (3-3.5 MB at
# 20,000 jobs), what a publish's peak is made of. Above an identity scrape's 1 MiB pieces and a render's lists, whose
# pages would fault afresh at each mapping (at 256 KiB: render -23%, stall while rendering up to 28.8 ms).
MMAP_THRESHOLD = 2 * 1024 * 1024


def map_large_blocks() -> bool:
    """Has every block of MMAP_THRESHOLD or more mapped on its own from now on; returns whether glibc agreed.

    glibc maps large blocks by default too, but raises its threshold to the size of each mapped block freed (up to
    32 MB), after which a publish's megabyte texts are carved from the heap, leave holes in it when freed, and stay
    resident until a trim. A fixed threshold gives each back to the system the moment it is freed, which is what
    holds a publish's peak down (docs/performance.md has the figure)."""
    return bool(MALLOPT and enabled("mmap") and MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def return_free_memory() -> bool:
    """Returns the heap's free pages to the system (glibc's malloc_trim); returns whether any were. An exposition
    is tens of MB in multi-MB blocks that glibc carves from its heap once it has freed a few, and each publish
    frees the last one's: without this, the holes they leave stay resident (docs/performance.md has the figure)."""
    return bool(MALLOC_TRIM and enabled("trim") and MALLOC_TRIM(0))


def _gc_untrack() -> Callable[[object], None] | None:
    try:
        untrack = ctypes.pythonapi.PyObject_GC_UnTrack
    except AttributeError:  # not CPython: nothing to call
        return None
    untrack.argtypes, untrack.restype = [ctypes.py_object], None
    return untrack


GC_UNTRACK = _gc_untrack()


def untrack(records: Iterable[tuple]) -> None:
    """Takes per-job records (NamedTuples of str, int, float and None), or tuples of them, out of the garbage
    collector's view; objects it does not track (untracking those would corrupt memory) are left alone.

    Such a record cannot be part of a reference cycle, and CPython untracks an exact tuple of such values by itself,
    but not a tuple subclass: left tracked, every job held was visited by every full collection, with the GIL held
    and the event loop stalled (docs/performance.md). Reference counting still frees them."""
    if GC_UNTRACK is not None and enabled("untrack"):
        for record in records:
            # Only tuples: some types (functions, generators, methods) untrack themselves when freed without
            # looking first, and would crash the process if untracked here.
            if isinstance(record, tuple) and gc.is_tracked(record):
                GC_UNTRACK(record)


def hold(result: object) -> None:
    """Takes a poll result's per-job records out of the collector's view as it is stored: each tuple a field of the
    result (a dataclass, as the Source contract has it) holds, and the records in it (NamedTuples of plain values,
    which cannot be part of a reference cycle).

    CPython lets go of such a tuple only when its items are exact tuples, so left tracked, every full collection
    would visit each record held until the next poll, a cache miss each, with the GIL held and the event loop
    stalled (docs/performance.md)."""
    if not dataclasses.is_dataclass(result):
        return
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if type(value) is tuple:
            untrack(value)  # its records (already untracked when a page parser made them)
            untrack([value])  # and the tuple itself


def startup() -> None:
    """Fixes the heap's mmap threshold (`map_large_blocks`), and moves everything alive now (modules, config,
    clients: all live as long as the process) out of the garbage collector's view, so its full collections stay
    short while polls allocate and do not stall scrapes."""
    map_large_blocks()
    if enabled("freeze"):
        gc.collect()
        gc.freeze()


@contextmanager
def rendering() -> Iterator[None]:
    """Runs a render: the heap's free pages (the last exposition's, once it was swapped out) handed back first, and
    the collector paused until the render is done. A render makes hundreds of thousands of short-lived tuples and
    strings; a full collection among them would hold the GIL for tens of milliseconds and stall the event loop, and
    nothing a render makes forms a cycle."""
    return_free_memory()
    paused = enabled("gc_pause") and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
