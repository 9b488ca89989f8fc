"""The pages a person opens: `/`, the status of every source and API, and `/config`, the configuration loaded.

The status page is rendered per request from a Publication; the configuration once, at start-up. Every string from
a config file or a vendor's answer is escaped, and the status page has no JavaScript: its Content-Security-Policy
allows none, so even a string that slipped through escaping could not run.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from html import escape
from typing import Any

import yaml

from exporter.config import ExporterConfig
from exporter.contract import SourceInfo
from exporter.logs import redact
from exporter.publication import Publication
from exporter.store import HISTORY, ApiState, Run

API_HEADERS = ("source", "API", "status", f"last {HISTORY} runs", "polls", "records / pages",
               "last error")
SOURCE_HEADERS = ("source", "kind", "region", "endpoint", "credentials", "APIs")


def labels(table: str, headers: tuple[str, ...], lead: int) -> str:
    """Returns the CSS that labels each cell of a table's rows with its column's header, but for the first `lead`
    cells, which head the row: on a phone each row stands as a block."""
    return "".join(f'.{table} td:nth-child({i})::before{{content:"{h}: "}}'
                   for i, h in enumerate(headers, 1) if i > lead)


CSS = f"""body{{font:15px/1.4 system-ui,sans-serif;margin:1em;color:#1f2328}}
h2{{font-size:1.15em;margin:1.4em 0 .4em}}.scroll{{overflow-x:auto}}table{{border-collapse:collapse}}
td,th{{padding:.3em .5em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}}th{{white-space:nowrap}}
td{{overflow-wrap:break-word}}.apis td:nth-child(3),.apis td:nth-child(5){{white-space:nowrap}}
.apis td:last-child{{min-width:11em;max-width:30em}}code{{overflow-wrap:anywhere}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}.pending,.quiet{{color:#6e7781}}
.runs{{white-space:nowrap}}.runs i{{display:inline-block;width:.55em;height:1.1em;margin-right:1px;background:#1a7f37}}
.runs i.failed{{background:#cf222e}}.runs i.skipped{{background:#afb8c1}}
@media (max-width:45em){{thead{{display:none}}table,tbody,tr,td{{display:block}}
tr{{border-bottom:2px solid #afb8c1;padding:.4em 0}}td,.apis td:last-child{{border:0;padding:.1em 0;max-width:none}}
td:empty{{display:none}}td::before{{color:#6e7781}}{labels("apis", API_HEADERS, 2)}
{labels("sources", SOURCE_HEADERS, 1)}
.apis td:nth-child(-n+2),.sources td:first-child{{display:inline;font-weight:bold;margin-right:.5em}}}}"""
# The page's only style is this sheet, allowed by its hash: no inline script, style or anything else may run.
CSP = (f"default-src 'none'; style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}';"
       " frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def span(seconds: float) -> str:
    """Returns a length of time in its two largest units: `4s`, `2m 5s`, `3h`, `2d 4h`."""
    s = max(0, round(seconds))
    for size, unit, sub, subunit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if s >= size:
            rest = s % size // sub
            return f"{s // size}{unit} {rest}{subunit}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def utc(at: float) -> str:
    """Returns a UNIX time as `2024-05-01 12:03:04 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def ago(at: float | None, now: float) -> str:
    """Returns `12s ago` with the exact time as its tooltip; `never` for None."""
    return "never" if at is None else f'<span title="{utc(at)}">{span(now - at)} ago</span>'


def health(state: ApiState, now: float) -> str:
    """Returns up, down with its reason, or pending (not yet polled); then whether its last good data is still
    served on the metrics page, and until when."""
    if not state.polls:
        status = '<span class="pending">pending</span>'
    elif state.up:
        status = '<b class="up">up</b>'
    else:
        status = f'<b class="down">down</b> ({escape(state.last_reason or "")})'
    if state.last_success is None:
        return f"{status}<br>no data yet"
    age = now - state.last_success
    if age > state.keep_for:
        return f'{status}<br><span class="down">data stale</span> for {span(age - state.keep_for)}, not served'
    return f"{status}<br>data fresh, stale in {span(state.keep_for - age)}"


@cache
def mark(outcome: str, reason: str | None) -> str:
    """Returns one run's block in the strip: green for `ok`; else coloured by its outcome, titled with its reason.
    (Runs come from a handful of outcomes and reasons: the blocks are made once each.)"""
    if outcome == "ok":
        return "<i></i>"
    return f'<i class="{outcome}" title="{outcome}: {escape(reason or "")}"></i>'


def runs(history: tuple[Run, ...]) -> str:
    """Returns the strip of the last runs, oldest first; then the failures and skips among them counted by reason,
    in words (a phone has no tooltips)."""
    marks = "".join(mark(r.outcome, r.reason) for r in history)
    by_outcome: dict[str, list[str]] = {}
    for (outcome, reason), n in sorted(Counter((r.outcome, r.reason or "") for r in history).items()):
        if outcome != "ok":
            by_outcome.setdefault(outcome, []).append(f"{escape(reason)} &times;{n}")
    said = "; ".join(f"{outcome}: {', '.join(counts)}" for outcome, counts in by_outcome.items())
    return f'<span class="runs">{marks}</span>' + (f'<br><span class="quiet">{said}</span>' if said else "")


def polls(state: ApiState, now: float) -> str:
    """Returns when the last poll ended and how long it took, the last success, and when the next poll is due
    (`due` once that time has come: a poll may be running)."""
    took = f", took {state.last_duration:.2f}s" if state.last_duration is not None else ""
    due = state.next_poll()
    when = "due" if due is None or due <= now else f'<span title="{utc(due)}">in {span(max(due - now, 1))}</span>'
    backoff = " (backing off)" if state.backoff_until is not None and state.backoff_until > now else ""
    return (f"last {ago(state.last_poll_end, now)}{took}<br>success {ago(state.last_success, now)}<br>"
            f"next {when}{backoff}")


def volume(state: ApiState) -> str:
    """Returns the records and pages of the last good poll, saying so when a failed poll came after it."""
    if state.data is None:
        return ""
    older = '<br><span class="quiet">(last good poll)</span>' if not state.up else ""
    return f"{state.data.records:,} / {state.data.pages:,}{older}"


def failure(state: ApiState, now: float) -> str:
    """Returns the last failure: reason, message, the vendor's request id, and when; greyed once the API is up."""
    f = state.last_failure
    if f is None:
        return ""
    rid = f"<br>request id <code>{escape(f.request_id)}</code>" if f.request_id else ""
    text = f"<b>{escape(f.reason)}</b>: {escape(f.message)}{rid}<br>{ago(f.at, now)}"
    return f'<span class="quiet">{text}</span>' if state.up else text


def api_row(state: ApiState, now: float) -> str:
    """Returns one API's row of the status table."""
    api = escape(state.api).replace("/", "/<wbr>")  # `ListJobs/<workspace>/BATCH` may break at its slashes
    cells = (escape(state.source), api, health(state, now), runs(state.history), polls(state, now),
             volume(state), failure(state, now))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def source_row(info: SourceInfo, up: int, apis: int) -> str:
    """Returns one source's row: what it is, where it polls, where its keys come from, how many of its APIs are
    up."""
    cells = (escape(info.source), escape(info.kind), escape(info.region), escape(info.endpoint),
             escape(info.credentials), f"{up} of {apis} up")
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


UNITS_LISTED = 50  # a shard of thousands of workspaces names the first ones only


def sharding(published: Publication) -> str:
    """Returns what this replica polls: everything, or, as a shard, its units of work and whose the others are."""
    shard, units = published.shard, published.units
    if shard.total == 1:
        return "<p>Sharding: none. Every source below is polled by this instance.</p>"
    owned = [f"{s} {u}" for (s, u), polled in units.items() if polled]
    listed = ", ".join(f"<code>{escape(u)}</code>" for u in owned[:UNITS_LISTED]) or "none"
    if len(owned) > UNITS_LISTED:
        listed += f" and {len(owned) - UNITS_LISTED} more"
    return (f"<p>Sharding: shard {shard.ordinal} of {shard.total} (ordinals 0 to {shard.total - 1}). This shard "
            f"polls {len(owned)} of the config's {len(units)} units of work: {listed}. The others are polled by the "
            "other shards; <code>--config.check --total-shards N</code> prints the whole assignment.</p>")


def table(name: str, headers: Iterable[str], rows: Iterable[str]) -> str:
    """Returns a table that scrolls sideways when a screen is a little narrow, and stacks its rows when it is a
    phone's."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    return (f'<div class="scroll"><table class="{name}"><thead><tr>{head}</tr></thead><tbody>\n{"".join(rows)}'
            "</tbody></table></div>")


def status_page(published: Publication, now: float, telemetry_path: str, notes: Iterable[str], version: str) -> str:
    """Returns the status page: links, each API's health and recent runs, and each source's settings."""
    states = published.states
    apis, up = Counter(s.source for s in states), Counter(s.source for s in states if s.up)
    pending = sum(1 for s in states if not s.polls)
    notes_html = "".join(f"<p>{escape(n)}</p>" for n in notes)
    path = escape(telemetry_path)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>cloud-job-exporter</title><style>{CSS}</style></head>
<body><h1>cloud-job-exporter {escape(version)}</h1>
<p><a href="{path}">Metrics</a> &middot; <a href="/config">Configuration</a> &middot;
<a href="/-/healthy">/-/healthy</a> &middot; <a href="/-/ready">/-/ready</a></p>{notes_html}
<h2>APIs</h2>
<p>{len(states)} APIs: <span class="up">{up.total()} up</span>, <span class="down">{len(states) - up.total() - pending}
down</span>, {pending} pending. Runs read from the oldest to the newest. An API's data goes stale, and leaves the
metrics, <code>stale_after</code> after its last good poll, or later while its polls take longer than that allows
(each row says when).</p>
{table("apis", API_HEADERS, (api_row(s, now) for s in states))}
<h2>Sources</h2>
{sharding(published)}
{table("sources", SOURCE_HEADERS, (source_row(i, up[i.source], apis[i.source]) for i in published.sources.values()))}
<p class="quiet">Rendered {utc(now)}. Reload for newer figures; nothing on this page updates by itself.</p>
</body></html>
"""


# A key whose value would be a secret; keys ending in _env or _file name where a secret is, not the secret itself.
SECRET_KEY = re.compile(r"secret|password|passwd|token|private|bearer|api_?key|credential", re.IGNORECASE)
REFERENCE_KEY = re.compile(r"_(env|file)$")
URL_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")  # https://user:password@host


def redacted(value: Any, key: str = "") -> Any:
    """Returns plain config data with secret-like values replaced by `<secret>`, as Prometheus' /config shows them
    (the value of a secret-like key, a URL's user and password), and every known secret's value (the logs'
    redactor's) by `[REDACTED]`."""
    if isinstance(value, Mapping):
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    if isinstance(value, str):
        if SECRET_KEY.search(key) and not REFERENCE_KEY.search(key):
            return "<secret>"
        return redact(URL_USERINFO.sub(r"\1<secret>@", value))
    return value


class _Dumper(yaml.SafeDumper):
    """Writes a list of plain values on one line, `[1.0, 5.0, 10.0]`, where a column of them would fill a screen."""


_Dumper.add_representer(list, lambda dumper, values: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", values, flow_style=not any(isinstance(v, dict | list) for v in values)))


def config_yaml(config: ExporterConfig, version: str) -> str:
    """Returns the configuration as YAML, defaults filled in, secrets redacted; environment variables are named,
    never read."""
    data = redacted(config.model_dump(mode="json", serialize_as_any=True))
    data["sources"] = [{"name": s["name"], "kind": s["kind"], **s} for s in data["sources"]]  # as files begin them
    header = (f"# cloud-job-exporter {version}: the configuration loaded, with every default filled in (durations "
              "in seconds).\n# The variables and files that hold credentials are named, never read; secret-like "
              "values show as <secret>,\n# known secrets as [REDACTED].\n")
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
