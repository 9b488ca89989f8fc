"""The Alibaba Cloud call layer's reading of responses: enveloped (MaxCompute) and bare (EMR Serverless Spark) results,
every error shape, and the SDK's `json` style for object and array query parameters."""

from __future__ import annotations

import httpx
import pytest

from exporter.contract import PollError
from exporter.sources.alibaba import json_param, parse_envelope


def _response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_enveloped_result_is_data():
    body = {"requestId": "r", "httpCode": 200, "errorCode": "success", "data": {"totalCount": 0}}
    assert parse_envelope(_response(200, body)) == {"totalCount": 0}


def test_bare_result_is_the_body():
    body = {"requestId": "r", "jobRuns": [], "nextToken": "", "totalCount": 0}
    assert parse_envelope(_response(200, body), enveloped=False) == body
    with pytest.raises(PollError, match="no `data` object"):
        parse_envelope(_response(200, body))


@pytest.mark.parametrize("enveloped", [True, False])
@pytest.mark.parametrize(
    ("status", "body", "reason", "text"),
    [
        (400, {"RequestId": "r", "Code": "Throttling.User", "Message": "slow down"}, "throttled", "Throttling.User"),
        (403, {"requestId": "r", "code": "Forbidden.NoPermission", "message": "no"}, "auth", "HTTP 403 Forbidden"),
        (404, {"requestId": "r", "code": "InvalidWorkspace.NotFound", "message": "gone"}, "client", "gone"),
        (500, {"requestId": "r", "errorCode": "InternalError", "errorMsg": "boom"}, "server", "boom"),
        (200, {"requestId": "r", "httpCode": 500, "errorCode": "InternalError", "errorMsg": "x"}, "server", "httpCode"),
    ],
)
def test_errors_in_every_shape(enveloped, status, body, reason, text):
    with pytest.raises(PollError, match=text) as caught:
        parse_envelope(_response(status, body), enveloped=enveloped)
    assert caught.value.reason == reason
    assert caught.value.request_id == "r"


def test_json_param_is_compact_sorted_and_keeps_non_ascii():
    assert json_param(["Running", "Submitted"]) == '["Running","Submitted"]'
    assert json_param({"startTime": 1, "endTime": 2}) == '{"endTime":2,"startTime":1}'
    assert json_param([{"value": "生产", "key": "env"}]) == '[{"key":"env","value":"生产"}]'


@pytest.mark.parametrize("enveloped", [True, False])
@pytest.mark.parametrize(
    ("status", "reason"),
    [(502, "server"), (503, "server"), (429, "throttled"), (401, "auth"), (403, "auth"), (404, "client"),
     (200, "bad_response")],
)
def test_a_body_that_is_not_json_keeps_the_reason_of_its_status(enveloped, status, reason):
    response = httpx.Response(status, text="<html>unavailable</html>", headers={"x-acs-request-id": "lb"})
    with pytest.raises(PollError, match=f"HTTP {status} with a body that is not JSON") as caught:
        parse_envelope(response, enveloped=enveloped)
    assert (caught.value.reason, caught.value.request_id) == (reason, "lb")


def test_a_body_that_is_not_json_keeps_the_wait_asked_for():
    response = httpx.Response(503, text="busy", headers={"retry-after": "30"})
    with pytest.raises(PollError) as caught:
        parse_envelope(response)
    assert (caught.value.reason, caught.value.retry_after) == ("throttled", 30.0)
