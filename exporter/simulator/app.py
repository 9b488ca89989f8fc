"""The simulator's HTTP side: a raw ASGI app with a routing table, gateways that verify signatures, fault injection
and the `/-/sim/*` control endpoints.

A vendor API is a `Service` (its routes, its envelope error, its workload controls) registered behind a `Gateway`
(its signature scheme and gateway error shape). The request path through `App.dispatch` is the one a cloud gateway
takes: route lookup, latency, outage, authentication, throttling, server errors, then the service, whose answer the
malformed-body fault may truncate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from exporter.auth.aliyun import ALGORITHM, canonical_query, signature, string_to_sign
from exporter.simulator.faults import Faults, FaultSettings

CONTROL_PREFIX = "/-/sim/"
JSON_TYPE = "application/json;charset=utf-8"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
NONCE_WINDOW_SECONDS = 15 * 60


@dataclass(slots=True)
class Response:
    """An HTTP response: status, body and extra headers (content type and length are added when sent)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once: dumps() makes one a call


def compact_json(payload: Any) -> str:
    """Returns `payload` as JSON text without spaces, non-ASCII characters as they are."""
    return _COMPACT.encode(payload)


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Returns a compact JSON response."""
    return Response(status, compact_json(payload).encode(), list(headers))


@dataclass(slots=True)
class Request:
    """One parsed request; the route fields are filled in once the route is known."""

    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-encoded: the canonical URI
    query_pairs: list[tuple[str, str]]  # decoded, in arrival order
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes
    request_id: str
    now: float  # the simulator's clock when the request arrived
    api: str = ""
    path_params: dict[str, str] = field(default_factory=dict)
    faults: FaultSettings = field(default_factory=FaultSettings)

    @property
    def query(self) -> dict[str, str]:
        """Returns the query as a dict (the last of repeated keys wins)."""
        return dict(self.query_pairs)

    def json(self) -> Any:
        """Returns the decoded JSON body (None when empty); raises ValueError when it is not JSON."""
        return json.loads(self.body) if self.body else None


class GatewayError(Exception):
    """A refusal in the gateway's own error shape (signature, routing, a missing required parameter)."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """One operation: `api` is its name (Alibaba's `x-acs-action`), the key for faults and stats."""

    api: str
    method: str
    path: str  # a template: "/api/v1/jobs/{instanceId}/info"
    handler: Handler
    version: str | None = None  # Alibaba's `x-acs-version`

    def pattern(self) -> re.Pattern[str]:
        """Returns the path template as a regex with one named group per `{name}` segment."""
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        return re.compile(f"^{regex}$")


class Gateway(Protocol):
    """A vendor's API gateway: who may call, and how refusals look."""

    def authenticate(self, request: Request, route: Route) -> None:
        """Returns when the request is authentic and meant for `route`; raises GatewayError otherwise."""

    def error(self, request: Request, error: GatewayError) -> Response:
        """Returns `error` in the gateway's shape."""

    def not_found(self, request: Request) -> GatewayError:
        """Returns the refusal for a path no route serves."""

    def throttled(self, request: Request, status: int, retry_after_ms: int) -> GatewayError:
        """Returns the throttling refusal (HTTP 400 as documented, or 429)."""

    def forbidden(self, request: Request) -> GatewayError:
        """Returns the refusal of an authentic request whose key lacks the API's permission."""

    def server_error(self, request: Request, status: int) -> GatewayError:
        """Returns a 500 or 503 failure."""


class Service(Protocol):
    """A simulated vendor API: its routes over its workload."""

    name: str

    def routes(self) -> list[Route]:
        """Returns the operations this service serves."""

    def envelope_error(self, request: Request) -> Response:
        """Returns an HTTP 200 response whose service envelope reports a server error."""

    def control(self, body: Mapping[str, Any]) -> None:
        """Applies `POST /-/sim/workload`; raises ValueError on a bad request."""

    def summary(self) -> dict[str, Any]:
        """Returns the workload's state for `GET /-/sim/workload`."""


@dataclass(frozen=True)
class _Binding:
    route: Route
    pattern: re.Pattern[str]
    gateway: Gateway
    service: Service


