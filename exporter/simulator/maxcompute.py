"""MaxCompute (OpenAPI 2022-01-04): GetRunningJobs, ListJobSnapshotInfos and GetJobInfo over one `Workload`.

Parameter placement, field names and units follow the vendor pages in /work/shared/api-docs. Where the pages are
silent the choices are documented in docs/simulator.md (ordering, waiting jobs, terminal statuses, sub-status codes).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from json.encoder import encode_basestring as json_string  # a str as JSON, as compact_json writes it
from operator import attrgetter
from typing import Any

from exporter.simulator.app import GatewayError, Request, Response, Route, compact_json
from exporter.simulator.faults import Faults
from exporter.simulator.workload import (
    CANCELLED,
    FAILED,
    MB_PER_CORE,
    SUBSCRIPTION,
    TERMINATED,
    Job,
    Workload,
)

VERSION = "2022-01-04"
RUNNING_MAX_PAGE_SIZE = 20  # documented
SNAPSHOT_MAX_PAGE_SIZE = 100  # undocumented; the common Alibaba Cloud cap
STARVING_WAIT_SECONDS = 300  # a wait this long earns a LackResource diagnosis
SKEW_VISIBLE_AFTER_SECONDS = 60  # skew is diagnosed once the job has run a while
CHINA_TIME = timezone(timedelta(hours=8))  # sub-status times come in +0800, as in the vendor sample
SUB_STATUS = {"submitted": 1010, "running": 1030, TERMINATED: 1040, FAILED: 1050, CANCELLED: 1060}
SUB_STATUS_TEXT = {
    "submitted": "Waiting for scheduling",
    "running": "Running",
    TERMINATED: "Terminated",
    FAILED: "Failed",
    CANCELLED: "Cancelled",
}
NOT_STARTED = 0  # the sort value of runningAtTime and runningTime for a job still waiting
_instance_id = attrgetter("instance_id")

# ListJobSnapshotInfos orderColumn values, each as the value a job has at snapshot instant t.
ORDER_COLUMNS: dict[str, Callable[[Job, int], float]] = {
    "submittedAtTime": lambda j, t: j.submitted_at,
    "waitingTime": lambda j, t: j.wait_seconds(t),
    "runningAtTime": lambda j, t: j.running_at if j.running_at <= t else NOT_STARTED,
    "runningTime": lambda j, t: t - j.running_at if j.running_at <= t else NOT_STARTED,
    "snapshotTime": lambda j, t: t,
    "totalTime": lambda j, t: t - j.submitted_at,
    "cpuUsage": lambda j, t: round(j.cpu_cores(t)),
    "memoryUsage": lambda j, t: round(j.memory_mb(t)),
    "minCpuPct": lambda j, t: _quota_share(j, j.cpu_cores(t)) or 0,
    "minMemoryPct": lambda j, t: _quota_share(j, j.memory_mb(t) / MB_PER_CORE) or 0,
    "priority": lambda j, t: j.priority,
    "cpuRequest": lambda j, t: j.cpu_request,
    "memoryRequest": lambda j, t: j.memory_request,
    "cpuUsageToRequestRatio": lambda j, t: j.cpu_ratio(t),
    "memoryUsageToRequestRatio": lambda j, t: j.memory_ratio(t),
}
SNAPSHOT_LIST_FILTERS = {  # body field -> the job attribute it filters on
    "projectList": "project",
    "jobOwnerList": "owner",
    "typeList": "job_type",
    "instanceIdList": "instance_id",
    "signatureList": "signature",
    "extNodeIdList": "ext_node_id",
}


class ParameterError(ValueError):
    """A parameter the service rejects (HTTP 400, errorCode INVALID_PARAMETER)."""


class MaxComputeService:
    """The three MaxCompute job APIs; register with `App.add_service(service, AcsGateway("MaxCompute", ...))`."""

    name = "maxcompute"

    def __init__(self, workload: Workload, faults: Faults) -> None:
        self.workload = workload
        self.faults = faults

    def routes(self) -> list[Route]:
        """Returns the three operations with their documented methods and paths."""
        return [
            Route("GetRunningJobs", "GET", "/api/v1/jobs/runningJobs", self._guarded(self.get_running_jobs), VERSION),
            Route("ListJobSnapshotInfos", "POST", "/api/v1/jobs/snapshot", self._guarded(self.list_snapshot), VERSION),
            Route("GetJobInfo", "GET", "/api/v1/jobs/{instanceId}/info", self._guarded(self.get_job_info), VERSION),
        ]

    # ---- operations -------------------------------------------------------------------------------------------

    def get_running_jobs(self, request: Request) -> Response:
        """Returns one page of the jobs running now that were submitted in [from, to], newest submission first."""
        query = request.query
        start, end = _required_int(query, "from"), _required_int(query, "to")
        page, size = _paging(query, RUNNING_MAX_PAGE_SIZE)
        owners, quotas = _comma_list(query, "jobOwnerList"), _comma_list(query, "quotaNicknameList")
        self._drift(request, page)
        now = self.workload.advance()
        if start >= end:  # documented: an empty range returns a null value
            return self._success(request, "null")

        def select() -> list[Job]:
            if len(quotas) == 1:  # an exporter's quota unit: one pass over the jobs serves every quota's listing
                (quota,) = quotas
                return self.workload.memo(("running by quota", start, end, owners), now, by_quota).get(quota, [])
            jobs = self.workload.running_submitted_between(start, end)
            return [j for j in jobs if (not owners or j.owner in owners) and (not quotas or j.quota.nickname in quotas)]

        def by_quota() -> dict[str, list[Job]]:
            grouped: dict[str, list[Job]] = defaultdict(list)
            for job in self.workload.running_submitted_between(start, end):
                if not owners or job.owner in owners:
                    grouped[job.quota.nickname].append(job)
            return grouped

        jobs = self.workload.memo(("running", start, end, owners, quotas), now, select)
        return self._listing(request, "runningJobInfoList", jobs, page, size, lambda j: self._running_json(j, now))

    def list_snapshot(self, request: Request) -> Response:
        """Returns one page of the jobs running or waiting at the body's `to` instant (now, when `to` is later)."""
        query = request.query
        page, size = _paging(query, SNAPSHOT_MAX_PAGE_SIZE)
        column = query.get("orderColumn") or "submittedAtTime"
        if column not in ORDER_COLUMNS:
            raise ParameterError(f"orderColumn must be one of {', '.join(ORDER_COLUMNS)}")
        ascending = _boolean(query.get("ascOrder", "false"), "ascOrder")
        body = _body(request)
        if not isinstance(body.get("to"), int) or isinstance(body.get("to"), bool):
            raise ParameterError("to is required and must be a UNIX timestamp in seconds")
        filters = _snapshot_filters(body)
        self._drift(request, page)
        instant = min(body["to"], self.workload.advance())

        def select() -> list[Job]:
            if len(filters) == 1 and filters[0][0] == "quota_nickname":  # an exporter's quota unit: see above
                (quota,) = filters[0][1]
                jobs = self.workload.memo(("active by quota",), instant, active_by_quota).get(quota, [])
            else:
                jobs = [j for j in self.workload.active_at(instant) if _matches(j, filters)]
            key = ORDER_COLUMNS[column]
            # Ties go by id the same way: sorting by id first and then by the column (a stable sort, also reversed)
            # orders as by (column, id) pairs, without a tuple per job.
            by_id = sorted(jobs, key=_instance_id, reverse=not ascending)
            return sorted(by_id, key=lambda j: key(j, instant), reverse=not ascending)

        def active_by_quota() -> dict[str, list[Job]]:
            grouped: dict[str, list[Job]] = defaultdict(list)
            for job in self.workload.active_at(instant):
                grouped[job.quota.nickname].append(job)
            return grouped

        jobs = self.workload.memo(("snapshot", filters, column, ascending), instant, select)
        return self._listing(request, "jobInfoList", jobs, page, size, lambda j: self._snapshot_json(j, instant))

    def _listing(
        self, request: Request, key: str, jobs: list[Job], page: int, size: int, write: Callable[[Job], str]
    ) -> Response:
        """Returns one page of `jobs` in the service envelope, each record written by `write`, with the faults that
        damage records applied."""
        records = ",".join(self._damage(request, [write(j) for j in _page(jobs, page, size)]))
        data = f'{{"{key}":[{records}],"totalCount":{len(jobs)},"pageNumber":{page},"pageSize":{size}}}'
        return self._success(request, data)

    def get_job_info(self, request: Request) -> Response:
        """Returns one job as it stands now, or OBJECT_NOT_EXIST for ids the workload never ran or no longer keeps."""
        now = self.workload.advance()
        job = self.workload.get(request.path_params["instanceId"])
        if job is None:
            return _envelope(request, 404, "OBJECT_NOT_EXIST", "This object does not exist.")
        return self._success(request, self._damage(request, [compact_json(self._info_record(job, now))])[0])

    def envelope_error(self, request: Request) -> Response:
        """Returns HTTP 200 with an envelope whose httpCode is 500."""
        message = "Internal server error, please try again later."
        return _envelope(request, 200, "INTERNAL_ERROR", message, http_code=500)

    # ---- control ----------------------------------------------------------------------------------------------

    def control(self, body: Mapping[str, Any]) -> None:
        """Applies `{"target_running": N}` and `{"starve": {...}}` (count, waited_seconds,
        remaining_seconds, quota). Raises ValueError on unknown settings or bad values.
        """
        unknown = set(body) - {"target_running", "starve"}
        if unknown:
            raise ValueError(f"unknown workload settings: {', '.join(sorted(unknown))}")
        if "target_running" in body:
            self.workload.set_target(_non_negative_int(body["target_running"], "target_running"))
        if "starve" in body:
            starve = body["starve"]
            if not isinstance(starve, dict) or set(starve) - {"count", "waited_seconds", "remaining_seconds", "quota"}:
                raise ValueError("starve takes an object with count, waited_seconds, remaining_seconds and quota")
            self.workload.starve(
                _non_negative_int(starve.get("count", 1), "count"),
                _non_negative_int(starve.get("waited_seconds", 1800), "waited_seconds"),
                _non_negative_int(starve.get("remaining_seconds", 3600), "remaining_seconds"),
                starve.get("quota"),
            )

    def summary(self) -> dict[str, Any]:
        """Returns the workload's counts and knobs."""
        self.workload.advance()
        return self.workload.summary()

    # ---- records ----------------------------------------------------------------------------------------------

    def _odd(self, job: Job, value: str) -> str:
        # The vendor samples show label-like strings with a trailing newline; a few jobs carry one everywhere.
        return value + "\n" if job.odd else value

    def _running_json(self, job: Job, t: int) -> str:
        """Returns the job's GetRunningJobs record at `t` as compact JSON (written out, like `_snapshot_json`)."""
        cpu_ratio, memory_ratio = job.ratios(t)
        return (
            f'{{"instanceId":{json_string(job.instance_id)},"jobOwner":{json_string(self._odd(job, job.owner))},'
            f'"project":{json_string(job.project)},"quotaNickname":{json_string(job.quota.nickname)},'
            f'"cuSnapshot":{round(cpu_ratio, 2)},"memorySnapshot":{round(memory_ratio, 2)},'
            f'"submittedAtTime":{job.submitted_at},"runningAtTime":{job.running_at},'
            f'"progress":{round(job.progress(t), 2)}}}'
        )

    def _common(self, job: Job) -> dict[str, Any]:
        params = self.workload.params
        return {
            "tenantId": params.tenant_id,
            "region": params.region,
            "instanceId": job.instance_id,
            "jobOwner": self._odd(job, job.owner),
            "project": job.project,
            "jobType": self._odd(job, job.job_type),
            "priority": job.priority,
            "quotaNickname": job.quota.nickname,
            "quotaType": job.quota.type,
            "submittedAtTime": job.submitted_at,
            "signature": job.signature,
            "extPlantFrom": job.ext_plant_from,
            "extNodeId": job.ext_node_id,
            "extNodeOnDuty": job.ext_node_on_duty,
        }

    def _common_json(self, job: Job) -> str:
        """Returns `_common(job)` as compact JSON without its closing brace, for a record to go on; made once a job."""
        if job.common_json is None:
            job.common_json = compact_json(self._common(job))[:-1]
        return job.common_json

    def _snapshot_json(self, job: Job, t: int) -> str:
        """Returns the job's ListJobSnapshotInfos record at `t` as compact JSON.

        Written out rather than encoded from a dict: a poll lists every job, and the records are most of its cost.
        """
        cpu_ratio, memory_ratio = job.ratios(t)
        cpu, memory = job.cpu_request * cpu_ratio, job.memory_request * memory_ratio
        started = job.running_at <= t
        running_at, running_time = (job.running_at, t - job.running_at) if started else ("null", "null")
        shares = ""
        if job.quota.type == SUBSCRIPTION:  # documented as not available for pay-as-you-go jobs
            cpu_share, memory_share = _quota_share(job, cpu), _quota_share(job, memory / MB_PER_CORE)
            shares = f',"minCpuPct":{round(cpu_share, 4)},"minMemoryPct":{round(memory_share, 4)}'
        # status: documented as only ever running for a snapshot job, waiting ones included.
        return (
            f'{self._common_json(job)},"status":"running","cpuUsage":{round(cpu)},"memoryUsage":{round(memory)},'
            f'"maxCpuPct":-1,"maxMemoryPct":-1,"waitingTime":{job.wait_seconds(t)},"runningAtTime":{running_at},'
            f'"runningTime":{running_time},"snapshotTime":{t},"totalTime":{t - job.submitted_at},'
            f'"cpuRequest":{job.cpu_request},"memoryRequest":{job.memory_request},'
            f'"cpuUsageToRequestRatio":{round(cpu_ratio, 4)},"memoryUsageToRequestRatio":{round(memory_ratio, 4)},'
            f'"extPlatformId":""{shares}}}'
        )

    def _info_record(self, job: Job, t: int) -> dict[str, Any]:
        record = self._common(job) | {
            "status": job.status(t),
            "waitingTime": job.wait_seconds(t),
            "inputBytes": round(job.input_bytes * job.progress(t)),
            "sceneResults": _scene_results(job, t),
            "jobSubStatusList": _sub_statuses(job, t),
        }
        if job.running_at <= t:
            record["runningAtTime"] = job.running_at
            record["runningTime"] = min(t, job.end_at) - job.running_at
        if t >= job.end_at:  # documented: usage is returned only for complete jobs
            record |= {"endAtTime": job.end_at, "cuUsage": job.cu_usage(), "memoryUsage": job.memory_usage()}
        record["totalTime"] = min(t, job.end_at) - job.submitted_at
        return record

    # ---- faults and envelopes ---------------------------------------------------------------------------------

    def _drift(self, request: Request, page: int) -> None:
        """Under `page_drift`, lets jobs arrive before every page after the first, shifting the newest-first list."""
        if request.faults.page_drift and page > 1:
            self.workload.inject_running(request.faults.page_drift)

    def _damage(self, request: Request, records: list[str]) -> list[str]:
        """Returns the records (JSON text), some with a broken schema under `bad_field_rate`."""
        rate = request.faults.bad_field_rate
        return [
            compact_json(self.faults.corrupt(json.loads(r), "instanceId")) if self.faults.roll(rate) else r
            for r in records
        ]

    def _success(self, request: Request, data: str) -> Response:
        # Like the vendor samples, a small share of successful answers carry an errorCode that is not "success".
        if _odd_request(request, self.workload.params.oddity_fraction):
            return _envelope(request, 200, "OBJECT_NOT_EXIST", "This object does not exist.", data)
        return _envelope(request, 200, "success", "", data)

    def _guarded(self, operation: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Wraps an operation so that its parameter errors become INVALID_PARAMETER answers."""

        def handler(request: Request) -> Response:
            try:
                return operation(request)
            except ParameterError as exc:
                return _envelope(request, 400, "INVALID_PARAMETER", str(exc))

        return handler


def _envelope(
    request: Request, status: int, code: str, message: str, data: str = "null", http_code: int | None = None
) -> Response:
    """Returns the service envelope `{"requestId", "httpCode", "errorCode", "errorMsg", "data"}` around `data`, JSON
    text (records arrive written out)."""
    head = {
        "requestId": request.request_id.replace("-", "").lower()[:30],  # the service's ids are 30 hex digits
        "httpCode": http_code if http_code is not None else status,
        "errorCode": code,
        "errorMsg": message,
    }
    return Response(status, f'{compact_json(head)[:-1]},"data":{data}}}'.encode())


def _odd_request(request: Request, fraction: float) -> bool:
    # Decided by the (seeded) request id, so it is reproducible without another random stream.
    return int(request.request_id[:8], 16) < fraction * 0x1_0000_0000


def _quota_share(job: Job, cores: float) -> float | None:
    """Returns `cores` over the quota's reserved cores (None for pay-as-you-go, which reserves none)."""
    return cores / job.quota.cpu_cores if job.quota.cpu_cores else None


def _scene_results(job: Job, t: int) -> list[dict[str, Any]]:
    scenes = []
    if job.wait_seconds(t) >= STARVING_WAIT_SECONDS:
        tag = "SubscriptionLackResource" if job.quota.type == SUBSCRIPTION else "PayAsYouGoLackResource"
        scenes.append(
            {
                "sceneTag": tag,
                "scene": "LackResource",
                "type": "warning",
                "summary": "Insufficient computing resources available for the job. Click to view details.",
                "description": "The job is waiting for resources: the quota is busy with other jobs, the job requests "
                "many resources or its priority is low. See Resource Consumption for the quota's usage.",
            }
        )
    if job.skewed and job.running_at + SKEW_VISIBLE_AFTER_SECONDS <= t:
        scenes.append(
            {
                "sceneTag": "DataSkew",
                "scene": "DataSkew",
                "type": "warning",
                "summary": "Data skew was detected in the job.",
                "description": "Some workers process far more data than others and slow the job down.",
                "params": {"jobinsight_data_skew_node": "Worker M1#10000_0"},
            }
        )
    return scenes


def _sub_statuses(job: Job, t: int) -> list[dict[str, Any]]:
    """Returns the lifecycle sub-statuses reached by `t`, with times like "2025-03-05 00:04:15.717364 +0800"."""
    steps = [("submitted", job.submitted_at + job.millis / 1000)]
    if job.running_at <= t:
        steps.append(("running", job.running_at))
    if job.end_at <= t:
        steps.append((job.outcome, job.end_at))
    return [
        {"code": SUB_STATUS[step], "startTime": _china_time(at), "description": SUB_STATUS_TEXT[step]}
        for step, at in steps
    ]


def _china_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S.%f %z")


# ---- parameters -------------------------------------------------------------------------------------------------


def _required_int(query: Mapping[str, str], name: str) -> int:
    """Returns a required integer query parameter; a missing one is refused by the gateway, like the real one."""
    if not query.get(name):
        raise GatewayError(400, f"Missing{name[0].upper()}{name[1:]}", f"{name} is mandatory for this action.")
    return _int(query[name], name)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"{name} must be an integer") from None


