#!/usr/bin/env python3
"""Generates the Grafana dashboards of cloud-job-exporter from plain Python.

    python grafana/generate.py          # writes grafana/dashboards/*.json and the Helm chart's copies
    python grafana/generate.py --check  # exits 1 if a checked-in file differs from what it would write

Every panel queries the metrics of the contract (docs/metrics.md) through the `${datasource}`
variable; `__inputs` (DS_PROMETHEUS) lets the files be imported on grafana.com or through
Grafana's "Import dashboard", and the same files are provisioned as they are (the datasource
variable then falls back to the default Prometheus data source).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIRS = [ROOT / "grafana" / "dashboards", ROOT / "helm" / "cloud-job-exporter" / "dashboards"]

DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["cloud-job-exporter"]
RATE = "$__rate_interval"
# Helm's replicaCount: 2 runs identical copies of the exporter, each scraped as a target of its own: every series
# arrives once per replica, differing only in `instance` and `pod`. Every query takes the max over the replicas of
# each series first (of each series' rate, for counters and histogram buckets), then aggregates, so that a pair
# answers as one exporter does and counts nothing twice (tests/e2e/test_ha_pair.py compares the two).
ONE = "max without (instance, pod) "


# --- panels -------------------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, fmt: str = "time_series") -> dict:
    """A Prometheus query of a panel."""
    return {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": fmt,
    }


def targets(*queries: tuple[str, str], instant: bool = False, fmt: str = "time_series") -> list[dict]:
    """Several queries, with refIds A, B, C, ..."""
    return [
        target(expr, legend, ref=chr(ord("A") + i), instant=instant, fmt=fmt)
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str = "short",
    *,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    min_: float | None = 0,
    max_: float | None = None,
) -> dict:
    defaults: dict = {"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never", "lineWidth": 1}}
    if stack:
        defaults["custom"]["stacking"] = {"mode": "normal", "group": "A"}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_size": (w, h),
    }


def stat(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str = "short",
    *,
    w: int = 6,
    h: int = 4,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
        },
        "_size": (w, h),
    }


def table(
    title: str, description: str, expr: str, unit: str = "short", *, w: int = 12, h: int = 8, hide: Iterable[str] = ()
) -> dict:
    """An instant table of one query's series, sorted by value, Time column hidden."""
    excluded = {"Time": True, "__name__": True} | dict.fromkeys(hide, True)
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, ref="A", instant=True, fmt="table")],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
        "transformations": [{"id": "organize", "options": {"excludeByName": excluded}}],
        "_size": (w, h),
    }


def heatmap(title: str, description: str, expr: str, unit: str, *, w: int = 12, h: int = 8) -> dict:
    """A heatmap of a histogram's buckets (format heatmap: Grafana de-accumulates the `le` buckets)."""
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {
            "calculate": False,
            "yAxis": {"unit": unit, "axisPlacement": "left"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "tooltip": {"show": True, "yHistogram": True},
            "legend": {"show": True},
        },
        "_size": (w, h),
    }


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def quantiles(metric: str, sel: str, by: str, unit: str, title: str, description: str) -> dict:
    """p50/p90/p99 of a cumulative histogram over the rate window."""
    tgts = [
        target(
            f"histogram_quantile({q}, sum by ({by}, le) ({ONE}(rate({metric}_bucket{{{sel}}}[{RATE}]))))",
            f"p{int(q * 100)} {{{{{by}}}}}",
            ref=chr(ord("A") + i),
        )
        for i, q in enumerate((0.5, 0.9, 0.99))
    ]
    return timeseries(title, description, tgts, unit)


# --- variables and layout -----------------------------------------------------------------------


def query_var(name: str, label: str, metric: str, sel: str) -> dict:
    """A multi-value variable from label_values, 'All' matching every value (and series without the label)."""
    query = f"label_values({metric}{{{sel}}}, {name})" if sel else f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def datasource_var() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        "options": [],
        "refresh": 1,
        "regex": "",
        "hide": 0,
    }


