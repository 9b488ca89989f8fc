"""The alert rules in deploy/prometheus/alerts.yaml: checked and unit-tested by the real promtool."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .contract import ROOT, counted_per_replica, undocumented_metrics, unknown_metrics

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
CHART_RULES = ROOT / "helm" / "cloud-job-exporter" / "files" / "alerts.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package `prometheus`; CI installs it)"
)


def alerting_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


REPLICAS = ('instance="a", pod="cje-0"', 'instance="b", pod="cje-1"')


def as_ha_pair(series: str) -> list[str]:
    """The series as two identical replicas of the exporter would give it (a series that already names its
    instance is a replica of its own, and stays as it is)."""
    if "instance=" in series:
        return [series]
    name, _, labels = series.partition("{")
    labels = labels.removesuffix("}").strip()
    return [f"{name}{{{replica}{', ' + labels if labels else ''}}}" for replica in REPLICAS]


@needs_promtool
def test_promtool_unit_tests_pass_with_every_series_from_an_ha_pair(tmp_path) -> None:
    """Every case of alerts_test.yaml with each input series duplicated into instance a and b: the same alerts,
    with the same labels and values, fire and stay quiet (the rules take `max without (instance, pod)` first)."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    tests["rule_files"] = [str(RULES)]
    duplicated = 0
    for case in tests["tests"]:
        pairs = []
        for item in case["input_series"]:
            copies = as_ha_pair(item["series"])
            duplicated += len(copies) - 1
            pairs += [{**item, "series": series} for series in copies]
        case["input_series"] = pairs
    assert duplicated >= 40
    pair_tests = tmp_path / "alerts_test_ha_pair.yaml"
    pair_tests.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = run_promtool("test", "rules", str(pair_tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown not firing"
    assert firing | quiet <= names, "tests name alerts that do not exist"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_is_documented(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), f"{rule['alert']} has no {key}"
    assert "{{ $labels." in annotations["description"], "the description must name the culprit's labels"
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"] == f"docs/runbook.md#{anchor}"
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    assert anchor in headings, f"docs/runbook.md has no section '## {rule['alert']}'"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_queries_contract_metrics(rule: dict) -> None:
    assert unknown_metrics(rule["expr"]) == set()
    assert undocumented_metrics(rule["expr"]) == set(), "not in docs/metrics.md"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_counts_an_ha_pair_once(rule: dict) -> None:
    assert counted_per_replica(rule["expr"]) == [], "aggregate over the replicas first: max without (instance, pod)"


def test_chart_carries_the_same_rules() -> None:
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), (
        f"{CHART_RULES.relative_to(ROOT)} differs: cp {RULES.relative_to(ROOT)} {CHART_RULES.relative_to(ROOT)}"
    )
