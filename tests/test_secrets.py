"""Secrets never leak: not in logs (JSON or console, tracebacks included), not in poll errors, not in a repr."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from exporter.credentials import CredentialError, CredentialProvider, KeySource
from exporter.logs import add_secret_source, configure_logging, redact

SECRET = "s3cr3t-Value-that-must-not-leak"


@pytest.fixture
def registered_secret() -> None:
    add_secret_source(lambda: [SECRET])


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_lines_and_tracebacks_are_scrubbed(fmt: str, registered_secret, capsys) -> None:
    configure_logging(fmt, "info")
    log = structlog.get_logger("test")
    log.warning("poll failed", error=f"the server echoed {SECRET}")
    try:
        raise ValueError(f"bad header value {SECRET}")
    except ValueError:
        log.exception("poll crashed")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count("[REDACTED]") >= 2
    if fmt == "json":
        assert all(json.loads(line) for line in err.strip().splitlines())


def test_other_libraries_lines_share_the_format_and_the_redactor(registered_secret, capsys) -> None:
    configure_logging("json", "info")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received: %s", SECRET)
    try:
        raise RuntimeError(SECRET)
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    logging.getLogger("apscheduler.scheduler").info("Added job")  # info from a library is below the bar
    structlog.get_logger("exporter").info("ours at info")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["level"]) for e in lines[:2]] == [("uvicorn.error", "warning"), ("asyncio", "error")]
    assert "[REDACTED]" in lines[0]["event"] and "RuntimeError: [REDACTED]" in lines[1]["exception"]
    assert SECRET not in str(lines) and lines[2]["event"] == "ours at info" and len(lines) == 3


def test_redact_replaces_every_occurrence(registered_secret) -> None:
    assert redact(f"a {SECRET} b {SECRET}") == "a [REDACTED] b [REDACTED]"


def test_env_credentials_are_trimmed_and_control_characters_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ID", "AKID\n")
    monkeypatch.setenv("T_SECRET", " secret ")
    provider = CredentialProvider(KeySource(env="T_ID"), KeySource(env="T_SECRET"), KeySource(env="T_TOKEN"))
    creds = provider()
    assert (creds.key_id, creds.secret, creds.security_token) == ("AKID", "secret", None)
    assert "secret" not in repr(creds)
    monkeypatch.setenv("T_TOKEN", "STS.abc\x07def")
    with pytest.raises(CredentialError) as info:
        provider()
    assert "T_TOKEN holds a control or non-ASCII character" in str(info.value) and "abc" not in str(info.value)


async def test_a_poll_error_echoing_a_secret_is_scrubbed_before_the_status_page(registered_secret) -> None:
    from exporter.contract import Api, PollError, SourceInfo
    from exporter.poller import Poller, Target
    from exporter.server import App
    from exporter.sources.maxcompute.render import running_families
    from exporter.store import Store

    async def echoing() -> None:
        raise PollError("client", f"HTTP 400 InvalidParameter: token {SECRET} is malformed")

    store = Store()
    store.add_api(SourceInfo("mc", "maxcompute", "cn-hangzhou"), "GetRunningJobs", 90)
    target = Target("mc", Api("GetRunningJobs", 30, echoing, running_families))
    poller = Poller(store, [target])
    await poller.poll_once(target)
    page = App(lambda: poller.published).status().decode()
    assert "InvalidParameter" in page and SECRET not in page


@pytest.mark.parametrize(("rotated", "said"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "cannot read credential file {path}: not UTF-8 text"),
    ("s3cr3t-Välue".encode(), "credential unusable: file {path} holds a control or non-ASCII character"),
    (b"x" * 70_000, "cannot read credential file {path}: larger than 64 KiB"),
], ids=["binary", "non-ascii", "too-large"])
async def test_a_secret_file_rotated_into_garbage_fails_the_poll_as_auth(tmp_path, rotated: bytes, said: str) -> None:
    """Read at signing: the bad file never reaches the HTTP layer, which would have crashed the poll as `internal`."""
    import os

    import httpx

    from exporter.config import parse_config
    from exporter.runtime import build
    from exporter.sources import KINDS

    (tmp_path / "id").write_text("AKID-ok")
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    config = parse_config({"sources": [{"name": "mc", "kind": "maxcompute", "region": "cn-hangzhou", "credentials": {
        "access_key_id_file": str(tmp_path / "id"), "access_key_secret_file": str(secret)}}]}, KINDS)
    exporter = build(config, transport=httpx.MockTransport(answer))
    target = next(t for t in exporter.targets if t.api.name == "GetRunningJobs")
    await exporter.poller.poll_once(target)
    assert sent and exporter.store.states[target.key].last_reason == "server"

    secret.write_bytes(rotated)
    os.utime(secret, (1, 1))  # a new mtime, whatever the file system's resolution
    sent.clear()
    await exporter.poller.poll_once(target)
    state = exporter.store.states[target.key]
    assert (state.last_reason, sent) == ("auth", [])
    assert state.last_error.startswith(said.format(path=secret))
    assert "\n" not in state.last_error and "PNG" not in state.last_error and "lue" not in state.last_error
    for source in exporter.sources:
        await source.aclose()
