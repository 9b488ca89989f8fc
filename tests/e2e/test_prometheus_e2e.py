"""End to end: the exporter's demo scraped by a real Prometheus that evaluates the real alert rules.

1. Starts `python -m exporter --demo` and `prometheus` on free loopback ports (scrape and rule evaluation every
   second; a copy of deploy/prometheus/alerts.yaml with every `for:` set to 0s).
2. Drives the simulator (`POST /-/sim/workload`) and asserts that the matching alerts fire with the culprit's labels:
   starved jobs of one quota fire MaxComputeJobsWaitingTooLong; Spark runs failing in a queue of their own fire
   EmrSparkJobRunsFailing; the demo's failed DataArts batch instances fire DataArtsBatchJobLastInstanceFailed.
3. Takes the simulated APIs down (`POST /-/sim/faults`) and asserts that CloudJobExporterSourceDown fires for the
   MaxCompute source's polled APIs and that the failed polls are counted with reason `server`; then lifts the fault
   and waits for the source to come back.
4. Makes jobs that waited an hour end, so that GetJobInfo's LackResource diagnostics are counted.
5. Runs every query of every Grafana dashboard (panels and variables, with variables at "All") through
   /api/v1/query: each must parse and return at least one series. Only queries of metrics in NOT_IN_DEMO_YET may
   come back empty; that list shrinks as the demo grows (a listed metric that has data is reported as a warning).

Needs the `prometheus` binary (Debian package `prometheus`); skipped without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.prom import (
    METRIC_RE,
    PROMETHEUS,
    ROOT,
    RULES,
    Prometheus,
    dashboard_queries,
    free_port,
    http,
    run_prometheus,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Metrics the demo does not export yet: dashboard queries over them alone may return nothing.
NOT_IN_DEMO_YET: set[str] = set()  # every source kind is in the demo now; add a metric here only with its reason
# The APIs polled on a timer; GetJobInfo is called only for jobs that left the running set.
POLLED_EVERY_INTERVAL = {"GetRunningJobs", "ListJobSnapshotInfos"}
STARVED_QUOTA = "os_bigdata"
STARVED_JOBS = 25
FAILING_QUEUE = "e2e_failing_queue"
DIAGNOSED_QUOTA = "etl_quota"  # a subscription quota
DIAGNOSED_JOBS = 10


@dataclass
class Stack:
    exporter_url: str
    simulator_url: str
    prometheus: Prometheus
    logs: Callable[[], str]

    def query(self, promql: str) -> list[dict]:
        """Runs an instant query; raises ValueError when Prometheus refuses it."""
        return self.prometheus.query(promql)

    def firing(self, alertname: str) -> list[dict]:
        return self.prometheus.firing(alertname)


def short_for_durations(tmp: Path) -> Path:
    """A copy of the alert rules with every `for:` set to 0s, so that alerts fire on the first evaluation."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    path = tmp / "alerts.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`; CI installs it)")
    tmp = tmp_path_factory.mktemp("e2e")
    exporter_port = free_port()
    exporter_log = tmp / "exporter.log"
    processes: list[subprocess.Popen] = []

    def logs() -> str:
        tail = exporter_log.read_text(errors="replace").splitlines()[-25:] if exporter_log.exists() else []
        return f"--- {exporter_log.name}\n" + "\n".join(tail)

    with ExitStack() as stack_of:
        stack_of.callback(stop, processes)
        with exporter_log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "exporter",
                        "--demo",
                        "--web.listen-address",
                        f"127.0.0.1:{exporter_port}",
                        "--log.format",
                        "json",
                    ],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        exporter_url = f"http://127.0.0.1:{exporter_port}"

        def simulator_url() -> str | None:
            for line in exporter_log.read_text(errors="replace").splitlines():
                if '"demo simulator started"' in line:
                    return json.loads(line)["url"]
            if processes[0].poll() is not None:
                pytest.fail(f"the exporter exited with {processes[0].returncode}\n{logs()}")
            return None

        sim_url = wait_for("the demo's simulator URL in the exporter's log", simulator_url, 30, logs)
        wait_for("the exporter's /-/ready", lambda: http("GET", f"{exporter_url}/-/ready") is not None, 30, logs)

        prometheus = stack_of.enter_context(
            run_prometheus(tmp, [f"127.0.0.1:{exporter_port}"], rule_files=[short_for_durations(tmp)])
        )
        stack = Stack(exporter_url, sim_url, prometheus, lambda: logs() + "\n" + prometheus.logs())
        wait_for(
            "scraped demo data in Prometheus",
            lambda: stack.query("maxcompute_running_jobs") and stack.query("maxcompute_snapshot_jobs"),
            30,
            stack.logs,
        )
        yield stack


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_starved_jobs_fire_jobs_waiting_too_long(stack: Stack) -> None:
    http(
        "POST",
        f"{stack.simulator_url}/-/sim/workload",
        {"starve": {"count": STARVED_JOBS, "waited_seconds": 3600, "quota": STARVED_QUOTA}},
    )

    def fired() -> dict | None:
        for alert in stack.firing("MaxComputeJobsWaitingTooLong"):
            if alert["labels"]["quota"] == STARVED_QUOTA and float(alert["value"]) >= STARVED_JOBS:
                return alert
        return None

    alert = wait_for(f"MaxComputeJobsWaitingTooLong for quota {STARVED_QUOTA}", fired, 45, stack.logs)
    assert alert["labels"]["source"] == "demo-maxcompute"
    assert alert["labels"]["severity"] == "warning"
    assert STARVED_QUOTA in alert["annotations"]["description"]


def test_failing_spark_runs_fire_emr_runs_failing(stack: Stack) -> None:
    """Runs that fail in a queue of their own: one first (so that the counter's series exists and increase() sees
    the rest arrive), then several more."""
    workload = f"{stack.simulator_url}/-/sim/workload"
    workspace = next(iter(http("GET", workload)["emr_serverless_spark"]))
    submit = {
        "workspace": workspace,
        "outcome": "Failed",
        "wait_seconds": 0,
        "run_seconds": 1,
        "queue": FAILING_QUEUE,
        "code_type": "SQL",
    }
    http("POST", workload, {"service": "emr_serverless_spark", "submit": {**submit, "count": 1}})
    counted = f'emr_spark_job_runs_finished_total{{queue="{FAILING_QUEUE}", state="Failed"}}'
    wait_for("the first failed run to be counted", lambda: stack.query(counted), 30, stack.logs)
    http("POST", workload, {"service": "emr_serverless_spark", "submit": {**submit, "count": 10}})

    def fired() -> dict | None:
        alerts = [a for a in stack.firing("EmrSparkJobRunsFailing") if a["labels"]["queue"] == FAILING_QUEUE]
        return alerts[0] if alerts else None

    alert = wait_for(f"EmrSparkJobRunsFailing for queue {FAILING_QUEUE}", fired, 45, stack.logs)
    assert alert["labels"]["workspace"] == workspace
    assert alert["labels"]["source"] == "demo-emr-spark"
    assert float(alert["value"]) == 1.0


def test_failed_batch_instances_fire_dataarts_alert(stack: Stack) -> None:
    """The demo's DataArts workload has batch jobs whose last instance failed (7% fail, 2% running-exception)."""
    alerts = wait_for(
        "DataArtsBatchJobLastInstanceFailed",
        lambda: stack.firing("DataArtsBatchJobLastInstanceFailed"),
        30,
        stack.logs,
    )
    for alert in alerts:
        labels = alert["labels"]
        assert labels["source"] == "demo-dataarts"
        assert labels["status"] in {"fail", "running-exception"}
        assert labels["job_name"] and labels["project_id"] and "workspace" in labels
        assert labels["job_name"] in alert["annotations"]["summary"]


@dataclass
class Outage:
    alerts_during: list[dict]
    server_errors: list[dict]


@pytest.fixture(scope="module")
def outage(stack: Stack) -> Outage:
    """Takes every simulated API down until CloudJobExporterSourceDown fires for the MaxCompute source's polled
    APIs, then back up until that source is."""
    up = 'cloud_job_exporter_source_up{source="demo-maxcompute"}'

    def healthy() -> bool:
        down = [a for a in stack.firing("CloudJobExporterSourceDown") if a["labels"]["source"] == "demo-maxcompute"]
        return bool((series := stack.query(up)) and all(s["value"][1] == "1" for s in series) and not down)

    wait_for("the MaxCompute source to be up, with no alert, before the outage", healthy, 30, stack.logs)
    http("POST", f"{stack.simulator_url}/-/sim/faults", {"down": True})
    try:

        def every_api_down() -> list[dict] | None:
            alerts = [
                a for a in stack.firing("CloudJobExporterSourceDown") if a["labels"]["source"] == "demo-maxcompute"
            ]
            return alerts if {a["labels"]["api"] for a in alerts} >= POLLED_EVERY_INTERVAL else None

        during = wait_for("CloudJobExporterSourceDown for the MaxCompute APIs", every_api_down, 45, stack.logs)
        errors = stack.query('cloud_job_exporter_poll_errors_total{source="demo-maxcompute", reason="server"}')
    finally:
        http("POST", f"{stack.simulator_url}/-/sim/faults", {"reset": True})
    wait_for(
        "the source to come back after the outage",
        lambda: (series := stack.query(up)) and all(s["value"][1] == "1" for s in series),
        60,
        stack.logs,
    )
    return Outage(during, errors)


def test_vendor_outage_fires_source_down(outage: Outage) -> None:
    assert {a["labels"]["api"] for a in outage.alerts_during} >= POLLED_EVERY_INTERVAL
    assert all(a["labels"]["kind"] == "maxcompute" for a in outage.alerts_during)
    assert all(a["labels"]["severity"] == "warning" for a in outage.alerts_during)
    assert outage.server_errors and all(float(s["value"][1]) > 0 for s in outage.server_errors)


@pytest.fixture(scope="module")
def diagnosed(stack: Stack) -> list[dict]:
    """Jobs diagnosed LackResource by GetJobInfo: jobs of DIAGNOSED_QUOTA that waited an hour start now; once the
    exporter has seen at least DIAGNOSED_JOBS of them run, every running job is cancelled (target_running 0) and the
    workload restored, so that they end at once and the exporter reads their diagnosis."""
    workload = f"{stack.simulator_url}/-/sim/workload"
    target = http("GET", workload)["maxcompute"]["target_running"]
    http(
        "POST",
        workload,
        # Twice as many: a few have runs so short that they end before the exporter sees them run.
        {
            "starve": {
                "count": 2 * DIAGNOSED_JOBS,
                "waited_seconds": 3600,
                "remaining_seconds": 0,
                "quota": DIAGNOSED_QUOTA,
            }
        },
    )
    waited_an_hour = (
        f'count(maxcompute_running_job_started_timestamp_seconds{{quota="{DIAGNOSED_QUOTA}"}} '
        f'- maxcompute_running_job_submitted_timestamp_seconds{{quota="{DIAGNOSED_QUOTA}"}} >= 3600)'
        f" >= {DIAGNOSED_JOBS}"
    )
    wait_for("the exporter to see the starved jobs running", lambda: stack.query(waited_an_hour), 30, stack.logs)
    http("POST", workload, {"target_running": 0})
    http("POST", workload, {"target_running": target})
    query = f'maxcompute_job_diagnostics_total{{scene="LackResource", quota="{DIAGNOSED_QUOTA}"}}'
    return wait_for(
        "LackResource diagnostics of the cancelled jobs",
        lambda: (found := stack.query(query)) and sum(float(s["value"][1]) for s in found) >= DIAGNOSED_JOBS and found,
        45,
        stack.logs,
    )


def test_diagnosed_jobs_are_counted(diagnosed: list[dict]) -> None:
    assert sum(float(series["value"][1]) for series in diagnosed) >= DIAGNOSED_JOBS
    for series in diagnosed:
        labels = series["metric"]
        assert labels["source"] == "demo-maxcompute"
        assert labels["scene_tag"] == "SubscriptionLackResource"
        assert labels["severity"] == "warning"
        assert labels["project"]


def test_every_dashboard_query_returns_data(stack: Stack, outage: Outage, diagnosed: list[dict]) -> None:
    # After the outage and the diagnosed jobs, so that the error and diagnostics counters have series too.
    queries = {where: query.promql for where, query in dashboard_queries().items()}
    assert len(queries) > 50
    pending = dict(queries)
    refused: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for where, promql in list(pending.items()):
            try:
                if stack.query(promql):
                    del pending[where]
            except ValueError as exc:
                refused[where] = f"{promql}\n    {exc}"
                del pending[where]
        if pending:
            time.sleep(1)
    assert refused == {}, "queries Prometheus refused:\n" + "\n".join(f"{w}: {e}" for w, e in refused.items())

    empty = {where: promql for where, promql in pending.items() if not set(METRIC_RE.findall(promql)) & NOT_IN_DEMO_YET}
    assert empty == {}, "dashboard queries with no data:\n" + "\n".join(f"{w}: {q}" for w, q in empty.items())

    present = {name for name in NOT_IN_DEMO_YET if stack.query(f"count({name})")}
    if present:
        warnings.warn(f"the demo now exports {sorted(present)}: remove them from NOT_IN_DEMO_YET", stacklevel=1)
