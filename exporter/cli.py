"""The command line: exporter-toolkit style flags, `--demo`, `--config.check`, and the `simulate` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.config import ConfigError, ExporterConfig, check_credentials, load_config, parse_duration
from exporter.connections import Limits, ListenError
from exporter.logs import configure_logging
from exporter.sharding import Shard, assignment_table
from exporter.sources import KINDS
from exporter.webconfig import load_web_config

DEFAULT_LISTEN = ":9810"
DEFAULT_LIMITS = Limits()
RESERVED_PATHS = ("/", "/config", "/-/healthy", "/-/ready", "/-/reload")  # served by the exporter itself


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    """Returns the argument parser."""
    p = argparse.ArgumentParser(
        prog="cloud-job-exporter",
        description="Prometheus exporter for jobs on managed big-data platforms. "
        "Run `cloud-job-exporter probe --help` to poll each configured API once and see what it answers, and "
        "`cloud-job-exporter simulate --help` for the API simulator.",
    )
    p.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file")
    p.add_argument("--config.check", dest="config_check", action="store_true",
                   help="validate the configuration, resolve credentials, parse the listen address and build the "
                   "sources as start-up does, then exit 0 or 1")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                   help=f"address to listen on (default {DEFAULT_LISTEN})")
    p.add_argument("--web.config.file", dest="web_config_file", type=Path,
                   help="exporter-toolkit style file enabling TLS and/or basic authentication")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                   help="path under which to expose metrics (default /metrics)")
    p.add_argument("--web.max-connections", dest="max_connections", type=_positive, metavar="N",
                   default=DEFAULT_LIMITS.max_connections,
                   help="connections open at once; past them a new one is answered 503 "
                   f"(default {DEFAULT_LIMITS.max_connections})")
    p.add_argument("--web.header-timeout", dest="header_timeout", type=_duration, metavar="DURATION",
                   default=DEFAULT_LIMITS.header_timeout,
                   help="time a client has to send a request's headers before its connection is closed "
                   f"(default {DEFAULT_LIMITS.header_timeout:g}s)")
    p.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                   help="serve POST /-/reload, which reads the config file again and applies it, as SIGHUP does")
    p.add_argument("--shard", default=os.environ.get("CJE_SHARD"), metavar="N",
                   help="this replica's shard, 0 to M-1: it polls only the units of work (a source's workspace, "
                   "quota, ...) that hash to it (env CJE_SHARD; needs --total-shards)")
    p.add_argument("--total-shards", dest="total_shards", default=os.environ.get("CJE_TOTAL_SHARDS"), metavar="M",
                   help="how many shards split the units of work (env CJE_TOTAL_SHARDS; default 1: no sharding); "
                   "with --config.check, prints which shard polls each unit")
    p.add_argument("--pod", default=os.environ.get("CJE_POD_NAME"), metavar="NAME",
                   help="a StatefulSet pod's name, such as cje-2: the shard is its ordinal (env CJE_POD_NAME)")
    p.add_argument("--log.format", dest="log_format", choices=("auto", "json", "console"), default="auto",
                   help="log format; auto is JSON unless stderr is a terminal")
    p.add_argument("--log.level", dest="log_level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument("--demo", action="store_true",
                   help="run against a built-in simulator of the vendor APIs: no account or config needed")
    p.add_argument("--version", action="version", version=f"cloud-job-exporter {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from exporter.simulator.run import main as simulate  # the simulator is only loaded when asked for

        return simulate(argv[1:])
    if argv[:1] == ["probe"]:
        from exporter.probe import main as probe

        return probe(argv[1:])
    args = parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in RESERVED_PATHS:
        print("error: --web.telemetry-path: expected a path such as /metrics, other than "
              f"{', '.join(RESERVED_PATHS)} (the exporter's own pages)", file=sys.stderr)
        return 1
    try:
        web = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    limits = Limits(args.header_timeout, DEFAULT_LIMITS.idle_timeout, args.max_connections)
    try:
        shard = Shard.of(args.shard, args.total_shards, args.pod)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.demo and shard.total > 1:
        print("error: --demo runs one exporter against a simulator of its own: shard a config's sources instead "
              "(--config.file with --total-shards)", file=sys.stderr)
        return 1
    if args.demo:
        from exporter.demo import run_demo

        return _run(run_demo(args.listen, args.telemetry_path, web, limits))
    if args.config_file is None:
        print("error: --config.file is required (or try --demo)", file=sys.stderr)
        return 1
    from exporter.runtime import build, parse_listen_address, serve

    # `--config.check` goes as far as start-up does before it binds the port: what it passes, start-up passes.
    try:
        config = _load(args.config_file)
        parse_listen_address(args.listen)
        exporter = build(config, shard=shard)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.config_check:
        print(f"{args.config_file}: OK, {len(config.sources)} source(s), {len(exporter.store.units)} unit(s) of work")
        if shard.total > 1:
            print(assignment_table(exporter.store.units, shard.total))
        return 0
    return _run(serve(exporter, args.listen, args.telemetry_path, web=web, limits=limits,
                      load=lambda: _load(args.config_file), lifecycle=args.enable_lifecycle))


def _load(path: Path) -> ExporterConfig:
    """Returns the config read from `path` with every source's credentials resolvable now; raises ConfigError."""
    config = load_config(path, KINDS)
    check_credentials(config)
    return config


def _run(serving: Coroutine[Any, Any, object]) -> int:
    """Runs the exporter until it stops; returns 0, or 1 with one line on stderr when it cannot listen."""
    try:
        asyncio.run(serving)
    except (ValueError, ListenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
