"""`--demo`: the simulator in-process on a free loopback port, and sources pointed at it with generated keys."""

from __future__ import annotations

import secrets

import structlog

from exporter.config import parse_config
from exporter.connections import Limits
from exporter.credentials import static
from exporter.logs import add_secret_source
from exporter.runtime import build, serve
from exporter.simulator import Simulator
from exporter.simulator import dataarts_factory as dataarts_sim
from exporter.simulator import emr_serverless_spark as emr_sim
from exporter.simulator.run import serve as serve_simulator
from exporter.sources import KINDS
from exporter.webconfig import WebConfig

log = structlog.get_logger("exporter.demo")
REGION = "cn-shanghai"


def demo_sources(endpoint: str) -> list[dict]:
    """Returns the demo's source list, every source polling the simulator at `endpoint` briskly."""
    return [
        {"name": "demo-maxcompute", "kind": "maxcompute", "region": REGION, "endpoint": endpoint,
         "interval": "5s", "snapshot_interval": "10s", "job_info_interval": "5s"},
        {"name": "demo-dataarts", "kind": "dataarts_factory", "region": "cn-north-4", "endpoint": endpoint,
         "interval": "10s", "project_id": dataarts_sim.PROJECT_ID, "workspaces": list(dataarts_sim.WORKSPACES[1:])},
        {"name": "demo-emr-spark", "kind": "emr_serverless_spark", "region": REGION, "endpoint": endpoint,
         "interval": "5s", "lookback": "10m", "workspaces": list(emr_sim.WORKSPACES)},
    ]


async def run_demo(
    listen: str, telemetry_path: str, web: WebConfig | None = None, limits: Limits | None = None
) -> int:
    """Serves the exporter against a simulator until interrupted; returns the exit code."""
    key_id, secret = f"LTAIdemo{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    add_secret_source(lambda: [secret])
    simulator = await serve_simulator(Simulator({key_id: secret}, seed=secrets.randbits(32)))
    log.info("demo simulator started", url=simulator.url, faults=f"{simulator.url}/-/sim/faults")
    config = parse_config({"sources": demo_sources(simulator.url)}, KINDS)
    exporter = build(config, credentials=lambda cfg: (lambda: static(key_id, secret)))
    notes = (f"Demo mode: polling the built-in simulator at {simulator.url} (fault switches: POST "
             f"{simulator.url}/-/sim/faults, see docs/simulator.md).",)
    try:
        await serve(exporter, listen, telemetry_path, notes, web=web, limits=limits)
    finally:
        await simulator.stop()
    return 0