def layout(panels: list[dict]) -> list[dict]:
    """Gives panels ids and grid positions, left to right, wrapping at 24 columns."""
    out, x, y, row_h = [], 0, 0, 0
    for pid, panel in enumerate(panels, start=1):
        w, h = panel.pop("_size")
        if panel["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panel = {"id": pid, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
        out.append(panel)
        x += w
        row_h = max(row_h, h)
        if panel["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return out


PANEL_PLUGINS = {"timeseries": "Time series", "stat": "Stat", "table": "Table", "heatmap": "Heatmap"}


def dashboard(uid: str, title: str, description: str, variables: list[dict], panels: list[dict]) -> dict:
    panels = layout(panels)
    used = sorted({p["type"] for p in panels if p["type"] != "row"})
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes cloud-job-exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": p, "name": PANEL_PLUGINS[p], "version": ""} for p in used),
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "title": "Cloud job dashboards",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": TAGS,
        "templating": {"list": [datasource_var(), *variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


# --- the dashboards -----------------------------------------------------------------------------


def overview() -> dict:
    s = 'source=~"$source"'
    variables = [query_var("source", "Source", "cloud_job_exporter_source_up", "")]
    panels = [
        row("Health"),
        stat(
            "APIs up",
            "Polled vendor APIs whose last poll succeeded.",
            [target(f"sum({ONE}(cloud_job_exporter_source_up{{{s}}}))")],
            w=6,
        ),
        stat(
            "APIs down",
            "Polled vendor APIs whose last poll failed.",
            [target(f"count({ONE}(cloud_job_exporter_source_up{{{s}}}) == 0) or vector(0)")],
            w=6,
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat(
            "Oldest data",
            "Age of the oldest last successful poll across the selected sources.",
            [target(f"max(time() - {ONE}(cloud_job_exporter_last_success_timestamp_seconds{{{s}}}))")],
            "s",
            w=6,
            thresholds=[(None, "green"), (300, "orange"), (900, "red")],
        ),
        stat(
            "Per-job series dropped",
            "Jobs left out of the per-job series by max_job_series.",
            # Per source and replica: the shard label joined from unit_polled keeps shards apart (each drops from
            # its own units) while the max folds an HA pair's copies (the same shard) into one.
            [target(f"sum({ONE}(cloud_job_exporter_job_series_dropped{{{s}}} * on (instance, pod) group_left (shard) "
                    "max by (instance, pod, shard) (cloud_job_exporter_unit_polled))) or vector(0)")],
            w=6,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        table(
            "Sources",
            "1 if the last poll of the API succeeded.",
            f"{ONE}(cloud_job_exporter_source_up{{{s}}})",
            w=12,
            hide=["job", "instance"],
        ),
        timeseries(
            "Staleness",
            "Seconds since the last successful poll of each API "
            "(time() - cloud_job_exporter_last_success_timestamp_seconds).",
            [target(f"time() - {ONE}(cloud_job_exporter_last_success_timestamp_seconds{{{s}}})", "{{source}} {{api}}")],
            "s",
        ),
        row("Polls"),
        quantiles(
            "cloud_job_exporter_poll_duration_seconds",
            s,
            "source, api",
            "s",
            "Poll duration",
            "Wall time of one poll (all pages), quantiles over the rate window, per replica.",
        ),
        timeseries(
            "Polls per second",
            "Polls finished per second, successful or not, per replica (replicas poll on their own).",
            [
                target(
                    f"sum by (source, api) "
                    f"({ONE}(rate(cloud_job_exporter_poll_duration_seconds_count{{{s}}}[{RATE}])))",
                    "{{source}} {{api}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "API errors by reason",
            "Failed polls per second by reason (timeout, connection, throttled, auth, server, client, bad_response), "
            "per replica.",
            [
                target(
                    f"sum by (source, api, reason) ({ONE}(rate(cloud_job_exporter_poll_errors_total{{{s}}}[{RATE}])))",
                    "{{source}} {{api}} {{reason}}",
                )
            ],
            "ops",
            stack=True,
        ),
        timeseries(
            "API requests by status code",
            "HTTP requests to the vendor APIs per second, by status code (`error`: no response), per replica: "
            "two replicas send twice as many.",
            [
                target(
                    f"sum by (source, api, code) ({ONE}(rate(cloud_job_exporter_api_requests_total{{{s}}}[{RATE}])))",
                    "{{source}} {{api}} {{code}}",
                )
            ],
            "reqps",
            stack=True,
        ),
        table(
            "Build",
            "Exporter version and Python version (each once, however many replicas run it).",
            f"{ONE}(cloud_job_exporter_build_info)",
            w=24,
            h=4,
            hide=["Value"],
        ),
    ]
    return dashboard(
        "cje-overview",
        "Cloud Job Exporter / Overview",
        "Health of cloud-job-exporter: sources up, poll durations, API errors, staleness.",
        variables,
        panels,
    )


def maxcompute() -> dict:
    base = 'source=~"$source", region=~"$region"'
    q = f'{base}, quota=~"$quota"'
    pq = f'{q}, project=~"$project"'
    failed = 'status=~"(?i)fail.*"'
    variables = [
        query_var("source", "Source", "maxcompute_running_jobs", ""),
        query_var("region", "Region", "maxcompute_running_jobs", 'source=~"$source"'),
        query_var("project", "Project", "maxcompute_running_jobs", base),
        query_var("quota", "Quota", "maxcompute_running_jobs", base),
    ]
    panels = [
        row("Running jobs (GetRunningJobs)"),
        timeseries(
            "Running jobs by quota",
            "Jobs in the running set, by quota.",
            [target(f"sum by (quota) ({ONE}(maxcompute_running_jobs{{{pq}}}))", "{{quota}}")],
            stack=True,
        ),
        timeseries(
            "Running jobs by project",
            "Jobs in the running set, by project.",
            [target(f"sum by (project) ({ONE}(maxcompute_running_jobs{{{pq}}}))", "{{project}}")],
            stack=True,
        ),
        timeseries(
            "Quota CU snapshot ratio",
            "Sum of the running jobs' cuSnapshot: the share of the quota's CU they hold (1 = full).",
            [target(f"{ONE}(maxcompute_quota_cu_snapshot_ratio{{{q}}})", "{{quota}}")],
            "percentunit",
        ),
        timeseries(
            "Quota memory snapshot ratio",
            "Sum of the running jobs' memorySnapshot: the share of the quota's memory they hold (1 = full).",
            [target(f"{ONE}(maxcompute_quota_memory_snapshot_ratio{{{q}}})", "{{quota}}")],
            "percentunit",
        ),
        table(
            "Top jobs by CU",
            "The 10 running jobs holding the largest share of their quota's CU (per-job tier).",
            f"topk(10, {ONE}(maxcompute_running_job_cu_snapshot_ratio{{{pq}}}))",
            "percentunit",
        ),
        table(
            "Longest running jobs",
            "The 10 running jobs that started longest ago (per-job tier).",
            f"topk(10, time() - {ONE}(maxcompute_running_job_started_timestamp_seconds{{{pq}}}))",
            "s",
        ),
        row("Job snapshot (ListJobSnapshotInfos)"),
        timeseries(
            "Jobs by type",
            "Jobs present at the snapshot, by job type.",
            [target(f"sum by (job_type) ({ONE}(maxcompute_snapshot_jobs{{{pq}}}))", "{{job_type}}")],
            stack=True,
        ),
        timeseries(
            "Snapshot age",
            "Seconds since the snapshotTime of the last snapshot read.",
            [target(f"time() - {ONE}(maxcompute_snapshot_timestamp_seconds{{{base}}})", "{{source}}")],
            "s",
        ),
        timeseries(
            "CPU usage against request",
            "Sum of the jobs' CPU use and CPU requests at the snapshot, in cores.",
            targets(
                (f"sum by (quota) ({ONE}(maxcompute_snapshot_cpu_usage_cores{{{pq}}}))", "usage {{quota}}"),
                (f"sum by (quota) ({ONE}(maxcompute_snapshot_cpu_request_cores{{{pq}}}))", "request {{quota}}"),
            ),
            "short",
        ),
        timeseries(
            "Memory usage against request",
            "Sum of the jobs' memory use and memory requests at the snapshot.",
            targets(
                (f"sum by (quota) ({ONE}(maxcompute_snapshot_memory_usage_bytes{{{pq}}}))", "usage {{quota}}"),
                (f"sum by (quota) ({ONE}(maxcompute_snapshot_memory_request_bytes{{{pq}}}))", "request {{quota}}"),
            ),
            "bytes",
        ),
        heatmap(
            "Waiting time distribution",
            "How long the jobs present at the snapshot have waited for resources "
            "(gauge histogram maxcompute_snapshot_job_waiting_seconds).",
            f"sum by (le) ({ONE}(maxcompute_snapshot_job_waiting_seconds_bucket{{{q}}}))",
            "s",
        ),
        timeseries(
            "Jobs waiting over 30 minutes",
            "Jobs at the snapshot that waited more than 1800 s, by quota (the MaxComputeJobsWaitingTooLong alert).",
            [
                target(
                    f'sum by (quota) ({ONE}(maxcompute_snapshot_job_waiting_seconds_bucket{{{q}, le="+Inf"}})) - '
                    f"sum by (quota) "
                    f'({ONE}(maxcompute_snapshot_job_waiting_seconds_bucket{{{q}, le=~"1800(\\\\.0)?"}}))',
                    "{{quota}}",
                )
            ],
        ),
        heatmap(
            "CPU usage to request distribution",
            "Each present job's CPU use over its request "
            "(gauge histogram maxcompute_snapshot_job_cpu_usage_to_request_ratio).",
            f"sum by (le) ({ONE}(maxcompute_snapshot_job_cpu_usage_to_request_ratio_bucket{{{q}}}))",
            "percentunit",
        ),
        table(
            "Top jobs by CPU use",
            "The 10 jobs using the most CPU at the snapshot (per-job tier).",
            f"topk(10, {ONE}(maxcompute_job_cpu_usage_cores{{{pq}}}))",
        ),
        table(
            "Longest waiting jobs",
            "The 10 jobs that waited longest for resources at the snapshot (per-job tier).",
            f"topk(10, {ONE}(maxcompute_job_waiting_seconds{{{pq}}}))",
            "s",
        ),
        row("Finished jobs (GetJobInfo)"),
        timeseries(
            "Finished jobs by status",
            "Jobs that left the running set, per second, by final status.",
            [target(f"sum by (status) ({ONE}(rate(maxcompute_jobs_finished_total{{{pq}}}[{RATE}])))", "{{status}}")],
            "ops",
            stack=True,
        ),
        timeseries(
            "Failure ratio by project",
            "Share of the finished jobs whose status is failed.",
            [
                target(
                    f"(sum by (project) ({ONE}(rate(maxcompute_jobs_finished_total{{{pq}, {failed}}}[{RATE}]))) "
                    f"or 0 * sum by (project) ({ONE}(rate(maxcompute_jobs_finished_total{{{pq}}}[{RATE}])))) / "
                    f"sum by (project) ({ONE}(rate(maxcompute_jobs_finished_total{{{pq}}}[{RATE}])))",
                    "{{project}}",
                )
            ],
            "percentunit",
            max_=1,
        ),
        quantiles(
            "maxcompute_job_wait_duration_seconds",
            pq,
            "quota",
            "s",
            "Wait duration of finished jobs",
            "How long finished jobs waited for resources (waitingTime), quantiles by quota.",
        ),
        quantiles(
            "maxcompute_job_run_duration_seconds",
            pq,
            "quota",
            "s",
            "Run duration of finished jobs",
            "How long finished jobs ran (runningTime), quantiles by quota.",
        ),
        timeseries(
            "CPU used by finished jobs",
            "Core-seconds of finished jobs per second (cuUsage), by project.",
            [
                target(
                    f"sum by (project) ({ONE}(rate(maxcompute_job_cpu_core_seconds_total{{{pq}}}[{RATE}])))",
                    "{{project}}",
                )
            ],
            "short",
            stack=True,
        ),
        timeseries(
            "Memory used by finished jobs",
            "Byte-seconds of finished jobs per second (memoryUsage), by project.",
            [
                target(
                    f"sum by (project) ({ONE}(rate(maxcompute_job_memory_byte_seconds_total{{{pq}}}[{RATE}])))",
                    "{{project}}",
                )
            ],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Input scanned by finished jobs",
            "Bytes scanned by finished jobs per second, by project.",
            [
                target(
                    f"sum by (project) ({ONE}(rate(maxcompute_job_input_bytes_total{{{pq}}}[{RATE}])))",
                    "{{project}}",
                )
            ],
            "Bps",
            stack=True,
        ),
        timeseries(
            "Diagnostics",
            "Intelligent diagnostics results of finished jobs per second, by scene and severity "
            "(LackResource: the job was short of resources).",
            [
                target(
                    f"sum by (scene, severity) ({ONE}(rate(maxcompute_job_diagnostics_total{{{pq}}}[{RATE}])))",
                    "{{scene}} ({{severity}})",
                )
            ],
            "ops",
            stack=True,
        ),
    ]
    return dashboard(
        "cje-maxcompute",
        "Cloud Job Exporter / MaxCompute",
        "Alibaba Cloud MaxCompute jobs: running set, job snapshot, finished jobs.",
        variables,
        panels,
    )


def emr() -> dict:
    base = 'source=~"$source", region=~"$region"'
    sel = f'{base}, workspace=~"$workspace", queue=~"$queue"'
    variables = [
        query_var("source", "Source", "emr_spark_job_runs", ""),
        query_var("region", "Region", "emr_spark_job_runs", 'source=~"$source"'),
        query_var("workspace", "Workspace", "emr_spark_job_runs", base),
        query_var("queue", "Queue", "emr_spark_job_runs", f'{base}, workspace=~"$workspace"'),
    ]
    panels = [
        row("Active runs"),
        timeseries(
            "Active runs by state",
            "Job runs in Submitted, Pending, Running or Cancelling.",
            [target(f"sum by (state) ({ONE}(emr_spark_job_runs{{{sel}}}))", "{{state}}")],
            stack=True,
        ),
        timeseries(
            "Active runs by queue",
            "Active job runs by workspace and queue.",
            [target(f"sum by (workspace, queue) ({ONE}(emr_spark_job_runs{{{sel}}}))", "{{workspace}} {{queue}}")],
            stack=True,
        ),
        timeseries(
            "Active runs by code type",
            "Active job runs by code type (SQL, JAR, PYTHON, ...).",
            [target(f"sum by (code_type) ({ONE}(emr_spark_job_runs{{{sel}}}))", "{{code_type}}")],
            stack=True,
        ),
        table(
            "Oldest active runs",
            "The 10 active runs submitted longest ago (per-job tier).",
            f"topk(10, time() - {ONE}(emr_spark_job_run_submitted_timestamp_seconds{{{sel}}}))",
            "s",
        ),
        row("Finished runs"),
        timeseries(
            "Finished runs by state",
            "Runs that ended, per second, by final state.",
            [target(f"sum by (state) ({ONE}(rate(emr_spark_job_runs_finished_total{{{sel}}}[{RATE}])))", "{{state}}")],
            "ops",
            stack=True,
        ),
        timeseries(
            "Failure ratio by queue",
            "Share of the ended runs whose state is Failed.",
            [
                target(
                    f"(sum by (workspace, queue) ({ONE}(rate(emr_spark_job_runs_finished_total"
                    f'{{{sel}, state="Failed"}}[{RATE}]))) or 0 * sum by (workspace, queue) '
                    f"({ONE}(rate(emr_spark_job_runs_finished_total{{{sel}}}[{RATE}])))) / sum by (workspace, queue) "
                    f"({ONE}(rate(emr_spark_job_runs_finished_total{{{sel}}}[{RATE}])))",
                    "{{workspace}} {{queue}}",
                )
            ],
            "percentunit",
            max_=1,
        ),
        quantiles(
            "emr_spark_job_run_duration_seconds",
            sel,
            "queue",
            "s",
            "Run duration",
            "endTime - submitTime of ended runs, quantiles by queue.",
        ),
        timeseries(
            "vCores used by ended runs",
            "vCore-seconds of ended runs per second, by queue.",
            [
                target(
                    f"sum by (workspace, queue) ({ONE}(rate(emr_spark_job_run_vcore_seconds_total{{{sel}}}[{RATE}])))",
                    "{{workspace}} {{queue}}",
                )
            ],
            "short",
            stack=True,
        ),
        timeseries(
            "Memory used by ended runs",
            "Byte-seconds of ended runs per second, by queue.",
            [
                target(
                    f"sum by (workspace, queue) "
                    f"({ONE}(rate(emr_spark_job_run_memory_byte_seconds_total{{{sel}}}[{RATE}])))",
                    "{{workspace}} {{queue}}",
                )
            ],
            "bytes",
            stack=True,
        ),
        timeseries(
            "CUs used by ended runs",
            "CU-seconds of ended runs per second (cuHours x 3600), by queue: the CUs they held on average.",
            [
                target(
                    f"sum by (workspace, queue) ({ONE}(rate(emr_spark_job_run_cu_seconds_total{{{sel}}}[{RATE}])))",
                    "{{workspace}} {{queue}}",
                )
            ],
            "short",
            stack=True,
        ),
    ]
    return dashboard(
        "cje-emr-serverless-spark",
        "Cloud Job Exporter / EMR Serverless Spark",
        "Alibaba Cloud EMR Serverless Spark job runs: active, ended, resources.",
        variables,
        panels,
    )


def dataarts() -> dict:
    base = 'source=~"$source", region=~"$region"'
    sel = f'{base}, project_id=~"$project_id", workspace=~"$workspace"'
    variables = [
        query_var("source", "Source", "dataarts_jobs", ""),
        query_var("region", "Region", "dataarts_jobs", 'source=~"$source"'),
        query_var("project_id", "Project", "dataarts_jobs", base),
        query_var("workspace", "Workspace", "dataarts_jobs", f'{base}, project_id=~"$project_id"'),
    ]
    panels = [
        row("Jobs"),
        stat(
            "Real-time jobs in EXCEPTION",
            "Real-time jobs whose status is EXCEPTION.",
            [target(f'sum({ONE}(dataarts_jobs{{{sel}, job_type="REAL_TIME", status="EXCEPTION"}})) or vector(0)')],
            w=8,
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat(
            "Batch jobs whose last instance failed",
            "Batch jobs whose last instance ended in fail or running-exception (per-job tier).",
            [
                target(
                    f'count({ONE}(dataarts_job_last_instance_status{{{sel}, status=~"fail|running-exception"}}) == 1) '
                    "or vector(0)"
                )
            ],
            w=8,
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat(
            "Batch jobs not scheduling",
            "Batch jobs whose status is not SCHEDULING (STOPPED, PAUSED).",
            [target(f'sum({ONE}(dataarts_jobs{{{sel}, job_type="BATCH", status!="SCHEDULING"}})) or vector(0)')],
            w=8,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        timeseries(
            "Real-time jobs by status",
            "Real-time jobs by status (STARTING, NORMAL, EXCEPTION, STOPPING, STOPPED).",
            [target(f'sum by (status) ({ONE}(dataarts_jobs{{{sel}, job_type="REAL_TIME"}}))', "{{status}}")],
            stack=True,
        ),
        timeseries(
            "Batch jobs by status",
            "Batch jobs by status (SCHEDULING, STOPPED, PAUSED).",
            [target(f'sum by (status) ({ONE}(dataarts_jobs{{{sel}, job_type="BATCH"}}))', "{{status}}")],
            stack=True,
        ),
        timeseries(
            "Batch jobs by last instance status",
            "Batch jobs by the status of their last instance (per-job tier).",
            [target(f"count by (status) ({ONE}(dataarts_job_last_instance_status{{{sel}}}) == 1)", "{{status}}")],
            stack=True,
        ),
        table(
            "Batch jobs and their last instance",
            "Each batch job with the status of its last instance (per-job tier).",
            f"{ONE}(dataarts_job_last_instance_status{{{sel}}}) == 1",
            hide=["Value"],
        ),
        row("Schedules"),
        table(
            "Time since the last instance ended",
            "Batch jobs whose last instance ended longest ago (per-job tier).",
            f"topk(20, time() - {ONE}(dataarts_job_last_instance_end_timestamp_seconds{{{sel}}}))",
            "s",
        ),
        table(
            "Time since the job started",
            "Jobs by how long ago they started to run (startTime; per-job tier).",
            f"topk(20, time() - {ONE}(dataarts_job_start_timestamp_seconds{{{sel}}}))",
            "s",
        ),
    ]
    return dashboard(
        "cje-dataarts-factory",
        "Cloud Job Exporter / DataArts Factory",
        "Huawei Cloud DataArts Factory jobs: real-time and batch job status, last instances, schedules.",
        variables,
        panels,
    )


DASHBOARDS = {
    "overview.json": overview,
    "maxcompute.json": maxcompute,
    "emr-serverless-spark.json": emr,
    "dataarts-factory.json": dataarts,
}


def render_all() -> dict[str, str]:
    """The dashboards as the JSON text they are written in, by file name."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a checked-in file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for directory in OUT_DIRS:
        for name, text in render_all().items():
            path = directory / name
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(path)
            else:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"out of date: {path.relative_to(ROOT)} (run python grafana/generate.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
