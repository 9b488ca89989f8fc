"""The Helm chart, rendered by the real helm binary and validated against Kubernetes' schemas.

Needs `helm` (env HELM or PATH) and the PyPI package kubernetes-validate, which ships the schemas and
works offline. .ci/helm-check installs both and runs this file with CJE_REQUIRE_TOOLS=1, which turns
the skips for a missing tool into failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from .contract import ROOT

CHART = ROOT / "helm" / "cloud-job-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SHARDING = CHART / "ci" / "sharding-values.yaml"
HA_PAIR = CHART / "ci" / "ha-pair-values.yaml"
KUBERNETES_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
HELM = os.environ.get("HELM") or shutil.which("helm")
REQUIRED = os.environ.get("CJE_REQUIRE_TOOLS") == "1"


def need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"{reason} (CJE_REQUIRE_TOOLS=1)")
        pytest.skip(reason)


def kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        need(False, "kubernetes-validate is not installed (.ci/helm-check installs it)")
    return kubernetes_validate


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    need(HELM is not None, "helm is not installed (.ci/helm-check installs it)")
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120, check=False)


@cache
def render(*args: str) -> tuple[dict, ...]:
    result = helm("template", "rel", str(CHART), "--namespace", "obs", *args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_file(values: Path) -> tuple[dict, ...]:
    return render("-f", str(values))


def only(docs: tuple[dict, ...], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def workload(docs: tuple[dict, ...]) -> dict:
    """The Deployment, or the StatefulSet when sharded: exactly one of them."""
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, f"expected one Deployment or StatefulSet, got {[d['kind'] for d in found]}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory):
    """Renders NOTES.txt with the given helm arguments and returns its text.

    `helm template` leaves NOTES.txt out and `helm install --dry-run` wants a cluster, so this renders a
    copy of the chart in which NOTES.txt is a named template that a one-line manifest includes.
    """
    chart = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" -}}\n' + text + "\n{{- end -}}\n")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ include "test.notes" . | toJson }}\n')

    def render_notes(*args: str) -> str:
        result = helm("template", "rel", str(chart), "--namespace", "obs", "--show-only", "templates/notes.yaml", *args)
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)["notes"]

    return render_notes


def exporter_config(docs: tuple[dict, ...]) -> dict:
    config_maps = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]
    assert len(config_maps) == 1
    return yaml.safe_load(config_maps[0]["data"]["config.yaml"])


ids = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]


def test_ci_values_cover_the_cases() -> None:
    assert {"default", "demo", "maxcompute", "emr", "dataarts", "monitors", "sharding", "ha-pair"} <= set(ids)


def test_lint_defaults() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_lint(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_manifests_match_kubernetes_schemas(values: Path) -> None:
    kv = kubernetes_validate()
    for doc in render_file(values):
        if doc["kind"] in CRD_KINDS:
            continue  # CRDs: kubernetes-validate has no schema; checked in test_custom_resources below
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_deployment_is_locked_down(values: Path) -> None:
    docs = render_file(values)
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_secrets_stay_out_of_config_maps(values: Path) -> None:
    docs = render_file(values)
    secret_values = [v for d in docs if d["kind"] == "Secret" for v in d.get("stringData", {}).values()]
    config_text = json.dumps([d for d in docs if d["kind"] == "ConfigMap"])
    for value in secret_values:
        assert value not in config_text


@pytest.mark.parametrize(
    "values", [p for p in CI_VALUES if "demo:\n  enabled: false" in p.read_text()], ids=lambda p: p.name
)
def test_config_uses_the_mounted_credentials(values: Path) -> None:
    docs = render_file(values)
    chart_values = yaml.safe_load(values.read_text())
    container = workload(docs)["spec"]["template"]["spec"]["containers"][0]
    assert "--config.file=/etc/cloud-job-exporter/config/config.yaml" in container["args"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = exporter_config(docs)
    mode = chart_values["credentials"]["mode"]
    for given, source in zip(chart_values["config"]["sources"], config["sources"], strict=True):
        if "credentials" in given:
            assert source["credentials"] == given["credentials"]
        elif mode == "file":
            files = source["credentials"]
            assert set(files) >= {"access_key_id_file", "access_key_secret_file"}
            for path in files.values():
                assert Path(path).parent == Path(mounts["credentials"])
            secrets = [d for d in docs if d["kind"] == "Secret"]
            if secrets:  # created by the chart: every referenced file is one of its keys
                assert {Path(p).name for p in files.values()} <= set(secrets[0]["stringData"])
        else:
            assert "credentials" not in source
    if mode == "env":
        assert container["envFrom"] == [{"secretRef": {"name": chart_values["credentials"]["existingSecret"]}}]


@pytest.mark.parametrize(
    "values", [p for p in CI_VALUES if "demo:\n  enabled: false" in p.read_text()], ids=lambda p: p.name
)
def test_config_is_accepted_by_the_exporter(values: Path) -> None:
    config_module = pytest.importorskip("exporter.config")
    kinds = pytest.importorskip("exporter.sources").KINDS
    config = exporter_config(render_file(values))
    unknown = {s["kind"] for s in config["sources"]} - set(kinds)
    if unknown:
        pytest.skip(f"the exporter does not know source kinds {sorted(unknown)} yet")
    config_module.parse_config(config, kinds)


def test_demo_runs_without_config_or_secret() -> None:
    docs = render_file(CHART / "ci" / "demo-values.yaml")
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--demo" in container["args"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]


def test_config_change_rolls_the_pods() -> None:
    values = str(CHART / "ci" / "maxcompute-values.yaml")

    def checksum(*extra: str) -> str:
        pod = only(render("-f", values, *extra), "Deployment")["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.sources[0].interval=45s")


def test_custom_resources(tmp_path: Path) -> None:
    docs = render_file(CHART / "ci" / "monitors-values.yaml")
    service = only(docs, "Service")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"

    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    expected = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())["groups"]
    base = yaml.safe_load((CHART / "ci" / "monitors-values.yaml").read_text())["prometheusRule"]["runbookUrl"]
    for group in expected:
        for r in group["rules"]:
            r["annotations"]["runbook_url"] = r["annotations"]["runbook_url"].replace("docs/runbook.md", base)
    assert groups == expected
    if shutil.which("promtool"):
        rule_file = tmp_path / "rules.yaml"
        rule_file.write_text(yaml.safe_dump({"groups": groups}))
        result = subprocess.run(
            ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_for_the_grafana_sidecar() -> None:
    docs = render_file(CHART / "ci" / "monitors-values.yaml")
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    shipped = {p.name: p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert {name for d in maps for name in d["data"]} == set(shipped)
    for d in maps:
        assert d["metadata"]["namespace"] == "monitoring"
        for name, text in d["data"].items():
            assert json.loads(text) == json.loads(shipped[name])


def test_sharding_runs_a_statefulset_of_shards() -> None:
    docs = render_file(SHARDING)
    shards = yaml.safe_load(SHARDING.read_text())["sharding"]["replicas"]
    assert not [d for d in docs if d["kind"] == "Deployment"]
    statefulset = only(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == shards
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"  # a lost shard comes back without waiting
    service = only(docs, "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    # Each pod learns its name, hence its ordinal, from the downward API, and the number of shards from its args.
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["CJE_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "--pod=$(CJE_POD_NAME)" in container["args"]
    assert f"--total-shards={shards}" in container["args"]
    # The StatefulSet still gets the real sources' config and credentials, like the Deployment.
    assert "--config.file=/etc/cloud-job-exporter/config/config.yaml" in container["args"]
    assert {m["name"] for m in container["volumeMounts"]} >= {"config", "credentials"}


def test_exporter_accepts_the_shard_args() -> None:
    cli = pytest.importorskip("exporter.cli")
    parser = cli.parser()
    if "--total-shards" not in parser.format_help():
        pytest.skip("the exporter has no --total-shards yet (sharding is being added to exporter/cli.py)")
    statefulset = only(render_file(SHARDING), "StatefulSet")
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    pod = f"{statefulset['metadata']['name']}-{statefulset['spec']['replicas'] - 1}"
    parser.parse_args([a.replace("$(CJE_POD_NAME)", pod) for a in args])  # exits on an unknown flag


def test_every_shard_is_scraped() -> None:
    docs = render_file(SHARDING)
    pod_labels = only(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    monitor = only(docs, "ServiceMonitor")
    selected = [
        d
        for d in docs
        if d["kind"] == "Service" and selects(monitor["spec"]["selector"]["matchLabels"], d["metadata"]["labels"])
    ]
    # One Service, with an endpoint per pod: each shard is one target (a second Service would scrape it twice).
    (service,) = selected
    assert selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["clusterIP"] == "None"
    assert "obs" in monitor["spec"]["namespaceSelector"]["matchNames"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]


@pytest.mark.parametrize(
    ("args", "budget"),
    [
        (("-f", str(SHARDING)), True),
        (("-f", str(HA_PAIR)), True),
        ((), False),
        (("-f", str(SHARDING), "--set", "sharding.replicas=1"), False),
        (("-f", str(SHARDING), "--set", "podDisruptionBudget.enabled=false"), False),
    ],
    ids=["sharded", "ha-pair", "one-pod", "one-shard", "turned-off"],
)
def test_a_drain_stops_one_pod_at_a_time(args: tuple[str, ...], budget: bool) -> None:
    docs = render(*args)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if not budget:
        assert not budgets
        return
    (pdb,) = budgets
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"], workload(docs)["spec"]["template"]["metadata"]["labels"])


def test_notes_name_the_shards_and_the_assignment_check(notes) -> None:
    text = notes("-f", str(SHARDING))
    assert "SHARDED: 3 shards, the pods rel-cloud-job-exporter-0 to rel-cloud-job-exporter-2" in text
    (command,) = [" ".join(line.split()) for line in text.replace("\\\n", " ").splitlines() if "--config.check" in line]
    assert command == (
        "kubectl -n obs exec rel-cloud-job-exporter-0 -- cloud-job-exporter --config.check"
        " --config.file=/etc/cloud-job-exporter/config/config.yaml --total-shards=3"
    )
    assert "full copies" not in text


def test_replicas_without_sharding_are_an_ha_pair(notes) -> None:
    docs = render_file(HA_PAIR)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith(("--pod", "--shard", "--total-shards"))]  # full copies
    assert "clusterIP" not in only(docs, "Service")["spec"]
    text = notes("-f", str(HA_PAIR))
    assert "HA PAIR: 2 full copies" in text
    assert "Every API is polled by each copy" in text
    assert "max without (instance, pod)" in text
    assert "set sharding.enabled=true" in text
    assert "SHARDED" not in text
    assert "full copies" not in notes()  # one pod: nothing to say


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "demo.enabled=false"], "config.sources is empty"),
        (["-f", "ci/maxcompute-values.yaml", "--set", "demo.enabled=true"], "ignores config.sources"),
        (
            ["-f", "ci/maxcompute-values.yaml", "--set", "credentials.alibabaCloud.accessKeySecret="],
            "source mc-prod: set credentials.alibabaCloud",
        ),
        (
            ["-f", "ci/dataarts-values.yaml", "--set", "credentials.huaweiCloud.secretKey="],
            "source dgc-prod: set credentials.huaweiCloud",
        ),
        (["--set", "credentials.mode=vault"], "credentials.mode"),
        (["--set", "no_such_value=1"], "Additional property no_such_value is not allowed"),
        (["--set", "sharding.shards=3"], "Additional property shards is not allowed"),
        (["--set", "sharding.replicas=0"], "sharding.replicas: Must be greater than or equal to 1"),
        (["--set-json", "sharding.replicas=1.5"], "sharding.replicas: Invalid type. Expected: integer"),
        (
            ["--set", "sharding.enabled=true", "--set", "replicaCount=2"],
            "set the number of shards with sharding.replicas",
        ),
        (["--set", "sharding.enabled=true", "--set", "service.type=NodePort"], "needs service.type=ClusterIP"),
        (["--set", "sharding.enabled=true", "--set", "fullnameOverride=" + "x" * 53], "longer than 52 characters"),
        (["-f", "ci/demo-values.yaml", "--set", "sharding.enabled=true"], "the demo (demo.enabled=true) runs one"),
    ],
    ids=[
        "no-sources",
        "demo-and-sources",
        "no-alibaba-keys",
        "no-huawei-keys",
        "bad-mode",
        "unknown-value",
        "unknown-sharding-value",
        "no-shards",
        "fraction-of-shards",
        "shards-and-replica-count",
        "headless-node-port",
        "statefulset-name-too-long",
        "sharded-demo",
    ],
)
def test_bad_values_are_refused(args: list[str], message: str) -> None:
    need(HELM is not None, "helm is not installed (.ci/helm-check installs it)")
    assert HELM is not None
    result = subprocess.run(
        [HELM, "template", "rel", ".", *args], cwd=CHART, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