def _paging(query: Mapping[str, str], max_size: int) -> tuple[int, int]:
    """Returns (pageNumber, pageSize), defaulting to 1 and 10; pageSize above `max_size` is an error."""
    page = _int(query.get("pageNumber") or "1", "pageNumber")
    size = _int(query.get("pageSize") or "10", "pageSize")
    if page < 1:
        raise ParameterError("pageNumber must be at least 1")
    if not 1 <= size <= max_size:
        raise ParameterError(f"pageSize must be between 1 and {max_size}")
    return page, size


def _page(jobs: list[Job], page: int, size: int) -> list[Job]:
    return jobs[(page - 1) * size : page * size]


def _comma_list(query: Mapping[str, str], name: str) -> frozenset[str]:
    """Returns a list parameter sent as one comma-joined value (GetRunningJobs' `jobOwnerList`, ...)."""
    return frozenset(v.strip() for v in query.get(name, "").split(",") if v.strip())


def _boolean(text: str, name: str) -> bool:
    # The official SDK sends Python's str(True), "True"; other clients send "true".
    if text.lower() not in ("true", "false"):
        raise ParameterError(f"{name} must be true or false")
    return text.lower() == "true"


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise ParameterError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ParameterError("the body must be a JSON object with at least `to`")
    return body


