"""The metric names of the contract, for checking the names that rules and dashboards query.

The lists below mirror the product contract (the shared metric spec). The project's own
docs/metrics.md documents what the exporter exports; a metric the rules or dashboards use that it
does not document fails the checks.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GAUGES_AND_COUNTERS = [
    "maxcompute_running_jobs",
    "maxcompute_quota_cu_snapshot_ratio",
    "maxcompute_quota_memory_snapshot_ratio",
    "maxcompute_running_job_cu_snapshot_ratio",
    "maxcompute_running_job_memory_snapshot_ratio",
    "maxcompute_running_job_progress_ratio",
    "maxcompute_running_job_submitted_timestamp_seconds",
    "maxcompute_running_job_started_timestamp_seconds",
    "maxcompute_snapshot_jobs",
    "maxcompute_snapshot_cpu_usage_cores",
    "maxcompute_snapshot_cpu_request_cores",
    "maxcompute_snapshot_memory_usage_bytes",
    "maxcompute_snapshot_memory_request_bytes",
    "maxcompute_job_cpu_usage_cores",
    "maxcompute_job_cpu_request_cores",
    "maxcompute_job_memory_usage_bytes",
    "maxcompute_job_memory_request_bytes",
    "maxcompute_job_cpu_usage_to_request_ratio",
    "maxcompute_job_memory_usage_to_request_ratio",
    "maxcompute_job_waiting_seconds",
    "maxcompute_job_running_seconds",
    "maxcompute_snapshot_timestamp_seconds",
    "maxcompute_jobs_finished_total",
    "maxcompute_job_cpu_core_seconds_total",
    "maxcompute_job_memory_byte_seconds_total",
    "maxcompute_job_input_bytes_total",
    "maxcompute_job_diagnostics_total",
    "emr_spark_job_runs",
    "emr_spark_job_run_submitted_timestamp_seconds",
    "emr_spark_job_runs_finished_total",
    "emr_spark_job_run_vcore_seconds_total",
    "emr_spark_job_run_memory_byte_seconds_total",
    "emr_spark_job_run_cu_seconds_total",
    "dataarts_jobs",
    "dataarts_job_last_instance_status",
    "dataarts_job_last_instance_end_timestamp_seconds",
    "dataarts_job_start_timestamp_seconds",
    "cloud_job_exporter_source_up",
    "cloud_job_exporter_last_success_timestamp_seconds",
    "cloud_job_exporter_api_requests_total",
    "cloud_job_exporter_poll_errors_total",
    "cloud_job_exporter_job_series_dropped",
    "cloud_job_exporter_build_info",
    # Sharding (issue 13): every replica's ordinal, shard count, units polled, and each unit's owner.
    "cloud_job_exporter_shard_ordinal",
    "cloud_job_exporter_total_shards",
    "cloud_job_exporter_shard_units",
    "cloud_job_exporter_unit_polled",
]

HISTOGRAMS = [
    "maxcompute_job_wait_duration_seconds",
    "maxcompute_job_run_duration_seconds",
    "emr_spark_job_run_duration_seconds",
    "cloud_job_exporter_poll_duration_seconds",
]

GAUGE_HISTOGRAMS = ["maxcompute_snapshot_job_waiting_seconds", "maxcompute_snapshot_job_cpu_usage_to_request_ratio"]

METRIC_RE = re.compile(r"\b(?:maxcompute|emr_spark|dataarts|cloud_job_exporter)_[a-zA-Z0-9_]*")
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def series_names() -> dict[str, str]:
    """Every series name the contract allows, mapped to the metric it belongs to."""
    names = {name: name for name in GAUGES_AND_COUNTERS}
    for name in HISTOGRAMS:
        names |= {name + suffix: name for suffix in ("_bucket", "_sum", "_count")}
    for name in GAUGE_HISTOGRAMS:
        names |= {name + suffix: name for suffix in ("_bucket", "_gsum", "_gcount")}
    return names


def metric_names_in(query: str) -> set[str]:
    """The contract-prefixed metric names a PromQL expression uses (string literals ignored)."""
    return set(METRIC_RE.findall(STRING_RE.sub('""', query)))


def unknown_metrics(query: str) -> set[str]:
    """Names in `query` that are not series of the contract."""
    allowed = series_names()
    return {name for name in metric_names_in(query) if name not in allowed}


def undocumented_metrics(query: str) -> set[str]:
    """Contract metrics in `query` that docs/metrics.md does not document yet (empty if it does not exist)."""
    docs = ROOT / "docs" / "metrics.md"
    if not docs.exists():
        return set()
    documented = docs.read_text(encoding="utf-8")
    allowed = series_names()
    return {allowed[name] for name in metric_names_in(query) if name in allowed and allowed[name] not in documented}


# Helm's replicaCount: 2 scrapes two identical exporters: every series arrives once per replica, differing only in
# `instance` and `pod`. A query counts nothing twice when each selector is first aggregated over the replicas: the
# max of each series (of its rate or increase, for counters), or an aggregation `by` labels that leave them out.
REPLICA_SAFE = re.compile(
    r"(?:max without \(instance, pod\) \((?:(?:rate|increase)\()?"
    r"|max by \((?![^)]*\b(?:instance|pod)\b)[^)]*\) \("
    r'|count_values(?: by \((?![^)]*\b(?:instance|pod)\b)[^)]*\) ?)?\("\w+",'
    # the right side of a join per replica (`x * on (instance, pod) group_left (shard) max by (instance, pod, shard)
    # (y)`): it labels each replica's series of x, which the outer `max without (instance, pod)` then folds
    r"|on \(instance, pod\) group_left \(\w+\) max by \(instance, pod, \w+\) \()$"
)


def counted_per_replica(query: str) -> list[str]:
    """The selectors in `query` (a PromQL expression) that are not aggregated over the replicas first, each with
    the text before it: with two replicas scraped, these would count each series twice."""
    plain = STRING_RE.sub(lambda m: '"' + "x" * (len(m.group()) - 2) + '"', query)  # same offsets, no names
    found = []
    for match in METRIC_RE.finditer(plain):
        before = " ".join(plain[: match.start()].split())
        if not REPLICA_SAFE.search(before):
            found.append(f"...{before[-40:]}{match.group()}")
    return found
