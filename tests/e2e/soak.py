"""The soak's machinery, shared by tests/e2e/test_soak.py (a few simulated hours in under a minute) and
benchmarks/soak.py (a simulated day): one accelerated clock, a simulator that keeps the truth of what it served, and
the checks of /metrics against that truth.

- `SoakClock`: simulated UNIX seconds, standing at `start` through a warm-up (the exporter's first polls), then
  running `factor` times faster than real time for `span`, then standing at the end (the drain: the exporter catches
  up with what ended). It reads `time.monotonic()`, which every process on the machine shares, so the simulator,
  the exporter's sources, signers and poller, and the checker can each hold a copy, built from the same four numbers.
- `SoakSimulator`: the simulator, noting each MaxCompute job it listed (with its end) and each GetJobInfo answer, and
  answering `/-/soak/ends` (when did these jobs end?) and `/-/soak/truth` (what ended, what was asked about).
- `Checks`: per scrape, every counter and histogram sample never decreases nor vanishes, and every per-job series is
  of a job still listed or ended at most `Checks.bound` before the scrape (its API's `stale_after`, the longest poll,
  the exposition's refresh); at the end, each finished job counted once (`exactly_once`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx

from exporter.poller import HOUSEKEEPING_INTERVAL, Poller, Target
from exporter.runtime import Exporter
from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator import dataarts_factory as dataarts_sim
from exporter.simulator import emr_serverless_spark as emr_sim
from exporter.simulator.app import Request, Response, json_response
from exporter.simulator.emr_serverless_spark import RETAIN_SECONDS, SparkRun

SOAK_PREFIX = "/-/soak/"
REGION = "cn-shanghai"
TERMINAL = frozenset({"terminated", "failed", "cancelled"})  # the simulator's final MaxCompute statuses
LISTINGS = frozenset({"GetRunningJobs", "ListJobSnapshotInfos"})
INSTANCE_ID = re.compile(rb'"instanceId":"([^"]+)"')
TYPE_LINE = re.compile(r"# TYPE (\S+) (\S+)")
SAMPLE_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
ESCAPED = re.compile(r"\\(.)")
JOB_LABELS = frozenset({"instance_id", "job_run_id", "job_name"})  # MaxCompute, EMR, DataArts per-job series
JOB_INFO_SKIPS = ("not_found", "gave_up", "failed", "bad_field", "queue_full")
# OpenMetrics: its types tell counters and histograms (cumulative) from gauge histograms (the jobs present now),
# which the text format types `histogram` alike.
ACCEPT_OPENMETRICS = "application/openmetrics-text;version=1.0.0"
Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class SoakClock:
    """Simulated UNIX seconds: `start` until the monotonic instant `origin`, then `factor` simulated seconds per real
    second for `span` simulated seconds, then `start + span` for good."""

    start: float
    origin: float
    factor: float
    span: float

    def __call__(self) -> float:
        return self.start + min(max(time.monotonic() - self.origin, 0.0) * self.factor, self.span)

    @property
    def end(self) -> float:
        """Returns the instant the clock stops at."""
        return self.start + self.span

    def real_seconds_until(self, t: float) -> float:
        """Returns the real seconds from now until the clock reads `t` (0 when it already has)."""
        return max(0.0, self.origin + (t - self.start) / self.factor - time.monotonic())

    def to_json(self) -> str:
        """Returns the clock as JSON, for another process to hold the same one (`from_json`)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SoakClock:
        """Returns the clock `to_json` wrote."""
        return cls(**json.loads(text))


def soak_clock(warmup: float, factor: float, span: float) -> SoakClock:
    """Returns a clock that stands at the current whole second for `warmup` real seconds, then runs."""
    return SoakClock(float(math.floor(time.time())), time.monotonic() + warmup, factor, span)


# ---- the simulator ----------------------------------------------------------------------------------------------


@dataclass
class Served:
    """What the simulator told the exporter about MaxCompute jobs."""

    listed: dict[str, int] = field(default_factory=dict)  # instance id -> when the job ends
    answered: Counter[str] = field(default_factory=Counter)  # instance id -> GetJobInfo answers with a final status
    groups: dict[str, str] = field(default_factory=dict)  # instance id -> "project|quota|job type|status"
    not_found: set[str] = field(default_factory=set)


