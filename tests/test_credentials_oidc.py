"""RRSA: the OIDC token exchanged for STS credentials (AssumeRoleWithOIDC) against the simulator over real HTTP;
refreshed before expiry with the token file read again; failures reported as `auth` without a secret anywhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from exporter.config import ConfigError, check_credentials, credential_provider, parse_config
from exporter.credentials import CredentialError
from exporter.credentials_oidc import OidcCredentialProvider
from exporter.runtime import build
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import run_in_thread
from exporter.simulator.sts import PROVIDER_ARN, ROLE_ARN
from exporter.sources import KINDS
from tests.helpers import eventually, running_exporter, scrape, text_of, value

TOKEN = "eyJhbGciOiJSUzI1NiJ9.rrsa-token-one.c2lnbmF0dXJl"
TOKEN2 = "eyJhbGciOiJSUzI1NiJ9.rrsa-token-two.c2lnbmF0dXJl"
RUNNING = "GetRunningJobs"
RRSA_ENV = ("ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE")


@pytest.fixture
def sim():
    """A simulator that knows no access key: only STS-issued credentials get through its gateways."""
    simulator = Simulator({}, seed=3, workload=WorkloadParams(target_running=20))
    simulator.sts.tokens.add(TOKEN)
    with run_in_thread(simulator) as endpoint:
        yield endpoint


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def rrsa_config(endpoint: str, token_file: Path, **credentials: Any) -> Any:
    return parse_config({"sources": [{
        "name": "mc", "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": endpoint, "interval": "1h",
        "snapshot_interval": "1h", "timeout": "2s",
        "credentials": {"oidc_role_arn": ROLE_ARN, "oidc_provider_arn": PROVIDER_ARN,
                        "oidc_token_file": str(token_file), "sts_endpoint": endpoint, **credentials},
    }]}, KINDS)


def up(metrics: dict) -> float:
    return metrics["cloud_job_exporter_source_up"][frozenset(
        {("source", "mc"), ("kind", "maxcompute"), ("api", RUNNING)})]


def running_target(exporter):
    return next(t for t in exporter.targets if t.api.name == RUNNING)


class OffsetClock:
    """Real time plus a settable offset: the provider's view of time, moved ahead to reach a refresh."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_maxcompute_source_polls_with_rrsa_credentials(sim, token_file: Path) -> None:
    config = rrsa_config(sim.url, token_file)
    check_credentials(config)  # reads the token file, does not call STS
    assert not sim.sim.sts.requests
    exporter = build(config)
    async with running_exporter(exporter) as url:
        await exporter.poller.poll_once(running_target(exporter))
        assert up(await scrape(url)) == 1
    params = sim.sim.sts.requests[-1]
    assert params["Action"] == "AssumeRoleWithOIDC" and params["Version"] == "2015-04-01"
    assert params["Format"] == "JSON" and params["RoleSessionName"] == "cloud-job-exporter"
    assert params["DurationSeconds"] == "3600" and params["OIDCToken"] == TOKEN
    assert set(sim.sim.stats.to_dict()[RUNNING]["status"]) == {"200"}, "every request was accepted"


async def test_credentials_are_refreshed_before_expiry_with_the_rotated_token(sim, token_file: Path) -> None:
    clock = OffsetClock()
    provider = OidcCredentialProvider(ROLE_ARN, PROVIDER_ARN, token_file, sim.url, duration=900, clock=clock)
    exporter = build(rrsa_config(sim.url, token_file), credentials=lambda cfg: provider)
    target = running_target(exporter)
    await exporter.poller.poll_once(target)
    first = provider().key_id
    await exporter.poller.poll_once(target)
    assert provider.exchanges == 1, "cached credentials are reused"

    # Kubernetes rotates the token; the old one is no longer accepted.
    token_file.write_text(TOKEN2)
    sim.sim.sts.tokens = {TOKEN2}
    clock.offset = 0.8 * 900 + 1  # 80% of the lifetime: time to refresh (in the background)
    await exporter.poller.poll_once(target)

    async def refreshed() -> bool:
        return provider.exchanges == 2

    await eventually(refreshed, timeout=5)
    assert provider().key_id != first
    assert sim.sim.sts.requests[-1]["OIDCToken"] == TOKEN2 and sim.sim.sts.requests[-1]["DurationSeconds"] == "900"

    # The old keys expire at STS; polls go on with the new ones.
    sim.sim.sts.expire(first)
    clock.offset += 100  # not yet due again
    await exporter.poller.poll_once(target)
    assert provider.exchanges == 2
    text = text_of(exporter.poller.published.exposition)
    assert 'poll_errors_total{source="mc"' not in text
    assert sim.sim.stats.to_dict()[RUNNING]["status"] == {"200": 4}


