"""MaxCompute's metric families, from its three APIs' results: the one place their metric names live."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import TypeVar

from exporter.exposition.context import RenderContext
from exporter.exposition.format import (
    Buckets,
    Family,
    counter,
    frozen_histogram,
    gauge,
    histogram,
    label_template,
    labels,
    per_job_gauge,
)
from exporter.sources.maxcompute.records import FinishedJobs, JobSnapshot, RunningJob, RunningJobs, SnapshotJob

WAITING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0)
GROUP = ("project", "quota", "job_type")
J = TypeVar("J")


def _columns(jobs: Sequence[tuple], fields: Sequence[str]) -> dict[str, tuple]:
    """Returns each field's values over the jobs (NamedTuples of `fields`), by field name: one C-level transposition,
    where a getter per job and field would be a Python call each, hundreds of thousands of them a render."""
    return dict(zip(fields, zip(*jobs, strict=True), strict=True)) if jobs else dict.fromkeys(fields, ())


def _grouped(
    jobs: Sequence[tuple], keys: Iterable[tuple[str, ...]], fields: Sequence[str]
) -> dict[tuple[str, ...], dict[str, tuple]]:
    """Returns the jobs' columns by group (groups in first-seen order): one pass, after which each aggregate is a
    C-level pass over a column."""
    groups: dict[tuple[str, ...], list[tuple]] = defaultdict(list)
    for key, job in zip(keys, jobs, strict=True):
        groups[key].append(job)
    return {key: _columns(group, fields) for key, group in groups.items()}


def _present(values: Sequence[float | None]) -> Sequence[float]:
    """Returns the values without None (a field absent from the record)."""
    return [v for v in values if v is not None] if None in values else values  # type: ignore[return-value]


def _sums(groups: dict[tuple[str, ...], dict[str, tuple]], field: str) -> dict[tuple[str, ...], float]:
    """Returns each group's sum of `field`, for the groups where at least one job has a value (None is absent)."""
    out = {}
    for key, columns in groups.items():
        if values := _present(columns[field]):
            out[key] = sum(values)
    return out


def _rows(ctx: RenderContext, names: tuple[str, ...], table: dict[tuple[str, ...], float]) -> list[tuple[str, float]]:
    """Returns (label string, value) rows for values keyed by label values: one label string per distinct key."""
    base = (("source", ctx.source), ("region", ctx.region))
    return [(labels((*base, *zip(names, key, strict=True))), value) for key, value in table.items()]


def _owner(ctx: RenderContext) -> tuple[tuple[str, ...], Callable[[str], tuple[str, ...]]]:
    """Returns the owner label's names (none when dropped) and the function giving its values."""
    if ctx.owner_label == "drop":
        return (), lambda owner: ()
    return ("owner",), lambda owner: (ctx.owner(owner)[1],)


def _per_job(
    ctx: RenderContext, cache: str, kept: Sequence[tuple], fields: Sequence[str], label_names: tuple[str, ...],
    make: Callable[[J], bytes], table: list[tuple[str, str, str]],
) -> list[Family]:
    """Returns the per-job families of `table` (name, help, field) for the kept jobs (empty ones when none is kept).
    Label prefixes are reused from the last render, keyed by the labels' values (a job's record changes every poll, its
    labels do not) joined into one string: unlike a tuple, a string is not tracked by the garbage collector, whose
    young collections on the event loop would otherwise scan 20,000 keys kept from a render."""
    keys = list(map("\x1f".join, map(attrgetter(*label_names), kept)))
    prefixes = ctx.cache(cache).prefixes(keys, kept, make)
    columns = _columns(kept, fields)
    return [per_job_gauge(name, help_, prefixes, columns[field]) for name, help_, field in table]


def job_count(result: RunningJobs | JobSnapshot) -> int:
    """Returns how many jobs a result could give per-job series to."""
    return len(result.jobs)


