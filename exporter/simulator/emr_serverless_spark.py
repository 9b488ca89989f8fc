"""EMR Serverless Spark (OpenAPI 2023-08-08): ListJobRuns, `GET /api/v1/workspaces/{workspaceId}/jobRuns`, behind
Alibaba Cloud's ACS3 gateway.

Parameters follow the vendor page: `maxResults` 1 to 100 (default 20) and an opaque `nextToken`; object and array
filters (`states`, `startTime`, `endTime`, `tags`) arrive as compact JSON strings, as the SDK sends them; `name` (a
substring), `creator`, `jobRunId`, `resourceQueueId`, `minDuration` (ms), `isWorkflow`, `jobRunDeploymentId` filter
too. The result is the bare object `{"jobRuns", "requestId", "nextToken", "maxResults", "totalCount"}`, newest
submission first (ties by id); `nextToken` is a cursor past the last run of the page ("" after the last page). The
service's own refusals are `{"requestId", "code", "message"}` with HTTP 400 (a bad parameter) or 404 (an unknown
workspace).

Runs are a pure function of the seed and the clock: each minute of each workspace draws its arrivals from its own
seeded stream, and each run carries its whole timeline (Submitted, Pending, Running, then Success, Failed with a
`stateChangeReason`, Cancelling then Cancelled, or rarely CancelFailed), so every listing agrees with every other.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.simulator.app import Request, Response, Route, json_response
from exporter.simulator.faults import Faults

VERSION = "2023-08-08"
PATH = "/api/v1/workspaces/{workspaceId}/jobRuns"
WORKSPACES = ("w-d2d82aa091551a2b", "w-5e3f9c0b7a6d4e21")
QUEUES = (("root_queue", 0.4), ("dev_queue", 0.25), ("etl_queue", 0.35))
CODE_TYPES = (("SQL", 0.55), ("JAR", 0.25), ("PYTHON", 0.2))
JOB_NAMES = ("etl_orders_daily", "dwd_user_profile", "ads_report_hourly", "ml_feature_train", "ods_log_ingest",
             "dim_product_sync", "adhoc_query", "risk_score_batch")
CREATORS = ("150978934701****", "276301543917****", "103849216650****", "184477302915****")
RELEASES = (("esr-3.0.0 (Spark 3.4.3, Scala 2.12, Native Runtime)", "esr-3.0.0 (Spark 3.4.3, Scala 2.12)"),
            ("esr-4.1.0 (Spark 3.5.2, Scala 2.12, Native Runtime)", "esr-4.1.0 (Spark 3.5.2, Scala 2.12)"))
FAILURES = (
    ("JOB_FAILED", "java.lang.OutOfMemoryError: Java heap space"),
    ("JOB_FAILED", "org.apache.spark.sql.AnalysisException: Table or view not found: ods.orders_di"),
    ("JOB_FAILED", "Job aborted due to stage failure: Task 3 in stage 7.0 failed 4 times"),
    ("RESOURCE_NOT_ENOUGH", "The resource queue has not enough resources for the job run."),
    ("EXECUTION_TIMEOUT", "The job run exceeded its execution timeout."),
    ("0", "connection refused\n"),  # the vendor sample's own reason, trailing newline included
)
VCORES = ((2, 0.2), (4, 0.35), (8, 0.3), (16, 0.1), (32, 0.05))
MAX_RESULTS, DEFAULT_RESULTS = 100, 20
RETAIN_SECONDS = 6 * 3600  # runs submitted longer ago are forgotten; no run lasts that long
MAX_RUN_SECONDS = 4 * 3600


def _draw(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


class ParameterError(ValueError):
    """A parameter the service refuses: HTTP 400, code InvalidParameter."""


@dataclass(frozen=True, slots=True)
class WorkloadParams:
    """The shape of the simulated runs; the arrival rate follows from `target_active` (Little's law)."""

    target_active: int = 25  # runs submitted and not ended, per workspace, in steady state
    median_pending_seconds: float = 8.0
    starve_fraction: float = 0.02  # runs that wait for resources for tens of minutes
    median_run_seconds: float = 180.0
    failed_fraction: float = 0.08
    cancelled_fraction: float = 0.03
    cancel_failed_fraction: float = 0.005
    workflow_fraction: float = 0.4
    oddity_fraction: float = 0.02  # trailing "\n" in name and codeType; active runs with endTime = submitTime

    def mean_active_seconds(self) -> float:
        """Returns the mean time from submission to end (pending and running)."""
        pending = (1 - self.starve_fraction) * self.median_pending_seconds * math.exp(0.5) + self.starve_fraction * 1200
        return pending + self.median_run_seconds * math.exp(1.1**2 / 2)


@dataclass(frozen=True, slots=True)
class SparkRun:
    """One job run with its whole timeline, in UNIX seconds (to the millisecond)."""

    workspace: str
    job_run_id: str
    name: str
    queue: str
    code_type: str
    creator: str
    release: tuple[str, str]
    submitted: float
    pending_at: float
    running_at: float
    end_at: float
    outcome: str  # the final state: Success, Failed, Cancelled, CancelFailed (or any string a test injects)
    cancelling_at: float | None  # Cancelled and CancelFailed runs are Cancelling from here to end_at
    vcores: int
    mb_per_vcore: int
    reason: tuple[str, str] | None
    workflow: str | None
    odd: bool
    fusion: bool
    timeout: int

    def state(self, t: float) -> str:
        """Returns the run's state at `t`."""
        if t < self.pending_at:
            return "Submitted"
        if t < self.running_at:
            return "Pending"
        if t >= self.end_at:
            return self.outcome
        if self.cancelling_at is not None and t >= self.cancelling_at:
            return "Cancelling"
        return "Running"

    def usage(self, t: float) -> tuple[int, int, float]:
        """Returns (vcoreSeconds, mbSeconds, cuHours) allocated up to `t`; a CU is one vCore with 4 GB."""
        seconds = max(0.0, min(t, self.end_at) - self.running_at)
        vcore_seconds = round(self.vcores * seconds)
        mb_seconds = round(self.vcores * self.mb_per_vcore * seconds)
        return vcore_seconds, mb_seconds, round(max(vcore_seconds, mb_seconds / 4096) / 3600, 3)

    def ended(self, t: float) -> bool:
        return t >= self.end_at

    def reported_end(self, t: float) -> int | None:
        """Returns `endTime` in ms as the API reports it: when ended; odd active runs echo their submitTime."""
        if self.ended(t):
            return _ms(self.end_at)
        return _ms(self.submitted) if self.odd else None

    def record(self, t: float) -> dict[str, Any]:
        """Returns the run as a `jobRuns` entry at `t` (ListJobRuns leaves out jobDriver and configurationOverrides)."""
        odd = "\n" if self.odd else ""
        vcore_seconds, mb_seconds, cu_hours = self.usage(t)
        state = self.state(t)
        record: dict[str, Any] = {
            "workspaceId": self.workspace,
            "jobRunId": self.job_run_id,
            "name": self.name + odd,
            "state": state,
            "submitTime": _ms(self.submitted),
            "codeType": self.code_type + odd,
            "webUI": f"https://spark-ui.emr-serverless-spark.aliyuncs.com/{self.workspace}/{self.job_run_id}",
            "executionTimeoutSeconds": self.timeout,
            "creator": self.creator,
            "tags": [{"key": "workflowId", "value": self.workflow}] if self.workflow else [],
            "log": {f"driver{k}": f"oss://emr-spark-logs/{self.workspace}/{self.job_run_id}/driver/{v}"
                    for k, v in (("StdOut", "stdout"), ("StdError", "stderr"), ("Syslog", "syslog"),
                                 ("Startup", "startup"))},
            "releaseVersion": self.release[0],
            "displayReleaseVersion": self.release[1],
            "fusion": self.fusion,
            "vcoreSeconds": vcore_seconds,
            "mbSeconds": mb_seconds,
            "cuHours": cu_hours,
            "resourceQueueId": self.queue,
        }
        if (end := self.reported_end(t)) is not None:
            record["endTime"] = end
        if self.reason is not None and state in ("Failed", "Cancelled", "CancelFailed"):
            record["stateChangeReason"] = {"code": self.reason[0], "message": self.reason[1]}
        return record


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters of one ListJobRuns request, parsed."""

    states: frozenset[str] | None = None
    submitted: tuple[int | None, int | None] | None = None  # startTime: {startTime, endTime} in ms
    ended: tuple[int | None, int | None] | None = None  # endTime: {startTime, endTime} in ms
    tags: tuple[tuple[str, str], ...] = ()
    name: str = ""
    creator: str = ""
    job_run_id: str = ""
    queue: str = ""
    deployment: str = ""
    min_duration_ms: int = 0
    workflow: bool | None = None

    def matches(self, run: SparkRun, t: float) -> bool:
        if self.states is not None and run.state(t) not in self.states:
            return False
        if self.submitted is not None and not _within(_ms(run.submitted), self.submitted):
            return False
        if self.ended is not None:
            end = run.reported_end(t)
            if end is None or not _within(end, self.ended):
                return False
        if self.deployment:  # no streaming deployments here: a deployment filter matches nothing
            return False
        tags = {("workflowId", run.workflow)} if run.workflow else set()
        return (
            all(tag in tags for tag in self.tags)
            and self.name in run.name
            and self.creator in ("", run.creator)
            and self.job_run_id in ("", run.job_run_id)
            and self.queue in ("", run.queue)
            and (min(t, run.end_at) - run.submitted) * 1000 >= self.min_duration_ms
            and (self.workflow is None or self.workflow == (run.workflow is not None))
        )


def _within(value: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def _json_param(query: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(query[name])
    except ValueError:
        raise ParameterError(f"{name} is not valid JSON: {query[name][:80]!r}") from None


def _range(query: Mapping[str, str], name: str) -> tuple[int | None, int | None] | None:
    if name not in query:
        return None
    value = _json_param(query, name)
    if not isinstance(value, dict) or set(value) - {"startTime", "endTime"} or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ParameterError(f"{name} must be an object with integer startTime and endTime in milliseconds")
    return value.get("startTime"), value.get("endTime")


def parse_filters(query: Mapping[str, str]) -> Filters:
    """Returns the request's filters; raises ParameterError as the service would."""
    states = None
    if "states" in query:
        value = _json_param(query, "states")
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ParameterError("states must be a JSON array of strings")
        states = frozenset(value) or None
    tags: tuple[tuple[str, str], ...] = ()
    if "tags" in query:
        value = _json_param(query, "tags")
        if not isinstance(value, list) or not all(isinstance(t, dict) and set(t) <= {"key", "value"} for t in value):
            raise ParameterError("tags must be a JSON array of {key, value} objects")
        tags = tuple((t.get("key", ""), t.get("value", "")) for t in value)
    workflow = query.get("isWorkflow")
    if workflow is not None and workflow.lower() not in ("true", "false"):
        raise ParameterError("isWorkflow must be true or false")
    try:
        min_duration = int(query.get("minDuration") or 0)
    except ValueError:
        raise ParameterError("minDuration must be an integer number of milliseconds") from None
    return Filters(
        states=states, submitted=_range(query, "startTime"), ended=_range(query, "endTime"), tags=tags,
        name=query.get("name", ""), creator=query.get("creator", ""), job_run_id=query.get("jobRunId", ""),
        queue=query.get("resourceQueueId", ""), deployment=query.get("jobRunDeploymentId", ""),
        min_duration_ms=min_duration, workflow=None if workflow is None else workflow.lower() == "true",
    )


def _token(run: SparkRun) -> str:
    return base64.urlsafe_b64encode(json.dumps([_ms(run.submitted), run.job_run_id]).encode()).decode().rstrip("=")


def _cursor(token: str) -> tuple[int, str]:
    try:
        submitted, run_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(submitted, int) and isinstance(run_id, str):
            return submitted, run_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise ParameterError(f"nextToken {token[:64]!r} is not valid")


def _newest_first(run: SparkRun) -> tuple[int, str]:
    return -_ms(run.submitted), run.job_run_id


class EmrServerlessSparkService:
    """ListJobRuns over seeded workspaces; register with `App.add_service(service, AcsGateway(...))`."""

    name = "emr_serverless_spark"

    def __init__(
        self, faults: Faults, *, seed: int = 0, clock: Callable[[], float],
        params: WorkloadParams | None = None, workspaces: tuple[str, ...] = WORKSPACES,
    ) -> None:
        self.faults = faults
        self.params = params or WorkloadParams()
        self.workspaces = workspaces
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._rates: list[tuple[int, float]] = [(-1, self._rate(self.params.target_active))]  # (from minute, per s)
        self._minutes: dict[tuple[str, int], tuple[SparkRun, ...]] = {}
        self._submitted: dict[str, list[SparkRun]] = {ws: [] for ws in workspaces}  # injected by `control`
        self._serial = 0

    def routes(self) -> list[Route]:
        """Returns ListJobRuns with its documented method and path."""
        return [Route("ListJobRuns", "GET", PATH, self.list_job_runs, VERSION)]

    # ---- the operation ----------------------------------------------------------------------------------------

    def list_job_runs(self, request: Request) -> Response:
        """Returns one page of the workspace's runs that match the filters, newest submission first."""
        workspace = request.path_params["workspaceId"]
        if workspace not in self.workspaces:
            return _error(request, 404, "WorkspaceNotFound", f"The workspace {workspace} does not exist.")
        query = request.query
        try:
            size = int(query.get("maxResults") or DEFAULT_RESULTS)
            if not 1 <= size <= MAX_RESULTS:
                raise ParameterError(f"maxResults must be between 1 and {MAX_RESULTS}")
            filters = parse_filters(query)
            after = _cursor(query["nextToken"]) if query.get("nextToken") else None
        except ValueError as exc:
            return _error(request, 400, "InvalidParameter", str(exc))
        now = request.now
        runs = sorted((r for r in self.runs(workspace, now) if filters.matches(r, now)), key=_newest_first)
        start = 0
        if after is not None:  # the first run past the cursor, whatever arrived or ended meanwhile
            key = (-after[0], after[1])
            start = next((i for i, r in enumerate(runs) if _newest_first(r) > key), len(runs))
        page = runs[start:start + size]
        more = start + size < len(runs)
        records = [r.record(now) for r in page]
        rate = request.faults.bad_field_rate
        records = [self.faults.corrupt(r, "jobRunId") if self.faults.roll(rate) else r for r in records]
        return json_response(200, {
            "jobRuns": records, "requestId": request.request_id, "nextToken": _token(page[-1]) if more else "",
            "maxResults": size, "totalCount": len(runs),
        })

    def envelope_error(self, request: Request) -> Response:
        """Returns HTTP 200 whose body reports a server error (`httpCode` 500) instead of a result."""
        return json_response(200, {"requestId": request.request_id, "httpCode": 500, "code": "InternalError",
                                   "message": "The request processing has failed due to some unknown error."})

    # ---- the workload -----------------------------------------------------------------------------------------

    def runs(self, workspace: str, now: float) -> list[SparkRun]:
        """Returns the workspace's runs submitted by `now` within the retention, drawn and injected."""
        first, last = math.floor((now - RETAIN_SECONDS) / 60), math.floor(now / 60)
        with self._lock:
            drawn = [run for m in range(first, last + 1) for run in self._minute(workspace, m)]
            injected = list(self._submitted[workspace])
        return [r for r in (*drawn, *injected) if now - RETAIN_SECONDS <= r.submitted <= now]

    def _rate(self, target_active: int) -> float:
        return target_active / self.params.mean_active_seconds()

    def _minute(self, workspace: str, minute: int) -> tuple[SparkRun, ...]:
        key = (workspace, minute)
        if key not in self._minutes:
            rate = next(r for m, r in reversed(self._rates) if m <= minute)
            rng = random.Random(f"{self._seed}/emr/{workspace}/{minute}")
            runs, t = [], minute * 60 + rng.expovariate(rate) if rate > 0 else math.inf
            while t < (minute + 1) * 60:
                runs.append(self._draw_run(rng, workspace, round(t, 3), f"{minute}/{len(runs)}"))
                t += rng.expovariate(rate)
            self._minutes[key] = tuple(runs)
            if len(self._minutes) > 4 * len(self.workspaces) * (RETAIN_SECONDS // 60 + 2):
                oldest = minute - RETAIN_SECONDS // 60 - 2
                self._minutes = {k: v for k, v in self._minutes.items() if k[1] >= oldest}
        return self._minutes[key]

    def _draw_run(
        self, rng: random.Random, workspace: str, submitted: float, serial: str, *, outcome: str | None = None,
        wait: float | None = None, length: float | None = None, queue: str | None = None,
        code_type: str | None = None,
    ) -> SparkRun:
        p = self.params
        if wait is None:
            median = 1200 if rng.random() < p.starve_fraction else p.median_pending_seconds
            wait = rng.lognormvariate(math.log(median), 0.5)
        planned = length if length is not None else min(MAX_RUN_SECONDS, rng.lognormvariate(
            math.log(p.median_run_seconds), 1.1))
        draw = rng.random()
        if outcome is None:
            outcome = "Success"
            for name, share in (("Failed", p.failed_fraction), ("Cancelled", p.cancelled_fraction),
                                ("CancelFailed", p.cancel_failed_fraction)):
                if draw < share:
                    outcome = name
                    break
                draw -= share
        run_length = planned if outcome == "Success" or length is not None else planned * rng.uniform(0.1, 0.9)
        pending_at = submitted + min(rng.uniform(0.5, 3.0), wait)  # Submitted briefly, then Pending until it runs
        running_at = submitted + wait
        end_at = round(running_at + max(0.1, run_length), 3)
        cancelling = end_at - rng.uniform(3, 15) if outcome in ("Cancelled", "CancelFailed") else None
        reason = None
        if outcome == "Failed":
            reason = rng.choice(FAILURES)
        elif outcome in ("Cancelled", "CancelFailed"):
            reason = ("USER_CANCELLED", "The job run was cancelled by the user.") if outcome == "Cancelled" else (
                "CANCEL_FAILED", "Failed to cancel the job run: the driver did not respond.")
        run_hash = random.Random(f"{self._seed}/emr/{workspace}/{serial}").getrandbits(64)
        return SparkRun(
            workspace=workspace, job_run_id=f"jr-{run_hash:016x}", name=rng.choice(JOB_NAMES),
            queue=queue or _draw(rng, QUEUES), code_type=code_type or _draw(rng, CODE_TYPES),
            creator=rng.choice(CREATORS), release=rng.choice(RELEASES), submitted=submitted,
            pending_at=round(pending_at, 3), running_at=round(running_at, 3), end_at=end_at, outcome=outcome,
            cancelling_at=None if cancelling is None else round(max(cancelling, running_at), 3),
            vcores=_draw(rng, VCORES), mb_per_vcore=rng.choice((4096, 4096, 8192)), reason=reason,
            workflow=f"wf-{rng.getrandbits(32):08x}" if rng.random() < p.workflow_fraction else None,
            odd=rng.random() < p.oddity_fraction, fusion=rng.random() < 0.5, timeout=rng.choice((3600, 7200, 86400)),
        )

    # ---- control ----------------------------------------------------------------------------------------------

    def control(self, body: Mapping[str, Any]) -> None:
        """Applies `{"target_active": n}` (per workspace, from now on) and `{"submit": {...}}`: `count` runs of
        `workspace` submitted now that wait `wait_seconds`, run `run_seconds` and end in `outcome` (any string: an
        unknown state is data too), in `queue` with `code_type`. Raises ValueError on anything else."""
        unknown = set(body) - {"target_active", "submit"}
        if unknown:
            raise ValueError(f"unknown workload settings: {', '.join(sorted(unknown))}")
        now = self._clock()
        if "target_active" in body:
            target = body["target_active"]
            if isinstance(target, bool) or not isinstance(target, int) or target < 0:
                raise ValueError("target_active must be a non-negative integer")
            with self._lock:
                minute = math.floor(now / 60) + 1  # minutes already drawn keep their arrivals
                self._rates = [*(r for r in self._rates if r[0] < minute), (minute, self._rate(target))]
        if "submit" in body:
            self._submit(body["submit"], now)

    def _submit(self, spec: Any, now: float) -> None:
        known = {"workspace", "count", "outcome", "wait_seconds", "run_seconds", "queue", "code_type"}
        if not isinstance(spec, dict) or set(spec) - known:
            raise ValueError(f"submit takes an object with {', '.join(sorted(known))}")
        workspace = spec.get("workspace", self.workspaces[0])
        if workspace not in self.workspaces:
            raise ValueError(f"unknown workspace {workspace!r}")
        count = spec.get("count", 1)
        numbers = {k: spec[k] for k in ("wait_seconds", "run_seconds") if k in spec}
        if isinstance(count, bool) or not isinstance(count, int) or count < 0 or any(
            isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in numbers.values()
        ):
            raise ValueError("count, wait_seconds and run_seconds must be non-negative numbers")
        with self._lock:
            for _ in range(count):
                self._serial += 1
                rng = random.Random(f"{self._seed}/emr/submitted/{self._serial}")
                self._submitted[workspace].append(self._draw_run(
                    rng, workspace, round(now, 3), f"submitted/{self._serial}", outcome=spec.get("outcome"),
                    wait=numbers.get("wait_seconds", 0), length=numbers.get("run_seconds", 60),
                    queue=spec.get("queue"), code_type=spec.get("code_type"),
                ))

    def summary(self) -> dict[str, Any]:
        """Returns, per workspace, the runs known now by state."""
        now = self._clock()
        return {ws: dict(Counter(r.state(now) for r in self.runs(ws, now))) for ws in self.workspaces}


def _error(request: Request, status: int, code: str, message: str) -> Response:
    return json_response(status, {"requestId": request.request_id, "code": code, "message": message})