async def test_a_hanging_sts_does_not_fail_polls_while_the_cached_credentials_are_valid(sim, token_file: Path) -> None:
    clock = OffsetClock()
    provider = OidcCredentialProvider(ROLE_ARN, PROVIDER_ARN, token_file, sim.url, duration=900, clock=clock,
                                      timeout=5)
    exporter = build(rrsa_config(sim.url, token_file), credentials=lambda cfg: provider)
    target = running_target(exporter)
    await exporter.poller.poll_once(target)
    sim.sim.faults.set("AssumeRoleWithOIDC", latency_ms=30_000)  # STS stops answering
    clock.offset = 0.8 * 900 + 1  # a refresh is due, the credentials still have minutes left
    await exporter.poller.poll_once(target)
    await exporter.poller.poll_once(target)
    text = text_of(exporter.poller.published.exposition)
    assert value(text, "cloud_job_exporter_source_up", source="mc", kind="maxcompute", api="GetRunningJobs") == 1
    assert 'poll_errors_total{source="mc"' not in text
    assert provider.exchanges == 1


async def test_expired_credentials_are_not_used_when_sts_fails(sim, token_file: Path) -> None:
    clock = OffsetClock()
    provider = OidcCredentialProvider(ROLE_ARN, PROVIDER_ARN, token_file, sim.url, duration=900, clock=clock)
    await provider.refresh()
    sim.sim.sts.tokens.clear()
    clock.offset = 800  # due for refresh; STS refuses, but the cached credentials are still valid
    await provider.refresh()
    assert provider().key_id
    clock.offset = 901  # expired, and STS still refuses
    with pytest.raises(CredentialError, match=r"STS AssumeRoleWithOIDC .* AuthenticationFail\.OIDCToken\.Invalid"):
        await provider.refresh()
    with pytest.raises(CredentialError, match="no valid STS credentials"):
        provider()


async def test_a_rejected_token_is_an_auth_failure_without_secrets(sim, token_file: Path) -> None:
    sim.sim.sts.tokens = {"another-token"}
    exporter = build(rrsa_config(sim.url, token_file))
    async with running_exporter(exporter) as url:
        with structlog.testing.capture_logs() as logs:
            await exporter.poller.poll_once(running_target(exporter))
        text = text_of(exporter.poller.published.exposition)
        assert value(text, "cloud_job_exporter_poll_errors_total", source="mc", api="GetRunningJobs",
                     reason="auth") == 1
        failures = [e for e in logs if e["event"] == "poll failed"]
        assert failures and all(f["reason"] == "auth" for f in failures)
        assert "STS AssumeRoleWithOIDC" in str(failures[0]) and "AuthenticationFail" in str(failures[0])
        async with httpx.AsyncClient() as client:
            landing = (await client.get(url + "/")).text
        assert "STS AssumeRoleWithOIDC" in landing
        for shown in (str(logs), landing, text):
            assert TOKEN not in shown
    assert RUNNING not in sim.sim.stats.to_dict(), "nothing is sent to the API without credentials"


async def test_issued_secrets_are_registered_with_the_redactor(sim, token_file: Path) -> None:
    from exporter.logs import redact

    exporter = build(rrsa_config(sim.url, token_file))
    await exporter.poller.poll_once(running_target(exporter))
    key_id = next(k for k in sim.sim.sts.issued)
    secret, token = sim.sim.credentials[key_id], sim.sim.security_tokens[key_id]
    assert redact(f"{secret} {token} {TOKEN}") == "[REDACTED] [REDACTED] [REDACTED]"
    for source in exporter.sources:
        await source.aclose()


def test_mixing_rrsa_and_access_keys_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.credentials\.oidc_role_arn: an RRSA key cannot be combined "
                                          r"with access_key_id_env"):
        rrsa_config("http://127.0.0.1:1", tmp_path / "t", access_key_id_env="MY_AK")
    with pytest.raises(ConfigError, match=r"credentials\.oidc_token_file: required with oidc_role_arn"):
        parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou",
                                   "credentials": {"oidc_role_arn": ROLE_ARN, "oidc_provider_arn": PROVIDER_ARN}}]},
                     KINDS)
    with pytest.raises(ConfigError, match=r"credentials\.session_duration"):
        rrsa_config("http://127.0.0.1:1", tmp_path / "t", session_duration="5m")


def test_check_reads_the_token_file_without_calling_sts(tmp_path: Path) -> None:
    config = rrsa_config("http://127.0.0.1:1", tmp_path / "missing")  # nothing listens there
    with pytest.raises(ConfigError, match=r"sources\[0\]\.credentials: cannot read the OIDC token file .*missing"):
        check_credentials(config)
    (tmp_path / "missing").write_text("tok")
    check_credentials(config)


