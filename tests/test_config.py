"""The config file: good files load into typed objects; every bad one stops start-up with one exact line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from exporter.cli import main
from exporter.config import ConfigError, check_credentials, load_config, parse_config
from exporter.sources import KINDS

ROOT = Path(__file__).resolve().parent.parent
KIND_NAMES = ", ".join(KINDS)
MC = {"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou"}


def one(**overrides: object) -> dict:
    return {"sources": [{**MC, **overrides}]}


def test_example_config_loads_with_its_settings() -> None:
    config = load_config(ROOT / "examples" / "config.yaml", KINDS)
    first, second, spark, dataarts = config.sources
    assert (spark.kind, spark.workspaces, spark.lookback) == ("emr_serverless_spark", ["w-d2d82aa09155abcd"], 3600)
    assert (dataarts.kind, dataarts.workspaces, dataarts.job_types) == ("dataarts_factory", [], ["BATCH", "REAL_TIME"])
    assert (first.name, first.kind, first.interval, first.snapshot_interval) == ("mc-prod", "maxcompute", 30, 60)
    assert first.quotas == ["os_bigdata", "etl_quota"] and first.owner_label == "hash"
    assert second.credentials.access_key_id_file == Path("/etc/cloud-job-exporter/secrets/access_key_id")


def test_defaults() -> None:
    source = parse_config(one(), KINDS).sources[0]
    assert (source.interval, source.snapshot_interval, source.max_concurrency) == (30, 60, 4)
    assert (source.per_job_series, source.max_job_series, source.stale_after) == (True, 5000, None)
    assert source.default_endpoint() == "https://maxcompute.cn-hangzhou.aliyuncs.com"


def test_each_api_goes_stale_after_three_of_its_own_intervals() -> None:
    from exporter.runtime import build

    config = parse_config(one(interval="20s", snapshot_interval="1m", job_info_interval="10s"), KINDS)
    exporter = build(config, credentials=lambda cfg: (lambda: None))
    stale = {api: state.stale_after for (_, api), state in exporter.store.states.items()}
    assert stale == {"GetRunningJobs": 60, "ListJobSnapshotInfos": 180, "GetJobInfo": 30}
    pinned = build(parse_config(one(stale_after="5m"), KINDS), credentials=lambda cfg: (lambda: None))
    assert {s.stale_after for s in pinned.store.states.values()} == {300}


@pytest.mark.parametrize(("key", "value", "seconds"), [
    ("interval", "30s", 30), ("interval", "5m", 300), ("interval", "1h", 3600), ("interval", 45, 45),
    ("interval", "1d", 86400), ("timeout", "500ms", 0.5), ("timeout", "100ms", 0.1), ("timeout", 1.5, 1.5),
])
def test_durations(key: str, value: object, seconds: float) -> None:
    assert getattr(parse_config(one(**{key: value}), KINDS).sources[0], key) == seconds


ENDS = {  # key: (lowest, highest)
    "interval": ("1s", "1d"), "snapshot_interval": ("1s", "1d"), "job_info_interval": ("1s", "1d"),
    "timeout": ("100ms", "10m"), "connect_timeout": ("100ms", "10m"), "stale_after": ("1s", "30d"),
    "running_lookback": ("1m", "30d"),
}


@pytest.mark.parametrize("end", [0, 1], ids=["lowest", "highest"])
def test_every_duration_at_its_bounds_builds_and_schedules(end: int) -> None:
    """The ends of each range are usable: the exporter builds and its scheduler takes every interval."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from exporter.poller import schedule
    from exporter.runtime import build

    mc = {**MC, **{key: ends[end] for key, ends in ENDS.items()}}
    emr = {"name": "emr", "kind": "emr_serverless_spark", "region": "cn-hangzhou", "workspaces": ["w-1"],
           "interval": ENDS["interval"][end], "lookback": ("2s", "30d")[end]}
    exporter = build(parse_config({"sources": [mc, emr]}, KINDS), credentials=lambda cfg: (lambda: None))
    schedule(exporter.poller, AsyncIOScheduler())


