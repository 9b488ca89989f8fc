"""DataArts Factory's metric families, from one job list (one workspace and job type)."""

from __future__ import annotations

from collections import Counter

from exporter.exposition.context import RenderContext
from exporter.exposition.format import Family, gauge, labels
from exporter.sources.dataarts_factory.records import DataArtsJob, DataArtsJobList

# The statuses the vendor documents for each job type: each gets a sample, 0 when no job has it.
JOB_STATUSES = {
    "BATCH": ("SCHEDULING", "STOPPED", "PAUSED"),
    "REAL_TIME": ("STARTING", "NORMAL", "EXCEPTION", "STOPPING", "STOPPED"),
}
# `lastInstanceStatus` has no published enum; these are the values seen in the service. The state set gives each of
# them a sample (1 for the current one, 0 for the others); an unknown value gets a sample of 1 as well.
LAST_INSTANCE_STATUSES = ("waiting", "running", "success", "fail", "running-exception", "manual-stop")
# Which jobs the per-job cap keeps first: the ones an alert is about.
_RANK = {"fail": 3, "running-exception": 3, "running": 2, "waiting": 2, "EXCEPTION": 3}


def _rank(job: DataArtsJob) -> float:
    """Returns the job's place in the per-job cap: failed or exceptional first, then unfinished, then the most
    recently ended or started."""
    tier = max(_RANK.get(job.last_instance_status, 1), _RANK.get(job.status, 1))
    return tier * 1e11 + (job.last_instance_end or job.start or 0.0)


def job_count(result: DataArtsJobList) -> int:
    """Returns how many jobs a result could give per-job series to."""
    return len(result.jobs)


def job_list_families(ctx: RenderContext, result: DataArtsJobList) -> tuple[list[Family], int]:
    """Returns the job-list families and how many jobs the per-job cap dropped."""
    base = (("source", ctx.source), ("region", ctx.region), ("project_id", result.project_id),
            ("workspace", result.workspace))
    counts: Counter[tuple[str, str]] = Counter({(result.job_type, s): 0 for s in JOB_STATUSES.get(result.job_type, ())})
    for job in result.jobs:
        counts[(job.job_type, job.status)] += 1
    families = [gauge(
        "dataarts_jobs", "DataArts Factory jobs by job type and status (0 for a documented status no job has).",
        [(labels((*base, ("job_type", jt), ("status", st))), n) for (jt, st), n in counts.items()],
    )]
    kept, dropped = ctx.capped(result.jobs, _rank)
    if kept:
        names = [labels((*base, ("job_name", j.name))) for j in kept]
        states = []
        for lab, job in zip(names, kept, strict=True):
            current = job.last_instance_status
            if current:
                known = LAST_INSTANCE_STATUSES if current in LAST_INSTANCE_STATUSES else (*LAST_INSTANCE_STATUSES,
                                                                                           current)
                states += [(f'{lab},{labels((("status", s),))}', int(s == current)) for s in known]
        families += [
            gauge("dataarts_job_last_instance_status", "State set of the batch job's last instance status "
                  "(lastInstanceStatus): 1 for the current value, 0 for the other known values.", states),
            gauge("dataarts_job_last_instance_end_timestamp_seconds", "When the batch job's last instance ended "
                  "(lastInstanceEndTime, UNIX seconds).", zip(names, (j.last_instance_end for j in kept), strict=True)),
            gauge("dataarts_job_start_timestamp_seconds", "When the job started to run (startTime, UNIX seconds).",
                  zip(names, (j.start for j in kept), strict=True)),
        ]
    return families, dropped

