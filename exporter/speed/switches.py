"""Each speed trick by name, and turning one off for a benchmark's A/B run: `CJE_SPEED_OFF=trim,untrack` (names in
TRICKS). Off is only ever for measuring; every trick is on in production."""

from __future__ import annotations

import os

TRICKS = {
    "untrack": "per-job records and the tuples holding them out of the garbage collector's view",
    "trim": "the heap's free pages handed back to the system (malloc_trim) before each render",
    "freeze": "everything alive at start-up moved out of the collector's view (gc.freeze)",
    "gc_pause": "the collector paused while a render runs",
    "segments": "a large family's deflate segment reused while the family is unchanged",
    "early": "a per-job family compressed as soon as it is rendered, while the render goes on",
    "mmap": "large blocks always mapped and unmapped (a fixed mmap threshold) instead of carved from the heap",
    "shared": "an identity scrape's inflated pieces taken up by the identity scrapes just behind it",
    "threads": "compression on every usable CPU (the cgroup's quota read) instead of one thread",
}
OFF = frozenset(name.strip() for name in os.environ.get("CJE_SPEED_OFF", "").split(",") if name.strip())
if OFF - TRICKS.keys():
    raise ValueError(f"CJE_SPEED_OFF: unknown tricks {sorted(OFF - TRICKS.keys())}; known: {', '.join(TRICKS)}")


def enabled(trick: str) -> bool:
    """Returns whether a trick is on (all are, unless CJE_SPEED_OFF names it)."""
    return trick not in OFF
