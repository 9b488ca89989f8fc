"""The exposition formats, written by hand for speed: a family is rendered once per poll into text.

Prometheus text format 0.0.4 and OpenMetrics 1.0 differ here only in TYPE lines, gauge histograms' `_gsum` and
`_gcount`, and the closing `# EOF`; a Family keeps both sample texts where they differ, encoded once.

An exposition is a list of pieces (headers, family bodies) that is never joined for serving, and its gzip is stitched
from one raw-deflate segment per piece: a family's segment is compressed once per poll result and shared by both
formats and by every exposition until the family changes (see `Segment`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not

from exporter.speed.gzip import Piece, seal
from exporter.tally import HistogramValue

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def escape(value: str) -> str:
    """Returns a label value escaped for both formats (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    """Returns `a="x",b="y"` for the pairs, values escaped, pairs with an empty name left out."""
    if not isinstance(pairs, tuple | list):
        pairs = tuple(pairs)
    items = [f'{k}="{v}"' for k, v in pairs if k]
    text = ",".join(items)
    # Label names never hold a backslash, a newline or a quote, so the joined text says whether any value needs
    # escaping: almost none do, and this check is one pass in C instead of three per value.
    if "\\" in text or "\n" in text or text.count('"') != 2 * len(items):
        return ",".join([f'{k}="{escape(v)}"' for k, v in pairs if k])
    return text


def label_template(names: Sequence[str]) -> Callable[..., str]:
    """Returns a function of label values (in the order of `names`) giving `a="x",b="y"`: one `str.format` per call,
    which is several times faster than `labels()` for the many series of the per-job tier. Values that need escaping
    (rare) take `labels()`'s path."""
    fmt = ",".join(f'{n}="{{}}"' for n in names).format
    quotes = 2 * len(names)

    def make(*values: str) -> str:
        text = fmt(*values)
        if "\\" in text or "\n" in text or text.count('"') != quotes:
            return labels(zip(names, values, strict=True))
        return text

    return make


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family's contribution from one API: its samples as text in each format."""

    name: str
    kind: str  # counter, gauge, histogram, gaugehistogram
    help: str
    # UTF-8 sample lines (a str is accepted and encoded when assembled), or, once compressed, their deflate Segment
    # (a Future while it is being made: `seal`)
    text: str | Piece
    openmetrics: str | Piece | None = None  # only where it differs from `text`


def gauge(name: str, help_: str, rows: Iterable[tuple[str, float | None]]) -> Family:
    """Returns a gauge family from (label string, value) rows; None values yield no sample."""
    head = name + "{"
    body = "".join([f"{head}{lab}}} {v}\n" for lab, v in rows if v is not None])
    return Family(name, "gauge", help_, body.encode())


def per_job_gauge(name: str, help_: str, prefixes: Sequence[bytes], values: Iterable[float | None]) -> Family:
    """Returns a gauge family of many series from encoded label prefixes (`a="x",b="y"} `, shared by a job's
    families) and values; None values yield no sample. The fast path of `gauge` for the per-job tier: no Python-level
    loop per sample."""
    values = list(values)
    if None in values:
        present = list(map(is_not, values, repeat(None)))
        prefixes, values = list(compress(prefixes, present)), list(compress(values, present))
    if not values:
        return Family(name, "gauge", help_, b"")
    # One join over [head, prefix, value, "\n" + head, prefix, value, ..., "\n"], laid out by slice assignments,
    # instead of formatting each line (docs/performance.md). Joined as bytes, the family's text is written once, not
    # written as a str and then copied by encoding it.
    parts = [b"\n" + name.encode() + b"{"] * (3 * len(values) + 1)
    parts[0] = name.encode() + b"{"
    parts[1::3] = prefixes
    parts[2::3] = number_texts(values)
    parts[-1] = b"\n"
    return Family(name, "gauge", help_, seal(b"".join(parts)))


def number_texts(values: list[float]) -> list[bytes]:
    """Returns each value's sample text, encoded. Writing a float costs several times what writing an int does, and
    per-job floats recur (ratios of few digits): each distinct float is written once. Values that compare equal share
    a text (1 and 1.0 read the same to Prometheus; a zero is written 0.0, whatever its sign)."""
    if type(values[0]) is not float:
        return _encoded_each(list(map(str, values)))
    distinct = list(set(values))
    texts = dict(zip(distinct, _encoded_each(list(map(str, distinct))), strict=True))
    if 0.0 in texts:  # 0.0 and -0.0 are one key here
        texts[0.0] = b"0.0"
    return list(map(texts.__getitem__, values))


def _encoded_each(texts: list[str]) -> list[bytes]:
    """Returns each text encoded (none holds a newline): one join, one encode and one split, all in C."""
    return "\n".join(texts).encode().split(b"\n")


def counter(name: str, help_: str, rows: Iterable[tuple[str, float]]) -> Family:
    """Returns a counter family; `name` ends in `_total`."""
    head = name + "{"
    body = "".join([f"{head}{lab}}} {v}\n" for lab, v in rows])
    return Family(name, "counter", help_, body.encode())


def le_text(bound: float) -> str:
    """Returns a bucket bound as its `le` label value: `+Inf`, or the float's shortest text (`1.0`, `0.25`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Buckets:
    """Counts observations into fixed upper bounds and renders them as histogram samples."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    @classmethod
    def from_counts(cls, bounds: Sequence[float], counts: Sequence[int], total: float) -> Buckets:
        """Returns buckets holding counts already made (per bucket, not cumulative, the last for +Inf) and their sum:
        the one way a store's snapshot or a Tally's HistogramValue becomes histogram samples."""
        buckets = cls(bounds)
        if len(counts) != len(buckets.counts):
            raise ValueError(f"{len(counts)} counts for {len(buckets.bounds)} bounds and +Inf")
        buckets.counts, buckets.total = list(counts), total
        return buckets

    @classmethod
    def of(cls, bounds: Sequence[float], values: Sequence[float]) -> Buckets:
        """Returns buckets holding the values: sorted once and cut at each bound, in C rather than one Python call
        per value (a gauge histogram is made of every present job at each poll)."""
        ordered = sorted(values)
        # `le` is inclusive: a value equal to a bound is counted in that bound's bucket, so cut to the right of it.
        cumulative = [*(bisect.bisect_right(ordered, b) for b in bounds), len(ordered)]
        counts = [n - below for n, below in zip(cumulative, [0, *cumulative], strict=False)]
        return cls.from_counts(bounds, counts, sum(values))

    def samples(self, name: str, lab: str, gauge_style: bool) -> str:
        """Returns the `_bucket`, sum and count lines (`_gsum`/`_gcount` for an OpenMetrics gauge histogram)."""
        sep = "," if lab else ""
        lines, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{{lab}{sep}le="{le_text(bound)}"}} {running}\n')
        g = "g" if gauge_style else ""
        lines.append(f"{name}_{g}sum{{{lab}}} {self.total}\n")
        lines.append(f"{name}_{g}count{{{lab}}} {running}\n")
        return "".join(lines)


