"""The exporter as a process facing what an operator or a hostile client does to it: SIGTERM while a client will not
read and polls hang, SIGHUP and SIGUSR1, a port already taken; and its stderr, JSON lines only throughout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_demo import free_port

pytestmark = pytest.mark.e2e


class Exporter:
    """`python -m exporter ARGS --log.format=json` in a child process; a thread collects its stderr lines (so that
    the pipe never fills)."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args, f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.format=json"], stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr or ()), daemon=True)
        self._reader.start()

    def event(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Returns the first logged event for which `wanted` is true, waiting for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                assert line.startswith("{"), f"not a JSON line: {line!r}"
                event = json.loads(line)
                if wanted(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no such event within {timeout}s in {self.lines}")

    def named(self, name: str) -> dict[str, Any]:
        return self.event(lambda e: e["event"] == name)

    def signal(self, sig: int, wait: float | None = None) -> int | None:
        """Sends `sig`; with `wait`, returns the exit code, failing if the process is still there after `wait` s."""
        self.process.send_signal(sig)
        if wait is None:
            return None
        code = self.process.wait(timeout=wait)
        self._reader.join(timeout=10)
        return code


@contextmanager
def exporter_process(*args: str) -> Iterator[Exporter]:
    exporter = Exporter(*args)
    try:
        exporter.named("listening")
        yield exporter
    finally:
        if exporter.process.poll() is None:
            exporter.process.kill()
            exporter.process.wait()


def _slow_reader(port: int) -> socket.socket:
    """Returns a connection that asked for the metrics twenty times over and stopped reading after 16 bytes: the
    server can neither finish answering nor write more."""
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", port))
    reader.sendall(20 * b"GET /metrics HTTP/1.1\r\nhost: x\r\naccept-encoding: identity\r\n\r\n")
    assert reader.recv(16).startswith(b"HTTP/1.1 200")
    return reader


def test_sigterm_ends_it_promptly_whatever_the_clients_do_with_only_json_on_stderr() -> None:
    with exporter_process("--demo") as exporter:
        simulator = exporter.named("demo simulator started")["url"]
        assert httpx.get(exporter.url + "/metrics").status_code == 200
        httpx.post(simulator + "/-/sim/faults", json={"api": "GetRunningJobs", "error_rate": 1.0})
        exporter.named("poll failed")
        httpx.post(simulator + "/-/sim/faults", json={"latency_ms": 1500})  # polls now hang in flight
        with socket.create_connection(("127.0.0.1", exporter.port)) as garbage:
            garbage.sendall(b"\x16\x03\x01 not HTTP\r\n\r\n")  # a TLS client, say: uvicorn logs it
            garbage.recv(100)
        exporter.event(lambda e: e.get("logger") == "uvicorn.error")
        with _slow_reader(exporter.port):
            code = exporter.signal(signal.SIGTERM, wait=15)  # a hang fails here; 5 s is the deadline
    assert code == 0
    events = [json.loads(line) for line in exporter.lines]  # every line is JSON
    assert events[-1]["event"] == "stopped"
    assert "CancelledError" not in "".join(exporter.lines) and "Traceback" not in "".join(exporter.lines)


def test_sighup_and_sigusr1_leave_it_serving() -> None:
    with exporter_process("--demo") as exporter:
        exporter.signal(signal.SIGHUP)  # a reload, refused: the demo has no config file to read again
        hup = exporter.event(lambda e: e["event"] == "config reload refused")
        exporter.signal(signal.SIGUSR1)
        exporter.event(lambda e: e["event"].startswith("SIGUSR1"))
        assert httpx.get(exporter.url + "/metrics").status_code == 200
        assert exporter.signal(signal.SIGTERM, wait=15) == 0
    assert hup["level"] == "warning" and "no config file" in hup["error"]


def test_a_port_in_use_is_one_line_naming_it_and_exit_code_1(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("sources:\n  - name: mc\n    kind: maxcompute\n    region: cn-hangzhou\n"
                      "    endpoint: http://127.0.0.1:9\n")
    env = {**os.environ, "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAItest", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "exporter", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: --web.listen-address 127.0.0.1:{port}: address already in use (another exporter running?); stop "
        f"the process listening on port {port}, or choose another port"]
