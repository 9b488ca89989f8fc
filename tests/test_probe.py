"""`cloud-job-exporter probe` against the simulator over real HTTP: one row per API, and for each failure reason the
simulator's fault switches can cause, the vendor's code, its request id and the advice a user needs. Secrets are
never printed."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.demo import demo_sources
from exporter.simulator.run import Endpoint
from tests.helpers import KEY_ID, SECRET

ENV = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK")


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, SECRET if name.endswith(("SECRET", "SK")) else KEY_ID)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: list[dict[str, Any]],
              *args: str) -> tuple[int, str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"sources": sources}))
    code = main(["probe", "--config.file", str(config), *args])
    return code, capsys.readouterr().out


def rows(tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: list[dict[str, Any]],
         *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Returns the exit code and the rows of a JSON probe, by API."""
    code, out = run_probe(tmp_path, capsys, sources, "--output", "json", *args)
    return code, {row["api"]: row for row in json.loads(out)}


def test_every_api_answers_and_the_exit_code_is_zero(simulator: Endpoint, tmp_path, capsys) -> None:
    code, by_api = rows(tmp_path, capsys, demo_sources(simulator.url))
    assert code == 0
    assert len(by_api) == 9  # 3 MaxCompute APIs, 4 DataArts (2 workspaces x 2 job types), 2 EMR workspaces
    assert {r["result"] for r in by_api.values()} == {"ok"}
    assert by_api["GetRunningJobs"]["records"] > 0 and by_api["GetRunningJobs"]["pages"] >= 1


def test_the_table_has_a_row_per_api_under_its_header(simulator: Endpoint, tmp_path, capsys) -> None:
    simulator.sim.faults.set("ListJobSnapshotInfos", down=True)
    code, out = run_probe(tmp_path, capsys, demo_sources(simulator.url)[:1])
    lines = out.splitlines()
    assert code == 1
    assert lines[0].split()[:4] == ["SOURCE", "API", "RESULT", "RECORDS"]
    assert [line.split()[1:3] for line in lines[1:]] == [
        ["GetRunningJobs", "ok"], ["ListJobSnapshotInfos", "server"], ["GetJobInfo", "ok"]]


