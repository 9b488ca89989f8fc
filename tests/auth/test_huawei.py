"""SDK-HMAC-SHA256: the vendor SDK's signing vectors replayed byte for byte, a cross-check against the SDK's own
signer (`huaweicloudsdkcore`, a test-only reference), the verifier, and the headers the signer adds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from exporter.auth import huawei
from exporter.auth.huawei import HuaweiAuth
from exporter.credentials import static
from tests.helpers import signing_vectors_dir

# The vectors' AK is printed in them; the SK is not, it was recovered by trying likely test constants against them.
AK = "HWAKTESTEXAMPLE000000"
SK = "HWSKTESTEXAMPLESECRETKEY00000000000000000"
VECTOR_DATE = datetime(2024, 1, 1, tzinfo=UTC)
HOST = "dayu-dlf.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
# Headers the signer or httpx itself sets; a vector's other headers are the caller's.
ADDED_BY_SIGNER = {"host", "authorization", "x-sdk-date", "x-project-id", "x-security-token"}


@dataclass(frozen=True)
class Vector:
    """One request the SDK signed: what was sent and what it canonicalised."""

    name: str
    url: str
    headers: dict[str, str]
    canonical_request: str | None
    string_to_sign: str | None

    @property
    def authorization(self) -> str:
        return self.headers["Authorization"]


def _parse_block(name: str, text: str) -> Vector:
    """Returns the vector described by one block of the SDK's printed output."""
    url = re.search(r"^URL: (\S+)$", text, re.M)
    assert url, name
    headers = dict(re.findall(r"^  ([A-Za-z0-9_-]+): (.*)$", text, re.M))
    canonical = sts = None
    if "--- CanonicalRequest ---" in text:
        canonical = text.split("--- CanonicalRequest ---\n")[1].split("\n--- StringToSign ---\n")[0]
        sts = text.split("--- StringToSign ---\n")[1].strip("\n")
    return Vector(name, url[1], headers, canonical, sts)


def _load_vectors() -> list[Vector]:
    text = (signing_vectors_dir() / "hw_vectors_output.txt").read_text()
    blocks = [b for b in text.split("######## ") if b.strip()]
    return [_parse_block(b.split(" ", 1)[0], b) for b in blocks]


def _load_full_client_vector() -> Vector:
    return _parse_block("full-client", (signing_vectors_dir() / "hw_full_client_output.txt").read_text())


def _fixed_clock(moment: datetime = VECTOR_DATE):
    return lambda: moment


def _send(auth: HuaweiAuth, method: str, url: str, **kwargs) -> httpx.Request:
    """Returns the request as it reached the transport, sent through a client with httpx's default headers.

    `accept` and `user-agent` are dropped from the defaults because the vectors do not carry them; the hop-by-hop
    defaults (`accept-encoding`, `connection`) stay, to show the signer leaves them out.
    """
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"total": 0, "jobs": []})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        del client.headers["accept"], client.headers["user-agent"]
        client.request(method, url, **kwargs).raise_for_status()
    return sent[0]


def _query_pairs(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query.decode(), keep_blank_values=True)


def _canonical_of_sent(request: httpx.Request) -> str:
    """Returns the canonical request a server computes from the request as received, over its signed headers."""
    parsed = huawei.parse_authorization(request.headers["Authorization"])
    assert parsed is not None
    headers = request.headers.multi_items()
    return huawei.canonical_request(
        request.method,
        huawei.canonical_uri(request.url.raw_path.split(b"?")[0].decode()),
        huawei.canonical_query(_query_pairs(request)),
        headers,
        parsed[1],
        huawei.payload_hash(request.content, headers),
    )


def _verifies(request: httpx.Request, secret: str = SK) -> bool:
    return huawei.verify(
        request.method,
        request.url.raw_path.split(b"?")[0].decode(),
        _query_pairs(request),
        request.headers.multi_items(),
        request.content,
        secret,
    )


def _replay(vector: Vector) -> httpx.Request:
    """Returns the request our signer sends for the inputs of `vector`."""
    lower = {k.lower(): v for k, v in vector.headers.items()}
    auth = HuaweiAuth(
        lambda: static(AK, SK, lower.get("x-security-token")),
        project_id=lower.get("x-project-id"),
        clock=_fixed_clock(huawei.parse_sdk_date(lower["x-sdk-date"])),
    )
    parts = urlsplit(vector.url)
    # Given in reverse order, so the test shows the signer sorts them.
    params = list(reversed(parse_qsl(parts.query, keep_blank_values=True)))
    own = {k: v for k, v in vector.headers.items() if k.lower() not in ADDED_BY_SIGNER}
    return _send(auth, "GET", f"{parts.scheme}://{parts.netloc}{parts.path}", params=params, headers=own)


