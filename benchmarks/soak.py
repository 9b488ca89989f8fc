#!/usr/bin/env python3
"""The soak: the simulator's clock accelerated through a simulated day of job churn over every source, the exporter
scraped over HTTP all along: its RSS curve, its series, and the checks of tests/e2e/soak.py (no ghost series,
counters monotonic, each finished job counted once).

    python benchmarks/soak.py                      # 24 simulated hours at 48x: 30 real minutes and the drain
    python benchmarks/soak.py --hours 1            # one simulated hour: 75 real seconds
    python benchmarks/soak.py --floor              # how fast this machine churns jobs, without and with HTTP

Three processes, so that each one's memory and CPU are its own: the simulator (`--role simulator`), the exporter
(`--role exporter`: built as the CLI builds it, every source at its defaults, its polls scheduled once per interval
of simulated time), and this one, which scrapes and checks. They share one clock: `SoakClock`, passed as four
numbers, read against `time.monotonic()`. Everything listens on 127.0.0.1; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import Child, report  # noqa: E402
from tests.e2e.soak import (  # noqa: E402
    Checks,
    Scrape,
    SoakClock,
    SoakSimulator,
    exactly_once,
    scrape,
    soak_clock,
    soak_ends,
    soak_truth,
    warmed_up,
)

KEY_ID, SECRET = "soak-key-id", "soak-secret-0123456789"
DAY = 86400.0
TARGET_JOBS_PER_DAY = 1_000_000
MIB = 1024 * 1024


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Returns a process's resident size (VmRSS) or its peak (VmHWM) in MiB; NaN once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    """Returns a process's CPU time so far (user + system); NaN once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet_logs() -> None:
    """Sends warnings and errors to stderr as JSON lines, and nothing else: a poll's info line, at some ten polls a
    real second, would cost the soak's CPU."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def stdin_line() -> str:
    """Returns the next line of stdin without blocking the event loop: the parent's "stop"."""
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# ---- the simulator and the exporter, each in its own process ------------------------------------------------------


async def simulator_role(args: argparse.Namespace) -> None:
    """Serves the soak's simulator on the shared clock until told to stop."""
    from exporter.simulator.run import serve

    clock = SoakClock.from_json(args.clock)
    sim = SoakSimulator({KEY_ID: SECRET}, seed=args.seed, clock=clock, running=args.running,
                        emr_active=args.emr_active)
    handle = await serve(sim)
    report("serving", url=handle.url)
    await stdin_line()
    await handle.stop()
    report("done")


async def exporter_role(args: argparse.Namespace) -> None:
    """Builds the exporter on the shared clock (every source at its defaults) and serves it until told to stop;
    warnings and errors go to stderr, as JSON lines."""
    from exporter.config import parse_config
    from exporter.credentials import static
    from exporter.runtime import build, serve
    from exporter.sources import KINDS
    from tests.e2e.soak import accelerated, per_job_apis, soak_sources

    quiet_logs()
    clock = SoakClock.from_json(args.clock)
    config = parse_config({"sources": soak_sources(args.sim_url)}, KINDS)
    exporter = accelerated(build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), clock=clock),
                           clock)
    stop = asyncio.Event()

    def started(url: str) -> None:
        report("serving", url=url, stale_after=per_job_apis(exporter), apis=[list(k) for k in exporter.store.states])

    serving = asyncio.create_task(serve(exporter, "127.0.0.1:0", "/metrics", started=started, stop=stop))
    await stdin_line()
    stop.set()
    await serving
    report("done")


# ---- the soak -----------------------------------------------------------------------------------------------------


