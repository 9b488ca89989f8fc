"""Alibaba Cloud STS `AssumeRoleWithOIDC` (2015-04-01), the exchange behind RRSA on ACK.

RPC style: `POST /` (or `GET /`) with `Action`, `Version` and `Format` in the query and the other parameters in the
query or a form body, without a signature (the OIDC token is the proof). The service accepts the role and OIDC
provider ARNs and the tokens it is given (`sts.tokens`, empty until a test adds one), and issues temporary
credentials that the simulator's ACS3 gateways then accept with their `x-acs-security-token`, until they expire
(issued keys past their `Expiration` are removed on the next exchange) or `expire()` revokes them.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from exporter.simulator.app import AcsGateway, GatewayError, NonceStore, Request, Response, Route, json_response

ACTION = "AssumeRoleWithOIDC"
VERSION = "2015-04-01"
ROLE_ARN = "acs:ram::1234567890123456:role/cloud-job-exporter"
PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee"
MIN_DURATION, MAX_DURATION = 900, 3600  # the role's maximum session duration: 1 h unless configured otherwise


def parameters(request: Request) -> dict[str, str]:
    """Returns the RPC parameters: the query, then a form body's fields (which win)."""
    params = dict(request.query_pairs)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


class StsGateway(AcsGateway):
    """STS's front: no signature for AssumeRoleWithOIDC, only the RPC `Action` and `Version`; errors in the
    gateway's `{"RequestId", "HostId", "Code", "Message", "Recommend"}` shape."""

    def authenticate(self, request: Request, route: Route) -> None:
        params = parameters(request)
        if params.get("Action") != route.api:
            raise GatewayError(400, "InvalidAction.NotFound", "Specified api is not found, please check your url "
                                                              "and method.")
        if params.get("Version") != route.version:
            raise GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if params.get("Format", "JSON").upper() != "JSON":
            raise GatewayError(400, "InvalidParameter.Format", "Specified parameter Format is not valid.")


