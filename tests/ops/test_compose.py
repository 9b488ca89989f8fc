"""docker-compose.yaml and the configs it mounts: checked by promtool and amtool, and wired together.

No Docker engine runs here, so `docker compose config` is not available; the wiring between the
services (mount sources, service names, ports, paths) is checked by reading the files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath

import pytest
import yaml

from .contract import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def mounts(service: str) -> dict[str, str]:
    """Bind mounts of a service: container path -> repository-relative source path."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (CI installs it)")
def test_prometheus_config_is_valid() -> None:
    result = run("promtool", "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed (Debian prometheus-alertmanager)")
def test_alertmanager_config_is_valid() -> None:
    result = run("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_services() -> None:
    assert set(SERVICES) == {"exporter", "prometheus", "alertmanager", "grafana"}
    assert SERVICES["exporter"]["build"] == "."
    assert "--demo" in SERVICES["exporter"]["command"]
    for name, service in SERVICES.items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image's version"


def test_bind_mounts_exist() -> None:
    for name in SERVICES:
        for target, source in mounts(name).items():
            assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_prometheus_wiring() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    prom_mounts = mounts("prometheus")
    config_target = next(t for t, s in prom_mounts.items() if s == "deploy/prometheus/prometheus.yml")
    assert f"--config.file={config_target}" in SERVICES["prometheus"]["command"]
    # rule_files are relative to the config file, in the container as in the repository.
    for rule_file in config["rule_files"]:
        in_container = str(PurePosixPath(config_target).parent / rule_file)
        assert prom_mounts.get(in_container) == f"deploy/prometheus/{rule_file}"
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    assert targets["cloud-job-exporter"] == ["exporter:9810"]
    assert "9810:9810" in SERVICES["exporter"]["ports"]
    (am,) = [t for a in config["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    host, port = am.split(":")
    assert host in SERVICES and f"{port}:{port}" in SERVICES[host]["ports"]


def test_grafana_wiring() -> None:
    grafana = mounts("grafana")
    datasources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and ds["isDefault"] is True
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/cloud-job-exporter.yaml").read_text())
    (provider,) = providers["providers"]
    assert grafana[provider["options"]["path"]] == "grafana/dashboards"
    assert grafana["/etc/grafana/provisioning/datasources"] == "grafana/provisioning/datasources"
    assert grafana["/etc/grafana/provisioning/dashboards"] == "grafana/provisioning/dashboards"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana/dashboards" / PurePosixPath(home).name).exists()
