"""The source kinds: one package each, behind the contract in `exporter.contract`, and this table of them.

Adding a kind is a package here (its `KIND`), one line below, a simulator module, tests and docs
(docs/extending.md).
"""

from __future__ import annotations

from exporter.contract import kinds_table
from exporter.sources import dataarts_factory, emr_serverless_spark, maxcompute

KINDS = kinds_table(maxcompute.KIND, emr_serverless_spark.KIND, dataarts_factory.KIND)