@pytest.mark.parametrize(("content", "said"), [
    (b"\xff\xd8\xff\xe0 a JPEG", "cannot read the OIDC token file {path}: not UTF-8 text (an invalid byte on line 1)"),
    ("eyJ.tökën".encode(), "the OIDC token file {path} holds a control or non-ASCII character; a token is printable "
                           "ASCII"),
    (b"e" * 65_537, "cannot read the OIDC token file {path}: larger than 64 KiB"),
], ids=["binary", "non-ascii", "too-large"])
def test_an_unusable_token_file_is_one_line_without_its_content(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        check_credentials(rrsa_config("http://127.0.0.1:1", path))
    assert str(info.value).startswith("sources[0].credentials: " + said.format(path=path))
    assert "\n" not in str(info.value) and "JPEG" not in str(info.value) and "eee" not in str(info.value)


async def test_sts_credentials_that_no_header_can_carry_are_an_auth_failure(token_file: Path) -> None:
    answer = {"Credentials": {"AccessKeyId": "STS.id", "AccessKeySecret": "sëcret", "SecurityToken": "tok",
                              "Expiration": "2099-01-01T00:00:00Z"}}
    provider = OidcCredentialProvider(ROLE_ARN, PROVIDER_ARN, token_file, "http://sts.test",
                                      transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer)))
    with pytest.raises(CredentialError) as info:
        await provider.refresh()
    assert str(info.value) == "STS AssumeRoleWithOIDC answered with credentials holding control or non-ASCII characters"


def base_source(**extra: Any) -> Any:
    source = {"name": "mc", "kind": "maxcompute", "region": "cn-beijing", **extra}
    return parse_config({"sources": [source]}, KINDS).sources[0]


def test_the_vendor_rrsa_variables_are_used_when_no_access_key_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, setting in zip(RRSA_ENV, (ROLE_ARN, PROVIDER_ARN, str(tmp_path / "tok")), strict=True):
        monkeypatch.setenv(name, setting)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ROLE_SESSION_NAME", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", raising=False)
    provider = credential_provider(base_source())
    assert isinstance(provider, OidcCredentialProvider)
    assert provider.sts_endpoint == "https://sts.cn-beijing.aliyuncs.com"
    assert (provider.role_arn, provider.session_name, provider.duration) == (ROLE_ARN, "cloud-job-exporter", 3600)
    monkeypatch.setenv("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true")
    assert credential_provider(base_source()).sts_endpoint == "https://sts-vpc.cn-beijing.aliyuncs.com"
    # The vendor chain's order: an access key variable, or keys the source names, come first.
    assert not isinstance(credential_provider(base_source(credentials={"access_key_id_env": "X"})),
                          OidcCredentialProvider)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tSomething")
    assert not isinstance(credential_provider(base_source()), OidcCredentialProvider)
    # Huawei sources never pick the Alibaba Cloud variables up.
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID")
    huawei = parse_config({"sources": [{"name": "d", "kind": "dataarts_factory", "region": "cn-north-4",
                                        "project_id": "p1"}]}, KINDS).sources[0]
    assert not isinstance(credential_provider(huawei), OidcCredentialProvider)


async def test_the_vendor_sdk_request_is_accepted_and_matches_ours(sim, token_file: Path, monkeypatch) -> None:
    """Cross-check: the parameters `alibabacloud_credentials` puts in its AssumeRoleWithOIDC request (captured
    where it would send it) are the ones ours carries, and the simulator accepts the vendor's GET as well."""
    oidc = pytest.importorskip("alibabacloud_credentials.provider.oidc")
    token_file.write_text(TOKEN)  # the vendor sends the file as it is; a projected token has no newline
    captured: dict[str, Any] = {}

    def capture(request: Any, _options: Any) -> Any:
        captured.update(method=request.method, query=dict(request.query), host=request.headers["host"])
        raise RuntimeError("captured")

    monkeypatch.setattr(oidc.TeaCore, "do_action", capture)
    vendor = oidc.OIDCRoleArnCredentialsProvider(
        role_arn=ROLE_ARN, oidc_provider_arn=PROVIDER_ARN, oidc_token_file_path=str(token_file),
        role_session_name="cloud-job-exporter", duration_seconds=3600, sts_region_id="cn-hangzhou")
    with pytest.raises(RuntimeError, match="captured"):
        vendor._refresh_credentials()
    assert captured["host"] == "sts.cn-hangzhou.aliyuncs.com"

    provider = OidcCredentialProvider(ROLE_ARN, PROVIDER_ARN, token_file, sim.url)
    await provider.refresh()
    ours = dict(sim.sim.sts.requests[-1])
    vendors = captured["query"]
    assert set(ours) == set(vendors)
    assert {k: v for k, v in ours.items() if k != "Timestamp"} == {
        k: v for k, v in vendors.items() if k != "Timestamp"}

    async with httpx.AsyncClient() as client:
        response = await client.request(captured["method"], sim.url + "/", params=vendors)
    assert response.status_code == 200, response.text
    assert set(response.json()["Credentials"]) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}
