"""A real Prometheus for the end-to-end tests, and every query the project ships, to run through it.

- `run_prometheus`: a `prometheus` process on a free loopback port scraping given targets (host:port) every second,
  optionally evaluating rule files; `Prometheus.query` runs an instant query.
- `every_query`: each Grafana dashboard query (panels and variables, variables at "All") and each alert rule's
  expression, by where it comes from.
- `answers` runs them all at one instant and returns {query: answer}; `differences` compares two such results like
  for like (label sets, values within a tolerance). Together they compare what one set of targets and another say:
  one exporter and an HA pair (tests/e2e/test_ha_pair.py), one unsharded exporter and its shards.
- `Hold`: serves each exporter's /metrics as it was at the last `refresh`, so that Prometheus sees every exporter
  change at the same instant (see its docstring).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
PROMETHEUS = shutil.which("prometheus")
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
METRIC_RE = re.compile(r"\b(?:maxcompute|emr_spark|dataarts|cloud_job_exporter)_[a-zA-Z0-9_]*")
VARIABLE_RE = re.compile(r"label_values\((.*), *(\w+)\)")

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 5) -> Any:
    """Sends a request and returns the decoded JSON (or the text) of a 2xx answer; raises OSError otherwise."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, logs: Callable[[], str] = str) -> T:
    """Polls `probe` until it returns something truthy (not None, False or an empty result); fails after `timeout`
    seconds."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (OSError, KeyError, ValueError) as exc:
            last_error = f" (last error: {exc})"
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{last_error}\n{logs()}")


# ---- Prometheus -------------------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    targets: tuple[str, ...]
    logs: Callable[[], str]

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """Runs an instant query (now, or at UNIX time `at`); raises ValueError when Prometheus refuses it."""
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        try:
            answer = http("GET", f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))
        except urllib.error.HTTPError as exc:
            raise ValueError(f"{exc.code}: {exc.read().decode()}") from None
        if answer["status"] != "success":
            raise ValueError(str(answer))
        result = answer["data"]["result"]
        return result if answer["data"]["resultType"] in ("vector", "matrix") else [result]

    def firing(self, alertname: str) -> list[dict]:
        alerts = http("GET", f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]

    def scraped_since(self, t: float) -> bool:
        """Returns whether every target was up in a scrape that began after UNIX time `t`."""
        found = self.query("timestamp(up == 1)")
        return len(found) == len(self.targets) and all(float(s["value"][1]) > t for s in found)


@contextmanager
def run_prometheus(
    tmp: Path,
    targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (),
    job: str = "cloud-job-exporter",
    interval: str = "1s",
    lookback: str = "5m",
) -> Iterator[Prometheus]:
    """Runs Prometheus scraping `targets` (host:port) as one job and evaluating `rule_files`, both every `interval`,
    with its data in `tmp` and instant queries looking `lookback` back for a sample, until the block ends; yields
    once it is ready."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`; CI installs it)")
    tmp.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), tmp / "prometheus.log"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def logs() -> str:
        tail = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else []
        return f"--- {log}\n" + "\n".join(tail)

    with log.open("w") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--query.lookback-delta={lookback}",
                "--log.level=warn",
            ],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{port}", tuple(targets), logs)
        wait_for("Prometheus to be ready", lambda: http("GET", f"{prometheus.url}/-/ready"), 30, logs)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the queries ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    promql: str  # with Grafana's variables at "All" (and its builtins as given to every_query)
    label: str | None = None  # a dashboard variable's: its answer is that label's values


def dashboard_queries(builtins: Mapping[str, str] = GRAFANA_BUILTINS) -> dict[str, Query]:
    """Every panel target and query variable of every dashboard, by where it is, variables at 'All'."""
    found: dict[str, Query] = {}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
        for panel in panels:
            for target in panel.get("targets", []):
                found[f"{path.name} '{panel['title']}' {target['refId']}"] = Query(target["expr"])
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                match = VARIABLE_RE.fullmatch(var["definition"])
                assert match, var["definition"]
                found[f"{path.name} variable {var['name']}"] = Query(match.group(1), match.group(2))
    expand = lambda expr: re.sub(r"\$\{?(\w+)\}?", lambda m: builtins.get(m.group(1), ".*"), expr)  # noqa: E731
    return {where: Query(expand(q.promql), q.label) for where, q in found.items()}


def rule_queries(rules: Path = RULES) -> dict[str, Query]:
    """Every alert rule's expression, by alert name."""
    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    return {
        f"alert {rule['alert']}": Query(rule["expr"]) for group in groups for rule in group["rules"] if "alert" in rule
    }


def every_query(rate_interval: str = "1m") -> dict[str, Query]:
    """The dashboards' and the alert rules' queries, `$__rate_interval` being `rate_interval`."""
    return dashboard_queries(GRAFANA_BUILTINS | {"__rate_interval": rate_interval}) | rule_queries()