@pytest.mark.parametrize("vector", _load_vectors(), ids=lambda v: v.name)
def test_vector_byte_for_byte(vector: Vector) -> None:
    sent = _replay(vector)
    canonical = _canonical_of_sent(sent)
    assert canonical == vector.canonical_request
    assert huawei.string_to_sign(canonical, "20240101T000000Z") == vector.string_to_sign
    assert sent.headers["Authorization"] == vector.authorization
    assert str(sent.url) == vector.url  # the query on the wire is the canonical one (H3: `%20`, `%2F`)
    assert _verifies(sent)


def test_full_client_vector_signs_the_user_agent() -> None:
    vector = _load_full_client_vector()
    sent = _replay(vector)
    assert sent.headers["Authorization"] == vector.authorization
    assert "user-agent" in huawei.parse_authorization(sent.headers["Authorization"])[1]  # type: ignore[index]


def test_signature_of_vector_string_to_sign() -> None:
    """The pure functions alone, without httpx, give the H2 signature."""
    vector = next(v for v in _load_vectors() if v.name == "H2")
    assert vector.string_to_sign is not None
    sig = huawei.signature(SK, vector.string_to_sign)
    assert huawei.authorization(AK, ["host", "x-sdk-date"], sig) == vector.authorization


# --- cross-check against the vendor SDK's signer ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request to sign with both signers: the caller's own headers, before any signer adds its own."""

    name: str
    method: str
    path: str  # as sent on the wire, already percent-encoded
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes = b""
    token: str | None = None
    project_id: str | None = None