@dataclass
class Hour:
    """One simulated hour as the scrapes saw it."""

    hour: int
    rss_mib: float  # the exporter's resident size at the hour's last scrape
    rss_max_mib: float  # and the largest over the hour's scrapes
    samples: int  # on /metrics at the hour's last scrape
    per_job_samples: int
    jobs: int  # distinct jobs with per-job series then
    maxcompute_ended: int  # jobs ended in the simulator since the start
    emr_ended: int
    recorded: int  # MaxCompute jobs GetJobInfo answered as finished or not found: the ids the exporter remembers
    real_s: float  # real seconds since the clock started


class Soak:
    """The checker's side: scrapes every `every` real seconds, checks each scrape, and notes each simulated hour."""

    def __init__(self, clock: SoakClock, client: httpx.AsyncClient, metrics: str, sim_url: str, pid: int,
                 checks: Checks) -> None:
        self.clock, self.client, self.metrics, self.sim_url, self.pid = clock, client, metrics, sim_url, pid
        self.checks = checks
        self.hours: list[Hour] = []
        self.emr_ended: Counter[str] = Counter()  # by group, summed over the hours' truths
        self._truth_until = clock.start
        self._rss_max = 0.0
        self.scrape_s: list[float] = []  # the checker's own time per scrape: fetch, parse, check

    async def checked_scrape(self) -> Scrape:
        """Returns a scrape, checked for monotonic counters and ghost series."""
        started = time.perf_counter()
        now = await scrape(self.client, self.metrics, self.clock)
        self.checks.counters(now)
        self.checks.ghosts_of(now, await soak_ends(self.client, self.sim_url, now))
        self.scrape_s.append(time.perf_counter() - started)
        self._rss_max = max(self._rss_max, rss_mib(self.pid))
        return now

    async def note_hour(self, now: Scrape, hour: int) -> None:
        """Adds the row of `hour` from the scrape that ended it."""
        truth = await soak_truth(self.client, self.sim_url, self._truth_until)
        self._truth_until = truth["until"]
        self.emr_ended.update(truth["emr_ended"])
        mc, rss = truth["maxcompute"], rss_mib(self.pid)
        jobs = sum(len(ids) for ids in now.jobs.values())
        self.hours.append(Hour(hour, round(rss, 1), round(max(self._rss_max, rss), 1), now.samples,
                               now.per_job_samples, jobs, mc["ended"], sum(self.emr_ended.values()),
                               sum(mc["answered"].values()) + mc["not_found"],
                               round(max(0.0, time.monotonic() - self.clock.origin), 1)))
        self._rss_max = 0.0

    async def run(self, every: float) -> None:
        """Scrapes until the clock stops, noting each simulated hour and the end."""
        await self.note_hour(await self.checked_scrape(), 0)
        next_hour = self.clock.start + 3600
        while True:
            await asyncio.sleep(min(every, self.clock.real_seconds_until(next_hour) + 0.05))
            now = await self.checked_scrape()
            if now.at >= min(next_hour, self.clock.end):
                await self.note_hour(now, round((now.at - self.clock.start) / 3600))
                next_hour += 3600
            if now.at >= self.clock.end:
                return

    async def drain(self, timeout: float) -> dict[str, Any]:
        """Returns the exactly-once figures once they hold with the clock stopped, or the last after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            now = await self.checked_scrape()
            truth = await soak_truth(self.client, self.sim_url, self._truth_until)
            ended = self.emr_ended + Counter(truth["emr_ended"])
            result = exactly_once(now, truth, ended)
            if not result["failures"] or time.monotonic() > deadline:
                self.emr_ended, self._truth_until = ended, truth["until"]
                result.update(drain_s=round(timeout - (deadline - time.monotonic()), 1), final=scrape_summary(now))
                return result
            await asyncio.sleep(2.0)


def scrape_summary(now: Scrape) -> dict[str, Any]:
    """Returns the exporter's own counts from a scrape: requests, failed and skipped polls, records skipped."""
    def by_reason(name: str) -> dict[str, float]:
        return {k: v for k, v in now.by(name, ("source", "api", "reason")).items() if v}

    return {
        "requests": now.total("cloud_job_exporter_api_requests_total"),
        "requests_not_200": now.total("cloud_job_exporter_api_requests_total")
        - now.total("cloud_job_exporter_api_requests_total", code="200"),
        "poll_errors": by_reason("cloud_job_exporter_poll_errors_total"),
        "polls_skipped": by_reason("cloud_job_exporter_polls_skipped_total"),
        "records_skipped": by_reason("cloud_job_exporter_records_skipped_total"),
        "job_series_dropped": now.dropped,
    }


