"""What each of issue 15's attacks costs the exporter, one attack at a time: peak and settled resident size, how
long scrapes wait while the attacked poll runs, and what the poll made of it. Not a test: figures for
docs/security.md. Run from the repository root:

    python benchmarks/hostile_vendors.py                          # every attack, about a minute
    python benchmarks/hostile_vendors.py --only big_body          # some of them
    python benchmarks/hostile_vendors.py --exporter-path ../old   # another checkout's exporter (this vendor)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hostile.vendor import ATTACKS, Attack, hostile_vendor, job, page, whole

KEY_ID, SECRET = "LTAI5tBenchmarkKey00001", "benchmark-secret-not-real"
# Each answer comes this long after its request: the exporter has started and settled, so the scrapes timed while
# the answer is read and digested wait on that alone, not on the start-up's imports and first renders.
ANSWER_DELAY = 3.0
CALM = Attack("none", "a page of two jobs (no attack)", lambda: whole(page([job(1), job(2)])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid: int, field: str) -> int:
    """Returns a /proc/PID/status size field in bytes (VmHWM: peak resident, VmRSS: resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def polled(text: str) -> str | None:
    """Returns what the attacked source's first GetRunningJobs poll came to, once it is in the page."""
    for line in text.splitlines():
        if line.startswith("cloud_job_exporter_source_up{") and 'api="GetRunningJobs"' in line:
            if line.endswith(" 1.0"):
                return "up"
            for error in text.splitlines():
                if error.startswith("cloud_job_exporter_poll_errors_total{") and 'api="GetRunningJobs"' in error:
                    return error.split('reason="')[1].split('"')[0]
            return "down"
    return None


def run(attack: Attack, url: str, exporter_path: str | None) -> dict:
    """Runs one exporter against one attack until its first GetRunningJobs poll is in; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        config = {"sources": [{
            "name": attack.name, "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": url, "interval": "30s",
            "snapshot_interval": "30s", "timeout": "10s", "finished_jobs": False,
            "credentials": {"access_key_id_env": "CJE_KEY_ID", "access_key_secret_env": "CJE_SECRET"}}]}
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(config))
        port = free_port()
        env = {**os.environ, "CJE_KEY_ID": KEY_ID, "CJE_SECRET": SECRET}
        if exporter_path:
            env["PYTHONPATH"] = exporter_path
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", f"{tmp}/config.yaml", "--web.listen-address",
             f"127.0.0.1:{port}", "--log.format", "json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=exporter_path,  # `-m` puts the working directory first on the path
        )
        waits: list[float] = []
        outcome = None
        started = time.monotonic()
        with httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=60) as client:
            while outcome is None and time.monotonic() - started < 90 and process.poll() is None:
                t0 = time.perf_counter()
                try:
                    text = client.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if time.monotonic() - started > ANSWER_DELAY - 0.5:
                    waits.append(time.perf_counter() - t0)
                outcome = polled(text)
                time.sleep(0.01)
        elapsed = time.monotonic() - started
        peak = status(process.pid, "VmHWM") if process.poll() is None else 0
        time.sleep(2)  # what stays after
        settled = status(process.pid, "VmRSS") if process.poll() is None else 0
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        stderr = process.stderr.read().decode(errors="replace").splitlines() if process.stderr else []
        plain = sum(1 for line in stderr if line and not line.startswith("{"))
    return {"attack": attack.name, "what": attack.what, "outcome": outcome or "no poll in 90 s",
            "seconds_to_poll": round(elapsed, 1), "peak_rss_mib": round(peak / 2**20),
            "settled_rss_mib": round(settled / 2**20), "scrapes": len(waits),
            "scrape_p50_ms": round(statistics.median(waits) * 1000, 1) if waits else None,
            "scrape_max_ms": round(max(waits) * 1000, 1) if waits else None, "plain_text_log_lines": plain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="attack names")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--exporter-path", help="PYTHONPATH for the exporter process (another checkout)")
    args = parser.parse_args()
    attacks = tuple(a for a in (CALM, *ATTACKS) if not args.only or a.name in args.only)
    rows = []
    for attack in attacks:
        with hostile_vendor((attack,), delay=ANSWER_DELAY) as urls:
            holder = run(attack, urls[attack.name], args.exporter_path)
        rows.append(holder)
        print(f"{holder['attack']:17} {holder['outcome']:14} peak {holder['peak_rss_mib']:5} MiB, settled "
              f"{holder['settled_rss_mib']:4} MiB, scrape p50 {holder['scrape_p50_ms']} ms max "
              f"{holder['scrape_max_ms']} ms, {holder['seconds_to_poll']} s to the poll", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
