"""Huawei Cloud DataArts Factory's job list (`GET /v1/{project_id}/jobs`) behind Huawei's API gateway (SDK-HMAC-SHA256).

The gateway verifies signatures with `exporter.auth.huawei.verify` and answers refusals in Huawei's shape,
`{"error_code", "error_msg", "request_id"}` with an `X-Request-Id` header: `APIG.0301` (401) for a bad signature, an
unknown AK, an expired `X-Sdk-Date` or a wrong security token, `APIG.0308` (429) for throttling, `APIG.0101` (404)
for an unknown path. The service pages with `offset` as the page number from 0 and `limit` 1 to 100 (default 10),
selects the workspace by the `workspace` header (the default workspace without it) and filters by `jobType`
(default BATCH) and `jobName` (a substring). Its own refusals are `DLF.0100` (400).

The jobs are a pure function of the seed and the clock. Batch jobs run on a fixed period; each run's outcome is drawn
from the seed, so the last instance succeeds, fails, ends in `running-exception` or `manual-stop`, is `waiting` or
`running` for a while, or, for hanging jobs, stays `running` for ever. Real-time jobs change status in 30-minute
windows (mostly NORMAL, some EXCEPTION, STOPPED, STARTING, STOPPING).
"""

from __future__ import annotations

import functools
import hmac
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from exporter.auth import huawei
from exporter.simulator.app import GatewayError, Request, Response, Route, json_response
from exporter.simulator.faults import Faults

