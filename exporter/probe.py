"""`cloud-job-exporter probe`: polls each configured API once, with no server, and prints one row per API: what it
answered, how much, how fast, and for a failure the vendor's code, its request id and what to do about it.

Exit 0 when every API answered, 1 otherwise. Secrets are never printed: every message passes the log redactor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, load_config
from exporter.contract import Kind, PollError, SourceInfo
from exporter.logs import configure_logging, redact
from exporter.pace import poll_time_limit
from exporter.poller import Target
from exporter.runtime import Exporter, build
from exporter.sources import KINDS

SIGNATURE_CODES = ("SignatureDoesNotMatch", "IncompleteSignature", "SignatureNonceUsed", "APIG.0301")
CLOCK_CODES = ("InvalidTimeStamp",)
UNKNOWN_KEY_CODES = ("InvalidAccessKeyId",)
TOKEN_CODES = ("InvalidSecurityToken", "APIG.0307")


@dataclass(frozen=True, slots=True)
class Row:
    """One probed API: `result` is `ok` or the poll error's reason."""

    source: str
    api: str
    result: str
    records: int | None
    pages: int | None
    seconds: float
    code: str
    request_id: str
    error: str
    todo: str


def what_to_do(error: PollError, info: SourceInfo, kind: Kind[Any], api: str) -> str:
    """Returns the advice for one failed poll, from its reason and the vendor's code; `info` says where the source
    polls and where its keys come from."""
    code, where = error.code, info.endpoint
    if error.reason == "auth":
        return _auth_advice(error, info, kind, api)
    if error.reason == "throttled":
        wait = f"it asked to wait {error.retry_after:g} s" if error.retry_after else "it named no wait"
        return f"the vendor throttled the call ({wait}): raise `interval` or lower `max_concurrency`"
    if error.reason == "client":
        return (f"the vendor refused the request ({code or 'no code'}): check the ids this API asks about, "
                f"`{api}` (the source's workspaces, project_id or tenant_id)")
    if error.reason == "server":
        return "the vendor failed on its side: nothing to change here; the exporter retries at each interval"
    if error.reason in ("timeout", "connection"):
        return f"no answer from {where}: check `endpoint`, the network path and proxies, or raise `timeout`"
    if error.reason == "too_large":
        return f"the answer was larger than `{error.limit}`: raise it if the vendor's answers are that large"
    if error.reason == "bad_response":
        return "the answer was not what the API documents: check `endpoint` points at the vendor (not a proxy page)"
    return "an exporter bug: please report it with this line"


def _auth_advice(error: PollError, info: SourceInfo, kind: Kind[Any], api: str) -> str:
    code, keys = error.code, info.credentials
    if code.startswith(CLOCK_CODES):
        return "the vendor refused the request's time: this machine's clock is off by minutes; sync it (NTP)"
    if code.startswith(SIGNATURE_CODES):
        return (f"the vendor could not verify the signature: check the secret ({keys}) and that this machine's "
                "clock is right")
    if code.startswith(UNKNOWN_KEY_CODES):
        return f"the vendor does not know the access key id ({keys})"
    if code.startswith(TOKEN_CODES):
        return "the security token is invalid or expired: refresh the temporary credentials"
    if not code:  # refused before anything was sent: a credential that cannot be read
        return f"the credentials cannot be used ({keys}): {redact(str(error))}"
    operation = api.split("/", 1)[0]
    if permission := kind.permissions.get(operation):
        return f"the key may not call {operation}: grant it `{permission}` (the vendor's page for {operation})"
    return (f"the key may not call {operation}; the vendor's page names no permission for it, and the vendor "
            f"said: {redact(str(error))}")


async def probe_one(exporter: Exporter, target: Target) -> Row:
    """Polls one API of the exporter once within its poll time limit; returns its row."""
    started = time.perf_counter()
    limit = poll_time_limit(target.api.interval, exporter.store.states[target.key].stale_after)
    try:
        async with asyncio.timeout(limit):
            fetched = await target.api.fetch()
    except PollError as exc:
        error = exc
    except TimeoutError:
        error = PollError("timeout", f"the poll took longer than {limit:g}s")
    except Exception as exc:  # a bug: the probe still prints every row
        error = PollError("internal", f"{type(exc).__name__}: {exc}")
    else:
        return Row(target.source, target.api.name, "ok", fetched.records, fetched.pages,
                   round(time.perf_counter() - started, 3), "", "", "", "")
    return Row(target.source, target.api.name, error.reason, None, None, round(time.perf_counter() - started, 3),
               error.code, error.request_id or "", redact(str(error))[:300],
               what_to_do(error, info := exporter.store.sources[target.source], exporter.kinds[info.kind],
                          target.api.name))


async def probe(exporter: Exporter) -> list[Row]:
    """Polls every API of the exporter once, all at once; returns their rows in the config's order."""
    try:
        return await asyncio.gather(*(probe_one(exporter, t) for t in exporter.targets))
    finally:
        for source in exporter.sources:
            await source.aclose()


COLUMNS = ("source", "api", "result", "records", "pages", "seconds", "code", "request_id", "todo")


def table(rows: Sequence[Row]) -> str:
    """Returns the rows as an aligned text table, with a header line."""
    cells = [[c.upper().replace("_", " ") for c in COLUMNS]]
    cells += [["" if (v := getattr(r, c)) is None else str(v) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
                     for row in cells)


def parser() -> argparse.ArgumentParser:
    """Returns the `probe` command's argument parser."""
    p = argparse.ArgumentParser(prog="cloud-job-exporter probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--config.file", dest="config_file", type=Path, required=True, help="YAML configuration file")
    p.add_argument("--source", action="append", help="probe only this source (may be repeated)")
    p.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json")
    return p


def main(argv: list[str]) -> int:
    """Runs `probe`; returns 0 when every probed API answered, 1 otherwise."""
    args = parser().parse_args(argv)
    configure_logging("json", "error")  # the table is the output; a source's own warnings are not
    try:
        config = load_config(args.config_file, KINDS)
        wanted = [s for s in config.sources if not args.source or s.name in args.source]
        if unknown := set(args.source or ()) - {s.name for s in config.sources}:
            raise ConfigError(f"--source: no source named {', '.join(sorted(unknown))} in {args.config_file}")
        exporter = build(config.model_copy(update={"sources": wanted}))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = asyncio.run(probe(exporter))
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.output == "json" else table(rows))
    return 0 if all(r.result == "ok" for r in rows) else 1