BAD = [
    (one(interval="5x"), "sources[0].interval: expected a duration such as 30s, 5m or 1h, got '5x'"),
    (one(interval="0s"), "sources[0].interval: expected a duration from 1s to 1d, got '0s'"),
    # Each of these passed once and failed later: a traceback at start, every poll `internal`, or one poll only.
    (one(interval=math.inf), "sources[0].interval: expected a duration from 1s to 1d, got inf"),
    (one(interval=math.nan), "sources[0].interval: expected a duration from 1s to 1d, got nan"),
    (one(interval="1" + "0" * 26 + "d"), "sources[0].interval: expected a duration from 1s to 1d, got "
                                         "'100000000000000000000000000d'"),
    (one(interval=10**400), "sources[0].interval: expected a duration from 1s to 1d, got 1000000000000000000000000"
                            "00000000000000000000000000000000..."),
    (one(interval="0.0001ms"), "sources[0].interval: expected a duration from 1s to 1d, got '0.0001ms'"),
    (one(snapshot_interval="2d"), "sources[0].snapshot_interval: expected a duration from 1s to 1d, got '2d'"),
    (one(job_info_interval="500ms"), "sources[0].job_info_interval: expected a duration from 1s to 1d, got '500ms'"),
    (one(timeout=math.nan), "sources[0].timeout: expected a duration from 100ms to 10m, got nan"),
    (one(connect_timeout="50ms"), "sources[0].connect_timeout: expected a duration from 100ms to 10m, got '50ms'"),
    (one(running_lookback=math.inf), "sources[0].running_lookback: expected a duration from 1m to 30d, got inf"),
    (one(stale_after="31d"), "sources[0].stale_after: expected a duration from 1s to 30d, got '31d'"),
    (one(credentials={"session_duration": "14m"}),
     "sources[0].credentials.session_duration: expected a duration from 15m to 12h, got '14m'"),
    ({"sources": [{"name": "e", "kind": "emr_serverless_spark", "region": "r", "workspaces": ["w-1"],
                   "lookback": "40d"}]}, "sources[0].lookback: expected a duration from 1s to 30d, got '40d'"),
    ({"sources": [{"name": "d", "kind": "dataarts_factory", "region": "r", "project_id": "p", "interval": ".5s"}]},
     "sources[0].interval: expected a duration such as 30s, 5m or 1h, got '.5s'"),
    (one(wait_buckets=[1, math.nan]), "sources[0].wait_buckets: expected finite bucket bounds in seconds; the +Inf "
                                      "bucket is always there, do not list it"),
    (one(run_buckets=[1, math.inf]), "sources[0].run_buckets: expected finite bucket bounds in seconds; the +Inf "
                                     "bucket is always there, do not list it"),
    (one(run_buckets=list(range(1, 66))), "sources[0].run_buckets: expected 1 to 64 bucket bounds in seconds, got 65"),
    (one(run_buckets=[]), "sources[0].run_buckets: expected 1 to 64 bucket bounds in seconds, got 0"),
    (one(wait_buckets=[5, 1]), "sources[0].wait_buckets: expected positive, strictly increasing bucket bounds in "
                               "seconds"),
    ({"sources": [{"name": "e", "kind": "emr_serverless_spark", "region": "r", "workspaces": ["w-1"],
                   "duration_buckets": [0, 1]}]},
     "sources[0].duration_buckets: expected positive, strictly increasing bucket bounds in seconds"),
    (one(credentials={"access_key_id_file": "/run/a\0b"}),
     "sources[0].credentials.access_key_id_file: expected a file path without control characters"),
    (one(credentials={"access_key_id_env": "MY KEY"}), "sources[0].credentials.access_key_id_env: expected an "
                                                       "environment variable name: no spaces, control characters or ="),
    (one(**{"inter\nval": "30s"}), "sources[0]['inter\\nval']: unknown key; remove it or check its spelling"),
    (one(kind="x" * 100), f"sources[0].kind: unknown kind '{'x' * 56}...; expected one of: {KIND_NAMES}"),
    (one(quotas=list(range(12))), "; ".join(f"sources[0].quotas[{i}]: Input should be a valid string" for i in
                                            range(10)) + "; and 2 more"),
    (one(intervl="30s"), "sources[0].intervl: unknown key; remove it or check its spelling"),
    (one(kind="maxcomp"), f"sources[0].kind: unknown kind 'maxcomp'; expected one of: {KIND_NAMES}"),
    ({"sources": [{"name": "a", "region": "cn-hangzhou"}]},
     f"sources[0].kind: required key is missing; expected one of: {KIND_NAMES}"),
    ({"sources": [{"kind": "maxcompute", "region": "cn-hangzhou"}]}, "sources[0].name: required key is missing"),
    ({"sources": [MC, MC]}, "sources[1].name: duplicate source name 'mc'; names must be unique"),
    (one(quotas="q1"), "sources[0].quotas: Input should be a valid list"),
    (one(stale_after="45s"), "sources[0].stale_after: expected at least the longest poll interval (60s), or series "
                             "would vanish between two polls; got 45s"),
    (one(max_concurrency=0), "sources[0].max_concurrency: Input should be greater than or equal to 1"),
    (one(per_job_series="maybe"), "sources[0].per_job_series: Input should be a valid boolean, unable to interpret "
                                  "input"),
    (one(owner_label="mask"), "sources[0].owner_label: Input should be 'keep', 'hash' or 'drop'"),
    (one(endpoint="ftp://x"), "sources[0].endpoint: expected a base URL such as https://host or "
                              "http://127.0.0.1:8080 (no path)"),
    (one(credentials={"access_key_idenv": "X"}),
     "sources[0].credentials.access_key_idenv: unknown key; remove it or check its spelling"),
    (one(credentials={"access_key_id_env": "A", "access_key_id_file": "/f"}),
     "sources[0].credentials: give access_key_id_env or access_key_id_file, not both"),
    ({"sources": []}, "sources: List should have at least 1 item after validation, not 0"),
    ({"source": []}, "sources: required key is missing; source: unknown key; remove it or check its spelling"),
    ([1, 2], "(top level): expected a mapping with a `sources:` list"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_config_message(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, KINDS)
    assert str(info.value) == message


def test_missing_credentials_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t-value")
    with pytest.raises(ConfigError) as info:
        check_credentials(parse_config(one(), KINDS))
    assert str(info.value) == (
        "sources[0].credentials: credential not set: environment variable ALIBABA_CLOUD_ACCESS_KEY_ID is empty or "
        "missing; set it, or name other variables or files under credentials"
    )


def test_credentials_from_files_are_reread_when_they_change(tmp_path: Path) -> None:
    from exporter.config import credential_provider

    (tmp_path / "id").write_text("AKID1\n")
    (tmp_path / "secret").write_text("first")
    source = parse_config(one(credentials={"access_key_id_file": str(tmp_path / "id"),
                                           "access_key_secret_file": str(tmp_path / "secret")}), KINDS).sources[0]
    provider = credential_provider(source)
    assert (provider().key_id, provider().secret) == ("AKID1", "first")
    import os

    (tmp_path / "secret").write_text("second")
    os.utime(tmp_path / "secret", (1, 1))  # a new mtime, whatever the file system's resolution
    assert provider().secret == "second"
    assert "second" not in repr(provider())


def test_config_check_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(one()))
    assert main(["--config.file", str(good), "--config.check"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: mc\n    kind: maxcompute\n    region: cn-hangzhou\n    interval: soon\n")
    assert main(["--config.file", str(bad), "--config.check"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: sources[0].interval: expected a duration such as 30s, 5m or 1h, "
                                        "got 'soon'"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sources:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d+, column \d+"):
        load_config(path, KINDS)


def test_a_job_info_interval_of_a_disabled_api_does_not_bind_stale_after() -> None:
    source = parse_config(one(finished_jobs=False, job_info_interval="10m", stale_after="5m"), KINDS).sources[0]
    assert source.stale_after == 300


def test_sts_settings_without_rrsa_are_an_error_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.config import credential_provider
    from exporter.credentials import CredentialError

    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    source = parse_config(one(credentials={"session_duration": "2h"}), KINDS).sources[0]
    with pytest.raises(CredentialError, match="session_duration only apply to RRSA"):
        credential_provider(source)


def test_a_bad_session_name_from_the_environment_stops_start_up(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("eyJ.token")
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    for name, value in (("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
                        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1:oidc-provider/p"),
                        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", str(token)),
                        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "has spaces!")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="ALIBABA_CLOUD_ROLE_SESSION_NAME: expected 2 to 64"):
        check_credentials(parse_config(one(), KINDS))


@pytest.mark.parametrize("path", ["metrics", "/", "/config", "/-/healthy", "/-/ready", "/-/reload"])
def test_a_telemetry_path_that_would_hide_a_page_is_refused(path: str, capsys) -> None:
    assert main(["--demo", "--web.telemetry-path", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --web.telemetry-path: expected a path such as /metrics, other than /, /config,")