SDK_CASES = [
    Case(
        "get-list",
        "GET",
        f"/v1/{PROJECT}/jobs",
        [("limit", "100"), ("offset", "0"), ("jobType", "BATCH")],
        {"Content-Type": "application/json", "workspace": "ws1"},
        project_id=PROJECT,
    ),
    Case(
        "post-json-body-encoded-path",
        "POST",
        f"/v1/{PROJECT}/jobs/my%20job%3A1%2B%E4%BD%9C%E4%B8%9A~x/start",
        [("dryRun", "true")],
        {"Content-Type": "application/json;charset=UTF-8", "workspace": "ws1"},
        body=json.dumps({"jobParams": [{"name": "n", "value": "äöü €"}]}, ensure_ascii=False).encode(),
        project_id=PROJECT,
    ),
    Case(
        "unicode-and-reserved-query",
        "GET",
        f"/v1/{PROJECT}/jobs",
        [("jobName", "作业 a+b/c?d=e&f*'()!~"), ("Zeta", "1"), ("[x]", "2"), ("a", ""), ("tag", "b"), ("tag", "a")],
        {"Content-Type": "application/json"},
        project_id=PROJECT,
    ),
    Case(
        "security-token-and-underscore-header",
        "GET",
        f"/v1/{PROJECT}/jobs",
        [("jobType", "REAL_TIME")],
        {"Content-Type": "application/json", "X_Custom_Header": "not signed", "X-Custom": "  padded  "},
        token="TEMPORARYTOKEN/with+chars==",
        project_id=PROJECT,
    ),
    Case("root-path-no-query", "DELETE", "/", [], {"User-Agent": "huaweicloud-usdk-python/3.0; test-ua"}),
    Case(
        "declared-unsigned-payload",
        "PUT",
        f"/v1/{PROJECT}/resources/file.bin",
        [],
        {"Content-Type": "application/octet-stream", "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
        body=b"\x00\x01binary",
        project_id=PROJECT,
    ),
]


@pytest.fixture(scope="module")
def sdk_signer_cls():
    """Returns the SDK's Signer; importing only the signer keeps the SDK from writing its app id into $HOME."""
    signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
    return signer.Signer


def _sign_with_sdk(signer_cls, case: Case, ak: str, sk: str, date: str):
    """Returns the SdkRequest as the SDK signs it, with the headers its credential classes would add."""
    from huaweicloudsdkcore.sdk_request import SdkRequest

    headers = dict(case.headers)
    headers["X-Sdk-Date"] = date  # the SDK takes a preset date instead of its clock
    if case.project_id:
        headers["X-Project-Id"] = case.project_id  # BasicCredentials.sign_request
    if case.token:
        headers["X-Security-Token"] = case.token  # Credentials.sign_request
    request = SdkRequest(
        method=case.method,
        schema="https",
        host=HOST,
        resource_path=case.path,
        query_params=list(case.query),
        header_params=headers,
        body=case.body or None,
    )
    return signer_cls(SimpleNamespace(ak=ak, sk=sk)).sign(request)


@pytest.mark.parametrize("case", SDK_CASES, ids=lambda c: c.name)
def test_matches_sdk_signer(sdk_signer_cls, case: Case) -> None:
    ak, sk, moment = "AKCROSSCHECK0000000000", "cross-check/secret+key==", datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    sdk = _sign_with_sdk(sdk_signer_cls, case, ak, sk, huawei.format_sdk_date(moment))
    auth = HuaweiAuth(lambda: static(ak, sk, case.token), project_id=case.project_id, clock=_fixed_clock(moment))
    # A bare Request carries no client defaults, like the SDK's header dict; httpx adds Host and Content-Length.
    ours = httpx.Request(
        case.method, f"https://{HOST}{case.path}", params=case.query, headers=case.headers, content=case.body or None
    )
    auth.sign(ours)
    assert ours.headers["Authorization"] == sdk.header_params["Authorization"]
    assert ours.url.raw_path.decode() == sdk.uri  # same path and the same canonical query on the wire
    assert _verifies(ours, sk)


@pytest.mark.parametrize("case", SDK_CASES, ids=lambda c: c.name)
def test_verifier_accepts_sdk_signed_requests(sdk_signer_cls, case: Case) -> None:
    sdk = _sign_with_sdk(sdk_signer_cls, case, AK, SK, "20240101T000000Z")
    raw_path, _, raw_query = sdk.uri.partition("?")
    headers = list(sdk.header_params.items())
    query = parse_qsl(raw_query, keep_blank_values=True)
    assert huawei.verify(case.method, raw_path, query, headers, sdk.body or b"", SK)
    assert not huawei.verify(case.method, raw_path, query, headers, sdk.body or b"", SK + "x")


# --- what the signer adds ------------------------------------------------------------------------------------------


def _list_jobs(auth: HuaweiAuth, **kwargs) -> httpx.Request:
    return _send(auth, "GET", f"https://{HOST}/v1/{PROJECT}/jobs", params={"limit": 10}, **kwargs)


def test_security_token_is_sent_and_signed() -> None:
    sent = _list_jobs(HuaweiAuth(lambda: static(AK, SK, "TOKEN123"), clock=_fixed_clock()))
    assert sent.headers["X-Security-Token"] == "TOKEN123"
    assert "x-security-token" in huawei.parse_authorization(sent.headers["Authorization"])[1]  # type: ignore[index]
    assert _verifies(sent)


def test_no_security_token_with_permanent_keys_and_stale_one_is_dropped() -> None:
    tokens = iter(["TOKEN123", None])
    auth = HuaweiAuth(lambda: static(AK, SK, next(tokens)), clock=_fixed_clock())
    request = httpx.Request("GET", f"https://{HOST}/v1/{PROJECT}/jobs")
    auth.sign(request)
    auth.sign(request)  # a retry after the credentials lost their token
    assert "X-Security-Token" not in request.headers
    assert "x-security-token" not in request.headers["Authorization"]


def test_project_id_is_added_and_signed_only_when_given() -> None:
    with_project = _list_jobs(HuaweiAuth(lambda: static(AK, SK), project_id=PROJECT, clock=_fixed_clock()))
    without = _list_jobs(HuaweiAuth(lambda: static(AK, SK), clock=_fixed_clock()))
    assert with_project.headers["X-Project-Id"] == PROJECT
    assert "x-project-id" in huawei.parse_authorization(with_project.headers["Authorization"])[1]  # type: ignore[index]
    assert "X-Project-Id" not in without.headers


def test_hop_by_hop_and_underscore_headers_are_sent_but_not_signed() -> None:
    auth = HuaweiAuth(lambda: static(AK, SK), clock=_fixed_clock())
    sent = _send(auth, "POST", f"https://{HOST}/v1/{PROJECT}/jobs", json={"a": 1}, headers={"x_trace_id": "t"})
    parsed = huawei.parse_authorization(sent.headers["Authorization"])
    assert parsed is not None
    assert parsed[1] == ["content-type", "host", "x-sdk-date"]
    for name in ("accept-encoding", "connection", "content-length", "x_trace_id"):
        assert name in sent.headers
    assert _verifies(sent)


def test_secret_never_appears_in_headers_or_url() -> None:
    secret = "S3CRET-never-on-the-wire"
    sent = _list_jobs(HuaweiAuth(lambda: static(AK, secret, "TOK"), project_id=PROJECT, clock=_fixed_clock()))
    for name, value in sent.headers.multi_items():
        assert secret not in name and secret not in value
    assert secret not in str(sent.url)
    assert sent.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")


def test_clock_is_injected_and_read_per_request_in_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    moments = iter([datetime(2024, 1, 1, 8, 0, 0, tzinfo=beijing), datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC)])
    auth = HuaweiAuth(lambda: static(AK, SK), clock=lambda: next(moments))
    first, second = _list_jobs(auth), _list_jobs(auth)
    assert first.headers["X-Sdk-Date"] == "20240101T000000Z"
    assert second.headers["X-Sdk-Date"] == "20240630T235959Z"
    assert first.headers["Authorization"] != second.headers["Authorization"]