class SoakSimulator(Simulator):
    """The simulator of every API, keeping what it served to the exporter and answering the soak's questions:
    `POST /-/soak/ends` and `GET /-/soak/truth?after=T` (see `ends` and `truth`)."""

    def __init__(self, credentials: Mapping[str, str], *, seed: int, clock: SoakClock, running: int,
                 emr_active: int) -> None:
        super().__init__(credentials, seed=seed, clock=clock, workload=WorkloadParams(target_running=running))
        self.emr.control({"target_active": emr_active})  # from the next simulated minute on; earlier runs keep 25
        self.served = Served()

    async def dispatch(self, request: Request) -> Response:
        if request.path.startswith(SOAK_PREFIX):
            return self._soak(request)
        response = await super().dispatch(request)
        self._note(request, response)
        return response

    def _soak(self, request: Request) -> Response:
        what = request.path[len(SOAK_PREFIX):]
        if what == "ends" and request.method == "POST":
            return json_response(200, self.ends(request.json()))
        if what == "truth" and request.method == "GET":
            return json_response(200, self.truth(float(request.query["after"])))
        return json_response(404, {"error": f"no soak endpoint {request.method} {request.path}"})

    def _note(self, request: Request, response: Response) -> None:
        """Notes the MaxCompute jobs a listing named, and GetJobInfo's answers."""
        served = self.served
        if request.api in LISTINGS and response.status == 200:
            for raw in INSTANCE_ID.findall(response.body):
                instance_id = raw.decode()
                if instance_id not in served.listed:
                    job = self.workload.get(instance_id)
                    served.listed[instance_id] = job.end_at if job else -1
        elif request.api == "GetJobInfo":
            instance_id = request.path_params["instanceId"]
            if response.status == 404:
                served.not_found.add(instance_id)
            elif response.status == 200:
                info = json.loads(response.body)["data"]
                if info["status"] in TERMINAL:
                    served.answered[instance_id] += 1
                    served.groups[instance_id] = "|".join(
                        str(info[k]).strip() for k in ("project", "quotaNickname", "jobType", "status"))

    def ends(self, ids: Mapping[str, list[str]]) -> dict[str, dict[str, float | None]]:
        """Returns when each job ended (or ends), by its label: `instance_id` (MaxCompute jobs as listed) and
        `job_run_id` (EMR runs submitted in the last RETAIN_SECONDS); None for a job not known."""
        now = self.clock()
        runs = {r.job_run_id: r.end_at for ws in self.emr.workspaces for r in self.emr.runs(ws, now)}
        return {"instance_id": {i: self.served.listed.get(i) for i in ids.get("instance_id", [])},
                "job_run_id": {i: runs.get(i) for i in ids.get("job_run_id", [])}}

    def truth(self, after: float) -> dict[str, Any]:
        """Returns, as of now (`until`): MaxCompute's jobs ended since the start, those listed and ended, and the
        final GetJobInfo answers by group (each job once), how many jobs were answered more than once, and how many
        asks found no job; and the EMR runs that ended in (after, until], by workspace, queue, state and code type."""
        until = self.workload.advance()
        served = self.served
        return {
            "until": until,
            "maxcompute": {
                "ended": self.workload.summary()["ended"],
                "listed_ended": sum(1 for end in served.listed.values() if 0 <= end <= until),
                "answered": dict(Counter(served.groups.values())),
                "answered_again": sum(1 for n in served.answered.values() if n > 1),
                "not_found": len(served.not_found),
            },
            "emr_ended": dict(Counter("|".join(_ended_group(r)) for r in self._emr_ended(after, until))),
        }

    def _emr_ended(self, after: float, until: float) -> list[SparkRun]:
        """Returns the EMR runs that ended in (after, until]: runs are a pure function of the seed and the minute,
        so the past is drawn again, RETAIN_SECONDS of submissions at a time."""
        runs: dict[str, SparkRun] = {}
        t = until
        while True:
            for ws in self.emr.workspaces:
                runs.update((r.job_run_id, r) for r in self.emr.runs(ws, t))
            if t <= after:  # no run lasts RETAIN_SECONDS: every run ending after `after` is in
                break
            t = max(t - RETAIN_SECONDS, after)
        return [r for r in runs.values() if after < r.end_at <= until]


def _ended_group(run: SparkRun) -> tuple[str, str, str, str]:
    return run.workspace, run.queue, run.outcome, run.code_type


# ---- the exporter -----------------------------------------------------------------------------------------------


