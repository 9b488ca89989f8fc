"""The listening sockets, bound before uvicorn starts: a busy port is then one line and exit code 1, where uvicorn
would log the error and exit the process from inside the event loop (a 35-line traceback, exit code 3)."""

from __future__ import annotations

import errno
import socket
from typing import Any


class ListenError(Exception):
    """The listen address cannot be bound; `str()` is one line naming it and the fix."""


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
