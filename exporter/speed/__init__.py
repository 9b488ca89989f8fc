"""The speed machinery: every trick that trades plainness for time or memory, in one place, each measured on and off
in docs/performance.md and switchable off for that measure (`switches`, CJE_SPEED_OFF).

The rest of the exporter calls only these entry points (and takes the `Exposition` and `Segment` types, `seal` for
a per-job family as it is rendered, and the `Inflater` of identity scrapes, from `speed.gzip`):
- `startup()` once, before the first poll (runtime): the heap's mmap threshold fixed, the start-up heap frozen;
- `untrack(records)` as each page is parsed (the shared page parser, `sources.fetching.parse_page`, so no source
  has to remember it): its records out of the garbage collector's view while the poll goes on;
- `hold(result)` as a poll's result is stored (store): the tuples it holds its records in, likewise;
- `rendering()` around each render (renderer): the heap trimmed, the collector paused;
- `Gzipper` for each render's gzip (renderer): per-piece deflate segments, reused and made on every usable CPU.
"""

from exporter.speed.gzip import Exposition, Gzipper
from exporter.speed.heap import hold, rendering, startup, untrack

__all__ = ["Exposition", "Gzipper", "hold", "rendering", "startup", "untrack"]
