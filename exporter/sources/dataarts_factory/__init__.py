"""Huawei Cloud DataArts Factory: the job list (ListJobs), one API per workspace and job type.

`config` the source's settings, `records` what a poll returns, `source` the polling, `render` the metric families.
"""

from exporter.contract import Kind
from exporter.sources.dataarts_factory.config import DataArtsFactoryConfig
from exporter.sources.dataarts_factory.source import DataArtsFactorySource

KIND = Kind(DataArtsFactoryConfig, DataArtsFactorySource.from_config)  # its API page names no IAM permission
