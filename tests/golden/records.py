"""The fixed record sets behind the per-kind golden expositions: plain constructor calls of the model's records.

Nothing here reads a vendor response or calls a source: each poll result is written out field by field, so that after
a refactor of the model it can be rebuilt by hand, and the golden files then prove the exposition did not change. The
values are chosen to reach the renderers' corners: None fields (no sample), 0 and -0.0 (a per-job column is written
"0.0" for it when it starts with a float, "-0.0" when it starts with an int), floats that print long or in
exponent form, label values that need escaping (a double quote, a backslash, a newline) and non-ASCII label text.

The cumulative counts (FrozenTally) are built through `Tally` the way the sources build them (the same keys and label
tuples as `record_finished` in `exporter/sources/maxcompute/jobinfo.py` and `EndedRuns._count` in
`exporter/sources/emr_serverless_spark/source.py`), with the sources' default bucket bounds copied here as
literals (the golden test checks that they still equal the defaults).

Each API's share of the source's `max_job_series` is not in the records: the Renderer computes it
(`exporter.exposition.context.split_budget`).
"""

from __future__ import annotations

from exporter.sources.dataarts_factory.records import DataArtsJob, DataArtsJobList
from exporter.sources.emr_serverless_spark.records import (
    ENDED_CU_HOURS,
    ENDED_DURATION,
    ENDED_MEMORY_BYTE_SECONDS,
    ENDED_RUNS,
    ENDED_VCORE_SECONDS,
    SparkJobRun,
    SparkJobRuns,
)
from exporter.sources.maxcompute.records import FinishedJobs, JobSnapshot, RunningJob, RunningJobs, SnapshotJob
from exporter.tally import Tally

# exporter.sources.maxcompute.config.DEFAULT_DURATION_BUCKETS: the default `wait_buckets` and `run_buckets`.
MAXCOMPUTE_DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
                               14400.0, 28800.0, 43200.0, 86400.0)
# exporter.sources.emr_serverless_spark.config.DURATION_BUCKETS: the ended runs' duration histogram.
EMR_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)

T0 = 1_700_000_000.0  # a fixed instant (UNIX seconds) the timestamps are near

# Label values that need escaping, and non-ASCII ones.
ESCAPED = 'odd "quoted" back\\slash\nnewline'
CHINESE_PROJECT = "数据仓库_prod"
CHINESE_OWNER = "RAM$张三"


# ---- MaxCompute ----------------------------------------------------------------------------------------------------


def maxcompute_running() -> RunningJobs:
    """A GetRunningJobs result: three projects, three quotas, several owners; None, 0 and -0.0 values."""
    return RunningJobs((
        RunningJob("20231114221320000g1a2b3c4", "dw_prod", "os_bigdata", "ALIYUN$alice@example.com",
                   cu_snapshot=0.25, memory_snapshot=0.125, progress=0.5, submitted_at=T0 - 600.0,
                   running_at=T0 - 590.0),
        RunningJob("20231114221320000g1a2b3c5", "dw_prod", "os_bigdata", "RAM$etl-bot",
                   cu_snapshot=0.1 + 0.2, memory_snapshot=None, progress=-0.0, submitted_at=T0 - 30.0,
                   running_at=None),  # still waiting: no start time
        RunningJob("20231114221320000g1a2b3c6", CHINESE_PROJECT, "etl_quota", CHINESE_OWNER,
                   cu_snapshot=0.0, memory_snapshot=0.0, progress=0.0, submitted_at=T0 - 7200.5,
                   running_at=T0 - 7000.25),
        RunningJob("20231114221320000g1a2b3c7", CHINESE_PROJECT, ESCAPED, ESCAPED,
                   cu_snapshot=1.5, memory_snapshot=2.0, progress=0.999, submitted_at=T0 - 86400.0,
                   running_at=T0 - 86000.0),
        RunningJob("20231114221320000g1a2b3c8", "ads_report", "os_PayAsYouGoQuota", "",
                   cu_snapshot=None, memory_snapshot=None, progress=None, submitted_at=None, running_at=None),
        RunningJob("20231114221320000g1a2b3c9", "ads_report", "os_bigdata", "RAM$bi-report",
                   cu_snapshot=0.25, memory_snapshot=1e-05, progress=1, submitted_at=T0, running_at=T0),
    ))