def _running_prefix(ctx: RenderContext) -> Callable[[RunningJob], bytes]:
    """Returns a function making `labels} `, encoded: the part a running job's samples share."""
    owner_names, owner = _owner(ctx)
    make = label_template(("source", "region", "project", "quota", *owner_names, "instance_id"))
    return lambda j: (make(ctx.source, ctx.region, j.project, j.quota, *owner(j.owner), j.instance_id) + "} ").encode()


def _snapshot_prefix(ctx: RenderContext) -> Callable[[SnapshotJob], bytes]:
    """Returns a function making `labels} `, encoded: the part a snapshot job's samples share."""
    owner_names, owner = _owner(ctx)
    make = label_template(("source", "region", "project", "quota", "job_type", *owner_names, "priority",
                           "instance_id"))
    return lambda j: (make(ctx.source, ctx.region, j.project, j.quota, j.job_type, *owner(j.owner), j.priority,
                          j.instance_id) + "} ").encode()


RUNNING_PER_JOB: list[tuple[str, str, str]] = [
    ("maxcompute_running_job_cu_snapshot_ratio", "The job's cuSnapshot: its share of the quota's CU.",
     "cu_snapshot"),
    ("maxcompute_running_job_memory_snapshot_ratio", "The job's memorySnapshot: its share of the quota's memory.",
     "memory_snapshot"),
    ("maxcompute_running_job_progress_ratio", "The job's progress, 0 to 1.", "progress"),
    ("maxcompute_running_job_submitted_timestamp_seconds", "When the job was submitted (UNIX seconds).",
     "submitted_at"),
    ("maxcompute_running_job_started_timestamp_seconds", "When the job started running (UNIX seconds).",
     "running_at"),
]


def running_families(ctx: RenderContext, result: RunningJobs) -> tuple[list[Family], int]:
    """Returns the GetRunningJobs families and how many jobs the per-job cap dropped."""
    jobs = result.jobs
    by_quota = _grouped(jobs, zip(map(attrgetter("quota"), jobs)), RunningJob._fields)
    families = [
        gauge("maxcompute_running_jobs", "Running jobs (GetRunningJobs), by project and quota.",
              _rows(ctx, ("project", "quota"), Counter(map(attrgetter("project", "quota"), jobs)))),
        gauge("maxcompute_quota_cu_snapshot_ratio", "Sum of the running jobs' cuSnapshot, by quota.",
              _rows(ctx, ("quota",), _sums(by_quota, "cu_snapshot"))),
        gauge("maxcompute_quota_memory_snapshot_ratio", "Sum of the running jobs' memorySnapshot, by quota.",
              _rows(ctx, ("quota",), _sums(by_quota, "memory_snapshot"))),
    ]
    kept, dropped = ctx.capped(jobs, attrgetter("cu_snapshot"))
    families += _per_job(ctx, "running", kept, RunningJob._fields, ("instance_id", "project", "quota", "owner"),
                         _running_prefix(ctx), RUNNING_PER_JOB)
    return families, dropped


SNAPSHOT_SUMS: list[tuple[str, str, str]] = [
    ("maxcompute_snapshot_cpu_usage_cores", "Sum of the jobs' CPU use at the snapshot, in cores.",
     "cpu_usage_cores"),
    ("maxcompute_snapshot_cpu_request_cores", "Sum of the jobs' CPU requests at the snapshot, in cores.",
     "cpu_request_cores"),
    ("maxcompute_snapshot_memory_usage_bytes", "Sum of the jobs' memory use at the snapshot, in bytes.",
     "memory_usage_bytes"),
    ("maxcompute_snapshot_memory_request_bytes", "Sum of the jobs' memory requests at the snapshot, in bytes.",
     "memory_request_bytes"),
]

