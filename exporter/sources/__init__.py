"""The source registry: one line per source kind, mapping the config model's `kind` to its source class."""

from __future__ import annotations

from exporter.sources.dataarts_factory import DataArtsFactorySource
from exporter.sources.emr_serverless_spark import EmrServerlessSparkSource
from exporter.sources.maxcompute import MaxComputeSource

SOURCES = {
    "maxcompute": MaxComputeSource,
    "emr_serverless_spark": EmrServerlessSparkSource,
    "dataarts_factory": DataArtsFactorySource,
}