def soak_sources(endpoint: str, **intervals: Any) -> list[dict[str, Any]]:
    """Returns a source of every kind polling `endpoint` with their defaults, but for `intervals`: `interval`,
    `snapshot_interval`, `job_info_interval` (simulated seconds, as "5m"), applied where the kind has them."""
    mc_keys = {"interval", "snapshot_interval", "job_info_interval"}
    every = {k: v for k, v in intervals.items() if k == "interval"}
    return [
        {"name": "mc", "kind": "maxcompute", "region": REGION, "endpoint": endpoint,
         **{k: v for k, v in intervals.items() if k in mc_keys}},
        {"name": "emr", "kind": "emr_serverless_spark", "region": REGION, "endpoint": endpoint,
         "workspaces": list(emr_sim.WORKSPACES), **every},
        {"name": "dataarts", "kind": "dataarts_factory", "region": "cn-north-4", "endpoint": endpoint,
         "project_id": dataarts_sim.PROJECT_ID, "workspaces": list(dataarts_sim.WORKSPACES[1:]), **every},
    ]


def accelerated(exporter: Exporter, clock: SoakClock) -> Exporter:
    """Returns the exporter with each API scheduled once per its interval of simulated time: `factor` times as often
    in real time. Its store (stale_after), sources and signers keep reading simulated seconds from `clock`."""
    targets = [Target(t.source, replace(t.api, interval=t.api.interval / clock.factor)) for t in exporter.targets]
    return replace(exporter, poller=Poller(exporter.store, targets, clock))


def per_job_apis(exporter: Exporter) -> dict[str, float]:
    """Returns the `stale_after` (simulated seconds) of each API with per-job series, keyed "source/api"."""
    return {f"{t.source}/{t.api.name}": exporter.store.states[t.key].stale_after
            for t in exporter.targets if t.api.jobs is not None}


# ---- scraping and the checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One scrape of /metrics: when it was asked for (simulated seconds), its counter and histogram samples, and the
    jobs with per-job series, by source and by their id's label."""

    at: float
    counters: dict[tuple[str, Labels], float]
    jobs: dict[tuple[str, str], set[str]]  # (source, id label) -> ids
    samples: int
    per_job_samples: int
    last_success: dict[tuple[str, str], float]  # (source, api) -> cloud_job_exporter_last_success_timestamp_seconds
    dropped: float  # cloud_job_exporter_job_series_dropped, summed over the sources

    def total(self, name: str, **labels: str) -> float:
        """Returns the sum of the counter samples `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, lab), v in self.counters.items() if n == name and wanted <= lab)

    def by(self, name: str, keys: Iterable[str], **labels: str) -> dict[str, float]:
        """Returns the counter samples `name` (whose labels include `labels`) summed by the `keys` labels, each key
        the label values joined by "|"; zero sums left out."""
        wanted, out = set(labels.items()), Counter[str]()
        for (n, lab), v in self.counters.items():
            if n == name and wanted <= lab:
                out["|".join(dict(lab)[k] for k in keys)] += v
        return {k: v for k, v in out.items() if v}


def parse_scrape(text: str, at: float) -> Scrape:
    """Returns a Scrape of an OpenMetrics exposition asked for at simulated time `at`.

    Read line by line with three expressions: prometheus-client's parser took 1.7 s for the 10,000 samples of a
    soak's page, a third of a core at one scrape every 5 s, taken from the processes measured."""
    counters: dict[tuple[str, Labels], float] = {}
    jobs: dict[tuple[str, str], set[str]] = {}
    last: dict[tuple[str, str], float] = {}
    samples = per_job = 0
    dropped = 0.0
    kind = "unknown"
    for line in text.splitlines():
        if line.startswith("#"):
            if typed := TYPE_LINE.match(line):
                kind = typed.group(2)
            continue
        name, raw, value = SAMPLE_LINE.fullmatch(line).groups()  # type: ignore[union-attr]
        labels = {k: _unescape(v) for k, v in LABEL_PAIR.findall(raw or "")}
        samples += 1
        if kind in ("counter", "histogram"):
            counters[(name, frozenset(labels.items()))] = float(value)
        elif name == "cloud_job_exporter_last_success_timestamp_seconds":
            last[(labels["source"], labels["api"])] = float(value)
        elif name == "cloud_job_exporter_job_series_dropped":
            dropped += float(value)
        for label in JOB_LABELS & labels.keys():
            per_job += 1
            jobs.setdefault((labels["source"], label), set()).add(labels[label])
    return Scrape(at, counters, jobs, samples, per_job, last, dropped)


def _unescape(value: str) -> str:
    """Returns a label value as it was before the exposition escaped it (backslash, double quote, newline)."""
    if "\\" not in value:
        return value
    return ESCAPED.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


async def scrape(client: httpx.AsyncClient, url: str, clock: SoakClock) -> Scrape:
    """Scrapes `url` (OpenMetrics, gzip) and returns it, stamped with the simulated time it was asked for."""
    at = clock()
    response = await client.get(url, headers={"Accept": ACCEPT_OPENMETRICS, "Accept-Encoding": "gzip"})
    response.raise_for_status()
    return parse_scrape(response.text, at)