def _snapshot_filters(body: Mapping[str, Any]) -> tuple[tuple[str, frozenset[Any]], ...]:
    """Returns the body's filters as hashable (attribute, allowed values) pairs; empty lists filter nothing."""
    filters: list[tuple[str, frozenset[Any]]] = []
    for field_name, attribute in SNAPSHOT_LIST_FILTERS.items():
        values = _json_list(body, field_name, str)
        if values:
            filters.append((attribute, values))
    statuses = _json_list(body, "statusList", str)
    if statuses:
        filters.append(("status", statuses))
    priorities = _json_list(body, "priorityList", int)
    if priorities:
        filters.append(("priority", priorities))
    nickname = body.get("quotaNickname")
    if nickname is not None and not isinstance(nickname, str):
        raise ParameterError("quotaNickname must be a string")
    if nickname:
        filters.append(("quota_nickname", frozenset({nickname})))
    return tuple(filters)


def _json_list(body: Mapping[str, Any], name: str, kind: type) -> frozenset[Any]:
    values = body.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise ParameterError(f"{name} must be a JSON array of {kind.__name__} values")
    return frozenset(values)


def _matches(job: Job, filters: tuple[tuple[str, frozenset[Any]], ...]) -> bool:
    for attribute, allowed in filters:
        if attribute == "status":
            value: Any = "running"  # every job in a snapshot is running, waiting ones included
        elif attribute == "quota_nickname":
            value = job.quota.nickname
        else:
            value = getattr(job, attribute)
        if value not in allowed:
            return False
    return True


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value