def maxcompute_snapshot() -> JobSnapshot:
    """A ListJobSnapshotInfos result: several (project, quota, job type) groups, waiting jobs, None fields."""
    gib = 1024.0**3
    return JobSnapshot(
        jobs=(
            SnapshotJob("20231114221320000g1a2b3c4", "dw_prod", "os_bigdata", "SQL", "ALIYUN$alice@example.com", "1",
                        cpu_usage_cores=4.5, cpu_request_cores=8.0, memory_usage_bytes=12 * gib,
                        memory_request_bytes=16 * gib, cpu_usage_to_request=0.5625, memory_usage_to_request=0.75,
                        waiting_seconds=10.0, running_seconds=590),  # an int first: the column is written with str()
            SnapshotJob("20231114221320000g1a2b3c5", "dw_prod", "os_bigdata", "SQL", "RAM$etl-bot", "9",
                        cpu_usage_cores=0.0, cpu_request_cores=2.0, memory_usage_bytes=0.0,
                        memory_request_bytes=4 * gib, cpu_usage_to_request=-0.0, memory_usage_to_request=0.0,
                        waiting_seconds=30.0, running_seconds=-0.0),  # waiting, a bound of the waiting buckets
            SnapshotJob("20231114221320000g1a2b3ca", "dw_prod", "os_bigdata", "SPARK", "RAM$etl-bot", "3",
                        cpu_usage_cores=120.0, cpu_request_cores=100.0, memory_usage_bytes=1.5e12,
                        memory_request_bytes=1e12, cpu_usage_to_request=1.2, memory_usage_to_request=1.5,
                        waiting_seconds=100000.0, running_seconds=3600.0),  # beyond the last bound: +Inf
            SnapshotJob("20231114221320000g1a2b3c6", CHINESE_PROJECT, "etl_quota", "SQL", CHINESE_OWNER, "1",
                        cpu_usage_cores=1 / 3, cpu_request_cores=1.0, memory_usage_bytes=None,
                        memory_request_bytes=None, cpu_usage_to_request=1 / 3, memory_usage_to_request=None,
                        waiting_seconds=None, running_seconds=None),
            SnapshotJob("20231114221320000g1a2b3c7", CHINESE_PROJECT, ESCAPED, ESCAPED, ESCAPED, ESCAPED,
                        cpu_usage_cores=2.0, cpu_request_cores=2.0, memory_usage_bytes=1024.0,
                        memory_request_bytes=2048.0, cpu_usage_to_request=1.0, memory_usage_to_request=0.5,
                        waiting_seconds=0.5, running_seconds=86000.0),
            SnapshotJob("20231114221320000g1a2b3c9", "ads_report", "os_PayAsYouGoQuota", "SQL", "", "",
                        cpu_usage_cores=None, cpu_request_cores=None, memory_usage_bytes=None,
                        memory_request_bytes=None, cpu_usage_to_request=None, memory_usage_to_request=None,
                        waiting_seconds=1, running_seconds=2),  # ints where floats are usual
        ),
        snapshot_time=T0 - 15.0,
    )


