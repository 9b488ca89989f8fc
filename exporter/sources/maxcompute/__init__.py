"""Alibaba Cloud MaxCompute: GetRunningJobs, ListJobSnapshotInfos and GetJobInfo (OpenAPI 2022-01-04).

`config` the source's settings, `records` what a poll returns, `source` the polling, `jobinfo` the finished jobs,
`render` the metric families.
"""

from exporter.contract import Kind
from exporter.sources.maxcompute.config import MaxComputeConfig
from exporter.sources.maxcompute.source import MaxComputeSource

# GetRunningJobs' page says "no authorization information disclosed".
KIND = Kind(MaxComputeConfig, MaxComputeSource.from_config,
            permissions={"ListJobSnapshotInfos": "odps:ListJobSnapshotInfos", "GetJobInfo": "odps:GetJobInfo"})
