#!/usr/bin/env python3
"""Hostile clients against the exporter as a process (`python -m exporter --demo`): figures, not a test.

    python benchmarks/hostile_clients.py shutdown    # SIGTERM with a reader that never reads and polls in flight
    python benchmarks/hostile_clients.py slowloris   # 1,500 connections trickling headers, under ulimit -n 1024
    python benchmarks/hostile_clients.py auth        # 401 time of an unknown user against a known one's wrong password

Run it with PYTHONPATH pointing at a worktree to measure that commit (flags the commit lacks are not passed).
Everything listens on 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

WORK = Path(tempfile.mkdtemp(prefix="hostile-"))  # the exporter's logs and web config, removed at exit
atexit.register(shutil.rmtree, WORK, ignore_errors=True)

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int, log: Path, *args: str, nofile: int | None = None) -> subprocess.Popen[bytes]:
    """Starts the demo exporter, its stderr to `log`, and returns once it answers /-/healthy."""
    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}", "--log.format=json",
         *args], stderr=log.open("wb"), preexec_fn=limit)
    for _ in range(300):
        if isinstance(_get(f"http://127.0.0.1:{port}/-/healthy", timeout=1), int):  # 401 with basic auth is up
            return process
        time.sleep(0.1)
    raise SystemExit("the exporter did not start")


def simulator_url(log: Path) -> str:
    return next(json.loads(line)["url"] for line in log.read_text().splitlines()
                if line.startswith("{") and json.loads(line)["event"] == "demo simulator started")


def non_json(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.strip() and not line.startswith("{"))


def shutdown() -> None:
    port, log = free_port(), WORK / "stderr.log"
    process = start(port, log)
    faults = urllib.request.Request(simulator_url(log) + "/-/sim/faults", data=b'{"latency_ms": 2000}',
                                    method="POST")
    urllib.request.urlopen(faults, timeout=5)
    time.sleep(3)  # polls now take 2 s a request: some are in flight
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window the server soon fills
    reader.connect(("127.0.0.1", port))
    reader.sendall(20 * b"GET /metrics HTTP/1.1\r\nhost: x\r\naccept-encoding: identity\r\n\r\n")
    reader.recv(16)  # answering has begun; nothing more is read
    time.sleep(1)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code: int | str = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        code = "killed after 30 s"
    print(f"exit {code} {time.monotonic() - started:.2f} s after SIGTERM; {non_json(log)} non-JSON stderr lines; "
          f"'CancelledError' in stderr: {'CancelledError' in log.read_text()}")


def fds_and_rss(pid: int) -> tuple[int, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return len(os.listdir(f"/proc/{pid}/fd")), rss // 1024


def slowloris(connections: int = 1500, seconds: float = 30.0) -> None:
    port, log = free_port(), WORK / "stderr.log"
    process = start(port, log, nofile=1024)
    fds, rss = fds_and_rss(process.pid)
    print(f"idle: {fds} fds, {rss} MB RSS")
    socks: list[socket.socket] = []
    for _ in range(connections):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    time.sleep(0.5)
    opened = {sock: sock.send(b"GET /metrics HTTP/1.1\r\n") if _sendable(sock) else 0 for sock in socks}
    started, refused, cut, peak, scrapes = time.monotonic(), 0, 0, (0, 0), []
    while time.monotonic() - started < seconds:
        time.sleep(5)
        for sock in [s for s in opened if s.fileno() >= 0]:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data is None:
                try:
                    sock.send(b"x-slow: 1\r\n")
                except OSError:
                    cut += 1
                    sock.close()
                continue
            refused += data.startswith(b"HTTP/1.1 503")
            cut += not data
            sock.close()
        peak = max(peak, fds_and_rss(process.pid))
        scrapes.append(_scrape(port))
    print(f"{connections} slow connections for {seconds:.0f} s: peak {peak[0]} fds, {peak[1]} MB RSS; "
          f"{refused} answered 503, {cut} closed unanswered; scrapes during the flood: {scrapes}; "
          f"stderr {log.stat().st_size / 1e6:.2f} MB")
    for sock in socks:
        sock.close()
    process.terminate()
    process.wait(timeout=30)


def _sendable(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


def _scrape(port: int) -> int | str:
    return _get(f"http://127.0.0.1:{port}/metrics")


def _get(url: str | urllib.request.Request, timeout: float = 10) -> int | str:
    """Returns the status of GET url, or the name of the error when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def auth(cost: int = 10, rounds: int = 15) -> None:
    port, log = free_port(), WORK / "stderr.log"
    web = WORK / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'right', bcrypt.gensalt(cost)).decode()}'\n")
    process = start(port, log, f"--web.config.file={web}")
    figures = {}
    for user, password in (("prometheus", "wrong"), ("nobody", "wrong"), ("prometheus", "x" * 100)):
        times = []
        for i in range(rounds):
            header = base64.b64encode(f"{user}:{password}{i}".encode()).decode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/-/healthy",
                                             headers={"Authorization": f"Basic {header}"})
            started = time.perf_counter()
            status = _get(request)
            times.append(time.perf_counter() - started)
        figures[f"{user}/{'long' if len(password) > 72 else 'wrong'} password ({status})"] = times
    for name, times in figures.items():
        print(f"{name}: median {statistics.median(times) * 1000:.1f} ms, "
              f"range {min(times) * 1000:.1f}-{max(times) * 1000:.1f} ms over {rounds}")
    process.terminate()
    process.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=("shutdown", "slowloris", "auth"))
    {"shutdown": shutdown, "slowloris": slowloris, "auth": auth}[parser.parse_args().figure]()