def maxcompute_finished() -> FinishedJobs:
    """A GetJobInfo round's cumulative counts, built as `record_finished` builds them."""
    tally = Tally({"wait_seconds": MAXCOMPUTE_DURATION_BUCKETS, "run_seconds": MAXCOMPUTE_DURATION_BUCKETS})
    jobs = [  # (project, quota, job_type, status, waiting, running, cuUsage, memoryUsage MB x s, inputBytes, scenes)
        ("dw_prod", "os_bigdata", "SQL", "Terminated", 3.0, 120.0, 1500.0, 2048.0, 1 << 30, []),
        ("dw_prod", "os_bigdata", "SQL", "Terminated", 0.0, 60.0, 0.0, 0.0, 0, [("DataSkew", "skew", "WARNING")]),
        ("dw_prod", "os_bigdata", "SQL", "Failed", 1.0, 0.5, 12.5, None, None, []),  # 1.0 falls in le="1.0"
        ("dw_prod", "os_bigdata", "SPARK", "Cancelled", None, None, None, 512.0, 12345, []),
        (CHINESE_PROJECT, "etl_quota", "SQL", "Terminated", 900.0, 100000.0, 1e9, 3.25, 1e15,
         [("DataSkew", "skew", "WARNING"), ("LongTail", "数据倾斜", "INFO")]),
        (CHINESE_PROJECT, ESCAPED, ESCAPED, ESCAPED, 7.5, 7.5, 0.01, 0.01, 1, [(ESCAPED, ESCAPED, ESCAPED)]),
    ]
    mb = 1024.0 * 1024.0
    for project, quota, job_type, status, waiting, running, cu, memory, scanned, scenes in jobs:
        group = (project, quota, job_type)
        tally.add("finished", (*group, status))
        if waiting is not None:
            tally.observe("wait_seconds", group, waiting)
        if running is not None:
            tally.observe("run_seconds", group, running)
        if cu is not None:
            tally.add("cpu_core_seconds", group, cu * 100)
        if memory is not None:
            tally.add("memory_byte_seconds", group, memory * mb)
        if scanned is not None:
            tally.add("input_bytes", group, scanned)
        for scene, tag, severity in scenes:
            tally.add("diagnostics", (project, quota, scene, tag, severity))
    return FinishedJobs(tally.freeze())


def maxcompute_results() -> list[object]:
    """The three MaxCompute poll results, in the order the source's APIs are listed."""
    return [maxcompute_running(), maxcompute_snapshot(), maxcompute_finished()]


# ---- EMR Serverless Spark ------------------------------------------------------------------------------------------


def emr_ended(runs: list[SparkJobRun]) -> Tally:
    """Returns the tally of ended runs as `EndedRuns._count` makes it, one call per run."""
    tally = Tally({ENDED_DURATION: EMR_DURATION_BUCKETS})
    for run in runs:
        group = (run.queue, run.state, run.code_type)
        tally.add(ENDED_RUNS, group)
        if run.submitted_at is not None and run.ended_at is not None and run.ended_at >= run.submitted_at:
            tally.observe(ENDED_DURATION, group, run.ended_at - run.submitted_at)
        for key, value in ((ENDED_VCORE_SECONDS, run.vcore_seconds),
                           (ENDED_MEMORY_BYTE_SECONDS, run.memory_byte_seconds), (ENDED_CU_HOURS, run.cu_hours)):
            if value is not None:
                tally.add(key, (run.queue,), value)
    return tally


