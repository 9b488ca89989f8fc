"""EMR Serverless Spark's metric families, from one workspace's ListJobRuns result."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from exporter.exposition.context import RenderContext
from exporter.exposition.format import Family, counter, frozen_histogram, gauge, labels
from exporter.sources.emr_serverless_spark.records import (
    ENDED_CU_HOURS,
    ENDED_DURATION,
    ENDED_MEMORY_BYTE_SECONDS,
    ENDED_RUNS,
    ENDED_VCORE_SECONDS,
    SparkJobRuns,
)
from exporter.tally import LabelValues

GROUP = ("queue", "state", "code_type")

ENDED_SUMS = (
    (ENDED_VCORE_SECONDS, "emr_spark_job_run_vcore_seconds_total",
     "vCore-seconds of the runs that ended (vcoreSeconds), by queue."),
    (ENDED_MEMORY_BYTE_SECONDS, "emr_spark_job_run_memory_byte_seconds_total",
     "Memory of the runs that ended, in byte-seconds (mbSeconds x 1048576), by queue."),
    (ENDED_CU_HOURS, "emr_spark_job_run_cu_seconds_total",
     "Estimated CU-seconds of the runs that ended (cuHours x 3600; the bill has the actual figure), by queue."),
)  # fmt: skip
SCALE = {ENDED_CU_HOURS: 3600.0}  # CU-hours become CU-seconds: Prometheus base units (promtool rejects `hours`)


def _rows(
    base: tuple[tuple[str, str], ...], names: tuple[str, ...], series: Mapping[LabelValues, Any], scale: float = 1.0
) -> list:
    return [(labels((*base, *zip(names, values, strict=True))), v * scale if scale != 1 else v)
            for values, v in series.items()]


def active_runs(result: SparkJobRuns) -> int:
    """Returns how many runs a result could give per-job series to: its active runs."""
    return len(result.active)


def job_run_families(ctx: RenderContext, result: SparkJobRuns) -> tuple[list[Family], int]:
    """Returns the families of one workspace and how many runs the per-job cap dropped."""
    base = (("source", ctx.source), ("region", ctx.region), ("workspace", result.workspace))
    active: dict[str, int] = defaultdict(int)
    for run in result.active:
        active[labels((*base, ("queue", run.queue), ("state", run.state), ("code_type", run.code_type)))] += 1
    ended = result.ended
    families = [
        gauge("emr_spark_job_runs", "Job runs in Submitted, Pending, Running or Cancelling, by queue, state and code "
              "type.", active.items()),
        counter("emr_spark_job_runs_finished_total", "Job runs that ended, by queue, final state and code type.",
                _rows(base, GROUP, ended.counters.get(ENDED_RUNS, {}))),
        frozen_histogram("emr_spark_job_run_duration_seconds", "Duration of the runs that ended (endTime - "
                         "submitTime), by queue, final state and code type.",
                         _rows(base, GROUP, ended.histograms.get(ENDED_DURATION, {}))),
    ]
    families += [counter(name, help_, _rows(base, ("queue",), ended.counters.get(key, {}), SCALE.get(key, 1.0)))
                 for key, name, help_ in ENDED_SUMS]
    kept, dropped = ctx.capped(result.active, lambda r: r.vcore_seconds)
    if kept:
        families.append(gauge(
            "emr_spark_job_run_submitted_timestamp_seconds", "When the active run was submitted (UNIX seconds).",
            [(labels((*base, ("queue", r.queue), ("state", r.state), ("job_name", r.job_name),
                      ctx.personal("creator", r.creator), ("job_run_id", r.job_run_id))), r.submitted_at)
             for r in kept],
        ))
    return families, dropped

