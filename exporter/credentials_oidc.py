"""Alibaba Cloud RRSA (RAM Roles for Service Accounts): the pod's OIDC token exchanged for STS credentials.

On ACK the pod identity webhook sets `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
`ALIBABA_CLOUD_OIDC_TOKEN_FILE`; STS `AssumeRoleWithOIDC` turns the token into temporary credentials, which expire.
`OidcCredentialProvider` caches them and fetches new ones at 80% of their lifetime, reading the token file again each
time (Kubernetes rotates it). The request carries the parameters the vendor's `alibabacloud_credentials` sends (RPC
style, no signature); the role, provider and token go in a form body rather than the query, so the token never
appears in a URL (access logs, proxies, the HTTP library's request log).

The signer is synchronous, so the exchange is started by `refresh()`, which `AliyunAuth` awaits before it signs; the
provider's `__call__` then returns the cached credentials. Every failure is a CredentialError naming STS, never the
token or a secret, which the source reports as a poll failure with reason `auth`.
"""

from __future__ import annotations

import asyncio
import time
from calendar import timegm
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from exporter.credentials import CredentialError, Credentials, printable_ascii
from exporter.files import SECRET_MAX_BYTES, FileError, read_text

REFRESH_AT = 0.8  # of the credentials' lifetime
RETRY_AFTER_FAILURE = 5.0  # seconds during which a failed exchange is not retried (requests share its error)
STS_VERSION = "2015-04-01"


class OidcCredentialProvider:
    """STS credentials for one RAM role, obtained with the OIDC token in `token_file` and refreshed before expiry."""

    def __init__(
        self, role_arn: str, provider_arn: str, token_file: Path, sts_endpoint: str, *,
        session_name: str = "cloud-job-exporter", duration: float = 3600.0, timeout: float = 10.0,
        clock: Callable[[], float] = time.time, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.provider_arn = provider_arn
        self.token_file = token_file
        self.sts_endpoint = sts_endpoint.rstrip("/")
        self.session_name = session_name
        self.duration = int(duration)
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._creds: Credentials | None = None
        self._expires = 0.0
        self._refresh_at = 0.0
        self._failed: tuple[float, CredentialError] | None = None
        self._token = ""
        self._exchange_task: asyncio.Task[None] | None = None
        self.exchanges = 0  # successful AssumeRoleWithOIDC calls, for tests and debugging

    def __call__(self) -> Credentials:
        """Returns the cached STS credentials; raises CredentialError when there are none that are still valid."""
        if self._creds is None or self._clock() >= self._expires:
            raise CredentialError("no valid STS credentials: AssumeRoleWithOIDC has not succeeded yet")
        return self._creds

    def _valid(self, now: float) -> bool:
        return self._creds is not None and now < self._expires

    async def refresh(self) -> None:
        """Makes sure valid credentials are cached, exchanging the OIDC token when 80% of their lifetime has passed.

        While the cached credentials are still valid the exchange runs in the background and requests sign with
        them, so a slow or failing STS costs nothing until they expire. Without valid credentials a request waits for
        the exchange (shielded: a request's own timeout does not cancel it) and raises CredentialError if it failed;
        after a failure, STS is not asked again for a few seconds."""
        now = self._clock()
        if self._creds is not None and now < self._refresh_at:
            return
        if self._failed and now - self._failed[0] < RETRY_AFTER_FAILURE:
            if self._valid(now):
                return
            raise CredentialError(str(self._failed[1]))
        if self._exchange_task is None or self._exchange_task.done():
            self._exchange_task = asyncio.create_task(self._exchange())
        if self._valid(now):
            return
        await asyncio.shield(self._exchange_task)
        if not self._valid(self._clock()):
            raise CredentialError(str(self._failed[1]) if self._failed else "no valid STS credentials")

    async def _exchange(self) -> None:
        """Runs one AssumeRoleWithOIDC exchange; records its credentials or its failure, never raises."""
        now = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._assume_role()
            self._store(body, now)
            self._failed = None
        except CredentialError as exc:
            self._failed = (now, exc)
        except TimeoutError:
            self._failed = (now, CredentialError(
                f"STS AssumeRoleWithOIDC at {self.sts_endpoint} failed: no answer within {self._timeout:g}s"))

    def _store(self, body: dict[str, Any], now: float) -> None:
        creds = body.get("Credentials")
        if not isinstance(creds, dict) or not all(
            isinstance(creds.get(k), str) and creds.get(k) for k in ("AccessKeyId", "AccessKeySecret", "SecurityToken")
        ):
            raise CredentialError("STS AssumeRoleWithOIDC answered without AccessKeyId, AccessKeySecret and "
                                  "SecurityToken")
        if not all(printable_ascii(creds[k]) for k in ("AccessKeyId", "AccessKeySecret", "SecurityToken")):
            raise CredentialError("STS AssumeRoleWithOIDC answered with credentials holding control or non-ASCII "
                                  "characters")
        try:
            expires = float(timegm(time.strptime(str(creds.get("Expiration")), "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            raise CredentialError("STS AssumeRoleWithOIDC answered with an unreadable Expiration") from None
        lifetime = max(expires - now, 0.0)
        self._creds = Credentials(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"])
        self._expires = expires
        self._refresh_at = now + REFRESH_AT * lifetime
        self.exchanges += 1

    def _read_token(self) -> str:
        try:
            token = read_text(self.token_file, SECRET_MAX_BYTES).strip()
        except FileError as exc:
            raise CredentialError(f"cannot read the OIDC token file {self.token_file}: {exc.reason}") from None
        if not token:
            raise CredentialError(f"the OIDC token file {self.token_file} is empty")
        if not printable_ascii(token):
            raise CredentialError(f"the OIDC token file {self.token_file} holds a control or non-ASCII character; "
                                  "a token is printable ASCII")
        return token

    async def _assume_role(self) -> dict[str, Any]:
        """Returns the decoded answer of one AssumeRoleWithOIDC call; raises CredentialError naming STS."""
        token = self._token = self._read_token()
        query = {"Action": "AssumeRoleWithOIDC", "Format": "JSON", "Version": STS_VERSION,
                 "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        form = {"RoleArn": self.role_arn, "OIDCProviderArn": self.provider_arn, "OIDCToken": token,
                "RoleSessionName": self.session_name, "DurationSeconds": str(self.duration)}
        where = f"STS AssumeRoleWithOIDC at {self.sts_endpoint}"
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout,
                                         follow_redirects=False) as client:
                response = await client.post(self.sts_endpoint + "/", params=query, data=form,
                                             headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise CredentialError(f"{where} failed: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CredentialError(f"{where} failed: HTTP {response.status_code} with a body that is not a JSON object")
        if response.status_code != 200:
            code = str(body.get("Code") or "")
            message = str(body.get("Message") or "").replace(token, "[token]")[:200]
            raise CredentialError(f"{where} failed: HTTP {response.status_code} {code}: {message}".rstrip(": "))
        return body

    def check(self) -> None:
        """Raises CredentialError when the token file cannot be read now. STS is not called: a start-up check
        (`--config.check`) stays offline, and an STS outage then is a poll failure, not a refusal to start."""
        self._read_token()

    def describe(self) -> str:
        """Returns where the credentials come from: the role, the token's file and STS; never the token."""
        return f"RRSA: role {self.role_arn}, OIDC token file {self.token_file}, STS {self.sts_endpoint}"

    def secrets(self) -> list[str]:
        """Returns the current STS secret, security token and OIDC token, for the log and error redactor."""
        values = [self._token]
        if self._creds is not None:
            values += [self._creds.secret, self._creds.security_token or ""]
        return [v for v in values if v]
