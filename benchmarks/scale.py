#!/usr/bin/env python3
"""The scale benchmark (issue 13): one MaxCompute source whose jobs are spread over Q quotas, polled on its real
schedule by one exporter process, then by M shards, at 1,000, 20,000 and 100,000 running jobs.

    python benchmarks/scale.py                          # the figures in docs/performance.md (about 30 minutes)
    python benchmarks/scale.py --jobs 100000 --minutes 6
    python benchmarks/scale.py --quick                  # 1,000 jobs, a minute a mode: a smoke run
    python benchmarks/scale.py --json out.json          # also write every figure as JSON

Processes, so that each one's CPU and memory are its own: the simulator (`python -m exporter simulate --quotas Q`),
the exporters (`python -m exporter --config.file ...`, with `--shard i --total-shards M` when sharded, each as the
CLI starts it) and this one, which checks them over HTTP every `--every` seconds and reads their JSON logs. For each
exporter it reports GetRunningJobs' poll cycle against its interval (from the `poll` log lines), the pace it settled
at (`cloud_job_exporter_poll_interval_seconds`), the share of the running jobs it served at each check
(`maxcompute_running_jobs`, summed over the shards), scrape p50/p99 with Prometheus' Accept and gzip (the raw-socket
scrapers of benchmarks/run.py, while the polls go on), peak RSS (VmHWM) and CPU seconds per minute. Per-job series are
on and uncapped unless `--max-job-series` says. Everything listens on 127.0.0.1; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import KEY_ID, SECRET, Plan, scrape, start_simulator  # noqa: E402
from benchmarks.soak import cpu_seconds, rss_mib  # noqa: E402
from tests.e2e.prom import free_port  # noqa: E402

INTERVAL = 30.0  # GetRunningJobs' default interval: the bound a poll cycle is measured against
RUNNING = re.compile(rb"^maxcompute_running_jobs\{[^}]*\} (\S+)$", re.MULTILINE)
PACE = re.compile(rb'^cloud_job_exporter_poll_interval_seconds\{[^}]*api="GetRunningJobs[^"]*"[^}]*\} (\S+)$',
                  re.MULTILINE)
# prometheus-client sorts the labels of the self-metrics: no order is assumed
TIMEOUTS = re.compile(rb'^cloud_job_exporter_poll_errors_total\{(?=[^}]*api="GetRunningJobs)(?=[^}]*reason="timeout")'
                      rb"[^}]*\} (\S+)$", re.MULTILINE)
LAST_SUCCESS = re.compile(rb'^cloud_job_exporter_last_success_timestamp_seconds\{[^}]*api="GetRunningJobs[^}]*\} '
                          rb"(\S+)$", re.MULTILINE)
UNITS = re.compile(rb"^cloud_job_exporter_shard_units (\S+)$", re.MULTILINE)
SAMPLE_LINE = re.compile(rb"^[a-zA-Z_]", re.MULTILINE)  # a sample's line; comments start with #


@dataclass
class Exporter:
    """One exporter process, as the CLI starts it, logging JSON lines to a file."""

    name: str
    argv: list[str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", *self.argv, f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.format=json"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def polls(self) -> list[dict[str, Any]]:
        """Returns the GetRunningJobs `poll` and `poll failed` lines of its log."""
        lines = []
        for raw in self.log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                event = json.loads(raw)
                if event.get("event") in ("poll", "poll failed") and event.get("api", "").startswith("GetRunning"):
                    lines.append(event)
        return lines


def check(client: httpx.Client, exporter: Exporter) -> dict[str, Any]:
    """Scrapes the exporter once (gzip); returns whether it is ready (every API polled once), the running jobs it
    served, the GetRunningJobs pace and timeouts."""
    try:
        ready = client.get(exporter.url.replace("/metrics", "/-/ready")).status_code == 200
        response = client.get(exporter.url, headers={"Accept-Encoding": "gzip"})
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__}
    text = response.content  # httpx inflates it
    successes = [float(v) for v in LAST_SUCCESS.findall(text)]
    return {
        "ready": ready,
        # The oldest GetRunningJobs data the exporter holds (served, or about to leave): how fresh "served" is.
        "age_s": round(time.time() - min(successes), 1) if successes else None,
        "units": int(float(UNITS.findall(text)[0])) if UNITS.findall(text) else None,
        "running": sum(float(v) for v in RUNNING.findall(text)),
        "pace_s": max((float(v) for v in PACE.findall(text)), default=None),
        "timeouts": sum(float(v) for v in TIMEOUTS.findall(text)),
        "samples": len(SAMPLE_LINE.findall(text)),
    }


def running_now(client: httpx.Client, sim_url: str) -> int:
    """Returns the jobs running in the simulator now."""
    workloads = client.get(f"{sim_url}/-/sim/workload").json()
    return next(w["running"] for w in workloads.values() if "running" in w)


def config_file(directory: Path, sim_url: str, quotas: int, max_job_series: int) -> Path:
    """Writes the source's config: every quota listed, so that it splits into one unit per quota (`quotas` 0: none
    listed, the source one unit as a config without `quotas` has it)."""
    source = {"name": "mc", "kind": "maxcompute", "region": "cn-shanghai", "endpoint": sim_url,
              "quotas": [f"quota_{n:02d}" for n in range(quotas)], "finished_jobs": False,
              "per_job_series": True, "max_job_series": max_job_series}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": [source]}))
    return path


def run_mode(jobs: int, shards: int, args: argparse.Namespace, sim_url: str, sim_pid: int, tmp: Path,
             split: bool = True) -> dict[str, Any]:
    """Runs one process (`shards` 1) or `shards` shards for `args.minutes`, the source split by quota unless `split`
    is off; returns their figures."""
    config = config_file(tmp, sim_url, args.quotas if split else 0, args.max_job_series)
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    exporters = [Exporter(f"shard {n}" if shards > 1 else "one process",
                          ["--config.file", str(config), *(["--shard", str(n), "--total-shards", str(shards)]
                                                           if shards > 1 else [])],
                          tmp / f"exporter-{shards}-{n}.log") for n in range(shards)]
    sim_cpu = cpu_seconds(sim_pid)
    for e in exporters:
        e.start(env)
    started = time.monotonic()
    until = started + args.minutes * 60
    coverage: list[float] = []  # the running jobs served over those running, at each check once all are ready
    ready_at = None
    try:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < until:
                time.sleep(args.every)
                results = [check(client, e) for e in exporters]
                truth = running_now(client, sim_url)
                for e, r in zip(exporters, results, strict=True):
                    e.checks.append({"at_s": round(time.monotonic() - started, 1), **r})
                if ready_at is None and all(r.get("ready") for r in results):
                    ready_at = time.monotonic() - started
                if ready_at is not None and truth:
                    coverage.append(sum(r.get("running", 0) for r in results) / truth)
        # CPU over the polling alone: the scrapes below would add their own.
        minutes = (time.monotonic() - started) / 60
        cpu = {e.name: cpu_seconds(e.proc.pid) / minutes for e in exporters if e.proc}
        sim_cpu = (cpu_seconds(sim_pid) - sim_cpu) / minutes
        scrapes = {e.name: scrape(e.url, 1, True, "prometheus", Plan(scrapes=40, seconds=args.scrape_seconds,
                                                                      min_count=3)) for e in exporters}
        rows = [figures(e, scrapes[e.name], cpu[e.name], ready_at) for e in exporters]
    finally:
        for e in exporters:
            e.stop()
    return {
        "mode": ("one process" if shards == 1 else f"{shards} shards") + ("" if split else ", no quotas listed"),
        "jobs": jobs, "processes": rows,
        "cpu_s_per_min": round(sum(r["cpu_s_per_min"] for r in rows), 1),
        "peak_rss_mib": round(sum(r["peak_rss_mib"] for r in rows), 1),
        "ready_s": round(ready_at, 1) if ready_at is not None else None,
        "coverage_min": round(min(coverage), 3) if coverage else 0.0,
        "coverage_median": round(statistics.median(coverage), 3) if coverage else 0.0,
        "simulator_cpu_s_per_min": round(sim_cpu, 1),
    }


def figures(e: Exporter, scraped: dict[str, Any], cpu_per_minute: float, ready_at: float | None) -> dict[str, Any]:
    """Returns one exporter's figures from its log, its checks, its scrapes and /proc. Poll durations are of one
    unit's GetRunningJobs (a quota's, or the whole source's when no quotas are listed)."""
    assert e.proc is not None
    good = [p["duration_seconds"] for p in e.polls() if p["event"] == "poll"]
    last = e.checks[-1] if e.checks else {}
    ages = [c["age_s"] for c in e.checks if c.get("age_s") is not None and ready_at is not None
            and c["at_s"] >= ready_at]
    return {
        "name": e.name, "units": last.get("units"), "polls": len(good), "data_age_max_s": max(ages, default=None),
        "poll_median_s": round(statistics.median(good), 2) if good else None,
        "poll_max_s": round(max(good), 2) if good else None,
        "pace_s": last.get("pace_s"), "timeouts": last.get("timeouts"), "samples": last.get("samples"),
        "scrape_p50_ms": scraped.get("p50_ms"), "scrape_p99_ms": scraped.get("p99_ms"),
        "scrape_bytes": scraped.get("bytes"), "scrape_errors": scraped.get("errors"),
        "peak_rss_mib": round(rss_mib(e.proc.pid, "VmHWM"), 1),
        "cpu_s_per_min": round(cpu_per_minute, 1),
        "checks": e.checks,  # for the JSON: what each check saw
    }


