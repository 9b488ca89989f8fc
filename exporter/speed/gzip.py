"""The exposition held compressed only: gzip made of per-piece deflate segments, inflated as an identity scrape
streams it.

A large piece (a family's samples) is compressed on its own into a `Segment`, which replaces its text from then on:
while the family is unchanged its segment is reused, and its text is not held at all. New pieces are compressed on
every usable CPU at once (zlib-ng lets go of the GIL); a per-job family is handed to them by `seal` as soon as it is
rendered, so that a render never holds every family's text at once. `Gzipper.expose` is the entry point: pieces in,
each format's gzip chunks out; an `Inflater` turns them back into text for the clients that do not take gzip,
sharing the work between those that ask at once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from zlib_ng import zlib_ng  # zlib's API and deflate format, faster (docs/performance.md)

from exporter.speed.switches import enabled

# zlib-ng's level 2: its fastest level that is still as small as stock zlib's level 1 (docs/performance.md has the
# figures); the compression is most of a publish's CPU, the size hardly matters to a scrape.
GZIP_LEVEL = 2
# Pieces at least this long get a deflate segment of their own, kept while the piece lives; shorter ones (headers,
# aggregate and self-metric families) are joined with their neighbours and compressed afresh at each render.
OWN_SEGMENT = 16 * 1024
MAX_COMPRESSORS = 4  # threads; a publish compresses a few dozen families at most
COMPRESSOR_NICE = 10  # added to the compressor threads' nice value

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, unknown OS
FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block: ends a deflate stream
INFLATED_PIECE = 1024 * 1024  # bytes an identity scrape inflates at a time, and holds: a millisecond or two on the loop
SHARED_PIECES = 4  # inflated pieces kept for the identity scrapes just behind the one that made them


@dataclass(frozen=True, slots=True)
class Segment:
    """Some exposition bytes held compressed: their raw deflate stream (cut at a byte boundary with no final block),
    their CRC-32 and their length.

    Each segment is compressed on its own (no back-references into another), so any sequence of segments followed
    by FINAL_BLOCK is one valid deflate stream (what pigz does), and the gzip trailer's CRC is the segments' CRCs
    combined: a family's segment is reused for as long as the family is, in the text and the OpenMetrics forms
    alike, and its bytes are neither compressed nor read again. The compression lost at each cut is a few bytes.
    """

    deflated: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, data: bytes, level: int) -> Segment:
        """Compresses `data` (zlib-ng releases the GIL while it works, so segments can be made on several threads)."""
        z = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
        return cls(z.compress(data) + z.flush(zlib_ng.Z_SYNC_FLUSH), zlib_ng.crc32(data), len(data))


def gzip_member(segments: Sequence[Segment]) -> tuple[bytes, ...]:
    """Returns the gzip file of the segments' data, concatenated, as chunks to write in order: the segments' own
    deflate streams between a header and a trailer, never joined (a joined copy would double what the exposition
    costs in memory)."""
    crc = size = 0
    for seg in segments:
        crc = zlib_ng.crc32_combine(crc, seg.crc, seg.size)  # from the CRCs: the data is not read again
        size += seg.size
    trailer = FINAL_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF)
    return (GZIP_HEADER, *(seg.deflated for seg in segments), trailer)


def inflate(gz_chunks: Sequence[bytes], piece: int = INFLATED_PIECE) -> Iterator[bytes]:
    """Yields the text of gzip chunks as `gzip_member` makes them (a header, segments each inflatable alone, a
    trailer), at most `piece` bytes at a time (each a step short enough for the event loop, and a scrape holds one
    piece, not the whole text)."""
    for deflated in gz_chunks[1:-1]:
        inflater, read = zlib_ng.decompressobj(-zlib_ng.MAX_WBITS), 0
        while out := _next_piece(inflater, deflated, read, piece):
            text, read = out
            yield text


def _next_piece(inflater: Any, deflated: bytes, read: int, piece: int) -> tuple[bytes, int] | None:
    """Returns a segment's next piece of text, at most `piece` bytes, with how far its deflate stream has then been
    read (`read` before); None at its end."""
    while True:
        text = inflater.decompress(memoryview(deflated)[read:], piece)
        read = len(deflated) - len(inflater.unconsumed_tail)
        if text:
            return text, read
        if read == len(deflated):  # a sync flush's empty block gives no text, but is read
            return None


@dataclass(frozen=True, slots=True)
class _Made:
    """A piece of a segment's text as one scrape inflated it, kept for others: the piece, and where the inflation
    stood after it (the inflater, copied, and how far into the segment's deflate stream it had read)."""

    deflated: bytes  # the segment, held so that its id, the key, names it for as long as the piece is kept
    piece: bytes
    after: Any  # zlib_ng's Decompress, which the module does not export as a type
    read: int


class Inflater:
    """Inflates expositions for identity scrapes, the work shared between scrapes of one exposition at once (the
    `shared` trick): the last few pieces any scrape made are kept, each with where its inflation stood after it, so a
    scrape a few pieces behind another takes them as they are and goes on from where the last one it took left off,
    rather than inflate the same text again. Scrapes further apart each inflate their own. For one event loop's
    scrapes: not thread-safe."""

    def __init__(self, kept: int = SHARED_PIECES, piece: int = INFLATED_PIECE) -> None:
        self._kept: OrderedDict[tuple[int, int], _Made] = OrderedDict()
        self._room = kept
        self._piece = piece

    def text(self, gz_chunks: Sequence[bytes]) -> Iterator[bytes]:
        """Yields the text of an exposition's gzip chunks as `gzip_member` makes them (a header, segments each
        inflatable alone, a trailer), at most `piece` bytes at a time."""
        if not enabled("shared"):
            yield from inflate(gz_chunks, self._piece)
            return
        for deflated in gz_chunks[1:-1]:
            yield from self._segment(deflated)

    def _segment(self, deflated: bytes) -> Iterator[bytes]:
        """Yields one segment's text, each piece taken from those kept when another scrape made it, else made."""
        own, read, last = None, 0, None  # this scrape's inflater, or else the last kept piece it took
        for index in itertools.count():
            key = (id(deflated), index)
            if (made := self._kept.get(key)) is not None:
                own, last = None, made
                yield made.piece
                continue
            if own is None:
                own, read = (last.after.copy(), last.read) if last else (zlib_ng.decompressobj(-zlib_ng.MAX_WBITS), 0)
            if (out := _next_piece(own, deflated, read, self._piece)) is None:
                return
            piece, read = out
            self._keep(key, _Made(deflated, piece, own.copy(), read))
            yield piece

    def _keep(self, key: tuple[int, int], made: _Made) -> None:
        self._kept[key] = made
        if len(self._kept) > self._room:
            self._kept.popitem(last=False)


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


def compressor_count() -> int:
    """Returns how many compression threads the process has: one per usable CPU (one when the `threads` trick is
    off)."""
    return min(MAX_COMPRESSORS, usable_cpus()) if enabled("threads") else 1


@cache
def compressors() -> ThreadPoolExecutor:
    """Returns the process's compression threads, each below the event loop's priority (`_yielding`)."""
    return ThreadPoolExecutor(compressor_count(), thread_name_prefix="compress", initializer=_yielding)


def _yielding() -> None:
    """Lowers the calling thread's CPU priority (Linux: a nice value per thread): a render's families compress on
    one core while it renders on the other, and the event loop must not wait for a core behind them."""
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):  # not allowed here: the threads run at the process's priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPRESSOR_NICE)


