"""The process heap: what the garbage collector watches, and handing what a publish freed back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from exporter.speed.switches import enabled


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


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
    """Moves everything alive now (modules, config, clients: all live as long as the process) out of the garbage
    collector's view, so its full collections stay short while polls allocate and do not stall scrapes."""
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
