"""Sealing a family's text as it is rendered: compressed on the compressor threads, a bounded number at a time; and
inflating it again for identity scrapes, shared by those in step."""

from __future__ import annotations

import random
import threading

import pytest

from exporter.speed import gzip
from exporter.speed.gzip import OWN_SEGMENT, Inflater, Segment, compressor_count, inflate, seal


def test_a_render_that_outruns_the_compressors_waits_instead_of_piling_texts_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While every compressor thread is busy, sealing one more text waits: a render holds at most one text per
    compressor beside the one it is writing, not every family's (the peak RSS of a publish)."""
    release = threading.Event()
    real = Segment.of.__func__  # type: ignore[attr-defined]

    def slow(cls: type[Segment], data: bytes, level: int) -> Segment:
        release.wait(10)
        return real(cls, data, level)

    monkeypatch.setattr(Segment, "of", classmethod(slow))
    bound = compressor_count()
    texts = [b"x %d\n" % i * (OWN_SEGMENT // 4) for i in range(bound + 1)]
    sealed: list[object] = []
    render = threading.Thread(target=lambda: sealed.extend(seal(t) for t in texts))
    render.start()
    render.join(0.5)
    stuck = render.is_alive() and len(sealed) == bound
    release.set()
    assert stuck, "the text past the bound was sealed while every compressor was busy"
    render.join(10)
    segments = [s.result() for s in sealed]  # type: ignore[attr-defined]
    assert [b"".join(inflate(gzip.gzip_member([s]))) for s in segments] == texts


def test_a_small_text_is_left_as_it_is() -> None:
    """A text under OWN_SEGMENT is joined with its neighbours at the render's end, not compressed alone."""
    assert seal(b"up 1\n") == b"up 1\n"


def _exposition() -> tuple[tuple[bytes, ...], bytes]:
    """Returns the gzip chunks of segments of several sizes, one of them empty, and their text."""
    rnd = random.Random(7)
    texts = [bytes(rnd.choices(b"job_seconds{} 0123456789\n", k=n)) for n in (300, 250_000, 0, 90_000, 17)]
    return gzip.gzip_member([Segment.of(t, gzip.GZIP_LEVEL) for t in texts]), b"".join(texts)


def test_identity_scrapes_in_step_share_each_inflated_piece() -> None:
    """Two identity scrapes of one exposition, a piece apart, get the same text, and the one behind takes the
    pieces the other made (the same objects) rather than inflate them again."""
    chunks, text = _exposition()
    inflater = Inflater(kept=2, piece=10_000)
    ahead, behind = inflater.text(chunks), inflater.text(chunks)
    first, second = [next(ahead)], []
    for piece in ahead:
        first.append(piece)
        second.append(next(behind))
    second.extend(behind)
    assert b"".join(first) == b"".join(second) == text
    assert len(first) > 30 and all(a is b for a, b in zip(first, second, strict=True))


def test_a_scrape_further_behind_than_the_kept_pieces_inflates_its_own() -> None:
    """Scrapes too far apart for the kept pieces (one of them three times slower) each still get the whole text."""
    chunks, text = _exposition()
    inflater = Inflater(kept=2, piece=10_000)
    scrapes = [inflater.text(chunks) for _ in range(3)]
    got = [bytearray() for _ in scrapes]
    for step in range(1000):
        for i, scrape in enumerate(scrapes):
            if i < 2 or step % 3 == 0:
                got[i] += next(scrape, b"")
    assert [bytes(g) for g in got] == [text] * 3
