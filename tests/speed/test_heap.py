"""The process heap: freed exposition memory handed back, per-job records out of the collector's view."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys

import pytest

from exporter.speed.heap import untrack

HOLES = """
from exporter.speed.heap import return_free_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
warm = [bytes(4_000_000) for _ in range(3)]
del warm  # glibc now carves blocks this large from its heap instead of mapping each
big, small = [], []
for _ in range(40):
    big.append(b"x" * 3_000_000)
    small.append(bytes(1000))  # a long-lived block after each: the big ones leave holes, not a free top
held = rss()
del big
return_free_memory()
print((held - rss()) // 2**20)
"""


def test_freed_exposition_memory_goes_back_to_the_system() -> None:
    """After a publish, the memory of the last exposition's multi-MB blocks goes back to the system, so the resident
    size follows what the exporter holds (run in a fresh interpreter: the heap must start clean). Whether glibc
    carved the blocks from its heap (they leave holes that only malloc_trim hands back) or mapped each (freed at
    once) depends on its tunables and on how Python was built; what must hold either way is the resident size."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    out = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 60, f"only {out.strip()} MB of the 120 MB freed left the resident size"


MAPPED = """
import threading
from exporter.speed.heap import map_large_blocks
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def publish(out):  # on a thread, as renders and compression run: in a heap (arena) of its own
    warm = [bytes(4_000_000) for _ in range(3)]
    del warm  # without a fixed threshold, glibc would now carve blocks this large from the heap
    big, small = [], []
    for _ in range(40):
        big.append(b"x" * 3_000_000)
        small.append(bytes(1000))
    held = rss()
    del big  # and no malloc_trim
    out.append((held - rss()) // 2**20)
print(map_large_blocks())
out = []
thread = threading.Thread(target=publish, args=(out,))
thread.start()
thread.join()
print(out[0])
"""


def test_a_freed_family_text_leaves_the_resident_size_at_once() -> None:
    """With the mmap threshold fixed at start-up, a multi-MB block (a family's text, a page's JSON) is given back
    the moment it is freed, with no trim: a publish's texts, each compressed and dropped in turn, never pile up
    resident. Run in a fresh interpreter: the threshold is the process's."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    agreed, freed = subprocess.run([sys.executable, "-c", MAPPED], capture_output=True, text=True,
                                   check=True).stdout.split()
    assert agreed == "True"
    assert int(freed) >= 100, f"only {freed} MB of the 120 MB freed left the resident size"


def test_untracking_leaves_objects_the_collector_does_not_track_alone() -> None:
    """Records are untracked as their result is stored; anything else that reaches it (a string, an exact tuple the
    collector already let go of) must be left as it is: untracking an object the collector never tracked would
    corrupt memory."""
    from exporter.sources.maxcompute.records import RunningJob

    job = RunningJob("j1", "p", "q", "o", 0.5, None, 0.1, 1, 2)
    others = ["x" * n for n in range(1, 2000)] + [(1, "a")] * 10 + [3.5, None]
    untrack([job, *others])
    gc.collect()
    assert not gc.is_tracked(job)
    assert job.instance_id == "j1" and others[5] == "x" * 6



def _stored_results() -> list[object]:
    from tests.golden import records

    return [*records.maxcompute_results(), *records.emr_results(), *records.dataarts_results()]


@pytest.mark.parametrize("result", _stored_results(), ids=lambda r: type(r).__name__)
def test_a_stored_results_records_are_out_of_the_collectors_view(result: object) -> None:
    """Every kind's result, as the store keeps it until the next poll: its tuples of records are not tracked, so a
    full collection does not visit each job it holds. Results hold their jobs in tuple fields (the contract)."""
    from dataclasses import fields

    from exporter.contract import Fetched, SourceInfo
    from exporter.store import Store

    if platform.python_implementation() != "CPython":
        pytest.skip("untracking is CPython's")
    store = Store()
    store.add_api(SourceInfo("s", "kind", "region"), "Api", 90)
    held = [v for f in fields(result) if type(v := getattr(result, f.name)) is tuple]
    tracked_before = [v for v in held if v and any(map(gc.is_tracked, v))]
    store.record_success(("s", "Api"), Fetched(result, 1, 1), end=0.0, duration=0.1)
    gc.collect()
    assert not any(gc.is_tracked(v) or any(map(gc.is_tracked, v)) for v in held)
    if type(result).__name__ != "FinishedJobs":  # counts only, no per-job tuple
        assert tracked_before, "the records were tracked before they were stored (else this test proves nothing)"


HOLD_OTHERS = """
from dataclasses import dataclass
from exporter.speed.heap import hold
@dataclass(frozen=True)
class Result:
    jobs: tuple
def gen():
    yield 1
r = Result((gen(), lambda: 1, "x".upper, [1, 2], {"a": 1}, ("ok", 1)))
hold(r)
del r
import gc
gc.collect()
print("alive")
"""


def test_hold_leaves_anything_but_tuples_alone() -> None:
    """A result may (against the contract) hold objects that are not records: untracking a generator, a function or
    a method, which untrack themselves when freed without looking, would crash the process when they are freed."""
    out = subprocess.run([sys.executable, "-c", HOLD_OTHERS], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "alive", out.stderr[-500:]
