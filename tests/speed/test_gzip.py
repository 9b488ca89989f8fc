"""Sealing a family's text as it is rendered: compressed on the compressor threads, a bounded number at a time."""

from __future__ import annotations

import threading

import pytest

from exporter.speed import gzip
from exporter.speed.gzip import OWN_SEGMENT, Segment, compressor_count, inflate, seal


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
