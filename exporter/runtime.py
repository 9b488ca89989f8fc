"""Wiring: config in, sources with their clients, a store, a poller, a scheduler and the HTTP server out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter import speed
from exporter.config import ExporterConfig, SourceConfig, credential_provider
from exporter.connections import Limits, bind, bounded_protocol, quiet_accept_errors, warn_if_files_run_short
from exporter.contract import Kind, RequestCounter, Source, SourceInfo
from exporter.credentials import Credentials
from exporter.logs import add_secret_source
from exporter.poller import Poller, Target, schedule
from exporter.server import App
from exporter.sources import KINDS
from exporter.store import Store
from exporter.webconfig import BasicAuth, WebConfig

log = structlog.get_logger("exporter")
Credentialer = Callable[[SourceConfig], Callable[[], Credentials]]


@dataclass
class Exporter:
    """A configured exporter: its store and poller, the poll targets, and the sources to close at the end."""

    store: Store
    poller: Poller
    sources: list[Source]

    @property
    def targets(self) -> tuple[Target, ...]:
        """Returns every polled API of every source."""
        return self.poller.targets


def build(
    config: ExporterConfig, credentials: Credentialer | None = None,
    transport: httpx.AsyncBaseTransport | None = None, kinds: Mapping[str, Kind[Any]] = KINDS,
    clock: Callable[[], float] = time.time,
) -> Exporter:
    """Returns the exporter for a config whose sources are of `kinds`; `credentials` and `transport` replace the
    defaults in demo and tests, `clock` (UNIX seconds: what the polls, the signatures and staleness read) in tests
    and the soak (benchmarks/soak.py)."""
    store = Store()
    targets: list[Target] = []
    sources: list[Source] = []
    for cfg in config.sources:
        provider = credentials(cfg) if credentials else credential_provider(cfg)
        if not credentials:
            add_secret_source(provider.secrets)
        counter = store.request_counters.setdefault(cfg.name, RequestCounter())
        source = kinds[cfg.kind].open(cfg, provider, counter, transport, clock)
        sources.append(source)
        info = SourceInfo.of(cfg)
        for api in source.apis():
            store.add_api(info, api.name, cfg.stale_after or 3 * api.interval)
            targets.append(Target(cfg.name, api))
    return Exporter(store, Poller(store, targets, clock), sources)


def parse_listen_address(address: str) -> tuple[str, int]:
    """Returns (host, port) from `:9810`, `0.0.0.0:9810`, `127.0.0.1:9810` or `[::1]:9810`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: expected HOST:PORT such as :9810 or 127.0.0.1:9810, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


# From SIGTERM to exit, whatever the clients do: responses in flight get RESPONSE_GRACE seconds to finish, then their
# connections are cut; uvicorn cancels what still runs a second later.
SHUTDOWN_DEADLINE = 5
RESPONSE_GRACE = 3.0


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to `serve`: uvicorn's own handlers would start a shutdown that waits for the
    slowest client, and raise the signal again at its end."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    exporter: Exporter, listen: str, telemetry_path: str, notes: tuple[str, ...] = (),
    started: Callable[[str], None] | None = None, stop: asyncio.Event | None = None,
    web: WebConfig | None = None, limits: Limits | None = None,
) -> None:
    """Polls and serves until SIGINT or SIGTERM (or `stop` is set), then returns within SHUTDOWN_DEADLINE;
    `started` gets the metrics URL. Raises ValueError or ListenError when `listen` cannot be served."""
    host, port = parse_listen_address(listen)
    limits = limits or Limits()
    web = web or WebConfig()
    server = _server(exporter, telemetry_path, notes, web, limits)
    scheduler = AsyncIOScheduler()
    schedule(exporter.poller, scheduler)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    quiet_accept_errors(loop)
    if threading.current_thread() is threading.main_thread():
        _handle_signals(loop, stop)
    warn_if_files_run_short(limits)
    async with AsyncExitStack() as stack:
        for source in exporter.sources:
            stack.push_async_callback(source.aclose)
        sockets = bind(listen, host, port)
        for sock in sockets:
            stack.callback(sock.close)  # uvicorn closes them when it stops, but not when it fails to start
        serving = asyncio.create_task(server.serve(sockets))
        while not server.started:
            if serving.done():
                await serving  # surfaces a start-up error
                raise SystemExit(1)
            await asyncio.sleep(0.02)
        bound = sockets[0].getsockname()
        url = f"{'https' if web.tls_server_config else 'http'}://{bound[0]}:{bound[1]}{telemetry_path}"
        log.info("listening", address=url, sources=len(exporter.sources), apis=len(exporter.targets))
        if started:
            started(url)
        speed.startup()
        scheduler.start()
        await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        scheduler.pause()
        await exporter.poller.stop()
        scheduler.shutdown(wait=False)
        await _stop_serving(server, serving)
    log.info("stopped")


def _server(exporter: Exporter, telemetry_path: str, notes: tuple[str, ...], web: WebConfig,
            limits: Limits) -> uvicorn.Server:
    """Returns the HTTP server of the exporter's app, with TLS and basic authentication as `web` says."""
    auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
    tls = web.tls_server_config
    app = App(lambda: exporter.poller.published, telemetry_path, notes, auth)
    return _Server(uvicorn.Config(
        app, http=bounded_protocol(limits), lifespan="off", access_log=False, server_header=False,
        log_config=None, log_level="warning",  # uvicorn's lines go through the exporter's logging, in its format
        timeout_keep_alive=limits.idle_timeout, timeout_graceful_shutdown=SHUTDOWN_DEADLINE - 1,
        ssl_certfile=str(tls.cert_file) if tls else None, ssl_keyfile=str(tls.key_file) if tls else None,
        ssl_cert_reqs=tls.cert_reqs if tls else ssl.CERT_NONE,
        ssl_ca_certs=str(tls.client_ca_file) if tls and tls.client_ca_file else None,
    ))


def _handle_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop; SIGHUP and SIGUSR1, which would kill the process by default, are logged."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, log.warning, "SIGHUP received: reloading the configuration is not "
                            "supported yet; restart the exporter to apply a new one")
    loop.add_signal_handler(signal.SIGUSR1, log.info, "SIGUSR1 received and ignored")


async def _stop_serving(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """Stops the HTTP server: it stops accepting; responses in flight get RESPONSE_GRACE seconds, then their
    connections are cut (a client reading slowly, or not at all, would otherwise hold the exit for ever)."""
    server.should_exit = True
    done, _ = await asyncio.wait([serving], timeout=RESPONSE_GRACE)
    if not done:
        connections = list(server.server_state.connections)
        log.warning("cutting connections still being answered at shutdown", connections=len(connections))
        for connection in connections:
            connection.transport.abort()
    await serving