SNAPSHOT_PER_JOB: list[tuple[str, str, str]] = [
    ("maxcompute_job_cpu_usage_cores", "The job's CPU use at the snapshot, in cores.", "cpu_usage_cores"),
    ("maxcompute_job_cpu_request_cores", "The job's CPU request at the snapshot, in cores.",
     "cpu_request_cores"),
    ("maxcompute_job_memory_usage_bytes", "The job's memory use at the snapshot, in bytes.",
     "memory_usage_bytes"),
    ("maxcompute_job_memory_request_bytes", "The job's memory request at the snapshot, in bytes.",
     "memory_request_bytes"),
    ("maxcompute_job_cpu_usage_to_request_ratio", "The job's CPU use over its request at the snapshot.",
     "cpu_usage_to_request"),
    ("maxcompute_job_memory_usage_to_request_ratio", "The job's memory use over its request at the snapshot.",
     "memory_usage_to_request"),
    ("maxcompute_job_waiting_seconds", "How long the job waited (or has waited so far) for resources.",
     "waiting_seconds"),
    ("maxcompute_job_running_seconds", "How long the job has run at the snapshot.", "running_seconds"),
]


def _quota_histograms(
    ctx: RenderContext, by_group: dict[tuple[str, ...], dict[str, tuple]], field: str, bounds: tuple
) -> list[tuple[str, Buckets]]:
    """Returns one gauge histogram per quota over the jobs' values of `field` (quotas where no job has a value have
    none), from the columns by GROUP: a quota's values are its groups' columns end to end."""
    by_quota: dict[tuple[str, ...], list[float | None]] = defaultdict(list)
    for (_project, quota, _job_type), columns in by_group.items():
        by_quota[(quota,)].extend(columns[field])
    per_quota = {key: Buckets.of(bounds, values) for key, column in by_quota.items() if (values := _present(column))}
    return _rows(ctx, ("quota",), per_quota)  # type: ignore[arg-type]


def snapshot_families(ctx: RenderContext, result: JobSnapshot) -> tuple[list[Family], int]:
    """Returns the ListJobSnapshotInfos families and how many jobs the per-job cap dropped."""
    jobs = result.jobs
    by_group = _grouped(jobs, map(attrgetter(*GROUP), jobs), SnapshotJob._fields)
    families = [gauge("maxcompute_snapshot_jobs", "Jobs present at the snapshot, by project, quota and job type.",
                      _rows(ctx, GROUP, {key: len(group["instance_id"]) for key, group in by_group.items()}))]
    families += [gauge(name, help_, _rows(ctx, GROUP, _sums(by_group, field))) for name, help_, field in SNAPSHOT_SUMS]
    families.append(histogram(
        "maxcompute_snapshot_job_waiting_seconds", "Distribution of the present jobs' waiting time, by quota.",
        _quota_histograms(ctx, by_group, "waiting_seconds", WAITING_BUCKETS), gauge_style=True))
    families.append(histogram(
        "maxcompute_snapshot_job_cpu_usage_to_request_ratio",
        "Distribution of the present jobs' CPU use over request, by quota.",
        _quota_histograms(ctx, by_group, "cpu_usage_to_request", RATIO_BUCKETS), gauge_style=True))
    if result.snapshot_time is not None:
        # A source split by quota reads one snapshot per quota, each at its own time.
        by = ("quota",) if result.quota else ()
        families.append(gauge("maxcompute_snapshot_timestamp_seconds", "The snapshotTime of the last snapshot read.",
                              _rows(ctx, by, {(result.quota,) if result.quota else (): result.snapshot_time})))
    kept, dropped = ctx.capped(jobs, attrgetter("cpu_usage_cores"))
    families += _per_job(ctx, "snapshot", kept, SnapshotJob._fields, ("instance_id", *GROUP, "owner", "priority"),
                         _snapshot_prefix(ctx), SNAPSHOT_PER_JOB)
    return families, dropped


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


def finished_families(ctx: RenderContext, result: FinishedJobs) -> tuple[list[Family], int]:
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