def emr_results() -> list[object]:
    """Two workspaces' ListJobRuns results."""
    mib = 1048576.0
    ended = emr_ended([
        SparkJobRun("jr-0001", "daily_etl", "root_queue", "Success", "SQL", "alice", T0 - 3600.0, T0 - 3000.0,
                    vcore_seconds=2400.0, memory_byte_seconds=9600.0 * mib, cu_hours=0.6667),
        SparkJobRun("jr-0002", "daily_etl", "root_queue", "Success", "SQL", "alice", T0 - 1800.0, T0 - 1770.0,
                    vcore_seconds=120.0, memory_byte_seconds=480.0 * mib, cu_hours=0.0333),  # 30 s: a bound
        SparkJobRun("jr-0003", "ml_train", "dev_queue", "Failed", "JAR", "RAM$bob", T0 - 90000.0, T0 - 1.0,
                    vcore_seconds=1e7, memory_byte_seconds=4e13, cu_hours=2777.7777777777778),  # beyond 86400
        SparkJobRun("jr-0004", "notebook", "dev_queue", "Cancelled", "PYTHON", "", T0 - 50.0, T0 - 50.0,
                    vcore_seconds=0.0, memory_byte_seconds=0.0, cu_hours=0.0),  # ended when submitted: 0 s
        SparkJobRun("jr-0005", "no_times", "dev_queue", "Failed", "JAR", "carol", None, T0 - 10.0,
                    vcore_seconds=None, memory_byte_seconds=None, cu_hours=None),  # no duration, no sums
        SparkJobRun("jr-0006", ESCAPED, ESCAPED, ESCAPED, ESCAPED, ESCAPED, T0 - 20.0, T0 - 25.0,
                    vcore_seconds=1.5, memory_byte_seconds=None, cu_hours=None),  # ended "before" submission
    ]).freeze()
    active = (
        SparkJobRun("jr-0101", "stream_ingest", "root_queue", "Running", "JAR", "alice", T0 - 7200.0, None,
                    vcore_seconds=14400.0, memory_byte_seconds=None, cu_hours=None),
        SparkJobRun("jr-0102", "hourly_agg", "root_queue", "Pending", "SQL", CHINESE_OWNER, T0 - 60.0, None,
                    vcore_seconds=0.0, memory_byte_seconds=None, cu_hours=None),
        SparkJobRun("jr-0103", "报表_job", "dev_queue", "Submitted", "PYTHON", "", T0 - 5.0, None,
                    vcore_seconds=None, memory_byte_seconds=None, cu_hours=None),
        SparkJobRun("jr-0104", ESCAPED, ESCAPED, "Cancelling", "SQL", ESCAPED, None, None,
                    vcore_seconds=3.0, memory_byte_seconds=None, cu_hours=None),  # no submit time: no sample
    )
    other_active = (
        SparkJobRun("jr-0201", "daily_etl", "root_queue", "Running", "SQL", "alice", T0 - 100.0, T0 - 100.0,
                    vcore_seconds=50.0, memory_byte_seconds=None, cu_hours=None),  # an odd endTime on an active run
        SparkJobRun("jr-0202", "new_state", "root_queue", "Queued", "SQL", "dave", T0 - 1.0, None,
                    vcore_seconds=None, memory_byte_seconds=None, cu_hours=None),  # a state the docs do not list
    )
    return [
        SparkJobRuns("w-d2d82aa09155abcd", active, ended),
        SparkJobRuns("w-0123456789abcdef", other_active, Tally({ENDED_DURATION: EMR_DURATION_BUCKETS}).freeze()),
        # nothing ended in the second since start-up
    ]


# ---- DataArts Factory ----------------------------------------------------------------------------------------------


def dataarts_results() -> list[object]:
    """A workspace's BATCH and REAL_TIME job lists."""
    project = "0833a5737480d53b2f25c010dc1a7b88"
    workspace = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    batch = (
        DataArtsJob("daily_sales", "BATCH", "SCHEDULING", "success", T0 - 3600.0, T0 - 86400.0 * 30),
        DataArtsJob("hourly_orders", "BATCH", "SCHEDULING", "fail", T0 - 60.0, T0 - 86400.0),
        DataArtsJob("backfill_2023", "BATCH", "STOPPED", "manual-stop", T0 - 7200.0, None),
        DataArtsJob("new_job", "BATCH", "SCHEDULING", "", None, T0),  # scheduled, no instance yet
        DataArtsJob("报表_汇总", "BATCH", "PAUSED", "running", None, T0 - 100.0),
        DataArtsJob(ESCAPED, "BATCH", "SCHEDULING", "partial-success", T0 - 1.5, None),  # an unknown status
    )
    realtime = (
        DataArtsJob("kafka_to_dws", "REAL_TIME", "NORMAL", "", None, T0 - 86400.0 * 7),
        DataArtsJob("cdc_mysql", "REAL_TIME", "EXCEPTION", "", None, T0 - 3600.0),
        DataArtsJob("old_stream", "REAL_TIME", "STOPPED", "", None, None),
        DataArtsJob("flink_agg", "REAL_TIME", "FROZEN", "", None, 0.0),  # a job status the docs do not list
    )
    return [
        DataArtsJobList(project, workspace, "BATCH", batch),
        DataArtsJobList(project, "default", "REAL_TIME", realtime),
    ]