def histogram(name: str, help_: str, rows: Iterable[tuple[str, Buckets]], *, gauge_style: bool = False) -> Family:
    """Returns a histogram family, or a gauge histogram (a distribution over what is present now)."""
    rows = list(rows)
    text = "".join([b.samples(name, lab, False) for lab, b in rows]).encode()
    if not gauge_style:
        return Family(name, "histogram", help_, text)
    om = "".join([b.samples(name, lab, True) for lab, b in rows]).encode()
    return Family(name, "gaugehistogram", help_, text, om)


def _header(name: str, kind: str, help_: str, openmetrics: bool) -> str:
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    if openmetrics:
        base = name.removesuffix("_total") if kind == "counter" else name
        return f"# HELP {base} {help_}\n# TYPE {base} {kind}\n"
    text_kind = "histogram" if kind == "gaugehistogram" else kind
    return f"# HELP {name} {help_}\n# TYPE {name} {text_kind}\n"


def _encoded(body: str | Piece) -> Piece:
    return body.encode() if isinstance(body, str) else body


def pieces(families: Iterable[Family], openmetrics: bool) -> list[Piece]:
    """Returns the exposition as pieces in order: families with the same name merged under one header, in first-seen
    order. Family bodies are the families' own objects (bytes, not copies, or Segments), so a caller may key on their
    identity."""
    merged: dict[str, list[Family]] = {}
    for fam in families:
        merged.setdefault(fam.name, []).append(fam)
    parts: list[Piece] = []
    for name, group in merged.items():
        bodies = [_encoded(f.openmetrics if openmetrics and f.openmetrics is not None else f.text) for f in group]
        if not any(bodies):
            continue
        parts.append(_header(name, group[0].kind, group[0].help, openmetrics).encode())
        parts.extend(b for b in bodies if b)
    if openmetrics:
        parts.append(b"# EOF\n")
    return parts


def frozen_histogram(name: str, help_: str, rows: Iterable[tuple[str, HistogramValue]]) -> Family:
    """Returns a cumulative histogram family from a FrozenTally's histogram values."""
    return histogram(name, help_, [(lab, Buckets.from_counts(v.bounds, v.counts, v.total)) for lab, v in rows])
