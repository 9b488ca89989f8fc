"""Static checks of the Grafana dashboards: in sync with grafana/generate.py, well formed, and
querying only metrics of the contract with PromQL that promtool parses."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .contract import (
    ROOT,
    counted_per_replica,
    metric_names_in,
    undocumented_metrics,
    unknown_metrics,
)

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
CHART_DASHBOARD_DIR = ROOT / "helm" / "cloud-job-exporter" / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's own variables and the values the checks give them.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# The variables each dashboard must offer, besides `datasource`.
REQUIRED_VARIABLES = {
    "overview.json": {"source"},
    "maxcompute.json": {"source", "region", "project", "quota"},
    "emr-serverless-spark.json": {"source", "region", "workspace"},
    "dataarts-factory.json": {"source", "region", "project_id", "workspace"},
}
# Series every dashboard of a kind must show at least once.
MUST_SHOW = {
    "overview.json": {
        "cloud_job_exporter_source_up",
        "cloud_job_exporter_poll_duration_seconds_bucket",
        "cloud_job_exporter_poll_errors_total",
        "cloud_job_exporter_last_success_timestamp_seconds",
    },
    "maxcompute.json": {
        "maxcompute_running_jobs",
        "maxcompute_quota_cu_snapshot_ratio",
        "maxcompute_quota_memory_snapshot_ratio",
        "maxcompute_snapshot_cpu_usage_cores",
        "maxcompute_snapshot_cpu_request_cores",
        "maxcompute_snapshot_job_waiting_seconds_bucket",
        "maxcompute_running_job_cu_snapshot_ratio",
        "maxcompute_jobs_finished_total",
        "maxcompute_job_wait_duration_seconds_bucket",
        "maxcompute_job_run_duration_seconds_bucket",
        "maxcompute_job_diagnostics_total",
    },
    "emr-serverless-spark.json": {"emr_spark_job_runs", "emr_spark_job_runs_finished_total"},
    "dataarts-factory.json": {"dataarts_jobs", "dataarts_job_last_instance_status"},
}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def all_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = [
        (f"panel {panel['id']} '{panel['title']}' {t['refId']}", t["expr"])
        for panel in all_panels(dashboard)
        for t in panel.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.*), *\w+\)", var["definition"])
            assert match, f"variable {var['name']}: unexpected query {var['definition']}"
            found.append((f"variable {var['name']}", match.group(1)))
    return found


def expand(expr: str) -> str:
    """The query as Grafana sends it with every variable at 'All' (regex `.*`)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: BUILTINS.get(m.group(1), ".*"), expr)


def load_generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", ROOT / "grafana" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboards_exist() -> None:
    assert {p.name for p in DASHBOARD_FILES} == set(REQUIRED_VARIABLES)


def test_checked_in_json_matches_the_generator() -> None:
    rendered = load_generator().render_all()
    for directory in (DASHBOARD_DIR, CHART_DASHBOARD_DIR):
        on_disk = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
        assert on_disk == rendered, f"{directory.relative_to(ROOT)} is out of date: run python grafana/generate.py"


def test_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["id"] is None
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert REQUIRED_VARIABLES[path.name] <= set(variables)

    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description"), f"panel {panel['id']} needs a title and a description"
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])

    for where, expr in queries(dashboard):
        for name in re.findall(r"\$\{?(\w+)\}?", expr):
            assert name in variables or name in BUILTINS, f"{where}: ${name} is not a variable"
        assert unknown_metrics(expr) == set(), where
        assert undocumented_metrics(expr) == set(), f"{where}: not in docs/metrics.md"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panels_count_an_ha_pair_once(path: Path) -> None:
    """Every panel query aggregates over the replicas first (variables list label values: a pair adds none)."""
    found = {
        where: counted
        for where, expr in queries(load(path))
        if not where.startswith("variable") and (counted := counted_per_replica(expr))
    }
    assert found == {}, "aggregate over the replicas first: max without (instance, pod)"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_shows_the_key_series(path: Path) -> None:
    used = set().union(*(metric_names_in(expr) for _, expr in queries(load(path))))
    assert MUST_SHOW[path.name] <= used


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (CI installs it)")
def test_every_query_parses(tmp_path: Path) -> None:
    """promtool has no 'parse a query' command, but `check rules` parses each rule's expression."""
    rules, where = [], []
    for path in DASHBOARD_FILES:
        for place, expr in queries(load(path)):
            rules.append({"record": f"dashboard_query_{len(rules)}", "expr": expand(expr)})
            where.append(f"{path.name} {place}")
    rule_file = tmp_path / "dashboard_queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    for i, place in enumerate(where):
        output = output.replace(f"dashboard_query_{i}", place)
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
