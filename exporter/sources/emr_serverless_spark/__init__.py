"""Alibaba Cloud EMR Serverless Spark: ListJobRuns, one API per workspace (OpenAPI 2023-08-08).

`config` the source's settings, `records` what a poll returns, `source` the polling, `render` the metric families.
"""

from exporter.contract import Kind
from exporter.sources.emr_serverless_spark.config import EmrServerlessSparkConfig
from exporter.sources.emr_serverless_spark.source import EmrServerlessSparkSource

KIND = Kind(EmrServerlessSparkConfig, EmrServerlessSparkSource.from_config,
            permissions={"ListJobRuns": "emr-serverless-spark:ListJobRuns"})