@dataclass
class Checks:
    """The properties checked at each scrape, with what broke them (each list capped at `keep` examples)."""

    stale_after: Mapping[str, float]  # of each API with per-job series, keyed "source/api" (`per_job_apis`)
    factor: float  # the clock's
    keep: int = 20
    scrapes: int = 0
    counter_samples: int = 0
    decreased: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    ghosts: list[str] = field(default_factory=list)
    jobs_checked: int = 0
    longest_lag: dict[str, float] = field(default_factory=dict)  # by source: a finished job's series, the longest
    oldest_data: dict[str, float] = field(default_factory=dict)  # by source/api: the most its last success had aged
    longest_poll: dict[str, float] = field(default_factory=dict)  # by source/api: real seconds, its bucket's bound
    _last: dict[tuple[str, Labels], float] = field(default_factory=dict)

    @classmethod
    def for_exporter(cls, exporter: Exporter, clock: SoakClock) -> Checks:
        """Returns the checks of an accelerated exporter's scrapes."""
        return cls(per_job_apis(exporter), clock.factor)

    @property
    def grace(self) -> float:
        """Returns how long (simulated seconds) the exposition may lag its data: the housekeeping refresh."""
        return HOUSEKEEPING_INTERVAL * self.factor

    def bound(self, source: str) -> float:
        """Returns how long (simulated seconds) a job's per-job series may stay after the job ended: its API's
        stale_after counts from the end of the last poll that listed it, which began up to a poll's length earlier
        (the longest so far), and the exposition is refreshed at least every HOUSEKEEPING_INTERVAL."""
        return self.grace + max(after + self.factor * self.longest_poll.get(api, 0.0)
                                for api, after in self.stale_after.items() if api.startswith(source + "/"))

    def counters(self, now: Scrape) -> None:
        """Checks that no counter or histogram sample decreased or vanished since the last scrape (and notes how old
        each API's data was: whether the polls kept up with the accelerated clock)."""
        self.scrapes += 1
        for (source, api), success in now.last_success.items():
            key = f"{source}/{api}"
            self.oldest_data[key] = max(self.oldest_data.get(key, 0.0), now.at - success)
        self.longest_poll.update(longest_polls(now))
        self.counter_samples = len(now.counters)
        for key, before in self._last.items():
            value = now.counters.get(key)
            if value is None:
                self._example(self.vanished, f"{_series(key)} gone at {now.at:.0f}")
            elif value < before:
                self._example(self.decreased, f"{_series(key)} {before:g} -> {value:g} at {now.at:.0f}")
        self._last = dict(now.counters)

    def ghosts_of(self, now: Scrape, ends: Mapping[str, Mapping[str, float | None]]) -> None:
        """Checks that each MaxCompute job and EMR run with per-job series ended at most `bound` before the scrape;
        `ends` are the simulator's `ends` for the scrape's jobs."""
        for (source, label), ids in now.jobs.items():
            known = ends.get(label)
            if known is None:
                continue  # DataArts jobs are never deleted: their series stay for good
            bound = self.bound(source)
            for job in ids:
                self.jobs_checked += 1
                end = known.get(job)
                lag = math.inf if end is None else now.at - end
                if lag > 0:
                    self.longest_lag[source] = max(self.longest_lag.get(source, 0.0), lag)
                if lag > bound:
                    self._example(self.ghosts, f"{source} {label}={job} ended {lag:.0f}s before the scrape at "
                                  f"{now.at:.0f} (bound {bound:.0f}s)")

    def failures(self) -> list[str]:
        """Returns one line per property broken."""
        out = []
        for name, found in (("counter decreased", self.decreased), ("counter vanished", self.vanished),
                            ("ghost series", self.ghosts)):
            if found:
                out.append(f"{name}: {len(found)}{'+' if len(found) >= self.keep else ''}, e.g. {found[:3]}")
        return out

    def _example(self, found: list[str], line: str) -> None:
        if len(found) < self.keep:
            found.append(line)


def longest_polls(now: Scrape) -> dict[str, float]:
    """Returns, by "source/api", the longest poll so far as `cloud_job_exporter_poll_duration_seconds` bounds it: the
    smallest bucket holding every poll (real seconds; infinite past the last bucket)."""
    counts, buckets = {}, {}
    for (name, labels), value in now.counters.items():
        if name.startswith("cloud_job_exporter_poll_duration_seconds_"):
            key = f"{dict(labels)['source']}/{dict(labels)['api']}"
            if name.endswith("_count"):
                counts[key] = value
            elif name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(dict(labels)["le"]), value))
    return {key: min(le for le, n in buckets[key] if n >= count) for key, count in counts.items() if count}


