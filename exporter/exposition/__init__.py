"""The exposition: the text and OpenMetrics formats (`format`), what a kind's renderer is given (`context`), the
exporter's own families (`selfmetrics`), and the Renderer that makes one Exposition per publish (`renderer`).

It knows no source kind, no HTTP client and no metric name of a kind: those live in each kind's `render` module.
"""