async def until_polled(client: httpx.AsyncClient, metrics: str, clock: SoakClock, apis: int) -> Scrape:
    """Returns the first scrape in which every API has polled; fails once the clock has started without one."""
    while True:
        try:
            first = await scrape(client, metrics, clock)
            if len(first.last_success) == apis and all(first.last_success.values()):
                return first
        except httpx.TransportError:
            pass
        if clock() > clock.start:
            raise SystemExit("the warm-up ended before every API's first poll: raise --warmup")
        await asyncio.sleep(0.25)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the soak and returns every figure."""
    clock = soak_clock(args.warmup, args.factor, args.hours * 3600.0)
    common = ["--clock", clock.to_json()]
    with tempfile.TemporaryFile("w+") as log:
        sim = Child([sys.executable, __file__, "--role", "simulator", *common, "--seed", str(args.seed),
                     "--running", str(args.running), "--emr-active", str(args.emr_active)])
        exporter = None
        try:
            sim_url = sim.expect("serving", 60)["url"]
            exporter = Child([sys.executable, __file__, "--role", "exporter", *common, "--sim-url", sim_url],
                             stderr=log)
            out = await checked(args, clock, exporter.expect("serving", 60), sim_url, exporter.proc.pid,
                                sim.proc.pid)
        finally:
            for child in (exporter, sim):
                if child and child.proc.poll() is None:
                    child.stop()
        log.seek(0)
        # APScheduler's line for each poll skipped as an overlap: counted in polls_skipped_total already.
        logged = [line for line in log.read().splitlines() if "maximum number of running instances" not in line]
    return {
        "command": " ".join(["python", "benchmarks/soak.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: getattr(args, k) for k in ("hours", "factor", "running", "emr_active", "seed", "every")},
        **out, "warnings_logged": len(logged), "log_sample": logged[:5],
    }


async def checked(args: argparse.Namespace, clock: SoakClock, info: dict[str, Any], sim_url: str, exporter_pid: int,
                  sim_pid: int) -> dict[str, Any]:
    """Waits out the warm-up, scrapes and checks until the clock stops, drains; returns the figures."""
    async with httpx.AsyncClient(timeout=60) as client:
        metrics = info["url"]
        first = await until_polled(client, metrics, clock, len(info["apis"]))
        missed = warmed_up(first, clock, [tuple(a) for a in info["apis"]])
        if missed:
            raise SystemExit(f"APIs without a poll at the start instant: {missed}: raise --warmup")
        await asyncio.sleep(clock.real_seconds_until(clock.start + 1e-6))
        pids = {"exporter": exporter_pid, "simulator": sim_pid, "checker": os.getpid()}
        cpu = {k: cpu_seconds(p) for k, p in pids.items()}
        checks = Checks(info["stale_after"], clock.factor)
        run = Soak(clock, client, metrics, sim_url, exporter_pid, checks)
        print(f"soak: {args.hours:g} simulated hours at {args.factor:g}x, a scrape every {args.every:g} real s",
              file=sys.stderr)
        await run.run(args.every)
        real_s = time.monotonic() - clock.origin
        cpu = {k: round(cpu_seconds(p) - cpu[k], 1) for k, p in pids.items()}
        result = await run.drain(args.drain)
    return {
        "real_s": round(real_s, 1), "cpu_s": cpu,
        "peak_rss_mib": {k: round(rss_mib(p, "VmHWM"), 1) for k, p in pids.items()},
        "hours": [asdict(h) for h in run.hours],
        "checks": {"scrapes": checks.scrapes, "counter_samples": checks.counter_samples,
                   "jobs_checked": checks.jobs_checked, "grace_s": checks.grace, "stale_after_s": checks.stale_after,
                   "longest_lag_s": {k: round(v, 1) for k, v in checks.longest_lag.items()},
                   "bound_s": {k: round(checks.bound(k), 1) for k in checks.longest_lag},
                   "longest_poll_real_s": checks.longest_poll,
                   "oldest_data_s": {k: round(v, 1) for k, v in checks.oldest_data.items()},
                   "failures": checks.failures()},
        "exactly_once": result,
        "scrape_s": {"median": round(sorted(run.scrape_s)[len(run.scrape_s) // 2], 3),
                     "max": round(max(run.scrape_s), 3)},
    }


# ---- the floor ----------------------------------------------------------------------------------------------------


def draw_rates(running: int, emr_active: int, seed: int) -> dict[str, float]:
    """Returns the jobs the simulator ends per CPU second with no HTTP at all: MaxCompute's workload advanced second
    by second through a simulated hour, and EMR's runs of both workspaces listed minute by minute through one."""
    from exporter.simulator.emr_serverless_spark import EmrServerlessSparkService
    from exporter.simulator.emr_serverless_spark import WorkloadParams as EmrParams
    from exporter.simulator.faults import Faults
    from exporter.simulator.workload import Workload, WorkloadParams

    now = [float(math.floor(time.time()))]
    workload = Workload(WorkloadParams(target_running=running), seed=seed, clock=lambda: now[0])
    started = time.process_time()
    for _ in range(3600):
        now[0] += 1
        workload.advance()
    mc = workload.summary()["ended"] / (time.process_time() - started)
    emr = EmrServerlessSparkService(Faults(seed), seed=seed, clock=lambda: now[0],
                                    params=EmrParams(target_active=emr_active))
    begin, ended = now[0], set()
    started = time.process_time()
    for _ in range(60):
        now[0] += 60
        for ws in emr.workspaces:
            ended.update(r.job_run_id for r in emr.runs(ws, now[0]) if begin < r.end_at <= now[0])
    return {"maxcompute_jobs_per_cpu_s": round(mc), "emr_runs_per_cpu_s": round(len(ended) / (time.process_time()
                                                                                            - started))}


