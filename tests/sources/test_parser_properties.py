"""Property tests (hypothesis) of every response parser, through the real polling path of every kind: whatever JSON
a vendor sends (numbers of any size, NaN and infinities, wrong types, missing keys, long strings, nesting), a poll
ends up or with a vendor reason, never `internal`; every sample on the page is a finite number; and no label value
is longer than `max_label_length`. Each envelope parser, given any bytes with any status, raises only PollError."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.contract import PollError
from exporter.credentials import static
from exporter.demo import demo_sources
from exporter.runtime import Exporter, build
from exporter.sources import KINDS
from exporter.sources.alibaba import parse_envelope
from exporter.sources.huawei import parse_response
from tests.helpers import body

LABEL_LIMIT = 100
# Every field a parser reads, so that generated records hit the parsers' own keys with hostile values.
RECORD_FIELDS = (
    "instanceId", "project", "quotaNickname", "jobOwner", "jobType", "status", "priority", "cuSnapshot",
    "memorySnapshot", "progress", "submittedAtTime", "runningAtTime", "cpuUsage", "cpuRequest", "memoryUsage",
    "memoryRequest", "cpuUsageToRequestRatio", "memoryUsageToRequestRatio", "waitingTime", "runningTime", "cuUsage",
    "inputBytes", "endAtTime", "sceneResults", "scene", "sceneTag", "type", "jobRunId", "name", "resourceQueueId",
    "state", "codeType", "creator", "submitTime", "endTime", "vcoreSeconds", "mbSeconds", "cuHours",
    "lastInstanceStatus", "lastInstanceEndTime", "startTime", "snapshotTime",
)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EXTREMES = st.sampled_from([10**400, -(10**400), 2**64, 2**63 + 1, 1e308, -1e308, 5e-324, -0.0])
NUMBERS = st.one_of(EXTREMES, EXTREMES, st.integers(), st.floats())  # half of them at or past the edges
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), st.just("x" * (LABEL_LIMIT + 1)))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=8)
IDS = {"instanceId": st.sampled_from(["j1", "j2", "j3", "x" * (LABEL_LIMIT + 1)]),
       "jobRunId": st.sampled_from(["r1", "r2", "r3"]), "name": st.sampled_from(["n1", "n2", "n3"]),
       "status": st.sampled_from(["Running", "Terminated", "RUNNING"]), "state": st.sampled_from(["Running", "Failed"])}
TEXTS = ("project", "quotaNickname", "jobOwner", "jobType", "scene", "sceneTag", "type", "resourceQueueId",
         "codeType", "creator", "lastInstanceStatus")
# A record every parser takes (its ids right, its fields well typed), with up to three of them made hostile.
GOOD = {**{key: 1 for key in RECORD_FIELDS}, **{key: "t" for key in TEXTS}, "sceneResults": []}
NUMERIC = tuple(key for key in RECORD_FIELDS if key not in (*TEXTS, *IDS, "sceneResults"))
HOSTILE = st.builds(lambda numbers, others: {**others, **numbers},
                    st.dictionaries(st.sampled_from(NUMERIC), NUMBERS, min_size=1, max_size=8),
                    st.dictionaries(st.sampled_from(RECORD_FIELDS), VALUES, max_size=1))
RECORDS = st.builds(lambda ids, bad: {**GOOD, **ids, **bad}, st.fixed_dictionaries(IDS), HOSTILE)
WELL_FORMED_LISTING = {
    **{key: st.lists(RECORDS | VALUES, min_size=1, max_size=4) for key in
       ("runningJobInfoList", "jobInfoList", "jobRuns", "jobs")},
    "totalCount": st.integers(0, 60), "total": st.integers(0, 60),
}
# One answer shape for every API of every kind: each reads the keys it knows (MaxCompute's and GetJobInfo's under
# `data`, EMR's and DataArts' at the top), and `data` is a job record too, for GetJobInfo. Mostly well formed, so
# that the hostile values reach the record parsers and the renderers; else anything at all.
WELL_FORMED = st.fixed_dictionaries({
    "httpCode": st.just(200), "requestId": st.just("r"), **WELL_FORMED_LISTING,
    "data": st.builds(lambda listing, record: {**record, **listing}, st.fixed_dictionaries(WELL_FORMED_LISTING),
                      RECORDS),
})
MALFORMED = st.fixed_dictionaries({}, optional={
    "httpCode": st.just(200) | VALUES, "data": VALUES, "totalCount": VALUES, "nextToken": VALUES,
    "jobRuns": VALUES, "jobs": VALUES, "total": VALUES,
}) | VALUES
ANSWERS = st.one_of(WELL_FORMED, WELL_FORMED, WELL_FORMED, MALFORMED)


@pytest.fixture(scope="module")
def polling() -> Iterator[tuple[asyncio.AbstractEventLoop, Exporter, dict[str, Any]]]:
    """One exporter of every kind whose every API answers `answer["body"]` (changed by each example), on a loop of its
    own (hypothesis runs the examples of a test synchronously)."""
    answer: dict[str, Any] = {"body": b"{}"}
    cfg = parse_config({"sources": [{**s, "max_label_length": LABEL_LIMIT}
                                    for s in demo_sources("http://vendor.test")]}, KINDS)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=answer["body"]))
    loop = asyncio.new_event_loop()
    exporter = build(cfg, credentials=lambda c: (lambda: static("AKID", "secret")), transport=transport)
    yield loop, exporter, answer
    for source in exporter.sources:
        loop.run_until_complete(source.aclose())
    loop.close()


def check_page(text: str) -> None:
    """Asserts the page parses, every sample is a finite number, and no label value passes the limit."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # The parser keeps an integer as an int: float() then fails (OverflowError) where Prometheus would.
            assert math.isfinite(float(sample.value)), sample
            assert all(len(v) <= LABEL_LIMIT for v in sample.labels.values()), sample


@SETTINGS
@given(answer=ANSWERS)
def test_any_answer_ends_in_a_vendor_reason_and_a_valid_page(polling, answer: Any) -> None:
    loop, exporter, current = polling
    current["body"] = json.dumps(answer).encode()  # NaN and Infinity as json.loads reads them
    for target in exporter.targets:
        loop.run_until_complete(exporter.poller.poll_once(target))
        state = exporter.store.states[target.key]
        assert state.last_reason != "internal", (target.key, state.last_error)
    check_page(body(exporter.poller.published.exposition).decode())


@SETTINGS
@given(status=st.integers(100, 599), content=st.binary(max_size=200) | ANSWERS.map(lambda a: json.dumps(a).encode()),
       headers=st.dictionaries(st.sampled_from(["retry-after", "x-acs-retry-after", "x-request-id"]),
                               st.text(max_size=30).filter(lambda v: v.isascii() and v.isprintable()), max_size=2))
def test_the_envelope_parsers_raise_only_poll_errors(status: int, content: bytes, headers: dict[str, str]) -> None:
    response = httpx.Response(status, content=content, headers=headers)
    for parse in (parse_envelope, lambda r: parse_envelope(r, enveloped=False), parse_response):
        with contextlib.suppress(PollError):  # anything else escapes and fails the test
            parse(response)
