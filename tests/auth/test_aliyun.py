"""ACS3-HMAC-SHA256: the vendor SDK's signing vectors and the vendor doc's example replayed byte for byte, and a
cross-check against the signer in the installed `alibabacloud_tea_openapi` (a test-only reference)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from exporter.auth import aliyun
from exporter.auth.aliyun import AliyunAuth
from exporter.credentials import static
from tests.helpers import signing_vectors_dir

KEY_ID = "YourAccessKeyId"
SECRET = "YourAccessKeySecret"
VECTOR_DATE = datetime(2023, 10, 26, 10, 22, 32, tzinfo=UTC)
VECTOR_NONCE = "3156853299f313e23d1673dc12e1703d"
# Headers the signer or httpx itself sets; a vector's other headers (including the SDK's own
# `x-acs-credentials-provider` and `x-acs-accesskey-id`) are passed through as the caller's.
ADDED_BY_SIGNER = {
    "host",
    "authorization",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
    "x-acs-security-token",
}


def _load_vectors() -> list[dict]:
    vectors = json.loads((signing_vectors_dir() / "ali_vectors.json").read_text())
    for number, vector in enumerate(vectors, 1):
        vector["name"] = f"V{number}"  # as ali_vectors_output.txt numbers them
    return vectors


def _auth(token: str | None = None, *, clock=None, nonce=None) -> AliyunAuth:
    return AliyunAuth(
        lambda: static(KEY_ID, SECRET, token),
        clock=clock or (lambda: VECTOR_DATE),
        nonce=nonce or (lambda: VECTOR_NONCE),
    )


def _send(auth: AliyunAuth, method: str, url: str, **kwargs) -> httpx.Request:
    """Returns the request as it reached the transport, sent by a client stripped of httpx's default headers."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        # accept, accept-encoding, connection, user-agent: none is in the vectors as httpx sets it.
        client.headers.clear()
        client.request(method, url, **kwargs).raise_for_status()
    return sent[0]