def shown(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[dict[str, Any]]) -> str:
    """Returns the runs as a Markdown table, one row per process and one per run's total."""
    lines = ["| jobs | run | process | units | GetRunningJobs polls | poll median / max s (interval 30) | pace s | "
             "timeouts | oldest data once ready s | running jobs served once ready, min / median | samples | "
             "scrape p50 / p99 ms (gzip) | peak RSS MiB | CPU s/min |",
             "| " + " | ".join(["---"] * 14) + " |"]
    for run in runs:
        for p in run["processes"]:
            lines.append(f"| {run['jobs']:,} | {run['mode']} | {p['name']} | {shown(p['units'])} | {p['polls']} | "
                         f"{shown(p['poll_median_s'])} / {shown(p['poll_max_s'])} | {shown(p['pace_s'], 'g')} | "
                         f"{shown(p['timeouts'], 'g')} | {shown(p['data_age_max_s'])} | | {shown(p['samples'], ',')} | "
                         f"{shown(p['scrape_p50_ms'])} / {shown(p['scrape_p99_ms'])} | {p['peak_rss_mib']} | "
                         f"{p['cpu_s_per_min']} |")
        lines.append(f"| {run['jobs']:,} | {run['mode']} | **all** | | | | | | | {run['coverage_min']:.0%} / "
                     f"{run['coverage_median']:.0%} (ready at {shown(run['ready_s'])} s) | | | "
                     f"**{run['peak_rss_mib']}** | **{run['cpu_s_per_min']}** (simulator "
                     f"{run['simulator_cpu_s_per_min']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=lambda s: [int(x) for x in s.split(",")],
                   help="running jobs, comma-separated (default 1000,20000,100000; 1000 with --quick)")
    p.add_argument("--shards", type=int, default=4, help="shards of the sharded run (default 4)")
    p.add_argument("--quotas", type=int, default=16, help="quotas the jobs are spread over (default 16)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="simulated API latency (default 50)")
    p.add_argument("--minutes", type=float, help="minutes each run polls before its scrapes (default 4; 1 quick)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between checks (default 10)")
    p.add_argument("--scrape-seconds", type=float, default=20.0, help="seconds of scrapes per process (default 20)")
    p.add_argument("--max-job-series", type=int, default=10**7, help="the source's max_job_series (default: none)")
    p.add_argument("--unsplit", action="store_true",
                   help="first run one process with no quotas listed (the source one unit: the default config)")
    p.add_argument("--quick", action="store_true", help="1,000 jobs, one minute a run")
    p.add_argument("--json", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.jobs = args.jobs or ([1000] if args.quick else [1000, 20000, 100000])
    args.minutes = args.minutes or (1.0 if args.quick else 4.0)
    out: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/scale.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "quotas": args.quotas, "latency_ms": args.latency_ms, "minutes": args.minutes, "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="cje-scale-") as tmp:
        for jobs in args.jobs:
            sim, sim_url = start_simulator(jobs, args.latency_ms, "--quotas", str(args.quotas))
            try:
                modes = [(1, False)] if args.unsplit else []
                for shards, split in [*modes, (1, True), (args.shards, True)]:
                    print(f"{jobs:,} jobs, {'one process' if shards == 1 else f'{shards} shards'}"
                          f"{'' if split else ', no quotas listed'}: {args.minutes:g} min", file=sys.stderr)
                    out["runs"].append(run_mode(jobs, shards, args, sim_url, sim.pid, Path(tmp), split))
            finally:
                sim.terminate()
                sim.wait(timeout=30)
    print(f"{out['date']}; nproc {out['machine']['nproc']}, Python {out['machine']['python']}; "
          f"{args.quotas} quotas, {args.latency_ms:g} ms latency, {args.minutes:g} min a run\n")
    print(table(out["runs"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
