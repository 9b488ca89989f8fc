"""The living workload of MaxCompute jobs behind the simulated APIs.

Each job's whole life is drawn when it arrives: submission, the wait for resources, the run and how it ends. Its
state and resource use at any instant are then pure functions of time, so the three APIs agree on every job and a
snapshot of a past instant is exact. The workload advances lazily to the clock on each request, in whole seconds
(every time the APIs report is in seconds), and all randomness comes from one seeded generator: the same seed, clock
readings and control calls give the same jobs.

Distributions (see docs/simulator.md): Poisson arrivals; log-normal waits (median seconds) with a small share of
starving jobs (median a quarter of an hour); log-normal run times from seconds to hours; CPU and memory use that swing
sinusoidally around a per-job level, so their integrals over a run have a closed form.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
import string
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SUBSCRIPTION = "subscription"
PAY_AS_YOU_GO = "payasyougo"
RUNNING = "running"
TERMINATED = "terminated"
FAILED = "failed"
CANCELLED = "cancelled"

JOB_TYPES = (("SQL", 0.6), ("SQLRT", 0.15), ("SPARK", 0.13), ("MR", 0.12))
PRIORITIES = ((1, 0.4), (3, 0.2), (5, 0.2), (7, 0.1), (9, 0.1))  # MaxCompute: 0 is the highest, 9 the lowest
MB_PER_CORE = 4096  # one CU is one core and 4 GB
WAIT_SIGMA = 1.3
STARVE_SIGMA = 0.6
RUN_SIGMA = 1.6
MAX_RUN_SECONDS = 24 * 3600
# A clock jump longer than this does not replay every arrival in the gap: only the last hour's arrivals are drawn.
CATCH_UP_SECONDS = 3600
TEMPLATES_PER_PROJECT = 40  # recurring scheduled queries share a signature and an upstream node
DATAWORKS_FRACTION = 0.7
_ID_CHARS = string.ascii_lowercase + string.digits
MEMO_VIEWS = 64  # views kept: each listing's parameters at the few instants its pages ask about (a source split
# into 16 quota units asks about 32 listings at once)
# More starts and ends than this in one step re-sort the running jobs instead of placing each by bisection.
REORDER_LIMIT = 256


@dataclass(frozen=True, slots=True)
class Quota:
    """A compute quota jobs run in."""

    nickname: str
    type: str = SUBSCRIPTION
    cpu_cores: int = 0  # reserved plus elastic reserved cores; 0 for pay-as-you-go, which has no reservation


@dataclass(frozen=True)
class WorkloadParams:
    """The shape of the simulated workload. The arrival rate follows from `target_running` (Little's law)."""

    target_running: int = 200
    projects: tuple[str, ...] = ("dw_prod", "dw_staging", "ads_report", "ml_feature")
    quotas: tuple[Quota, ...] = (
        Quota("os_bigdata", SUBSCRIPTION, 2000),
        Quota("etl_quota", SUBSCRIPTION, 800),
        Quota("os_PayAsYouGoQuota", PAY_AS_YOU_GO),
    )
    owners: tuple[str, ...] = ("ALIYUN$alice@example.com", "RAM$etl-bot", "RAM$bi-report", "RAM$bob@example.com")
    median_wait_seconds: float = 3.0
    starve_fraction: float = 0.02
    starve_median_seconds: float = 900.0
    median_run_seconds: float = 120.0
    failed_fraction: float = 0.05
    cancelled_fraction: float = 0.02
    skew_fraction: float = 0.03
    oddity_fraction: float = 0.02  # jobs whose jobType and jobOwner carry a trailing "\n", as in the vendor samples
    retain_finished_seconds: int = 24 * 3600
    retain_finished_count: int = 20_000
    tenant_id: str = "478403690625249"
    region: str = "cn-shanghai"

    def mean_wait_seconds(self) -> float:
        """Returns the mean of the wait distribution (the mixture of normal and starving waits)."""
        return (1 - self.starve_fraction) * _lognormal_mean(self.median_wait_seconds, WAIT_SIGMA) + (
            self.starve_fraction * _lognormal_mean(self.starve_median_seconds, STARVE_SIGMA)
        )

    def mean_run_seconds(self) -> float:
        """Returns the mean run time."""
        return _lognormal_mean(self.median_run_seconds, RUN_SIGMA)


def _lognormal_mean(median: float, sigma: float) -> float:
    return median * math.exp(sigma * sigma / 2)


@dataclass(slots=True, eq=False)
class Job:
    """One job instance with its whole timeline; times are UNIX seconds."""

    seq: int
    instance_id: str
    project: str
    quota: Quota
    owner: str
    job_type: str
    priority: int
    signature: str
    ext_plant_from: str
    ext_node_id: str
    ext_node_on_duty: str
    submitted_at: int
    running_at: int  # when it gets its first resources; later than now while it waits
    end_at: int
    planned_run: int  # the run it would need to finish; longer than the actual run for failed and cancelled jobs
    outcome: str
    cpu_request: int  # cores
    memory_request: int  # MB
    cpu_level: float
    memory_level: float
    swing: float
    period: float
    phase: float
    input_bytes: int
    skewed: bool
    odd: bool
    millis: int = field(default=0)  # the sub-second part of the submission, as in the instance id
    # The MaxCompute records' fields that never change, as JSON text: written on first use, freed with the job.
    common_json: str | None = field(default=None, repr=False)

    def is_running(self, t: int) -> bool:
        """Returns whether the job holds resources at `t`."""
        return self.running_at <= t < self.end_at

    def status(self, t: int) -> str:
        """Returns "running" until the job ends (MaxCompute counts a waiting instance as running), then its outcome."""
        return RUNNING if t < self.end_at else self.outcome

    def wait_seconds(self, t: int) -> int:
        """Returns how long the job waited for resources, counted up to `t` while it still waits."""
        return min(t, self.running_at) - self.submitted_at

    def ratios(self, t: int) -> tuple[float, float]:
        """Returns (CPU use over CPU request, memory use over memory request) at `t`, both 0 when not running."""
        if not self.is_running(t):
            return 0.0, 0.0
        # Both swing with one sine; memory by half the CPU's amplitude.
        wave = math.sin(2 * math.pi * (t - self.running_at) / self.period + self.phase)
        return self.cpu_level + self.swing * wave, self.memory_level + self.swing / 2 * wave

    def cpu_ratio(self, t: int) -> float:
        """Returns CPU use over CPU request at `t` (0 when not running)."""
        return self.ratios(t)[0]

    def memory_ratio(self, t: int) -> float:
        """Returns memory use over memory request at `t` (0 when not running)."""
        return self.ratios(t)[1]

    def cpu_cores(self, t: int) -> float:
        """Returns the cores in use at `t`."""
        return self.cpu_request * self.cpu_ratio(t)

    def memory_mb(self, t: int) -> float:
        """Returns the memory in use at `t`, in MB."""
        return self.memory_request * self.memory_ratio(t)

    def progress(self, t: int) -> float:
        """Returns the share of the work done at `t`: 0 before the run, below 1 while running."""
        if t < self.running_at:
            return 0.0
        done = (min(t, self.end_at) - self.running_at) / self.planned_run
        return min(done, 1.0 if self.outcome == TERMINATED and t >= self.end_at else 0.99)

    def _integral(self, level: float, swing: float) -> float:
        # The integral of level + swing * sin(w x + phase) over the run [0, T].
        length = self.end_at - self.running_at
        w = 2 * math.pi / self.period
        return level * length + swing / w * (math.cos(self.phase) - math.cos(w * length + self.phase))

    def cu_usage(self) -> int:
        """Returns the CPU the whole run consumed, in 100 x core x seconds (GetJobInfo's `cuUsage`)."""
        return round(100 * self.cpu_request * self._integral(self.cpu_level, self.swing))

    def memory_usage(self) -> int:
        """Returns the memory the whole run consumed, in MB x seconds (GetJobInfo's `memoryUsage`)."""
        return round(self.memory_request * self._integral(self.memory_level, self.swing / 2))


def _newest_first(job: Job) -> tuple[int, str]:
    return -job.submitted_at, job.instance_id


def _descending_submission(job: Job) -> int:
    return -job.submitted_at


class Workload:
    """MaxCompute jobs arriving, waiting, running and finishing; roughly `target_running` run at any time.

    Thread-safe: the server thread reads it while a test changes it.
    """

    def __init__(self, params: WorkloadParams | None = None, *, seed: int = 0, clock: Callable[[], float] = time.time):
        self.params = params or WorkloadParams()
        self._target = self.params.target_running
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.RLock()
        self._seq = itertools.count()
        self._jobs: dict[str, Job] = {}  # every job still known: waiting, running and retained finished ones
        self._waiting: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._finished: deque[Job] = deque()  # in the order they ended
        self._starts: list[tuple[int, int, Job]] = []  # heaps of (time, seq, job); stale entries are skipped
        self._ends: list[tuple[int, int, Job]] = []
        self._signatures: dict[tuple[str, int], str] = {}
        self._newest_first: list[Job] | None = None  # the running jobs by _newest_first, kept in step by _settle
        self._views: OrderedDict[Hashable, Any] = OrderedDict()
        self._edits = 0  # control calls so far: each may change who was active at any instant
        self._forgotten = 0  # finished jobs dropped by retention so far
        self._ended = 0  # jobs that ended since the start: the churn a soak reports
        self._forgotten_until = -1  # when the last of them ended
        self.now = math.floor(clock())
        self.started_at = self.now
        self._next_arrival = self._draw_next_arrival(self.now)
        self._populate(self._target)

    # ---- reading ----------------------------------------------------------------------------------------------

    def advance(self) -> int:
        """Moves the workload to the clock's current second and returns it (time never goes backwards)."""
        with self._lock:
            now = math.floor(self._clock())
            if now > self.now:
                self.now = now
                self._arrive_until(now)
                self._settle()
            return self.now

    def get(self, instance_id: str) -> Job | None:
        """Returns a waiting, running or retained finished job by id."""
        return self._jobs.get(instance_id)

    def memo(self, key: Hashable, at: int, compute: Callable[[], T]) -> T:
        """Returns `compute()`, a view of the jobs as they stand at `at` (now or earlier), computed once per `key`
        while those jobs stay as they are.

        Who is active at a past instant, and how each of them stands then, does not change as the clock moves on, so
        a view outlives the second it was made in (all pages of one poll share it). A control call, or retention
        forgetting a job that was active at `at`, makes the next call compute it afresh. The last MEMO_VIEWS are kept.
        """
        with self._lock:
            token = (key, at, self._edits, self._forgotten if self._forgotten_until > at else 0)
            if token in self._views:
                self._views.move_to_end(token)
            else:
                self._views[token] = compute()
                if len(self._views) > MEMO_VIEWS:
                    self._views.popitem(last=False)
            return self._views[token]

    def running_newest_first(self) -> list[Job]:
        """Returns the running jobs, newest submission first (ties by id).

        The list is the workload's own, kept in step as jobs start and end: copy it to keep it past the lock.
        """
        with self._lock:
            if self._newest_first is None:
                self._newest_first = sorted(self._running.values(), key=_newest_first)
            return self._newest_first

    def running_submitted_between(self, start: int, end: int) -> list[Job]:
        """Returns the running jobs submitted in [start, end], newest first, found by bisection."""
        with self._lock:
            jobs = self.running_newest_first()
            lo = bisect_left(jobs, -end, key=_descending_submission)
            hi = bisect_right(jobs, -start, key=_descending_submission)
            return jobs[lo:hi]

    def active_at(self, t: int) -> list[Job]:
        """Returns the jobs submitted and not yet ended at `t` (waiting or running); `t` after now means now.

        Before the simulator started the answer is incomplete: jobs that ended before the start were never drawn.
        """
        with self._lock:
            if t >= self.now:
                return [*self._waiting.values(), *self._running.values()]
            return [j for j in self._jobs.values() if j.submitted_at <= t < j.end_at]

    def summary(self) -> dict[str, Any]:
        """Returns counts and knobs, for `GET /-/sim/workload`."""
        with self._lock:
            return {
                "now": self.now,
                "started_at": self.started_at,
                "target_running": self._target,
                "arrival_rate_per_second": round(self._rate(), 6),
                "running": len(self._running),
                "waiting": len(self._waiting),
                "finished_retained": len(self._finished),
                "ended": self._ended,
            }

    # ---- control ----------------------------------------------------------------------------------------------

    def set_target(self, target: int) -> None:
        """Sets the steady-state number of running jobs and reaches it at once.

        Extra jobs appear already running (drawn as in steady state); surplus jobs, the newest first, are cancelled now.
        """
        if target < 0:
            raise ValueError("target_running must not be negative")
        with self._lock:
            self.advance()
            self._edits += 1
            surplus = len(self._running) - target
            for job in self.running_newest_first()[: max(surplus, 0)]:
                self._end_now(job, CANCELLED)
            for _ in range(-surplus):
                self._admit(self._steady_running_job())
            self._target = target
            self._next_arrival = self._draw_next_arrival(self.now)
            self._settle()

    def starve(
        self, count: int, waited_seconds: int = 1800, remaining_seconds: int = 3600, quota: str | None = None
    ) -> list[str]:
        """Adds `count` jobs that have waited `waited_seconds` for resources and will wait `remaining_seconds` more.

        Returns their ids. Their submission is back-dated, so they show long waits at once (for alert tests).
        """
        chosen = self._quota(quota) if quota else None
        with self._lock:
            self.advance()
            self._edits += 1
            jobs = [
                self._make_job(self.now - waited_seconds, waited_seconds + remaining_seconds, self._draw_run(), chosen)
                for _ in range(count)
            ]
            for job in jobs:
                self._admit(job)
            self._settle()
            return [j.instance_id for j in jobs]

    def inject_running(self, count: int) -> list[str]:
        """Submits `count` jobs now that start at once (what `page_drift` uses to push jobs onto page 1)."""
        with self._lock:
            self.advance()
            self._edits += 1
            jobs = [self._make_job(self.now, 0, self._draw_run()) for _ in range(count)]
            for job in jobs:
                self._admit(job)
            self._settle()
            return [j.instance_id for j in jobs]

    # ---- the timeline -----------------------------------------------------------------------------------------

    def _rate(self) -> float:
        return self._target / self.params.mean_run_seconds()

    def _draw_next_arrival(self, after: float) -> float:
        rate = self._rate()
        return after + self._rng.expovariate(rate) if rate > 0 else math.inf

    def _arrive_until(self, now: int) -> None:
        self._next_arrival = max(self._next_arrival, now - CATCH_UP_SECONDS)
        while self._next_arrival < now + 1:  # arrivals within second `now` are submitted at `now`
            submitted = math.floor(self._next_arrival)
            self._admit(self._make_job(submitted, self._draw_wait(), self._draw_run()))
            self._next_arrival = self._draw_next_arrival(self._next_arrival)

    def _admit(self, job: Job) -> None:
        self._jobs[job.instance_id] = job
        self._waiting[job.instance_id] = job
        heapq.heappush(self._starts, (job.running_at, job.seq, job))
        heapq.heappush(self._ends, (job.end_at, job.seq, job))

    def _settle(self) -> None:
        """Applies every start and end due by now and drops finished jobs past retention."""
        started, ended = [], []
        while self._starts and self._starts[0][0] <= self.now:
            t, _, job = heapq.heappop(self._starts)
            if t == job.running_at and self._waiting.pop(job.instance_id, None):
                self._running[job.instance_id] = job
                started.append(job)
        while self._ends and self._ends[0][0] <= self.now:
            t, _, job = heapq.heappop(self._ends)
            if t == job.end_at and self._running.pop(job.instance_id, None):
                self._finished.append(job)
                ended.append(job)
        self._ended += len(ended)
        self._prune()
        self._reorder(started, ended)

    def _reorder(self, started: list[Job], ended: list[Job]) -> None:
        """Keeps the newest-first list in step with the running jobs (a few dozen change each second)."""
        order = self._newest_first
        if order is None:
            return
        if len(started) + len(ended) > REORDER_LIMIT:
            self._newest_first = None  # sorted afresh when next asked for
            return
        for job in started:  # first, as a job may start and end within one step
            insort(order, job, key=_newest_first)
        for job in ended:
            del order[bisect_left(order, _newest_first(job), key=_newest_first)]

    def _prune(self) -> None:
        keep_after = self.now - self.params.retain_finished_seconds
        while self._finished and (
            len(self._finished) > self.params.retain_finished_count or self._finished[0].end_at < keep_after
        ):
            job = self._finished.popleft()
            self._jobs.pop(job.instance_id, None)
            self._forgotten += 1
            self._forgotten_until = max(self._forgotten_until, job.end_at)

    def _end_now(self, job: Job, outcome: str) -> None:
        job.end_at, job.outcome = self.now, outcome
        heapq.heappush(self._ends, (job.end_at, job.seq, job))

    def _populate(self, running: int) -> None:
        """Fills the steady state at start: `running` jobs mid-run and the jobs waiting behind them."""
        for _ in range(running):
            self._admit(self._steady_running_job())
        for _ in range(round(self._rate() * self.params.mean_wait_seconds())):
            # Likewise a job caught waiting: a length-biased wait, of which a uniformly drawn part has passed.
            wait = self._draw_wait(length_biased=True)
            waited = self._rng.randrange(wait)
            self._admit(self._make_job(self.now - waited, wait, self._draw_run()))
        self._settle()

    def _steady_running_job(self) -> Job:
        # A job caught mid-run in steady state has a length-biased run time and a uniformly drawn age within it.
        run = self._draw_run(length_biased=True)
        started = self.now - self._rng.randrange(run)
        wait = self._draw_wait()
        return self._make_job(started - wait, wait, run)

    # ---- drawing jobs -----------------------------------------------------------------------------------------

    def _lognormal(self, median: float, sigma: float, length_biased: bool) -> float:
        # Length-biasing a log-normal shifts its log-median by sigma squared.
        shift = sigma * sigma if length_biased else 0.0
        return median * math.exp(shift + sigma * self._rng.gauss(0.0, 1.0))

    def _draw_wait(self, length_biased: bool = False) -> int:
        p = self.params
        normal = (1 - p.starve_fraction) * (_lognormal_mean(p.median_wait_seconds, WAIT_SIGMA) if length_biased else 1)
        starving = p.starve_fraction * (_lognormal_mean(p.starve_median_seconds, STARVE_SIGMA) if length_biased else 1)
        if self._rng.random() * (normal + starving) < starving:
            wait = self._lognormal(p.starve_median_seconds, STARVE_SIGMA, length_biased)
        else:
            wait = self._lognormal(p.median_wait_seconds, WAIT_SIGMA, length_biased)
        return max(1, round(wait)) if length_biased else round(wait)

    def _draw_run(self, length_biased: bool = False) -> int:
        run = self._lognormal(self.params.median_run_seconds, RUN_SIGMA, length_biased)
        return min(MAX_RUN_SECONDS, max(1, round(run)))

    def _weighted(self, choices: tuple[tuple[T, float], ...]) -> T:
        return self._rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]

    def _quota(self, nickname: str) -> Quota:
        for quota in self.params.quotas:
            if quota.nickname == nickname:
                return quota
        raise ValueError(f"unknown quota {nickname!r}")

    def _signature(self, project: str, template: int) -> str:
        key = (project, template)
        if key not in self._signatures:
            self._signatures[key] = hashlib.sha1(f"{project}/query-{template}".encode()).hexdigest()
        return self._signatures[key]

    def _outcome(self, run: int) -> tuple[str, int]:
        """Returns (outcome, planned run); a failed or cancelled job stops part-way through its planned run."""
        p, draw = self.params, self._rng.random()
        if draw < p.failed_fraction + p.cancelled_fraction:
            outcome = FAILED if draw < p.failed_fraction else CANCELLED
            return outcome, math.ceil(run / self._rng.uniform(0.1, 0.9))
        return TERMINATED, run

    def _instance_id(self, submitted_at: int, millis: int) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(submitted_at))
        while True:
            suffix = "".join(self._rng.choices(_ID_CHARS, k=11))
            instance_id = f"{stamp}{millis:03d}{suffix}"
            if instance_id not in self._jobs:
                return instance_id

    def _make_job(self, submitted_at: int, wait: int, run: int, quota: Quota | None = None) -> Job:
        """Draws one job submitted at `submitted_at` that waits `wait` seconds and then runs `run` seconds."""
        p, rng = self.params, self._rng
        project = rng.choice(p.projects)
        owner = rng.choice(p.owners)
        template = rng.randrange(TEMPLATES_PER_PROJECT)
        scheduled = rng.random() < DATAWORKS_FRACTION
        outcome, planned = self._outcome(run)
        cpu_request = min(2000, max(1, round(self._lognormal(16, 1.2, False))))
        cpu_level = rng.uniform(0.3, 0.85)
        swing = rng.uniform(0.0, min(cpu_level - 0.05, 0.98 - cpu_level))
        millis = rng.randrange(1000)
        return Job(
            seq=next(self._seq),
            instance_id=self._instance_id(submitted_at, millis),
            project=project,
            quota=quota or rng.choice(p.quotas),
            owner=owner,
            job_type=self._weighted(JOB_TYPES),
            priority=self._weighted(PRIORITIES),
            signature=self._signature(project, template),
            ext_plant_from="Dataworks" if scheduled else "",
            ext_node_id=str(76_000_000 + p.projects.index(project) * 1000 + template) if scheduled else "",
            ext_node_on_duty=str(int(hashlib.sha1(owner.encode()).hexdigest()[:13], 16)) if scheduled else "",
            submitted_at=submitted_at,
            running_at=submitted_at + wait,
            end_at=submitted_at + wait + run,
            planned_run=planned,
            outcome=outcome,
            cpu_request=cpu_request,
            memory_request=cpu_request * MB_PER_CORE * rng.choice((1, 1, 2)) // rng.choice((1, 2)),
            cpu_level=cpu_level,
            memory_level=rng.uniform(0.05 + swing / 2, 0.98 - swing / 2),
            swing=swing,
            period=rng.uniform(60.0, 900.0),
            phase=rng.uniform(0.0, 2 * math.pi),
            input_bytes=round(self._lognormal(2**30, 2.0, False)),
            skewed=rng.random() < p.skew_fraction,
            odd=rng.random() < p.oddity_fraction,
            millis=millis,
        )