def _series(key: tuple[str, Labels]) -> str:
    name, labels = key
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"


def job_ids(now: Scrape) -> dict[str, list[str]]:
    """Returns the scrape's MaxCompute and EMR job ids, by label, for the simulator's `ends`."""
    out: dict[str, list[str]] = {}
    for (_, label), ids in now.jobs.items():
        if label != "job_name":
            out.setdefault(label, []).extend(ids)
    return out


def exactly_once(final: Scrape, truth: Mapping[str, Any], emr_ended: Mapping[str, int]) -> dict[str, Any]:
    """Returns the exactly-once figures of the drained exporter's last scrape against the simulator's truth, with a
    `failures` list:

    - MaxCompute: `maxcompute_jobs_finished_total` by (project, quota, job type, status) equals GetJobInfo's final
      answers, each job once (no job counted twice, none answered and lost); with the jobs GetJobInfo skipped
      (`records_skipped_total`: not found once the simulator had forgotten them, ...), it equals the jobs the
      simulator listed to the exporter that have ended (none missed).
    - EMR: `emr_spark_job_runs_finished_total` by (workspace, queue, state, code type) equals the runs that ended
      after the first poll (which only marks what ended before it as seen) and by the end.
    """
    mc = truth["maxcompute"]
    counted = final.by("maxcompute_jobs_finished_total", ("project", "quota", "job_type", "status"), source="mc")
    skipped = {r: final.total("cloud_job_exporter_records_skipped_total", source="mc", api="GetJobInfo", reason=r)
               for r in JOB_INFO_SKIPS}
    emr = final.by("emr_spark_job_runs_finished_total", ("workspace", "queue", "state", "code_type"), source="emr")
    out: dict[str, Any] = {
        "maxcompute_counted": sum(counted.values()), "maxcompute_answered": sum(mc["answered"].values()),
        "maxcompute_answered_again": mc["answered_again"],
        "maxcompute_skipped": {k: v for k, v in skipped.items() if v},
        "maxcompute_listed_ended": mc["listed_ended"], "maxcompute_ended": mc["ended"],
        "emr_counted": sum(emr.values()), "emr_ended": sum(emr_ended.values()),
    }
    failures = []
    if counted != mc["answered"]:
        failures.append("MaxCompute counted by group differs from GetJobInfo's final answers: "
                        f"{_diff(counted, mc['answered'])}")
    if mc["answered_again"]:
        failures.append(f"MaxCompute: {mc['answered_again']} finished jobs were asked about again")
    if out["maxcompute_counted"] + sum(skipped.values()) != mc["listed_ended"]:
        failures.append(f"MaxCompute: counted {out['maxcompute_counted']:g} + skipped {sum(skipped.values()):g} != "
                        f"listed and ended {mc['listed_ended']}")
    if emr != dict(emr_ended):
        failures.append(f"EMR counted by group differs from the runs that ended: {_diff(emr, emr_ended)}")
    out["failures"] = failures
    return out


def _diff(got: Mapping[str, float], want: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    keys = sorted(k for k in got.keys() | want.keys() if got.get(k, 0) != want.get(k, 0))
    return {k: (got.get(k, 0), want.get(k, 0)) for k in keys[:10]}


async def soak_ends(client: httpx.AsyncClient, sim_url: str, now: Scrape) -> dict[str, Any]:
    """Returns the simulator's `ends` of the scrape's MaxCompute jobs and EMR runs."""
    response = await client.post(sim_url + SOAK_PREFIX + "ends", json=job_ids(now))
    response.raise_for_status()
    return response.json()


async def soak_truth(client: httpx.AsyncClient, sim_url: str, after: float) -> dict[str, Any]:
    """Returns the simulator's `truth` as of now, EMR's ended runs since `after`."""
    response = await client.get(sim_url + SOAK_PREFIX + "truth", params={"after": after}, timeout=120)
    response.raise_for_status()
    return response.json()


def warmed_up(first: Scrape, clock: SoakClock, apis: Iterable[tuple[str, str]]) -> list[str]:
    """Returns the APIs that had not succeeded at the clock's start by the scrape `first` (taken before the clock
    ran): the exactly-once truth counts from the first polls, which must all be at `start`."""
    return [f"{s}/{a}" for s, a in apis if first.last_success.get((s, a)) != clock.start]

