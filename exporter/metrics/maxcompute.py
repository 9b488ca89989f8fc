"""MaxCompute's metric families, from GetRunningJobs and ListJobSnapshotInfos results."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from exporter.metrics.context import SourceContext
from exporter.metrics.format import Buckets, Family, counter, frozen_histogram, gauge, histogram, labels
from exporter.model import FinishedJobs, JobSnapshot, RunningJobs, SnapshotJob

WAITING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0)


def _sum(rows: Iterable[tuple[str, float | None]]) -> list[tuple[str, float]]:
    """Returns the rows summed by label string; None values count as absent."""
    totals: dict[str, float] = defaultdict(float)
    for lab, v in rows:
        if v is not None:
            totals[lab] += v
    return list(totals.items())


def running_families(ctx: SourceContext, result: RunningJobs) -> tuple[list[Family], int]:
    """Returns the GetRunningJobs families and how many jobs the per-job cap dropped."""
    base = (("source", ctx.source), ("region", ctx.region))
    by_pq: dict[str, int] = defaultdict(int)
    quota_labels: dict[str, str] = {}
    for job in result.jobs:
        by_pq[labels((*base, ("project", job.project), ("quota", job.quota)))] += 1
        quota_labels.setdefault(job.quota, labels((*base, ("quota", job.quota))))
    cu = _sum((quota_labels[j.quota], j.cu_snapshot) for j in result.jobs)
    mem = _sum((quota_labels[j.quota], j.memory_snapshot) for j in result.jobs)
    families = [
        gauge("maxcompute_running_jobs", "Running jobs (GetRunningJobs), by project and quota.", by_pq.items()),
        gauge("maxcompute_quota_cu_snapshot_ratio", "Sum of the running jobs' cuSnapshot, by quota.", cu),
        gauge("maxcompute_quota_memory_snapshot_ratio", "Sum of the running jobs' memorySnapshot, by quota.", mem),
    ]
    kept, dropped = ctx.capped(result.jobs, lambda j: j.cu_snapshot)
    if kept:
        job_labels = [
            labels((*base, ("project", j.project), ("quota", j.quota), ctx.owner(j.owner),
                    ("instance_id", j.instance_id)))
            for j in kept
        ]
        per_job: list[tuple[str, str, Callable[[object], float | None]]] = [
            ("maxcompute_running_job_cu_snapshot_ratio", "The job's cuSnapshot: its share of the quota's CU.",
             lambda j: j.cu_snapshot),
            ("maxcompute_running_job_memory_snapshot_ratio", "The job's memorySnapshot: its share of the quota's "
             "memory.", lambda j: j.memory_snapshot),
            ("maxcompute_running_job_progress_ratio", "The job's progress, 0 to 1.", lambda j: j.progress),
            ("maxcompute_running_job_submitted_timestamp_seconds", "When the job was submitted (UNIX seconds).",
             lambda j: j.submitted_at),
            ("maxcompute_running_job_started_timestamp_seconds", "When the job started running (UNIX seconds).",
             lambda j: j.running_at),
        ]
        families += [gauge(name, help_, zip(job_labels, map(get, kept), strict=True)) for name, help_, get in per_job]
    return families, dropped


SNAPSHOT_SUMS: list[tuple[str, str, Callable[[SnapshotJob], float | None]]] = [
    ("maxcompute_snapshot_cpu_usage_cores", "Sum of the jobs' CPU use at the snapshot, in cores.",
     lambda j: j.cpu_usage_cores),
    ("maxcompute_snapshot_cpu_request_cores", "Sum of the jobs' CPU requests at the snapshot, in cores.",
     lambda j: j.cpu_request_cores),
    ("maxcompute_snapshot_memory_usage_bytes", "Sum of the jobs' memory use at the snapshot, in bytes.",
     lambda j: j.memory_usage_bytes),
    ("maxcompute_snapshot_memory_request_bytes", "Sum of the jobs' memory requests at the snapshot, in bytes.",
     lambda j: j.memory_request_bytes),
]

SNAPSHOT_PER_JOB: list[tuple[str, str, Callable[[SnapshotJob], float | None]]] = [
    ("maxcompute_job_cpu_usage_cores", "The job's CPU use at the snapshot, in cores.", lambda j: j.cpu_usage_cores),
    ("maxcompute_job_cpu_request_cores", "The job's CPU request at the snapshot, in cores.",
     lambda j: j.cpu_request_cores),
    ("maxcompute_job_memory_usage_bytes", "The job's memory use at the snapshot, in bytes.",
     lambda j: j.memory_usage_bytes),
    ("maxcompute_job_memory_request_bytes", "The job's memory request at the snapshot, in bytes.",
     lambda j: j.memory_request_bytes),
    ("maxcompute_job_cpu_usage_to_request_ratio", "The job's CPU use over its request at the snapshot.",
     lambda j: j.cpu_usage_to_request),
    ("maxcompute_job_memory_usage_to_request_ratio", "The job's memory use over its request at the snapshot.",
     lambda j: j.memory_usage_to_request),
    ("maxcompute_job_waiting_seconds", "How long the job waited (or has waited so far) for resources.",
     lambda j: j.waiting_seconds),
    ("maxcompute_job_running_seconds", "How long the job has run at the snapshot.", lambda j: j.running_seconds),
]


def _quota_histograms(
    ctx: SourceContext, jobs: Iterable[SnapshotJob], get: Callable[[SnapshotJob], float | None], bounds: tuple
) -> list[tuple[str, Buckets]]:
    """Returns one gauge histogram per quota over the jobs' values."""
    per_quota: dict[str, Buckets] = {}
    for job in jobs:
        value = get(job)
        if value is not None:
            per_quota.setdefault(job.quota, Buckets(bounds)).observe(value)
    return [(labels((("source", ctx.source), ("region", ctx.region), ("quota", q))), b) for q, b in per_quota.items()]


