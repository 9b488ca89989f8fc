"""The speed machinery: every trick that trades plainness for time or memory, in one place, each measured on and off
in docs/performance.md and switchable off for that measure (`switches`, CJE_SPEED_OFF).

The rest of the exporter calls only these entry points:
- `startup()` once, before the first poll (runtime);
- `hold(result)` as a poll's result is stored (store): its records out of the garbage collector's view;
- `rendering()` around each render (renderer): the heap trimmed, the collector paused;
- `Gzipper` for each render's gzip (renderer): per-piece deflate segments, reused and made on every usable CPU.
"""

from exporter.speed.gzip import Exposition, Gzipper
from exporter.speed.heap import hold, rendering, startup

__all__ = ["Exposition", "Gzipper", "hold", "rendering", "startup"]