class StsService:
    """AssumeRoleWithOIDC over the simulator's key tables: issued keys go into `credentials` and `security_tokens`."""

    name = "sts"

    def __init__(
        self, credentials: MutableMapping[str, str], security_tokens: MutableMapping[str, str], *, seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.security_tokens = security_tokens
        self.role_arn = ROLE_ARN
        self.provider_arn = PROVIDER_ARN
        self.tokens: set[str] = set()
        self.max_duration = MAX_DURATION
        self.issued: dict[str, float] = {}  # key id -> expiration (UNIX seconds)
        # The parameters of the latest exchanges, tokens included (for tests).
        self.requests: deque[dict[str, str]] = deque(maxlen=100)
        self._clock = clock
        self._rng = random.Random(f"sts/{seed}")
        self._lock = threading.Lock()

    @classmethod
    def serve_on(cls, sim: Any, seed: int = 0) -> StsService:
        """Registers the service on a Simulator (sharing its key tables and clock) and returns it."""
        service = cls(sim.credentials, sim.security_tokens, seed=seed, clock=sim.clock)
        sim.add_service(service, StsGateway("Sts", sim.credentials, sim.security_tokens, NonceStore(1)))
        return service

    def routes(self) -> list[Route]:
        """Returns AssumeRoleWithOIDC on `/`, by POST (form body) and by GET (query), as the SDKs send it."""
        return [Route(ACTION, method, "/", self.assume_role_with_oidc, VERSION) for method in ("POST", "GET")]

    def assume_role_with_oidc(self, request: Request) -> Response:
        """Validates the parameters and the token; returns new temporary credentials."""
        params = parameters(request)
        self.requests.append(params)
        for name in ("RoleArn", "OIDCProviderArn", "OIDCToken"):
            if not params.get(name):
                raise GatewayError(400, f"MissingParameter.{name}", f"The input parameter {name} that is mandatory "
                                                                    "for processing this request is not supplied.")
        session = params.get("RoleSessionName", "")
        if not re.fullmatch(r"[\w.@-]{2,64}", session):
            raise GatewayError(400, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly "
                                                                        "formed.")
        try:
            duration = int(params.get("DurationSeconds") or 3600)
        except ValueError:
            duration = -1
        if not MIN_DURATION <= duration <= self.max_duration:
            raise GatewayError(400, "InvalidParameter.DurationSeconds", "The Min/Max value of DurationSeconds is "
                                                                        f"{MIN_DURATION}/{self.max_duration} seconds.")
        if params["OIDCProviderArn"] != self.provider_arn:
            raise GatewayError(404, "EntityNotExist.OIDCProvider", "The specified OIDC provider does not exist.")
        if params["RoleArn"] != self.role_arn:
            raise GatewayError(404, "EntityNotExist.Role", "The specified Role not exists.")
        if params["OIDCToken"] not in self.tokens:
            raise GatewayError(400, "AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid.")
        return json_response(200, self._issue(request, session, duration))

    def _issue(self, request: Request, session: str, duration: int) -> dict[str, Any]:
        now = request.now
        expires = int(now) + duration
        with self._lock:
            for key_id in [k for k, exp in self.issued.items() if exp <= now]:
                self._revoke(key_id)
            key_id = f"STS.NT{self._rng.getrandbits(96):024x}"
            secret = f"{self._rng.getrandbits(160):040x}"
            token = f"CAIS{self._rng.getrandbits(512):0128x}"
            self.credentials[key_id] = secret
            self.security_tokens[key_id] = token
            self.issued[key_id] = expires
        role_name = self.role_arn.rsplit("/", 1)[-1]
        return {
            "RequestId": request.request_id,
            "AssumedRoleUser": {"AssumedRoleId": f"3{int(now)}:{session}",
                                "Arn": f"acs:ram::1234567890123456:role/{role_name}/{session}"},
            "OIDCTokenInfo": {"Issuer": "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c0ffee",
                              "Subject": "system:serviceaccount:monitoring:cloud-job-exporter",
                              "ClientIds": "sts.aliyuncs.com"},
            "Credentials": {"AccessKeyId": key_id, "AccessKeySecret": secret, "SecurityToken": token,
                            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))},
        }

    def _revoke(self, key_id: str) -> None:
        self.credentials.pop(key_id, None)
        self.security_tokens.pop(key_id, None)
        self.issued.pop(key_id, None)

    def expire(self, key_id: str | None = None) -> None:
        """Revokes one issued key, or all of them: the gateways refuse them from now on."""
        with self._lock:
            for key in [key_id] if key_id else list(self.issued):
                self._revoke(key)

    def envelope_error(self, request: Request) -> Response:
        """RPC APIs have no envelope: the server error as the gateway reports it."""
        return json_response(500, {"RequestId": request.request_id, "Code": "InternalError",
                                   "Message": "The request processing has failed due to some unknown error."})

    def control(self, body: Mapping[str, Any]) -> None:
        """Applies `{"tokens": [...], "role_arn": ..., "provider_arn": ..., "max_duration": s, "expire": true}`."""
        unknown = set(body) - {"tokens", "role_arn", "provider_arn", "max_duration", "expire"}
        if unknown:
            raise ValueError(f"unknown sts settings: {', '.join(sorted(unknown))}")
        if "tokens" in body:
            if not isinstance(body["tokens"], list) or not all(isinstance(t, str) and t for t in body["tokens"]):
                raise ValueError("tokens: expected a list of non-empty strings")
            self.tokens = set(body["tokens"])
        for key in ("role_arn", "provider_arn"):
            if key in body:
                setattr(self, key, str(body[key]))
        if "max_duration" in body:
            self.max_duration = int(body["max_duration"])
        if body.get("expire"):
            self.expire()

    def summary(self) -> dict[str, Any]:
        """Returns the number of tokens accepted, exchanges made and keys still valid."""
        return {"tokens": len(self.tokens), "issued": len(self.issued)}