async def http_rates(url: str, clock: SoakClock, emr_active: int) -> dict[str, float]:
    """Returns what the exporter's own sources get from a simulator process per real second: GetRunningJobs pages,
    GetJobInfo answers (the finished-job tracker's rounds) and ListJobRuns pages."""
    from exporter.config import parse_config
    from exporter.contract import RequestCounter
    from exporter.credentials import static
    from exporter.sources import KINDS
    from tests.e2e.soak import soak_sources

    configs = parse_config({"sources": soak_sources(url)}, KINDS).sources
    opened = [KINDS[c.kind].open(c, lambda: static(KEY_ID, SECRET), RequestCounter(), None, clock) for c in configs]
    mc, emr = opened[0], opened[1]
    try:
        started, pages = time.perf_counter(), 0
        for _ in range(3):
            running = await mc.running_jobs()
            pages += running.pages
        running_pages = pages / (time.perf_counter() - started)
        ids = frozenset(j.instance_id for j in running.result.jobs)
        mc.trackers[None].observe("floor", ids)
        mc.trackers[None].observe("floor", frozenset())  # every listed job left: all are asked about, round after round
        started, asked = time.perf_counter(), 0
        for _ in range(4):
            asked += (await mc.trackers[None].poll()).pages
        answers = asked / (time.perf_counter() - started)
        started, pages = time.perf_counter(), 0
        for api in emr.apis():
            for _ in range(3):
                pages += (await api.fetch()).pages
        emr_pages = pages / (time.perf_counter() - started)
    finally:
        for source in opened:
            await source.aclose()
    return {"running_pages_per_s": round(running_pages), "job_info_answers_per_s": round(answers),
            "emr_pages_per_s": round(emr_pages), "emr_active": emr_active}