FAILURES = [
    # (fault switches for one operation, the API's row, result, code, what the advice must say)
    ({"GetRunningJobs": {"bad_signature": True}}, "GetRunningJobs", "auth", "SignatureDoesNotMatch",
     ("check the secret (key id: environment variable ALIBABA_CLOUD_ACCESS_KEY_ID; secret: environment variable "
      "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "and that this machine's clock is right")),
    ({"ListJobSnapshotInfos": {"forbidden": True}}, "ListJobSnapshotInfos", "auth", "Forbidden.RAM",
     "grant it `odps:ListJobSnapshotInfos`"),
    ({"GetRunningJobs": {"forbidden": True}}, "GetRunningJobs", "auth", "Forbidden.RAM",
     "the vendor's page names no permission for it, and the vendor said: HTTP 403 Forbidden.RAM"),
    ({"GetRunningJobs": {"throttle_rate": 1.0, "retry_after_ms": 60_000}}, "GetRunningJobs", "throttled",
     "Throttling.User", "it asked to wait 60 s"),
    ({"GetRunningJobs": {"down": True}}, "GetRunningJobs", "server", "ServiceUnavailable", "nothing to change here"),
    ({"GetRunningJobs": {"malformed_rate": 1.0}}, "GetRunningJobs", "bad_response", "", "not what the API documents"),
]


@pytest.mark.parametrize(("faults", "api", "result", "code", "advice"), FAILURES,
                         ids=[f"{r[2]}-{r[3] or 'none'}-{r[1]}" for r in FAILURES])
def test_each_failure_has_its_reason_code_request_id_and_advice(
    simulator: Endpoint, tmp_path, capsys, faults: dict, api: str, result: str, code: str, advice: str,
) -> None:
    for operation, switches in faults.items():
        simulator.sim.faults.set(operation, **switches)
    exit_code, by_api = rows(tmp_path, capsys, demo_sources(simulator.url)[:1])
    row = by_api[api]
    assert exit_code == 1
    assert (row["result"], row["code"]) == (result, code)
    assert all(part in row["todo"] for part in ((advice,) if isinstance(advice, str) else advice))
    if code:
        assert row["request_id"], "a vendor's refusal carries its request id"
    assert [r["result"] for a, r in by_api.items() if a != api] == ["ok", "ok"], "the other APIs still answer"


def test_a_huawei_api_without_the_permission_says_what_the_vendor_said(simulator: Endpoint, tmp_path, capsys) -> None:
    simulator.sim.faults.set(forbidden=True)
    _, by_api = rows(tmp_path, capsys, [demo_sources(simulator.url)[1]])
    row = next(iter(by_api.values()))
    assert (row["result"], row["code"]) == ("auth", "APIG.0306")
    assert "the vendor's page names no permission for it, and the vendor said: HTTP 403 APIG.0306" in row["todo"]


def test_an_unknown_workspace_names_the_id_it_tried(simulator: Endpoint, tmp_path, capsys) -> None:
    emr = {**demo_sources(simulator.url)[2], "workspaces": ["w-0000000000000000"]}
    _, by_api = rows(tmp_path, capsys, [emr])
    row = by_api["ListJobRuns/w-0000000000000000"]
    assert (row["result"], row["code"]) == ("client", "WorkspaceNotFound")
    assert "`ListJobRuns/w-0000000000000000`" in row["todo"]


def test_an_unknown_key_id_and_a_missing_secret(simulator: Endpoint, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-nobody-knows")
    _, by_api = rows(tmp_path, capsys, demo_sources(simulator.url)[:1])
    assert by_api["GetRunningJobs"]["code"] == "InvalidAccessKeyId.NotFound"
    assert "does not know the access key id (key id: environment variable ALIBABA_CLOUD_ACCESS_KEY_ID" in (
        by_api["GetRunningJobs"]["todo"])
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    _, by_api = rows(tmp_path, capsys, demo_sources(simulator.url)[:1])
    assert by_api["GetRunningJobs"]["result"] == "auth"
    assert "the credentials cannot be used" in by_api["GetRunningJobs"]["todo"]


def test_timeouts_and_refused_connections_name_the_endpoint(simulator: Endpoint, tmp_path, capsys) -> None:
    simulator.sim.faults.set("GetRunningJobs", latency_ms=3000)
    slow = {**demo_sources(simulator.url)[0], "timeout": "1s"}
    nowhere = {**demo_sources(f"http://127.0.0.1:{closed_port()}")[0], "name": "nowhere"}
    _, by_api = rows(tmp_path, capsys, [slow])
    assert by_api["GetRunningJobs"]["result"] == "timeout"
    _, by_api = rows(tmp_path, capsys, [nowhere])
    assert by_api["GetRunningJobs"]["result"] == "connection"
    assert f"no answer from {nowhere['endpoint']}" in by_api["GetRunningJobs"]["todo"]


def test_source_picks_sources_and_an_unknown_one_is_an_error(simulator: Endpoint, tmp_path, capsys) -> None:
    code, by_api = rows(tmp_path, capsys, demo_sources(simulator.url), "--source", "demo-emr-spark")
    assert code == 0 and all(api.startswith("ListJobRuns/") for api in by_api)
    code, out = run_probe(tmp_path, capsys, demo_sources(simulator.url), "--source", "nope")
    assert code == 1 and out == ""


def test_no_secret_is_printed(simulator: Endpoint, tmp_path, capsys) -> None:
    simulator.sim.faults.set(bad_signature=True)  # the gateway echoes its string to sign into the message
    code, out = run_probe(tmp_path, capsys, demo_sources(simulator.url))
    assert code == 1 and "SignatureDoesNotMatch" in out
    assert SECRET not in out