PROJECT_ID = "0123456789abcdef0123456789abcdef"
# The default workspace (requested without the header) and two more, as ids look.
WORKSPACES = ("", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", "b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6")
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
MAX_CLOCK_SKEW_SECONDS = 15 * 60
PERIODS = ((900, 0.2), (3600, 0.5), (86400, 0.3))  # batch schedules: every 15 min, hourly, daily
BATCH_STATUSES = (("SCHEDULING", 0.84), ("STOPPED", 0.1), ("PAUSED", 0.06))
OUTCOMES = (("success", 0.88), ("fail", 0.07), ("running-exception", 0.02), ("manual-stop", 0.03))
REALTIME_STATUSES = (("NORMAL", 0.85), ("EXCEPTION", 0.06), ("STOPPED", 0.06), ("STARTING", 0.015),
                     ("STOPPING", 0.015))
REALTIME_WINDOW = 1800
HANG_FRACTION = 0.04
ODD_FRACTION = 0.05  # records whose status and jobType carry a trailing "\n", like the vendor samples' odd strings
USERS = ("etl_admin", "zhang_wei", "li_na", "data_ops", "svc_scheduler")
RUNS_KEPT = 4096  # drawn runs remembered: the last two of each batch job, many times over


def _draw(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


@dataclass(frozen=True)
class BatchJob:
    """A scheduled batch job: runs start every `period` seconds from `phase`, between `created` and `stopped`."""

    name: str
    seed: str
    created: int
    status: str
    stopped: int | None  # when a STOPPED or PAUSED job left scheduling
    period: int
    phase: int
    median_run: float
    hangs_from: int | None  # the first run index that never ends
    user: str
    odd: bool

    def run_start(self, k: int) -> int:
        return self.phase + k * self.period

    def last_run(self, now: int) -> int | None:
        """Returns the index of the last run started at or before `now` (None when it never ran)."""
        end = min(now, self.stopped) if self.stopped is not None else now
        k = math.floor((end - self.phase) / self.period)
        return k if self.run_start(k) >= self.created else None

    def first_run(self) -> int:
        """Returns the index of the first run after the job was created."""
        return math.ceil((self.created - self.phase) / self.period)

    def run(self, k: int) -> tuple[int, int, str]:
        """Returns (seconds waiting, seconds running, outcome) of run `k`, drawn from the seed."""
        return _draw_run(self.seed, k, self.period, self.median_run)

    def last_instance(self, now: int) -> tuple[str, int | None] | None:
        """Returns (lastInstanceStatus, lastInstanceEndTime in seconds or None) at `now`, None when it never ran."""
        k = self.last_run(now)
        if k is None:
            return None
        if self.hangs_from is not None and k >= self.hangs_from:
            k = self.hangs_from  # the hung run never ends, and no later run starts
            previous_end = self._end(k - 1) if self.run_start(k - 1) >= self.created else None
            return ("waiting" if now < self.run_start(k) + self.run(k)[0] else "running"), previous_end
        previous_end = self._end(k - 1) if self.run_start(k - 1) >= self.created else None
        wait, length, outcome = self.run(k)
        started = self.run_start(k)
        if now < started + wait:
            return "waiting", previous_end
        if now < started + wait + length:
            return "running", previous_end
        return outcome, started + wait + length

    def _end(self, k: int) -> int:
        wait, length, _ = self.run(k)
        return self.run_start(k) + wait + length


# Remembered because every listing asks again about the same runs (the last two of each job), and seeding a
# generator for each was most of a page's CPU.
@functools.lru_cache(maxsize=RUNS_KEPT)
def _draw_run(seed: str, k: int, period: int, median_run: float) -> tuple[int, int, str]:
    """Returns (seconds waiting, seconds running, outcome) of run `k` of the batch job seeded with `seed`."""
    rng = random.Random(f"{seed}/{k}")
    wait = int(rng.expovariate(1 / 20))
    length = int(min(period * 0.8, rng.lognormvariate(math.log(median_run), 0.8)))
    return wait, max(1, length), _draw(rng, OUTCOMES)


@dataclass(frozen=True)
class RealtimeJob:
    """A streaming job whose status is drawn per 30-minute window."""

    name: str
    seed: str
    created: int
    user: str
    odd: bool

    def status(self, now: int) -> tuple[str, int]:
        """Returns (status, when it started running) at `now`."""
        window = now // REALTIME_WINDOW
        status = _draw(random.Random(f"{self.seed}/{window}"), REALTIME_STATUSES)
        return status, max(self.created, window * REALTIME_WINDOW - random.Random(self.seed).randrange(86400))


class DataArtsFactoryService:
    """The job list of one project's workspaces; register with `App.add_service(service, HuaweiGateway(...))`."""

    name = "dataarts_factory"

    def __init__(
        self, faults: Faults, *, seed: int = 0, clock: Callable[[], float], project_id: str = PROJECT_ID,
        workspaces: tuple[str, ...] = WORKSPACES, batch_jobs: int = 60, real_time_jobs: int = 12,
    ) -> None:
        self.faults = faults
        self.project_id = project_id
        self._seed = seed
        self._clock = clock
        self._origin = int(clock())
        self._lock = threading.Lock()
        self._jobs: dict[str, list[BatchJob | RealtimeJob]] = {}
        self._serial = 0
        for ws in workspaces:
            self._jobs[ws] = []
            self._add(ws, batch_jobs, real_time_jobs, self._origin)

    def routes(self) -> list[Route]:
        """Returns the job list with its documented method and path."""
        return [Route("ListJobs", "GET", "/v1/{project_id}/jobs", self.list_jobs)]

    # ---- the operation ----------------------------------------------------------------------------------------

    def list_jobs(self, request: Request) -> Response:
        """Returns one page of one workspace's jobs of one type, newest first."""
        if request.path_params["project_id"] != self.project_id:
            return _service_error(request, 400, f"The project {request.path_params['project_id']} does not exist.")
        query = request.query
        job_type = query.get("jobType", "BATCH")
        if job_type not in ("BATCH", "REAL_TIME"):
            return _service_error(request, 400, "jobType must be BATCH or REAL_TIME.")
        try:
            offset, limit = int(query.get("offset", "0")), int(query.get("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            return _service_error(request, 400, "offset and limit must be integers.")
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            return _service_error(request, 400, f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}.")
        workspace = request.headers.get("workspace", "")
        if workspace not in self._jobs:
            return _service_error(request, 400, f"The workspace {workspace} does not exist.")
        if request.faults.page_drift and offset > 0:
            with self._lock:
                self._add(workspace, *((request.faults.page_drift, 0) if job_type == "BATCH"
                                       else (0, request.faults.page_drift)), int(request.now))
        now = int(request.now)
        kind = BatchJob if job_type == "BATCH" else RealtimeJob
        wanted = query.get("jobName", "")
        with self._lock:
            jobs = [j for j in self._jobs[workspace] if isinstance(j, kind) and j.created <= now and wanted in j.name]
        jobs.sort(key=lambda j: (-j.created, j.name))
        page = [self._record(j, now) for j in jobs[offset * limit:(offset + 1) * limit]]
        rate = request.faults.bad_field_rate
        page = [self.faults.corrupt(r, "name") if self.faults.roll(rate) else r for r in page]
        return json_response(200, {"total": len(jobs), "jobs": page}, [("X-Request-Id", _rid(request))])

    def envelope_error(self, request: Request) -> Response:
        """Returns the service's own failure (Huawei has no success envelope to break): HTTP 500, `DLF.0001`."""
        return _service_error(request, 500, "Internal server error.", code="DLF.0001")

    # ---- records ----------------------------------------------------------------------------------------------

    def _record(self, job: BatchJob | RealtimeJob, now: int) -> dict[str, Any]:
        odd = "\n" if job.odd else ""
        record: dict[str, Any] = {"name": job.name, "createUser": job.user, "createTime": job.created * 1000}
        if isinstance(job, BatchJob):
            record |= {"jobType": "BATCH" + odd, "status": job.status + odd, "startTime": job.created * 1000 + 60_000}
            if job.stopped is not None and job.stopped <= now:
                record["endTime"] = job.stopped * 1000
            last = job.last_instance(now)
            if last is not None:
                record["lastInstanceStatus"] = last[0]
                if last[1] is not None:
                    record["lastInstanceEndTime"] = last[1] * 1000
            return record
        status, started = job.status(now)
        record |= {"jobType": "REAL_TIME" + odd, "status": status + odd, "startTime": started * 1000}
        if status == "STOPPED":
            record["endTime"] = (now // REALTIME_WINDOW) * REALTIME_WINDOW * 1000
        return record

    # ---- the workload -----------------------------------------------------------------------------------------

    def _add(self, workspace: str, batch: int, realtime: int, at: int) -> None:
        """Adds jobs to a workspace: the first ones were created over the 90 days before the start, later ones at
        `at` (so they come first in the newest-first list and push the others to later pages)."""
        for realtime_job in [False] * batch + [True] * realtime:
            self._serial += 1
            n = self._serial
            seed = f"{self._seed}/dgc/{n}"
            rng = random.Random(seed)
            created = at - rng.randrange(90 * 86400) if at == self._origin else at
            user, odd = rng.choice(USERS), rng.random() < ODD_FRACTION
            if realtime_job:
                self._jobs[workspace].append(RealtimeJob(f"rt_stream_{n:04d}", seed, created, user, odd))
                continue
            period = _draw(rng, PERIODS)
            status = _draw(rng, BATCH_STATUSES)
            stopped = None if status == "SCHEDULING" else at - rng.randrange(1, 14 * 86400)
            hangs = status == "SCHEDULING" and rng.random() < HANG_FRACTION
            job = BatchJob(f"batch_job_{n:04d}", seed, created, status, stopped, period, rng.randrange(period),
                           min(period * 0.2, rng.choice((30, 120, 600, 1800))), None, user, odd)
            if hangs:
                last = job.last_run(at)
                job = replace(job, hangs_from=job.first_run() if last is None else last)
            self._jobs[workspace].append(job)

    def control(self, body: Mapping[str, Any]) -> None:
        """Applies `{"hang": {"workspace": id, "count": n}}` (n more scheduling batch jobs of the workspace, '' for
        the default one, stay `running` from their current run on) and `{"add": {"workspace": id, "batch": n,
        "real_time": m}}` (jobs created now). Raises ValueError on anything else."""
        unknown = set(body) - {"hang", "add"}
        if unknown:
            raise ValueError(f"unknown workload settings: {', '.join(sorted(unknown))}")
        now = int(self._clock())
        if "add" in body:
            add = _settings(body["add"], {"workspace", "batch", "real_time"}, "add")
            workspace = self._workspace(add)
            with self._lock:
                self._add(workspace, _count(add, "batch", 0), _count(add, "real_time", 0), now)
        if "hang" in body:
            hang = _settings(body["hang"], {"workspace", "count"}, "hang")
            workspace, count = self._workspace(hang), _count(hang, "count", 1)
            with self._lock:
                jobs = self._jobs[workspace]
                for i, job in enumerate(jobs):
                    if count and isinstance(job, BatchJob) and job.status == "SCHEDULING" and job.hangs_from is None:
                        k = job.last_run(now)
                        jobs[i] = replace(job, hangs_from=job.first_run() if k is None else k)
                        count -= 1

    def _workspace(self, settings: Mapping[str, Any]) -> str:
        workspace = settings.get("workspace", "")
        if workspace not in self._jobs:
            raise ValueError(f"unknown workspace {workspace!r}")
        return workspace

    def summary(self) -> dict[str, Any]:
        """Returns, per workspace ('default' for ''), the jobs by type and status and the batch last instances."""
        now = int(self._clock())
        out: dict[str, Any] = {"project_id": self.project_id, "workspaces": {}}
        with self._lock:
            for ws, jobs in self._jobs.items():
                statuses: Counter[str] = Counter()
                last: Counter[str] = Counter()
                for job in jobs:
                    if job.created > now:
                        continue
                    if isinstance(job, BatchJob):
                        statuses[f"BATCH/{job.status}"] += 1
                        li = job.last_instance(now)
                        last[li[0] if li else "none"] += 1
                    else:
                        statuses[f"REAL_TIME/{job.status(now)[0]}"] += 1
                out["workspaces"][ws or "default"] = {"jobs": dict(statuses), "last_instance": dict(last)}
        return out


def _settings(value: Any, allowed: set[str], name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or set(value) - allowed:
        raise ValueError(f"{name} takes an object with {', '.join(sorted(allowed))}")
    return value


def _count(settings: Mapping[str, Any], key: str, default: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
        raise ValueError(f"{key} must be an integer from 0 to 100000")
    return value


def _rid(request: Request) -> str:
    return request.request_id.replace("-", "").lower()


def _service_error(request: Request, status: int, message: str, code: str = "DLF.0100") -> Response:
    return json_response(status, {"error_code": code, "error_msg": message}, [("X-Request-Id", _rid(request))])


class HuaweiGateway:
    """Huawei Cloud's API gateway (APIG): SDK-HMAC-SHA256 verification and the `{"error_code", "error_msg"}` shape.

    `credentials` maps AKs to SKs; `security_tokens` maps the AKs of temporary credentials to the token their
    requests must carry. Both are read on every request.
    """

    def __init__(self, credentials: Mapping[str, str], security_tokens: Mapping[str, str]) -> None:
        self._credentials = credentials
        self._tokens = security_tokens

    def authenticate(self, request: Request, route: Route) -> None:
        """Checks the Authorization header, the AK, the date, the signature, the token and `X-Project-Id`."""
        parsed = huawei.parse_authorization(request.headers.get("authorization", ""))
        if parsed is None:
            raise _denied("the Authorization header is missing or not an SDK-HMAC-SHA256 signature")
        secret = self._credentials.get(parsed[0])
        if secret is None:
            raise _denied(f"the access key {parsed[0]} does not exist")
        try:
            stamp = huawei.parse_sdk_date(request.headers.get("x-sdk-date", ""))
        except ValueError:
            raise _denied("X-Sdk-Date is missing or malformed") from None
        if abs(stamp.timestamp() - request.now) > MAX_CLOCK_SKEW_SECONDS:
            raise _denied("the request has expired (X-Sdk-Date is more than 15 minutes off)")
        ok = huawei.verify(request.method, request.raw_path, request.query_pairs, request.headers.items(),
                           request.body, secret)
        if request.faults.bad_signature or not ok:
            raise _denied("verify aksk signature fail")
        expected = self._tokens.get(parsed[0])
        if expected is not None and not hmac.compare_digest(request.headers.get("x-security-token", ""), expected):
            raise _denied("the security token does not match the access key")
        project = request.headers.get("x-project-id")
        if project is not None and project != request.path_params.get("project_id", project):
            raise GatewayError(400, "APIG.0301", "X-Project-Id does not match the project in the path")

    def error(self, request: Request, error: GatewayError) -> Response:
        """Returns the gateway error body with its request id."""
        payload = {"error_code": error.code, "error_msg": error.message, "request_id": _rid(request)}
        return json_response(error.status, payload, [*error.headers, ("X-Request-Id", _rid(request))])

    def not_found(self, request: Request) -> GatewayError:
        """Returns the refusal for an unknown path or method."""
        return GatewayError(404, "APIG.0101", "The API does not exist or has not been published in the environment.")

    def forbidden(self, request: Request) -> GatewayError:
        """Returns the gateway's refusal of an IAM user without the API's permission: HTTP 403 `APIG.0306`."""
        return GatewayError(403, "APIG.0306", "API access denied.")

    def throttled(self, request: Request, status: int, retry_after_ms: int) -> GatewayError:
        """Returns `APIG.0308` (always HTTP 429 here: Huawei documents no other status) with a `Retry-After` in
        whole seconds, rounded up."""
        return GatewayError(429, "APIG.0308", "The throttling threshold has been reached: policy user over ratelimit",
                            [("Retry-After", str(math.ceil(retry_after_ms / 1000)))])

    def server_error(self, request: Request, status: int) -> GatewayError:
        """Returns a 500 or 503 failure."""
        if status == 500:
            return GatewayError(500, "APIG.0203", "Backend timeout.")
        return GatewayError(503, "APIG.0201", "Backend unavailable.")


def _denied(reason: str) -> GatewayError:
    return GatewayError(401, "APIG.0301", f"Incorrect IAM authentication information: {reason}")
