"""Wiring: config in, sources with their clients, a store, a poller, a scheduler and the HTTP server out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter import speed
from exporter.config import ConfigError, ExporterConfig, SourceConfig, credential_provider
from exporter.connections import Limits, bind, bounded_protocol, quiet_accept_errors, warn_if_files_run_short
from exporter.contract import Kind, RequestCounter, Source, SourceInfo
from exporter.credentials import Credentials
from exporter.logs import add_secret_source
from exporter.poller import Poller, Target, job_id, schedule, schedule_target
from exporter.server import App
from exporter.sharding import UNSHARDED, Shard
from exporter.sources import KINDS
from exporter.store import ConfigLoads, Store
from exporter.webconfig import BasicAuth, WebConfig

log = structlog.get_logger("exporter")
Credentialer = Callable[[SourceConfig], Callable[[], Credentials]]


@dataclass(frozen=True, slots=True)
class Opened:
    """One configured source: its config, the source made from it, and its APIs as poll targets."""

    config: SourceConfig
    source: Source
    targets: tuple[Target, ...]


@dataclass
class Exporter:
    """A configured exporter: the config in effect, its store and poller, its sources by name, and how they were
    opened (a reload opens new ones the same way)."""

    config: ExporterConfig
    store: Store
    poller: Poller
    opened: dict[str, Opened]
    credentials: Credentialer | None = None
    transport: httpx.AsyncBaseTransport | None = None
    kinds: Mapping[str, Kind[Any]] = field(default_factory=lambda: KINDS)
    clock: Callable[[], float] = time.time
    shard: Shard = UNSHARDED

    @property
    def sources(self) -> list[Source]:
        """Returns every source, in the config's order."""
        return [o.source for o in self.opened.values()]

    @property
    def targets(self) -> tuple[Target, ...]:
        """Returns every polled API of every source."""
        return self.poller.targets


def _open(store: Store, cfg: SourceConfig, credentials: Credentialer | None,
          transport: httpx.AsyncBaseTransport | None, kinds: Mapping[str, Kind[Any]],
          clock: Callable[[], float], shard: Shard) -> Opened:
    """Returns a source opened from its config, the APIs of the units `shard` owns registered in the store and made
    its targets, every unit registered with whether it is polled here."""
    provider: Callable[[], Credentials]
    if credentials:
        provider, keys = credentials(cfg), "given in-process (the demo's or a test's)"
    else:
        real = credential_provider(cfg)
        add_secret_source(real.secrets)
        provider, keys = real, real.describe()
    counter = store.request_counters.setdefault(cfg.name, RequestCounter())
    source = kinds[cfg.kind].open(cfg, provider, counter, transport, clock)
    info = SourceInfo.of(cfg, keys)
    targets = []
    for api in source.apis():
        polled = shard.owns(cfg.name, api.shard_unit)
        store.add_unit(cfg.name, api.shard_unit, polled)
        if polled:
            store.add_api(info, api.name, cfg.stale_after or 3 * api.interval, api.interval)
            targets.append(Target(cfg.name, api))
    return Opened(cfg, source, tuple(targets))


def build(
    config: ExporterConfig, credentials: Credentialer | None = None,
    transport: httpx.AsyncBaseTransport | None = None, kinds: Mapping[str, Kind[Any]] = KINDS,
    clock: Callable[[], float] = time.time, shard: Shard = UNSHARDED,
) -> Exporter:
    """Returns the exporter for a config whose sources are of `kinds`, polling the units of work `shard` owns;
    `credentials` and `transport` replace the defaults in demo and tests, `clock` (UNIX seconds: what the polls, the
    signatures and staleness read) in tests and the soak (benchmarks/soak.py)."""
    store = Store(shard)
    opened = {cfg.name: _open(store, cfg, credentials, transport, kinds, clock, shard) for cfg in config.sources}
    poller = Poller(store, [t for o in opened.values() for t in o.targets], clock)
    return Exporter(config, store, poller, opened, credentials, transport, kinds, clock, shard)