def test_credentials_are_read_at_signing_time() -> None:
    keys = iter([("AK1", "SK1"), ("AK2", "SK2")])
    auth = HuaweiAuth(lambda: static(*next(keys)), clock=_fixed_clock())
    first, second = _list_jobs(auth), _list_jobs(auth)
    assert "Access=AK1," in first.headers["Authorization"] and _verifies(first, "SK1")
    assert "Access=AK2," in second.headers["Authorization"] and _verifies(second, "SK2")


# --- the pure functions and the verifier ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/v1/p/jobs", "/v1/p/jobs/"),
        ("/v1/p/jobs/", "/v1/p/jobs/"),
        ("/a b/c%20d/e~f", "/a%20b/c%20d/e~f/"),
        ("/x:y/%E4%BD%9C", "/x%3Ay/%E4%BD%9C/"),
    ],
)
def test_canonical_uri(raw: str, expected: str) -> None:
    assert huawei.canonical_uri(raw) == expected


def test_canonical_query_sorts_decoded_pairs_and_encodes_like_the_sdk() -> None:
    pairs = [("b", "2"), ("a", "x y/z"), ("a", "*"), ("c", "")]
    assert huawei.canonical_query(pairs) == "a=%2A&a=x%20y%2Fz&b=2&c="


def test_parse_authorization_rejects_malformed_values() -> None:
    good = huawei.authorization(AK, ["host", "x-sdk-date"], "0" * 64)
    assert huawei.parse_authorization(good) == (AK, ["host", "x-sdk-date"], "0" * 64)
    assert huawei.parse_authorization(good.replace(", ", ",")) is None
    assert huawei.parse_authorization("ACS3-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=y") is None


@pytest.mark.parametrize(
    "tamper",
    ["query", "path", "body", "signed-header", "unsigned-date", "no-authorization", "wrong-secret"],
)
def test_verify_rejects_tampering(tamper: str) -> None:
    auth = HuaweiAuth(lambda: static(AK, SK), project_id=PROJECT, clock=_fixed_clock())
    sent = _send(auth, "POST", f"https://{HOST}/v1/{PROJECT}/jobs", params={"limit": 10}, json={"a": 1})
    method, path = sent.method, sent.url.raw_path.split(b"?")[0].decode()
    query, headers, body, secret = _query_pairs(sent), dict(sent.headers), sent.content, SK
    assert huawei.verify(method, path, query, headers.items(), body, secret)
    if tamper == "query":
        query = [("limit", "11")]
    elif tamper == "path":
        path = path.replace("jobs", "jobz")
    elif tamper == "body":
        body = b'{"a":2}'
    elif tamper == "signed-header":
        headers["x-project-id"] = "other"
    elif tamper == "unsigned-date":
        signed = "content-type;host;x-project-id;x-sdk-date"
        headers["authorization"] = headers["authorization"].replace(signed, "content-type;host;x-project-id")
    elif tamper == "no-authorization":
        del headers["authorization"]
    else:
        secret = "other"
    assert not huawei.verify(method, path, query, headers.items(), body, secret)


def test_sdk_date_round_trip() -> None:
    assert huawei.parse_sdk_date("20240101T000000Z") == VECTOR_DATE
    assert huawei.format_sdk_date(VECTOR_DATE) == "20240101T000000Z"
    with pytest.raises(ValueError):
        huawei.parse_sdk_date("2024-01-01T00:00:00Z")
