"""The status page in a real browser: headless Chromium opens `/` of an exporter polling the simulator, after a
fault was switched on for one API, and the page it renders is read back from its DOM, and photographed.

Skipped where Debian's `chromium` is not installed (`.ci/run` installs it)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest

from exporter.config import parse_config
from exporter.runtime import build
from exporter.simulator.run import Endpoint
from exporter.sources import KINDS
from tests.helpers import KEY_ID, SECRET, PageReader, eventually, running_exporter

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

# A variable may be named so (no space, no `=`): the page names it, and must show it as text.
HOSTILE_ENV = "<script>document.write('pwned')</script>"
APIS = ("GetRunningJobs", "ListJobSnapshotInfos", "GetJobInfo")


async def chromium(tmp_path: Path, *args: str) -> str:
    """Runs headless Chromium with `args` and returns what it printed (the DOM, with --dump-dom)."""
    process = await asyncio.create_subprocess_exec(
        # --no-sandbox: CI runs as root, where Chromium's sandbox will not start; the page is our own, on loopback.
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_page_in_chromium_shows_the_failing_api_and_names_as_text(simulator: Endpoint, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOSTILE_ENV, KEY_ID)
    monkeypatch.setenv("SIM_SECRET", SECRET)
    config = parse_config({"sources": [{
        "name": "mc", "kind": "maxcompute", "region": "cn-hangzhou", "endpoint": simulator.url,
        "interval": "1s", "snapshot_interval": "1s", "job_info_interval": "1s",
        "credentials": {"access_key_id_env": HOSTILE_ENV, "access_key_secret_env": "SIM_SECRET"},
    }]}, KINDS)
    async with running_exporter(build(config)) as url, httpx.AsyncClient() as client:
        async def rows() -> list[str]:
            page = PageReader((await client.get(url + "/")).text)
            return [page.row("mc", api) for api in APIS]

        async def everything_up() -> bool:
            return all("up data fresh" in row for row in await rows())

        async def running_jobs_down() -> bool:
            return "down (server)" in (await rows())[0]

        await eventually(everything_up, timeout=30)
        faults = await client.post(simulator.url + "/-/sim/faults", json={"api": "GetRunningJobs", "error_rate": 1.0})
        assert faults.status_code == 200
        await eventually(running_jobs_down, timeout=30)

        dom = await chromium(tmp_path, "--dump-dom", url + "/")
        shots = {name: tmp_path / f"status-page-{name}.png" for name in ("desktop", "phone")}
        await chromium(tmp_path, f"--screenshot={shots['desktop']}", "--window-size=1400,1000", url + "/")
        await chromium(tmp_path, f"--screenshot={shots['phone']}", "--window-size=390,844", url + "/")

    page = PageReader(dom)
    assert page.title == "cloud-job-exporter" and "script" not in page.elements, "no script was parsed, none ran"
    failing = page.row("mc", "GetRunningJobs")
    assert "down (server)" in failing and "failed: server" in failing and "request id" in failing
    for api in APIS[1:]:
        assert "up data fresh" in page.row("mc", api)
    source = page.row("mc", "maxcompute", "cn-hangzhou", simulator.url)
    assert f"key id: environment variable {HOSTILE_ENV};" in source
    for shot in shots.values():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