def _canonical_of_sent(request: httpx.Request) -> str:
    """Returns the canonical request a server computes from the request as received."""
    canonical, _ = aliyun.canonical_request(
        request.method,
        request.url.raw_path.split(b"?")[0].decode(),
        aliyun.canonical_query(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
        [(n, v) for n, v in request.headers.multi_items() if n.lower() != "authorization"],
        request.headers["x-acs-content-sha256"],
    )
    return canonical


@pytest.mark.parametrize("vector", _load_vectors(), ids=lambda v: v["name"])
def test_vector_byte_for_byte(vector: dict) -> None:
    headers = {k: v for k, v in vector["headers"].items() if k.lower() not in ADDED_BY_SIGNER}
    parts = urlsplit(vector["url"])
    # The SDK sends `+` for a space (V2); parse_qsl decodes it, and the signer must send `%20`.
    # Given in reverse order, so the test shows the signer sorts them.
    params = list(reversed(parse_qsl(parts.query, keep_blank_values=True)))
    body = vector["body"].encode() if vector["body"] is not None else None
    sent = _send(
        _auth(vector["headers"].get("x-acs-security-token")),
        vector["method"],
        f"{parts.scheme}://{parts.netloc}{parts.path}",
        params=params,
        headers=headers,
        content=body,
    )
    canonical = _canonical_of_sent(sent)
    assert canonical == vector["canonical_request"]
    assert aliyun.string_to_sign(canonical) == vector["string_to_sign"]
    assert sent.headers["Authorization"] == vector["headers"]["Authorization"]
    # What is on the wire is what was signed: the canonical query, byte for byte.
    assert sent.url.query.decode() == vector["canonical_request"].split("\n")[2]
    assert sent.headers["x-acs-content-sha256"] == vector["headers"]["x-acs-content-sha256"]


def _doc_check_lines() -> dict[str, str]:
    """Returns the Authorization values printed in ali_doc_check_output.txt, by label."""
    lines = (signing_vectors_dir() / "ali_doc_check_output.txt").read_text().splitlines()
    out = {}
    for line in lines:
        label, sep, value = line.partition(" ACS3-HMAC-SHA256 ")
        if sep:
            out[label.rstrip(":")] = f"ACS3-HMAC-SHA256 {value}"
    return out


def test_doc_example() -> None:
    """The vendor's documented V3 example: ECS RunInstances, a POST with the parameters in the query."""
    sent = _send(
        _auth(),
        "POST",
        "https://ecs.cn-shanghai.aliyuncs.com/",
        params={"RegionId": "cn-shanghai", "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"},
        headers={"x-acs-action": "RunInstances", "x-acs-version": "2014-05-26"},
    )
    assert sent.headers["Authorization"] == _doc_check_lines()["doc example"]
    assert sent.headers["Authorization"].endswith("06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")


@pytest.mark.parametrize(("label", "token"), [("minimal", None), ("minimal+STS", "STS.TestSecurityToken")])
def test_doc_check_minimal(label: str, token: str | None) -> None:
    """V1 with only the headers the signature needs (no SDK extras), with and without an STS token."""
    sent = _send(
        _auth(token),
        "GET",
        "https://maxcompute.cn-hangzhou.aliyuncs.com/api/v1/jobs/runningJobs",
        params={"to": "1683785928", "from": "1683612946", "pageSize": "10", "pageNumber": "1"},
        headers={"x-acs-action": "GetRunningJobs", "x-acs-version": "2022-01-04"},
    )
    assert sent.headers["Authorization"] == _doc_check_lines()[label]


# --- cross-check against the vendor SDK's signer ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request to sign with both signers: the caller's headers, before any signer adds its own."""

    name: str
    method: str
    host: str
    path: str  # as sent on the wire, already percent-encoded
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    token: str | None = None


SDK_CASES = [
    Case(
        "post-json-body",
        "POST",
        "maxcompute.cn-shanghai.aliyuncs.com",
        "/api/v1/jobs/snapshot",
        {"tenantId": "987", "region": "cn-shanghai", "pageNumber": "2", "pageSize": "100", "ascOrder": "false"},
        {
            "x-acs-action": "ListJobSnapshotInfos",
            "x-acs-version": "2022-01-04",
            "content-type": "application/json; charset=utf-8",
        },
        body=json.dumps({"to": 1700000000, "projectList": ["p1", "项目"], "statusList": ["running"]}).encode(),
    ),
    Case(
        "sts-token",
        "GET",
        "emr-serverless-spark-vpc.cn-beijing.aliyuncs.com",
        "/api/v1/workspaces/w-9f8e7d/jobRuns",
        {"regionId": "cn-beijing", "maxResults": "100", "states": '["Running","Submitted"]'},
        {"x-acs-action": "ListJobRuns", "x-acs-version": "2023-08-08", "accept": "application/json"},
        token="CAIS+token/with==special&chars",
    ),
    Case(
        "unicode-query-and-encoded-path",
        "GET",
        "maxcompute.cn-hangzhou.aliyuncs.com",
        "/api/v1/jobs/2023%E5%B9%B4%20job~1/info",
        {"jobOwnerList": "ALIYUN$用户@例子.com,RAM$a:b", "quotaNicknameList": "配额 a*b+c~d/e", "empty": ""},
        {"x-acs-action": "GetRunningJobs", "x-acs-version": "2022-01-04", "user-agent": "test-ua"},
    ),
]


@pytest.fixture(scope="module")
def sdk_utils():
    """Returns the SDK's `Utils`, whose `get_authorization` builds the ACS3 `Authorization` value."""
    return pytest.importorskip("alibabacloud_tea_openapi.utils").Utils


@pytest.mark.parametrize("case", SDK_CASES, ids=lambda c: c.name)
def test_matches_sdk_signer(sdk_utils, case: Case) -> None:
    key_id, secret = "LTAI5tCrossCheckKeyId", "cross/check+secret=="
    moment, nonce = datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC), "0123456789abcdef0123456789abcdef"
    auth = AliyunAuth(lambda: static(key_id, secret, case.token), clock=lambda: moment, nonce=lambda: nonce)
    # A bare Request carries no client defaults; httpx adds Host and, with a body, Content-Length (never signed).
    ours = httpx.Request(
        case.method,
        f"https://{case.host}{case.path}",
        params=case.query,
        headers=case.headers,
        content=case.body or None,
    )
    auth.sign(ours)

    # The SDK signs every header in its dict: the same ones the client sets before it calls get_authorization.
    payload_hash = sdk_utils.hex_encode(sdk_utils.hash(case.body, "ACS3-HMAC-SHA256"))
    sdk_headers = {
        "host": case.host,
        **case.headers,
        "x-acs-date": "2025-02-03T04:05:06Z",
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": payload_hash,
    }
    if case.token:
        sdk_headers["x-acs-security-token"] = case.token
    sdk_request = SimpleNamespace(method=case.method, pathname=case.path, query=case.query, headers=sdk_headers)
    expected = sdk_utils.get_authorization(sdk_request, "ACS3-HMAC-SHA256", payload_hash, key_id, secret)

    assert ours.headers["Authorization"] == expected
    assert ours.headers["x-acs-content-sha256"] == payload_hash
    assert ours.url.raw_path.split(b"?")[0].decode() == case.path
    assert secret not in "".join(v for _, v in ours.headers.multi_items())