def snapshot_families(ctx: SourceContext, result: JobSnapshot) -> tuple[list[Family], int]:
    """Returns the ListJobSnapshotInfos families and how many jobs the per-job cap dropped."""
    base = (("source", ctx.source), ("region", ctx.region))
    group_labels = [
        labels((*base, ("project", j.project), ("quota", j.quota), ("job_type", j.job_type))) for j in result.jobs
    ]
    counts: dict[str, int] = defaultdict(int)
    for lab in group_labels:
        counts[lab] += 1
    families = [gauge("maxcompute_snapshot_jobs", "Jobs present at the snapshot, by project, quota and job type.",
                      counts.items())]
    families += [gauge(name, help_, _sum(zip(group_labels, map(get, result.jobs), strict=True)))
                 for name, help_, get in SNAPSHOT_SUMS]
    families.append(histogram(
        "maxcompute_snapshot_job_waiting_seconds", "Distribution of the present jobs' waiting time, by quota.",
        _quota_histograms(ctx, result.jobs, lambda j: j.waiting_seconds, WAITING_BUCKETS), gauge_style=True))
    families.append(histogram(
        "maxcompute_snapshot_job_cpu_usage_to_request_ratio",
        "Distribution of the present jobs' CPU use over request, by quota.",
        _quota_histograms(ctx, result.jobs, lambda j: j.cpu_usage_to_request, RATIO_BUCKETS), gauge_style=True))
    if result.snapshot_time is not None:
        families.append(gauge("maxcompute_snapshot_timestamp_seconds", "The snapshotTime of the last snapshot read.",
                              [(labels(base), result.snapshot_time)]))
    kept, dropped = ctx.capped(result.jobs, lambda j: j.cpu_usage_cores)
    if kept:
        job_labels = [
            labels((*base, ("project", j.project), ("quota", j.quota), ("job_type", j.job_type), ctx.owner(j.owner),
                    ("priority", j.priority), ("instance_id", j.instance_id)))
            for j in kept
        ]
        families += [gauge(name, help_, zip(job_labels, map(get, kept), strict=True))
                     for name, help_, get in SNAPSHOT_PER_JOB]
    return families, dropped


GROUP = ("project", "quota", "job_type")
FINISHED_COUNTERS = [
    ("finished", "maxcompute_jobs_finished_total", "Jobs that finished, by final status (GetJobInfo).",
     (*GROUP, "status")),
    ("cpu_core_seconds", "maxcompute_job_cpu_core_seconds_total", "CPU used by finished jobs, in core-seconds "
     "(cuUsage x 100).", GROUP),
    ("memory_byte_seconds", "maxcompute_job_memory_byte_seconds_total", "Memory used by finished jobs, in "
     "byte-seconds (memoryUsage MB x s).", GROUP),
    ("input_bytes", "maxcompute_job_input_bytes_total", "Data scanned by finished jobs (inputBytes).", GROUP),
    ("diagnostics", "maxcompute_job_diagnostics_total", "MaxCompute's diagnostics of finished jobs, one per "
     "sceneResults entry.", ("project", "quota", "scene", "scene_tag", "severity")),
]
FINISHED_HISTOGRAMS = [
    ("wait_seconds", "maxcompute_job_wait_duration_seconds", "How long finished jobs waited for resources "
     "(waitingTime)."),
    ("run_seconds", "maxcompute_job_run_duration_seconds", "How long finished jobs ran (runningTime)."),
]


def finished_families(ctx: SourceContext, result: FinishedJobs) -> tuple[list[Family], int]:
    """Returns the GetJobInfo families: cumulative counters and histograms of finished jobs."""
    base = (("source", ctx.source), ("region", ctx.region))

    def lab(names: tuple[str, ...], values: tuple[str, ...]) -> str:
        return labels((*base, *zip(names, values, strict=True)))

    tally = result.tally
    families = [
        counter(name, help_, [(lab(names, v), n) for v, n in tally.counters.get(key, {}).items()])
        for key, name, help_, names in FINISHED_COUNTERS
    ]
    families += [
        frozen_histogram(name, help_, [(lab(GROUP, v), h) for v, h in tally.histograms.get(key, {}).items()])
        for key, name, help_ in FINISHED_HISTOGRAMS
    ]
    return families, 0


RENDERERS = {RunningJobs: running_families, JobSnapshot: snapshot_families, FinishedJobs: finished_families}