Labels = frozenset[tuple[str, str]]
Answer = dict[Labels, float] | frozenset[str]  # a query's series (labels -> value), or a variable's label values


def answer(prometheus: Prometheus, query: Query, at: float) -> Answer:
    """The query's answer at UNIX time `at`: its series, or the values a dashboard variable offers."""
    result = prometheus.query(query.promql, at)
    if query.label is not None:
        return frozenset(s["metric"][query.label] for s in result if query.label in s["metric"])
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in result}


def answers(prometheus: Prometheus, at: float, queries: Mapping[str, Query] | None = None) -> dict[str, Answer]:
    """{where: answer} of every query (default: `every_query()`) at UNIX time `at`."""
    return {where: answer(prometheus, query, at) for where, query in (queries or every_query()).items()}


def differences(
    one: Mapping[str, Answer],
    other: Mapping[str, Answer],
    *,
    rel: float = 0.02,
    labels_only: Callable[[str], bool] = lambda where: False,
) -> list[str]:
    """One line per query whose answers differ: other label sets (or variable values), or a value off by more than
    `rel` of the larger (NaN equals NaN). Queries where `labels_only(where)` have their label sets compared only."""
    found = []
    for where in sorted(one.keys() | other.keys()):
        a, b = one.get(where), other.get(where)
        if isinstance(a, frozenset) or isinstance(b, frozenset) or a is None or b is None:
            if a != b:
                found.append(f"{where}: {_show(a)} != {_show(b)}")
            continue
        if a.keys() != b.keys():
            found.append(f"{where}: series {_show(sorted(map(_series, a)))} != {_show(sorted(map(_series, b)))}")
        elif not labels_only(where):
            off = [f"{_series(k)} {a[k]:g} != {b[k]:g}" for k in a if not _close(a[k], b[k], rel)]
            if off:
                found.append(f"{where}: {len(off)} of {len(a)} values differ, e.g. {off[:3]}")
    return found


def _close(x: float, y: float, rel: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or abs(x - y) <= rel * max(abs(x), abs(y))


def _series(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}"


def _show(value: Any, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- holding pages ----------------------------------------------------------------------------------------------


class Hold:
    """A sample-and-hold in front of exporters: serves, on a loopback port per exporter, the page its /metrics gave
    at the last `refresh`, which fetches every exporter's page before it swaps them all at once, each sample stamped
    with the time of the swap.

    Replicas polling the same state on their own schedules pass through different intermediate states (a job that
    ended is counted when each one's GetJobInfo gets to it), and a counter series that appears with 3 on one replica
    and with 5 on another has a different rate() for ever after, although both end at 5. Refreshing once they agree
    makes the series Prometheus stores change at the same instants, so that rates can be compared like for like.
    The stamps make those instants the same to the millisecond in every Prometheus, whatever the phase of its
    scrapes (Prometheus keeps one sample per stamp, however often it scrapes the page): rate() and increase()
    extrapolate alike, and a ratio that is exactly an alert's threshold (2 failed runs of 10 against > 0.2) is on
    the same side of it everywhere. Stamped samples get no staleness markers: a series the last swap dropped is
    still found by an instant query until the `lookback` of `run_prometheus` has passed."""

    def __init__(self, upstreams: Sequence[str]) -> None:
        self.upstreams = list(upstreams)
        self._pages: list[tuple[bytes, str]] = [(b"", "text/plain")] * len(upstreams)
        self._servers = [self._server(i) for i in range(len(upstreams))]
        self.targets = [f"127.0.0.1:{server.server_address[1]}" for server in self._servers]

    def _server(self, index: int) -> ThreadingHTTPServer:
        hold = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, content_type = hold._pages[index]
                self.send_response(200 if body else 503)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def fetch(self) -> list[str]:
        """Returns each exporter's page now."""
        pages = []
        for url in self.upstreams:
            with urllib.request.urlopen(url, timeout=10) as response:
                pages.append(response.read().decode())
        return pages

    def refresh(self, pages: Sequence[str] | None = None) -> float:
        """Serves `pages` (default: fetched now) from now on, their samples stamped with the UNIX time of the swap
        (whole milliseconds); returns that time."""
        fetched = list(pages) if pages is not None else self.fetch()
        at = math.floor(time.time() * 1000)
        self._pages = [(stamped(page, at).encode(), "text/plain; version=0.0.4; charset=utf-8") for page in fetched]
        return at / 1000



    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def stamped(page: str, ms: int) -> str:
    """The page (text format 0.0.4, samples without timestamps) with every sample stamped `ms` (UNIX milliseconds)."""
    return "".join(
        f"{line} {ms}\n" if line and not line.startswith("#") else f"{line}\n" for line in page.splitlines()
    )
