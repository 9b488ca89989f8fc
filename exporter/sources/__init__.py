"""The source registry: one line per source kind, mapping the config model's `kind` to its source class."""

from __future__ import annotations

from exporter.sources.dataarts_factory import DataArtsFactorySource
from exporter.sources.maxcompute import MaxComputeSource

SOURCES = {
    "maxcompute": MaxComputeSource,
    "dataarts_factory": DataArtsFactorySource,
}
