"""The listening sockets and the connections they take, bounded against slow and numerous clients.

The sockets are bound before uvicorn starts: a busy port is then one line and exit code 1, where uvicorn would log
the error and exit the process from inside the event loop (a 35-line traceback, exit code 3).

uvicorn's h11 protocol closes a kept-alive connection once idle for `timeout_keep_alive`, but waits for a request's
head for ever, and takes connections without limit: its `limit_concurrency` answers 503 only once a head has been
read, so connections that never send one pile up to the open-file limit. `BoundedH11Protocol` adds what is missing:
a deadline for each request's head, and a cap on open connections past which a new one is answered 503 at once.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("exporter.connections")

# Open files the process needs besides its HTTP connections: the sources' clients, the simulator in demo mode, logs.
OTHER_FILES = 128
# How long a refused connection stays open for its client to read the 503: closing it with the client's request
# unread would reset it, and the client could lose the answer before reading it.
REFUSED_LINGER = 1.0
REFUSAL_BODY = b"Too many open connections, retry later\n"
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
           + str(len(REFUSAL_BODY)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n" + REFUSAL_BODY)
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a client may take to send a request's head (from the connection's start, or from the first byte
    of a later request on it), how long an idle kept-alive connection stays open, and how many may be open at once.

    The idle timeout outlasts the usual 15-60 s scrape intervals, so Prometheus reuses its connection (one TCP and
    TLS handshake per target, not per scrape); the cap stays well below the usual open-file limit of 1024."""

    header_timeout: float = 10.0
    idle_timeout: float = 65.0
    max_connections: int = 512


class ListenError(Exception):
    """The listen address cannot be bound; `str()` is one line naming it and the fix."""


class Sampled:
    """Logs a warning at most once per `period` seconds, with how often it happened since the last line."""

    def __init__(self, event: str, period: float = 60.0) -> None:
        self._event = event
        self._period = period
        self._count = 0
        self._next = 0.0

    def __call__(self, **fields: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            log.warning(self._event, occurrences=self._count, **fields)
            self._count, self._next = 0, now + self._period


class Refused(asyncio.Protocol):
    """A connection past the cap: answered 503 at once, whatever it asks, and closed once its client has closed its
    side or after REFUSED_LINGER seconds."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        transport.write(REFUSAL)
        if transport.can_write_eof():  # TLS cannot half-close
            transport.write_eof()
        self._linger = loop.call_later(REFUSED_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is refused whatever it is: no need to read it

    def eof_received(self) -> None:
        return None  # the client has read the answer: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._linger.cancel()


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head, and a cap on open connections (the class
    `bounded_protocol` returns sets them)."""

    limits: ClassVar[Limits]
    refusals: ClassVar[Sampled]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            transport.set_protocol(Refused(transport, self.loop))
            self.refusals(max_connections=self.limits.max_connections)
            return
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and not self._answering():
            self._start_head_timer()  # the first bytes of a later request on a kept-alive connection
        super().data_received(data)
        if self._answering():  # the head is complete: the request is being answered
            self._stop_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self.transport.close)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def bounded_protocol(limits: Limits) -> type[BoundedH11Protocol]:
    """Returns the protocol class for uvicorn's `http` with these limits."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {
        "limits": limits, "refusals": Sampled("refusing connections: --web.max-connections are open"),
    })


def bind(listen: str, host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Returns a listening socket for each address `host` resolves to (as asyncio's create_server would bind them),
    or raises ListenError naming `listen`, the flag's value."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"--web.listen-address {listen}: cannot resolve {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sockets.append(_listening(family, kind, proto, address, backlog))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"--web.listen-address {listen}: address already in use (another exporter running?); "
                              f"stop the process listening on port {port}, or choose another port") from None
        raise ListenError(f"--web.listen-address {listen}: cannot listen there: {exc.strerror}") from None
    return sockets


def _listening(family: int, kind: int, proto: int, address: Any, backlog: int) -> socket.socket:
    # getaddrinfo's proto is IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket names it, and without it a body waits ~40 ms behind its headers (Nagle meeting delayed ACKs).
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does: [::] is IPv6 only
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Makes asyncio's "accept() out of system resource" (out of file descriptors) one warning a minute: asyncio
    reports it once per connection waiting in the backlog, retrying every second, which logged 54 MB in 30 s."""
    report = Sampled("cannot accept connections: out of file descriptors or memory")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_FAILED:
            report(error=str(context.get("exception")))
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def warn_if_files_run_short(limits: Limits) -> None:
    """Logs a warning when the open-file limit leaves too little room for the connection cap."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and limits.max_connections + OTHER_FILES > soft:
        log.warning("the open-file limit is too low for --web.max-connections: lower it, or raise the limit",
                    open_file_limit=soft, max_connections=limits.max_connections, other_files=OTHER_FILES)