@dataclass(frozen=True, slots=True)
class Exposition:
    """One rendered exposition in both formats, held gzipped only, as chunks to write in order (never joined: the
    large ones are the families' own deflate streams, shared with the last exposition), with each format's length
    once inflated (an identity scrape's Content-Length)."""

    gz_chunks: tuple[bytes, ...]
    size: int
    om_gz_chunks: tuple[bytes, ...]
    om_size: int


# A piece of an exposition: text to compress, a family's text already held compressed, or being compressed (`seal`).
Piece = bytes | Segment | Future[Segment]


def seal(body: bytes) -> bytes | Future[Segment]:
    """Returns a family's body as the exposition will hold it: a large one's Segment, begun at once on the
    compressor threads while the render goes on, a small one as it is. Compressed only once the render is done, the
    text of every family would be held together at its end: 28 MB for a snapshot of 20,000 jobs, most of a publish's
    peak (docs/performance.md)."""
    if len(body) < OWN_SEGMENT or not (enabled("early") and enabled("segments")):
        return body
    _sealing().acquire()  # a render that outruns the compressors waits here, rather than pile its texts up
    future = compressors().submit(Segment.of, body, GZIP_LEVEL)
    future.add_done_callback(lambda _: _sealing().release())
    return future


@cache
def _sealing() -> threading.BoundedSemaphore:
    """Returns the bound on texts sealed and not yet compressed: one per compressor thread."""
    return threading.BoundedSemaphore(compressor_count())


class Gzipper:
    """Compresses the pieces of each render."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._level = level

    def expose(self, text: list[Piece], om: list[Piece]) -> tuple[Exposition, dict[int, Segment]]:
        """Returns both formats' pieces gzipped, and the segment made for each large bytes piece and each sealed one,
        by the piece's id: the caller holds that segment instead of the piece from then on (unless the `segments`
        trick is off). Small pieces are joined with their neighbours and compressed afresh each time; OpenMetrics
        shares the text's segments where its pieces are the same."""
        sealed = {id(p): p.result() for p in (*text, *om) if isinstance(p, Future)}
        text = [sealed[id(p)] if isinstance(p, Future) else p for p in text]
        om = [sealed[id(p)] if isinstance(p, Future) else p for p in om]
        text_plan, om_plan = self._plan(text), self._plan(om)
        todo = {id(unit): unit for unit in (*text_plan, *om_plan) if isinstance(unit, bytes)}  # a family body once
        made = dict(zip(todo, compressors().map(partial(Segment.of, level=self._level), todo.values()), strict=True))
        text_segments = [made[id(u)] if isinstance(u, bytes) else u for u in text_plan]
        om_segments = [made[id(u)] if isinstance(u, bytes) else u for u in om_plan]
        large = {id(p) for p in (*text, *om) if isinstance(p, bytes) and len(p) >= OWN_SEGMENT}
        own = {**{key: made[key] for key in large}, **sealed} if enabled("segments") else {}
        exposition = Exposition(gzip_member(text_segments), sum(s.size for s in text_segments),
                                gzip_member(om_segments), sum(s.size for s in om_segments))
        return exposition, own

    @staticmethod
    def _plan(parts: list[Piece]) -> list[Piece]:
        """Returns what covers `parts` in order: segments as they are, a large part alone and runs of small parts
        joined, to compress."""
        out: list[Piece] = []
        small: list[bytes] = []
        for part in parts:
            if isinstance(part, bytes) and len(part) < OWN_SEGMENT:
                small.append(part)
                continue
            if small:
                out.append(b"".join(small))
                small = []
            out.append(part)
        if small:
            out.append(b"".join(small))
        return out