async def floor(args: argparse.Namespace) -> dict[str, Any]:
    """Returns the floor: the simulator's churn with no HTTP, what the exporter's sources get over HTTP from a
    simulator process (2,000 MaxCompute jobs running, `--emr-active` runs a workspace), and what the target needs."""
    quiet_logs()
    draw = draw_rates(args.running, args.emr_active, args.seed)
    clock = soak_clock(0.0, 1.0, 30 * DAY)  # real time: the floor times requests, not a simulated day
    sim = Child([sys.executable, __file__, "--role", "simulator", "--clock", clock.to_json(), "--seed",
                 str(args.seed), "--running", "2000", "--emr-active", str(args.emr_active)])
    try:
        http = await http_rates(sim.expect("serving", 60)["url"], clock, args.emr_active)
    finally:
        sim.stop()
    need = TARGET_JOBS_PER_DAY / DAY * args.factor
    return {"draw": draw, "http": http, "factor": args.factor, "needed_jobs_per_real_s": round(need),
            "job_info_bound_jobs_per_day": round(http["job_info_answers_per_s"] * DAY / args.factor)}


# ---- the report ---------------------------------------------------------------------------------------------------


def print_soak(out: dict[str, Any]) -> None:
    """Prints the soak's figures: the run, the churn, the hours' table and each check."""
    s, eo, checks = out["settings"], out["exactly_once"], out["checks"]
    mc, emr = eo["maxcompute_ended"], eo["emr_ended"]
    per_day = (mc + emr) / (s["hours"] / 24)
    print(f"\n{s['hours']:g} simulated hours at {s['factor']:g}x in {out['real_s'] / 60:.1f} real minutes, then "
          f"{eo['drain_s']:g} s of drain; {out['date']}; nproc {out['machine']['nproc']}, Python "
          f"{out['machine']['python']}; CPU: exporter {out['cpu_s']['exporter']:.0f} s, simulator "
          f"{out['cpu_s']['simulator']:.0f} s, checker {out['cpu_s']['checker']:.0f} s; peak RSS: exporter "
          f"{out['peak_rss_mib']['exporter']:.0f} MiB, simulator {out['peak_rss_mib']['simulator']:.0f} MiB\n")
    print(f"churn: {mc:,} MaxCompute jobs and {emr:,} EMR runs ended ({per_day:,.0f} a simulated day: "
          f"{per_day / TARGET_JOBS_PER_DAY:.2f} of {TARGET_JOBS_PER_DAY:,}); {eo['maxcompute_listed_ended']:,} of the "
          f"MaxCompute jobs were listed to the exporter before they ended\n")
    print("| simulated hour | exporter RSS MiB (max in the hour) | samples on /metrics | per-job samples | jobs with "
          "per-job series | jobs ended so far | finished-job ids remembered |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for h in out["hours"]:
        print(f"| {h['hour']} | {h['rss_mib']:.0f} ({h['rss_max_mib']:.0f}) | {h['samples']:,} | "
              f"{h['per_job_samples']:,} | {h['jobs']:,} | {h['maxcompute_ended'] + h['emr_ended']:,} | "
              f"{h['recorded']:,} |")
    final = eo["final"]
    print(f"\nchecks over {checks['scrapes']} scrapes ({checks['counter_samples']:,} counter and histogram samples "
          f"each, {checks['jobs_checked']:,} per-job series looked up):")
    broken = {line.split(":")[0]: line for line in checks["failures"]}
    print(f"- counters monotonic: {broken.get('counter decreased', 'yes')}; none vanished: "
          f"{broken.get('counter vanished', 'yes')}")
    print(f"- no ghost series: {broken.get('ghost series', 'yes')}; longest a finished job's series stayed "
          f"{checks['longest_lag_s']} simulated s, bound {checks['bound_s']} (stale_after {checks['stale_after_s']} "
          f"+ the longest poll {checks['longest_poll_real_s']} real s x {out['settings']['factor']:g} + "
          f"{checks['grace_s']:g} s of exposition refresh)")
    print(f"- oldest data served, by API (simulated s since its last successful poll): {checks['oldest_data_s']}")
    print(f"- exactly once: MaxCompute counted {eo['maxcompute_counted']:,.0f} = GetJobInfo's final answers "
          f"{eo['maxcompute_answered']:,} (asked again: {eo['maxcompute_answered_again']}), skipped "
          f"{eo['maxcompute_skipped']}, of {eo['maxcompute_listed_ended']:,} listed and ended; EMR counted "
          f"{eo['emr_counted']:,.0f} of {eo['emr_ended']:,} ended: {eo['failures'] or 'yes'}")
    print(f"- exporter: {final['requests']:,.0f} requests ({final['requests_not_200']:,.0f} not 200), poll errors "
          f"{final['poll_errors'] or 'none'}, polls skipped {final['polls_skipped'] or 'none'}, per-job series "
          f"dropped by the cap {final['job_series_dropped']:g}; {out['warnings_logged']} warnings logged")


def print_floor(out: dict[str, Any]) -> None:
    """Prints the floor's figures and what the target asks of them."""
    draw, http = out["draw"], out["http"]
    print(f"\nsimulator alone (no HTTP): {draw['maxcompute_jobs_per_cpu_s']:,} MaxCompute jobs and "
          f"{draw['emr_runs_per_cpu_s']:,} EMR runs ended per CPU second")
    print(f"exporter <- simulator over HTTP: {http['running_pages_per_s']:,} GetRunningJobs pages/s (20 jobs each), "
          f"{http['job_info_answers_per_s']:,} GetJobInfo answers/s, {http['emr_pages_per_s']:,} ListJobRuns pages/s "
          f"({http['emr_active']} active runs a workspace)")
    print(f"1,000,000 jobs a simulated day at {out['factor']:g}x: {out['needed_jobs_per_real_s']:,} jobs a real "
          f"second; GetJobInfo alone (one answer per finished MaxCompute job) bounds MaxCompute at "
          f"{out['job_info_bound_jobs_per_day']:,} jobs a simulated day")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument("--factor", type=float, default=48.0,
                   help="simulated seconds per real second (default 48: a simulated day in 30 real minutes)")
    p.add_argument("--running", type=int, default=800,
                   help="MaxCompute jobs running in steady state (default 800: some 160,000 jobs a simulated day)")
    p.add_argument("--emr-active", type=int, default=250,
                   help="EMR runs submitted and not ended, per workspace (default 250: some 117,000 runs a day)")
    p.add_argument("--every", type=float, default=5.0, help="real seconds between scrapes (default 5)")
    p.add_argument("--warmup", type=float, default=20.0,
                   help="real seconds the clock stands at the start while the exporter makes its first polls")
    p.add_argument("--drain", type=float, default=120.0,
                   help="real seconds at most, clock stopped, for the exporter to catch up before the final checks")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--floor", action="store_true", help="measure the floor only")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--role", choices=("main", "simulator", "exporter"), default="main", help=argparse.SUPPRESS)
    p.add_argument("--clock", help=argparse.SUPPRESS)
    p.add_argument("--sim-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "simulator":
        asyncio.run(simulator_role(args))
        return 0
    if args.role == "exporter":
        asyncio.run(exporter_role(args))
        return 0
    out = asyncio.run(floor(args) if args.floor else soak(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if args.floor:
        print_floor(out)
        return 0
    print_soak(out)
    return 1 if out["checks"]["failures"] or out["exactly_once"]["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
