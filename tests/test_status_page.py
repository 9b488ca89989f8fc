"""The store's figures the status page is made of: each API's last runs, its last failure, its next poll."""

from __future__ import annotations

import pytest

from exporter.contract import Fetched, SourceInfo
from exporter.store import HISTORY, Failure, Store

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
