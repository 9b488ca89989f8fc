"""The exposition formats, written by hand for speed: a family is rendered once per poll into text.

Prometheus text format 0.0.4 and OpenMetrics 1.0 differ here only in TYPE lines, gauge histograms' `_gsum` and
`_gcount`, and the closing `# EOF`; a Family keeps both sample texts where they differ.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs if k)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family's contribution from one API: its samples as text in each format."""

    name: str
    kind: str  # counter, gauge, histogram, gaugehistogram
    help: str
    text: str
    openmetrics: str | None = None  # only where it differs from `text`


def gauge(name: str, help_: str, rows: Iterable[tuple[str, float | None]]) -> Family:
    """Returns a gauge family from (label string, value) rows; None values yield no sample."""
    body = "".join([f"{name}{{{lab}}} {v}\n" for lab, v in rows if v is not None])
    return Family(name, "gauge", help_, body)


def counter(name: str, help_: str, rows: Iterable[tuple[str, float]]) -> Family:
    """Returns a counter family; `name` ends in `_total`."""
    body = "".join([f"{name}{{{lab}}} {v}\n" for lab, v in rows])
    return Family(name, "counter", help_, body)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Buckets:
    """Counts observations into fixed upper bounds and renders them as histogram samples."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Adds one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def samples(self, name: str, lab: str, gauge_style: bool) -> str:
        """Returns the `_bucket`, sum and count lines (`_gsum`/`_gcount` for an OpenMetrics gauge histogram)."""
        sep = "," if lab else ""
        lines, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{{lab}{sep}le="{_le(bound)}"}} {running}\n')
        g = "g" if gauge_style else ""
        lines.append(f"{name}_{g}sum{{{lab}}} {self.total}\n")
        lines.append(f"{name}_{g}count{{{lab}}} {running}\n")
        return "".join(lines)


def histogram(name: str, help_: str, rows: Iterable[tuple[str, Buckets]], *, gauge_style: bool = False) -> Family:
    """Returns a histogram family, or a gauge histogram (a distribution over what is present now)."""
    rows = list(rows)
    text = "".join(b.samples(name, lab, False) for lab, b in rows)
    if not gauge_style:
        return Family(name, "histogram", help_, text)
    om = "".join(b.samples(name, lab, True) for lab, b in rows)
    return Family(name, "gaugehistogram", help_, text, om)


def _header(name: str, kind: str, help_: str, openmetrics: bool) -> str:
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    if openmetrics:
        base = name.removesuffix("_total") if kind == "counter" else name
        return f"# HELP {base} {help_}\n# TYPE {base} {kind}\n"
    text_kind = "histogram" if kind == "gaugehistogram" else kind
    return f"# HELP {name} {help_}\n# TYPE {name} {text_kind}\n"


def assemble(families: Iterable[Family], openmetrics: bool) -> bytes:
    """Returns the exposition: families with the same name merged under one header, in first-seen order."""
    merged: dict[str, list[Family]] = {}
    for fam in families:
        merged.setdefault(fam.name, []).append(fam)
    parts: list[str] = []
    for name, group in merged.items():
        bodies = [(f.openmetrics if openmetrics and f.openmetrics is not None else f.text) for f in group]
        if not any(bodies):
            continue
        parts.append(_header(name, group[0].kind, group[0].help, openmetrics))
        parts.extend(bodies)
    if openmetrics:
        parts.append("# EOF\n")
    return "".join(parts).encode()


def frozen_histogram(name: str, help_: str, rows: Iterable[tuple[str, HistogramValue]]) -> Family:
    """Returns a cumulative histogram family from a FrozenTally's histogram values."""
    def as_buckets(value: HistogramValue) -> Buckets:
        b = Buckets(value.bounds)
        b.counts, b.total = list(value.counts), value.total
        return b

    return histogram(name, help_, ((lab, as_buckets(v)) for lab, v in rows))
