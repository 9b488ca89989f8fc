"""Gzip made of per-piece deflate segments: a piece that did not change since the last render keeps its compressed
segment, and the new ones are compressed on every usable CPU at once (zlib-ng lets go of the GIL).

`Gzipper.expose` is the entry point: exposition pieces in, the plain and gzipped chunks of both formats out.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from zlib_ng import zlib_ng  # zlib's API and deflate format, faster (docs/performance.md)

from exporter.speed.switches import enabled

# zlib-ng's level 2: its fastest level that is still as small as stock zlib's level 1 (docs/performance.md has the
# figures); the compression is most of a publish's CPU, the size hardly matters to a scrape.
GZIP_LEVEL = 2
# Pieces at least this long get a deflate segment of their own, kept while the piece lives; shorter ones (headers,
# aggregate and self-metric families) are joined with their neighbours and compressed afresh at each render.
OWN_SEGMENT = 16 * 1024
MAX_COMPRESSORS = 4  # threads; a publish compresses a few dozen families at most

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, unknown OS
FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block: ends a deflate stream


@dataclass(frozen=True, slots=True)
class Segment:
    """Some exposition bytes, their raw deflate stream (cut at a byte boundary with no final block) and their CRC-32.

    Each segment is compressed on its own (no back-references into another), so any sequence of segments followed
    by FINAL_BLOCK is one valid deflate stream (what pigz does), and the gzip trailer's CRC is the segments' CRCs
    combined: a family's segment is reused for as long as the family is, in the text and the OpenMetrics forms
    alike, and its bytes are neither compressed nor read again. The compression lost at each cut is a few bytes.
    """

    data: bytes
    deflated: bytes
    crc: int

    @classmethod
    def of(cls, data: bytes, level: int) -> Segment:
        """Compresses `data` (zlib-ng releases the GIL while it works, so segments can be made on several threads)."""
        z = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
        return cls(data, z.compress(data) + z.flush(zlib_ng.Z_SYNC_FLUSH), zlib_ng.crc32(data))


def gzip_member(segments: Sequence[Segment]) -> tuple[bytes, ...]:
    """Returns the gzip file of the segments' data, concatenated, as chunks to write in order: the segments' own
    deflate streams between a header and a trailer, never joined (a joined copy per format would double what the
    compressed exposition costs in memory)."""
    crc = size = 0
    for seg in segments:
        crc = zlib_ng.crc32_combine(crc, seg.crc, len(seg.data))  # from the CRCs: the data is not read again
        size += len(seg.data)
    trailer = FINAL_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF)
    return (GZIP_HEADER, *(seg.deflated for seg in segments), trailer)


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
    """Returns the process's compression threads: one per usable CPU (one when the `threads` trick is off)."""
    return ThreadPoolExecutor(min(MAX_COMPRESSORS, usable_cpus()) if enabled("threads") else 1,
                              thread_name_prefix="compress")


@dataclass(frozen=True, slots=True)
class Exposition:
    """One exposition in both formats, each plain and gzipped, as chunks to write in order (never joined: the large
    ones are the families' own bytes and their deflate streams, shared with the last exposition)."""

    chunks: tuple[bytes, ...]
    gz_chunks: tuple[bytes, ...]
    om_chunks: tuple[bytes, ...]
    om_gz_chunks: tuple[bytes, ...]


class Gzipper:
    """Compresses the pieces of each render, reusing the segments of the pieces the last render had."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._level = level
        self._segments: dict[int, Segment] = {}  # id(piece) -> its segment, for the pieces of the last render

    def expose(self, text: list[bytes], om: list[bytes]) -> Exposition:
        """Returns both formats' pieces, plain and gzipped. Only pieces not seen in the last render are compressed:
        an unchanged API's families reuse their segments, and OpenMetrics reuses the text's."""
        text_plan, om_plan = self._plan(text), self._plan(om)
        todo = {id(unit): unit for unit in (*text_plan, *om_plan) if isinstance(unit, bytes)}  # a family body once
        made = dict(zip(todo, compressors().map(partial(Segment.of, level=self._level), todo.values()), strict=True))
        text_segments = [made[id(u)] if isinstance(u, bytes) else u for u in text_plan]
        om_segments = [made[id(u)] if isinstance(u, bytes) else u for u in om_plan]
        # A large piece's segment is kept for the next render (the piece kept alive by it, so its id stays its own).
        if enabled("segments"):
            self._segments = {id(seg.data): seg for seg in (*text_segments, *om_segments)
                              if len(seg.data) >= OWN_SEGMENT}
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