async def reload(exporter: Exporter, config: ExporterConfig, scheduler: AsyncIOScheduler | None = None) -> None:
    """Applies a new config. A source whose config is unchanged keeps everything: its counters and histograms, its
    finished-job memory, its credentials and connections. A changed source is closed and opened afresh; a removed
    one is closed, and its series leave /metrics at the publish that ends the reload.

    Everything up to the new targets is done without a pause, so no publish sees half a reload."""
    store, wanted = exporter.store, {cfg.name: cfg for cfg in config.sources}
    closing = [o for name, o in exporter.opened.items() if wanted.get(name) != o.config]
    for gone in closing:
        store.remove_source(gone.config.name)
        for target in gone.targets:
            if scheduler:
                scheduler.remove_job(job_id(target))
    kept = {name: o for name, o in exporter.opened.items() if o not in closing}
    exporter.opened = {name: kept.get(name) or _open(store, cfg, exporter.credentials, exporter.transport,
                                                     exporter.kinds, exporter.clock, exporter.shard)
                       for name, cfg in wanted.items()}
    exporter.poller.set_targets([t for o in exporter.opened.values() for t in o.targets])
    if scheduler:
        for name, o in exporter.opened.items():
            if name not in kept:
                for target in o.targets:
                    schedule_target(exporter.poller, scheduler, target)
    exporter.config = config
    store.config = ConfigLoads(last_successful=True, last_success=time.time())
    log.info("config reloaded", kept=sorted(kept), opened=sorted(set(exporter.opened) - set(kept)),
             closed=sorted({o.config.name for o in closing} - set(exporter.opened)))
    for gone in closing:
        await gone.source.aclose()
    await exporter.poller.publish()


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
    web: WebConfig | None = None, limits: Limits | None = None, load: Callable[[], ExporterConfig] | None = None,
    lifecycle: bool = False,
) -> None:
    """Polls and serves until SIGINT or SIGTERM (or `stop` is set), then returns within SHUTDOWN_DEADLINE;
    `started` gets the metrics URL. SIGHUP, and `POST /-/reload` when `lifecycle` is on, apply the config `load`
    reads again (see `Reloader`). Raises ValueError or ListenError when `listen` cannot be served."""
    host, port = parse_listen_address(listen)
    limits = limits or Limits()
    web = web or WebConfig()
    scheduler = AsyncIOScheduler()
    reloader = Reloader(exporter, scheduler, load)
    server = _server(exporter, telemetry_path, notes, web, limits, reloader.reload if lifecycle else None)
    schedule(exporter.poller, scheduler)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    quiet_accept_errors(loop)
    if threading.current_thread() is threading.main_thread():
        _handle_signals(loop, stop, reloader)
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


class Reloader:
    """Reads the config again and applies it (`reload`), one reload at a time; a config that cannot be read or
    validated is refused, the running one kept, and `cloud_job_exporter_config_last_reload_successful` set to 0."""

    def __init__(self, exporter: Exporter, scheduler: AsyncIOScheduler,
                 load: Callable[[], ExporterConfig] | None) -> None:
        self._exporter = exporter
        self._scheduler = scheduler
        self._load = load
        self._one_at_a_time = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def reload(self) -> str | None:
        """Returns None once the new config is applied, or the one-line reason it was refused."""
        if self._load is None:
            reason = "there is no config file to read again (the demo runs without one)"
            log.warning("config reload refused", error=reason)
            return reason
        async with self._one_at_a_time:
            try:
                config = self._load()
            except ConfigError as exc:
                store = self._exporter.store
                store.config = ConfigLoads(last_successful=False, last_success=store.config.last_success)
                log.error("config reload refused; the running config is kept", error=str(exc))
                await self._exporter.poller.publish()
                return str(exc)
            await reload(self._exporter, config, self._scheduler)
            return None

    def on_signal(self) -> None:
        """Starts a reload (SIGHUP's), keeping its task until it ends."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _server(exporter: Exporter, telemetry_path: str, notes: tuple[str, ...], web: WebConfig,
            limits: Limits, reload_config: Callable[[], Awaitable[str | None]] | None) -> uvicorn.Server:
    """Returns the HTTP server of the exporter's app, with TLS and basic authentication as `web` says, and
    `POST /-/reload` when `reload_config` is given."""
    auth = BasicAuth(web.basic_auth_users) if web.basic_auth_users else None
    tls = web.tls_server_config
    app = App(lambda: exporter.poller.published, telemetry_path, notes, auth, reload_config,
              lambda: exporter.config)
    return _Server(uvicorn.Config(
        app, http=bounded_protocol(limits), lifespan="off", access_log=False, server_header=False,
        log_config=None, log_level="warning",  # uvicorn's lines go through the exporter's logging, in its format
        timeout_keep_alive=limits.idle_timeout, timeout_graceful_shutdown=SHUTDOWN_DEADLINE - 1,
        ssl_certfile=str(tls.cert_file) if tls else None, ssl_keyfile=str(tls.key_file) if tls else None,
        ssl_cert_reqs=tls.cert_reqs if tls else ssl.CERT_NONE,
        ssl_ca_certs=str(tls.client_ca_file) if tls and tls.client_ca_file else None,
    ))


def _handle_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, reloader: Reloader) -> None:
    """SIGINT and SIGTERM stop; SIGHUP reloads the config; SIGUSR1, which would kill the process by default, is
    logged."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloader.on_signal)
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