class NonceStore:
    """Signature nonces seen in the last 15 minutes, at most `capacity` of them (the oldest are forgotten first)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def add(self, nonce: str, now: float) -> bool:
        """Records `nonce`; returns False when it was already used within the window."""
        with self._lock:
            while self._order and (
                self._order[0][0] < now - NONCE_WINDOW_SECONDS or len(self._order) >= self._capacity
            ):
                self._seen.discard(self._order.popleft()[1])
            if nonce in self._seen:
                return False
            self._seen.add(nonce)
            self._order.append((now, nonce))
            return True


_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Credential=(?P<key>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


class AcsGateway:
    """Alibaba Cloud's gateway for ROA APIs: ACS3-HMAC-SHA256 verification and the `{"RequestId", "Code", ...}` shape.

    `credentials` maps access key ids to secrets; `security_tokens` maps the ids of STS keys to their tokens. Both
    are read on every request, so a test may add or rotate keys while the server runs.
    """

    def __init__(
        self,
        product: str,
        credentials: Mapping[str, str],
        security_tokens: Mapping[str, str],
        nonces: NonceStore,
    ) -> None:
        self.product = product
        self._credentials = credentials
        self._tokens = security_tokens
        self._nonces = nonces

    def authenticate(self, request: Request, route: Route) -> None:
        """Checks, in the gateway's order: operation headers, the Authorization header, key, signed headers,
        timestamp, payload hash, signature, security token and nonce."""
        self._check_operation(request, route)
        key_id, signed, claimed = self._parse_authorization(request)
        secret = self._credentials.get(key_id)
        if secret is None:
            raise GatewayError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        self._check_signed_headers(request, signed)
        self._check_timestamp(request)
        payload_hash = self._check_payload(request)
        to_sign = string_to_sign(_canonical_request(request, signed, payload_hash))
        if request.faults.bad_signature or not hmac.compare_digest(signature(secret, to_sign), claimed):
            raise GatewayError(
                400,
                "SignatureDoesNotMatch",
                f"Specified signature does not match our calculation. server string to sign is:{to_sign}",
            )
        self._check_security_token(request, key_id)
        if not self._nonces.add(request.headers["x-acs-signature-nonce"], request.now):
            raise GatewayError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

    def error(self, request: Request, error: GatewayError) -> Response:
        """Returns the gateway error body, with a troubleshooting link like the real one's."""
        recommend = (
            f"https://api.aliyun.com/troubleshoot?q={error.code}&product={self.product}&requestId={request.request_id}"
        )
        payload = {
            "RequestId": request.request_id,
            "HostId": request.headers.get("host", ""),
            "Code": error.code,
            "Message": error.message,
            "Recommend": recommend,
        }
        return json_response(error.status, payload, error.headers)

    def not_found(self, request: Request) -> GatewayError:
        """Returns the refusal for an unknown path or method."""
        return GatewayError(
            404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
        )

    def forbidden(self, request: Request) -> GatewayError:
        """Returns RAM's refusal: HTTP 403 `Forbidden.RAM`."""
        return GatewayError(403, "Forbidden.RAM", "User not authorized to operate on the specified resource, or this "
                            "API doesn't support RAM.")

    def throttled(self, request: Request, status: int, retry_after_ms: int) -> GatewayError:
        """Returns `Throttling.User` (HTTP 400, as documented) or `Throttling` (HTTP 429), with `x-acs-retry-after`."""
        headers = [("x-acs-retry-after", str(retry_after_ms))]
        if status == 429:
            return GatewayError(429, "Throttling", "Request was denied due to request throttling.", headers)
        return GatewayError(400, "Throttling.User", "Request was denied due to user flow control.", headers)

    def server_error(self, request: Request, status: int) -> GatewayError:
        """Returns `InternalError` (500) or `ServiceUnavailable` (503)."""
        if status == 500:
            return GatewayError(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error, exception or failure.",
            )
        return GatewayError(
            503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
        )

    def _check_operation(self, request: Request, route: Route) -> None:
        if request.headers.get("x-acs-action") != route.api:
            raise self.not_found(request)
        if request.headers.get("x-acs-version") != route.version:
            raise GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")

    def _parse_authorization(self, request: Request) -> tuple[str, list[str], str]:
        """Returns (access key id, signed header names, signature)."""
        match = _AUTHORIZATION.match(request.headers.get("authorization", "").strip())
        if not match:
            raise _incomplete("the Authorization header is missing or not an ACS3-HMAC-SHA256 signature")
        return match["key"], match["signed"].split(";"), match["sig"]

    def _check_signed_headers(self, request: Request, signed: list[str]) -> None:
        for name in ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
            if name not in request.headers:
                raise _incomplete(f"header {name} is required")
        required = [n for n in request.headers if n.startswith("x-acs-") or n in ("host", "content-type")]
        missing = sorted(set(required) - set(signed))
        if missing:
            raise _incomplete(f"headers {', '.join(missing)} must be signed")

    def _check_timestamp(self, request: Request) -> None:
        try:
            stamp = datetime.strptime(request.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise GatewayError(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        if abs(stamp.timestamp() - request.now) > MAX_CLOCK_SKEW_SECONDS:
            raise GatewayError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _check_payload(self, request: Request) -> str:
        """Returns the claimed payload hash once it matches the body."""
        claimed = request.headers["x-acs-content-sha256"]
        if claimed != hashlib.sha256(request.body).hexdigest():
            raise GatewayError(
                400, "SignatureDoesNotMatch", "The x-acs-content-sha256 header does not match the request body."
            )
        return claimed

    def _check_security_token(self, request: Request, key_id: str) -> None:
        expected = self._tokens.get(key_id)
        if expected is not None and not hmac.compare_digest(request.headers.get("x-acs-security-token", ""), expected):
            raise GatewayError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            )


def _incomplete(reason: str) -> GatewayError:
    return GatewayError(
        400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: {reason}."
    )


def _canonical_request(request: Request, signed: list[str], payload_hash: str) -> str:
    """Returns the canonical request over exactly the headers the client declared signed.

    The client's declared list is what it signed, so it is used as is (not the signer's own choice of headers).
    """
    block = "".join(f"{name}:{request.headers.get(name, '').strip()}\n" for name in signed)
    query = canonical_query(request.query_pairs)
    return f"{request.method}\n{request.raw_path}\n{query}\n{block}\n{';'.join(signed)}\n{payload_hash}"


class Stats:
    """Request counts per API and HTTP status (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[int]] = {}

    def count(self, api: str, status: int) -> None:
        """Counts one response."""
        with self._lock:
            self._counts.setdefault(api, Counter())[status] += 1

    def reset(self) -> None:
        """Forgets every count."""
        with self._lock:
            self._counts.clear()

    def to_dict(self) -> dict[str, Any]:
        """Returns `{api: {"requests": n, "status": {"200": n, ...}}}`."""
        with self._lock:
            return {
                api: {"requests": sum(c.values()), "status": {str(s): n for s, n in sorted(c.items())}}
                for api, c in self._counts.items()
            }


def truncate(response: Response) -> Response:
    """Returns the response with its body cut in half: JSON that no longer parses, still with its status."""
    return Response(response.status, response.body[: len(response.body) // 2], response.headers)


class App:
    """The ASGI application: vendor services behind their gateways, faults, stats and the control endpoints."""

    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time, faults: Faults | None = None):
        self.clock = clock
        self.faults = faults if faults is not None else Faults(seed)
        self.stats = Stats()
        self.nonces = NonceStore()
        self._ids = random.Random(f"request-ids/{seed}")  # a stream of its own, not a copy of another seeded one
        self._ids_lock = threading.Lock()
        self._bindings: list[_Binding] = []
        self._services: dict[str, Service] = {}
        self._controls: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "health"): lambda _: json_response(200, {"status": "ok"}),
            ("GET", "faults"): lambda _: json_response(200, self.faults.to_dict()),
            ("POST", "faults"): self._post_faults,
            ("GET", "stats"): lambda _: json_response(200, self.stats.to_dict()),
            ("DELETE", "stats"): self._delete_stats,
            ("GET", "workload"): lambda _: json_response(200, self._workloads()),
            ("POST", "workload"): self._post_workload,
        }

    def add_service(self, service: Service, gateway: Gateway) -> None:
        """Serves every route of `service` behind `gateway`."""
        self._services[service.name] = service
        for route in service.routes():
            self._bindings.append(_Binding(route, route.pattern(), gateway, service))

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            request = await self._read(scope, receive)
            response = await self.dispatch(request)
            await _send(send, response)

    async def dispatch(self, request: Request) -> Response:
        """Returns the response to one request, counting it in the stats."""
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        binding = self._match(request)
        if binding is None:
            gateway = self._bindings[0].gateway
            self.stats.count("unknown", 404)
            return gateway.error(request, gateway.not_found(request))
        response = await self._through_gateway(binding, request)
        self.stats.count(binding.route.api, response.status)
        return response

    def _match(self, request: Request) -> _Binding | None:
        for binding in self._bindings:
            if binding.route.method == request.method:
                match = binding.pattern.match(request.path)
                if match:
                    request.api = binding.route.api
                    request.path_params = match.groupdict()
                    request.faults = self.faults.effective(binding.route.api)
                    return binding
        return None

    async def _through_gateway(self, binding: _Binding, request: Request) -> Response:
        # The answer is made at once and sent when the latency is up: like a real service's, the simulator's own work
        # is part of the latency a client sees, not added to it (on the client's machine it would otherwise be
        # counted against the client, one request after another).
        loop = asyncio.get_running_loop()
        due = loop.time() + request.faults.latency_ms / 1000
        response = self._answer(binding, request)
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        return response

    def _answer(self, binding: _Binding, request: Request) -> Response:
        faults, gateway = request.faults, binding.gateway
        try:
            if faults.down:
                raise gateway.server_error(request, 503)
            gateway.authenticate(request, binding.route)
            if faults.forbidden:
                raise gateway.forbidden(request)
            if self.faults.roll(faults.throttle_rate):
                raise gateway.throttled(request, faults.throttle_status, faults.retry_after_ms)
            if self.faults.roll(faults.error_rate):
                raise gateway.server_error(request, self.faults.choice((500, 503)))
            if self.faults.roll(faults.envelope_error_rate):
                return binding.service.envelope_error(request)
            response = binding.route.handler(request)
        except GatewayError as error:
            return gateway.error(request, error)
        return truncate(response) if self.faults.roll(faults.malformed_rate) else response

    async def _read(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]]) -> Request:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        raw_path = scope.get("raw_path") or scope["path"].encode()
        return Request(
            method=scope["method"],
            path=scope["path"],
            raw_path=raw_path.decode("latin-1"),
            query_pairs=parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True),
            headers=headers,
            body=b"".join(chunks),
            request_id=self._next_request_id(),
            now=self.clock(),
        )

    def _next_request_id(self) -> str:
        """Returns a request id in the gateway's form (upper-case UUID), drawn from the seeded source."""
        with self._ids_lock:
            return str(uuid.UUID(int=self._ids.getrandbits(128), version=4)).upper()

    # ---- control endpoints ------------------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        handler = self._controls.get((request.method, request.path[len(CONTROL_PREFIX) :].strip("/")))
        if handler is None:
            return json_response(404, {"error": f"no control endpoint {request.method} {request.path}"})
        try:
            return handler(request)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})

    def _post_faults(self, request: Request) -> Response:
        self.faults.apply(_json_object(request))
        return json_response(200, self.faults.to_dict())

    def _delete_stats(self, _: Request) -> Response:
        self.stats.reset()
        return json_response(200, {})

    def _post_workload(self, request: Request) -> Response:
        body = _json_object(request)
        name = body.pop("service", next(iter(self._services), None))
        if name not in self._services:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(self._services)}")
        self._services[name].control(body)
        return json_response(200, self._workloads())

    def _workloads(self) -> dict[str, Any]:
        return {name: service.summary() for name, service in self._services.items()}


def _json_object(request: Request) -> dict[str, Any]:
    """Returns the request body as a JSON object; raises ValueError otherwise."""
    body = request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


async def _lifespan(receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
    """Acknowledges the server's startup and shutdown; the simulator needs no setup."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Callable, response: Response) -> None:
    headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(response.body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
