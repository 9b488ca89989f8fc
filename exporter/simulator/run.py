"""Serving the simulator with uvicorn: inside a running event loop (`serve`), in a background thread with its own
loop (`run_in_thread`, for tests), or as the standalone `simulate` command (`main`).

The listening socket is bound here rather than by uvicorn, so that port 0 yields the port the kernel picked and a
busy port raises OSError (uvicorn itself would log and exit the process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields, replace
from typing import Any

import uvicorn

from exporter.simulator import Simulator
from exporter.simulator.app import App
from exporter.simulator.faults import Faults, FaultSettings
from exporter.simulator.workload import SUBSCRIPTION, Quota, WorkloadParams

ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
STARTUP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Endpoint:
    """Where a simulator listens."""

    sim: App
    host: str
    port: int

    @property
    def url(self) -> str:
        """Returns the base URL, e.g. `http://127.0.0.1:8000`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ServerHandle(Endpoint):
    """A simulator served on the current event loop; `stop()` shuts it down."""

    _server: uvicorn.Server = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)

    async def stop(self) -> None:
        """Stops accepting, closes connections and waits for the server to finish."""
        self._server.should_exit = True
        await self._task


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program it runs in."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """Returns a listening TCP socket on (host, port); raises OSError when the address is unavailable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol is named explicitly: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says IPPROTO_TCP, and without it every response body waits ~40 ms behind its headers (Nagle's algorithm
    # meeting the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


async def serve(sim: App, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Starts serving `sim` on the running event loop and returns once it accepts connections."""
    sock = _bind(host, port)
    # log_config=None leaves logging to the program: uvicorn's own would give its loggers handlers of their own,
    # and the demo's exporter logging JSON would see uvicorn's plain-text lines among its own.
    config = uvicorn.Config(sim, lifespan="off", log_level="warning", log_config=None, access_log=False,
                            timeout_graceful_shutdown=1)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="simulator")
    while not server.started:
        if task.done():
            task.result()  # surfaces the startup failure
        await asyncio.sleep(0.005)
    return ServerHandle(sim, host, sock.getsockname()[1], server, task)


@contextlib.contextmanager
def run_in_thread(sim: App, host: str = "127.0.0.1", port: int = 0) -> Iterator[Endpoint]:
    """Serves `sim` from a background thread with its own event loop for the duration of the `with` block."""
    started: Future[tuple[ServerHandle, asyncio.AbstractEventLoop, asyncio.Event]] = Future()
    thread = threading.Thread(
        target=asyncio.run, args=(_serve_until_stopped(sim, host, port, started),), name="simulator", daemon=True
    )
    thread.start()
    handle, loop, stop = started.result(timeout=STARTUP_TIMEOUT_SECONDS)
    try:
        yield Endpoint(sim, handle.host, handle.port)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


async def _serve_until_stopped(
    sim: App, host: str, port: int, started: Future[tuple[ServerHandle, asyncio.AbstractEventLoop, asyncio.Event]]
) -> None:
    try:
        handle = await serve(sim, host, port)
    except Exception as exc:  # handed to the waiting thread, which raises it
        started.set_exception(exc)
        return
    stop = asyncio.Event()
    started.set_result((handle, asyncio.get_running_loop(), stop))
    await stop.wait()
    await handle.stop()


# ---- the standalone command -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `simulate` command: serves a simulator until SIGINT or SIGTERM; returns the exit status."""
    args = _parser().parse_args(argv)
    host, port = _listen_address(args.listen)
    key_id = args.access_key_id or os.environ.get(ENV_KEY_ID) or f"sim-{secrets.token_hex(8)}"
    secret = args.access_key_secret or os.environ.get(ENV_SECRET)
    secret_note = "(as given)" if secret else None
    if not secret:
        secret = secrets.token_urlsafe(24)
        secret_note = f"{secret} (generated for this run; set {ENV_SECRET} to choose one)"
    chosen = {f.name: getattr(args, f.name) for f in fields(FaultSettings) if getattr(args, f.name) is not None}
    try:
        faults = Faults(args.seed, **chosen)
    except ValueError as exc:
        print(f"simulate: {exc}")
        return 2
    workload = WorkloadParams(target_running=args.running_jobs, region=args.region)
    if args.quotas:
        # As many subscription quotas as asked, for scale tests that split a source by quota over shards.
        workload = replace(workload, quotas=tuple(Quota(f"quota_{n:02d}", SUBSCRIPTION, 2000)
                                                  for n in range(args.quotas)))
    sim = Simulator({key_id: secret}, seed=args.seed, workload=workload, faults=faults)
    try:
        asyncio.run(_serve_forever(sim, host, port, [f"access key id: {key_id}", f"access key secret: {secret_note}"]))
    except OSError as exc:
        print(f"simulate: cannot listen on {args.listen}: {exc.strerror or exc}")
        return 1
    return 0


async def _serve_forever(sim: App, host: str, port: int, notes: list[str]) -> None:
    handle = await serve(sim, host, port)
    print(f"cloud API simulator (MaxCompute 2022-01-04) listening on {handle.url}", flush=True)
    for note in notes:
        print(f"  {note}", flush=True)
    print(f"  control: {handle.url}/-/sim/faults, /-/sim/workload, /-/sim/stats (see docs/simulator.md)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await handle.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulate", description="Serve a signature-checking simulator of the MaxCompute job APIs."
    )
    parser.add_argument("--listen", default="127.0.0.1:8000", help="host:port to listen on (port 0 picks one)")
    parser.add_argument("--access-key-id", help=f"the accepted access key id (default: ${ENV_KEY_ID} or generated)")
    parser.add_argument(
        "--access-key-secret",
        help=f"its secret (default: ${ENV_SECRET} or generated and printed; prefer the variable, "
        "a command line is visible to other users)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload and the faults (default 0)")
    parser.add_argument("--running-jobs", type=int, default=200, help="jobs running in steady state (default 200)")
    parser.add_argument("--region", default=WorkloadParams.region, help="the region the records report")
    parser.add_argument("--quotas", type=int, metavar="N",
                        help="spread the jobs over N subscription quotas, quota_00 to quota_NN, instead of the three "
                        "default ones (for scale tests that shard a source by quota)")
    faults = parser.add_argument_group("faults (all off by default; change at runtime with POST /-/sim/faults)")
    for f in fields(FaultSettings):
        faults.add_argument(f"--{f.name.replace('_', '-')}", help=f.metadata["help"], **_fault_option(f.default))
    return parser


def _fault_option(default: Any) -> dict[str, Any]:
    # Options left out stay None, so only the switches given reach `Faults`.
    if isinstance(default, bool):
        return {"action": "store_const", "const": True, "default": None}
    return {"type": type(default), "default": None, "metavar": "N"}


def _listen_address(listen: str) -> tuple[str, int]:
    """Returns (host, port) from `host:port` or `[v6]:port`."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"simulate: --listen wants host:port, got {listen!r}")
    return host.strip("[]"), int(port)
