"""The status page and `/config` over real HTTP, without a browser: what they show, that every string a vendor or a
config file gives is shown as text, and that nothing secret is; and the store's figures the page is made of."""

from __future__ import annotations

import html
import json

import httpx
import pytest
import yaml

from exporter.config import parse_config
from exporter.contract import Fetched, SourceInfo
from exporter.pages import redacted
from exporter.runtime import build
from exporter.sources import KINDS
from exporter.store import HISTORY, Failure, Store
from tests.helpers import KEY_ID, PageReader, running_exporter
from tests.helpers import eventually_status as eventually
from tests.hostile.vendor import Attack, hostile_vendor, whole

SCRIPT = "<script>document.write('pwned')</script>"
HOSTILE_ENV = f'{SCRIPT}"KEY_ID'  # a variable may be named so: it has no space and no `=`
MESSAGE = "<img src=x onerror=alert('vendor')> & <script>alert(1)</script>"


def hostile_answer() -> Attack:
    """A vendor whose every answer is an error (HTTP 200, the envelope says 500) with markup in its request id and
    a message of 100,000 characters."""
    body = {"requestId": SCRIPT, "httpCode": 500, "errorCode": "INTERNAL_ERROR", "errorMsg": MESSAGE + "x" * 100_000}
    return Attack("markup", "markup and length in an error", lambda: whole(json.dumps(body).encode()), "server")


async def test_the_page_shows_every_api_and_source_and_what_vendors_and_configs_say_as_text(monkeypatch) -> None:
    monkeypatch.setenv(HOSTILE_ENV, KEY_ID)
    monkeypatch.setenv("MC_SECRET", "a-secret-that-stays-off-the-page")
    with hostile_vendor((hostile_answer(),)) as urls:
        config = parse_config({"sources": [{
            "name": "mc", "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": urls["markup"],
            "credentials": {"access_key_id_env": HOSTILE_ENV, "access_key_secret_env": "MC_SECRET"},
        }]}, KINDS)
        async with running_exporter(build(config)) as url, httpx.AsyncClient() as client:
            await eventually(lambda: client.get(url + "/-/ready"), check_status=200)
            response = await client.get(url + "/")

    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"], "no script may run"
    assert "<script" not in response.text.lower() and html.escape(MESSAGE) in response.text
    page = PageReader(response.text)
    assert page.title == "cloud-job-exporter" and not {"script", "img"} & set(page.elements)
    assert 'name="viewport"' in response.text
    for link in ('href="/metrics"', 'href="/config"', 'href="/-/healthy"', 'href="/-/ready"'):
        assert link in response.text

    failing = page.row("mc", "GetRunningJobs")
    assert "down (server)" in failing and "failed: server ×1" in failing and "no data yet" in failing
    assert f"server: envelope httpCode 500 INTERNAL_ERROR: {MESSAGE}" in failing
    assert f"request id {SCRIPT}" in failing
    kept = failing.count("x" * 100)
    assert kept == 3, "a vendor's message is cut short, at 500 characters"
    assert "down (server)" in page.row("mc", "ListJobSnapshotInfos")
    assert "up data fresh" in page.row("mc", "GetJobInfo"), "no finished job to ask about: nothing to fail"
    source = page.row("mc", "maxcompute", "cn-hangzhou", urls["markup"])
    assert f"key id: environment variable {HOSTILE_ENV}; secret: environment variable MC_SECRET" in source
    assert "1 of 3 up" in source and "a-secret-that-stays-off-the-page" not in response.text
    assert "Sharding: none" in response.text
    assert len(response.content) < 20_000


async def test_config_shows_the_loaded_config_with_secrets_redacted(monkeypatch) -> None:
    secret = "the-secret-value-0123456789"
    monkeypatch.setenv("MC_ID", KEY_ID)
    monkeypatch.setenv("MC_SECRET", secret)
    config = parse_config({"sources": [{
        "name": "mc", "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": "http://user:hunter2@127.0.0.1:9",
        "tenant_id": secret,  # a secret pasted into the wrong key: known to the redactor, it is scrubbed
        "interval": "1h", "credentials": {"access_key_id_env": "MC_ID", "access_key_secret_env": "MC_SECRET"},
    }]}, KINDS)
    async with running_exporter(build(config)) as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/config")

    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert secret not in response.text and KEY_ID not in response.text and "hunter2" not in response.text
    source = yaml.safe_load(response.text)["sources"][0]
    assert source["endpoint"] == "http://<secret>@127.0.0.1:9" and source["tenant_id"] == "[REDACTED]"
    assert source["credentials"]["access_key_secret_env"] == "MC_SECRET", "variables are named, never read"
    assert (source["name"], source["kind"], source["interval"], source["timeout"]) == ("mc", "maxcompute", 3600, 10)


def test_secret_like_keys_are_redacted_and_references_to_secrets_are_not() -> None:
    config = {"password": "p", "api_key": "k", "nested": [{"bearer_token": "t"}], "token_file": "/run/token",
              "secret_env": "SECRET", "region": "cn-hangzhou", "size": 3, "url": "https://u:p@host"}
    assert redacted(config) == {
        "password": "<secret>", "api_key": "<secret>", "nested": [{"bearer_token": "<secret>"}],
        "token_file": "/run/token", "secret_env": "SECRET", "region": "cn-hangzhou", "size": 3,
        "url": "https://<secret>@host",
    }


KEY = ("mc", "GetRunningJobs")


@pytest.fixture
def store() -> Store:
    store = Store()
    store.add_api(SourceInfo("mc", "maxcompute", "cn-hangzhou"), "GetRunningJobs", 90, interval=30)
    return store


def test_the_last_runs_are_kept_in_order_and_the_last_failure_past_recovery(store: Store) -> None:
    for n in range(HISTORY):
        store.record_success(KEY, Fetched((), 2, 40), end=101.0 + 30 * n, duration=1.0)
    store.record_failure(KEY, "server", "HTTP 503", end=701.0, duration=1.0, request_id="rid-1")
    store.record_skip(KEY, "backoff", at=730.0)
    store.record_success(KEY, Fetched((), 3, 50), end=761.0, duration=1.0)
    state = store.states[KEY]
    assert len(state.history) == HISTORY and state.history[0].at == 191.0, "the oldest runs are dropped"
    assert [(r.outcome, r.reason) for r in state.history[-3:]] == [("failed", "server"), ("skipped", "backoff"),
                                                                  ("ok", None)]
    assert state.up and state.last_reason is None and (state.data.records, state.data.pages) == (50, 3)
    assert state.last_failure == Failure(701.0, "server", "HTTP 503", "rid-1")


def test_the_next_poll_is_an_interval_after_the_last_run_and_the_first_after_a_backoff(store: Store) -> None:
    assert store.states[KEY].next_poll() is None, "not yet scheduled"
    store.record_success(KEY, Fetched((), 1, 1), end=101.0, duration=1.0)  # began at 100
    assert store.states[KEY].next_poll() == 130.0
    store.record_failure(KEY, "throttled", "slow down", end=131.0, duration=1.0, backoff_until=201.0)
    assert store.states[KEY].next_poll() == 220.0, "160 and 190 are skipped: backing off"
    store.record_skip(KEY, "overlap", at=250.0)  # a run skipped while the poll that began at 220 still ran
    store.record_success(KEY, Fetched((), 1, 1), end=255.0, duration=35.0)
    assert store.states[KEY].next_poll() == 280.0
