"""What the sources share to fetch: paging (by number, with pages read by a few workers), and record parsing."""

from __future__ import annotations

import asyncio
import math
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import structlog

from exporter.contract import Fetched, PollError
from exporter.speed import untrack

T = TypeVar("T")
R = TypeVar("R")
log = structlog.get_logger("exporter.sources")
DEFAULT_MAX_LABEL_LENGTH = 1024
MIN_MAX_LABEL_LENGTH = 64  # the smallest `max_label_length` allowed: shorter values need no look at the source's own


class BadRecord(Exception):
    """One record of a page is unusable; it is skipped and counted, the page is kept."""


class Skips:
    """Counts what one poll left out: records by reason, and the bounds it reached by config key."""

    def __init__(self, max_label_length: int = DEFAULT_MAX_LABEL_LENGTH) -> None:
        self.counts: Counter[str] = Counter()
        self.limits: Counter[str] = Counter()
        self.max_label_length = max_label_length

    def add(self, reason: str, n: int = 1) -> None:
        """Counts `n` records left out for `reason`."""
        if n > 0:
            self.counts[reason] += n

    def reached(self, limit: str) -> None:
        """Counts one reaching of the bound that config key `limit` sets."""
        self.limits[limit] += 1

    def fetched(self, result: R, pages: int, records: int) -> Fetched[R]:
        """Returns a poll's outcome: its result, pages and records read, and what it left out."""
        return Fetched(result, pages, records, dict(self.counts), dict(self.limits))


Page = tuple[list[Any], int]  # one page's records and the total the page reports
# A page reader: given a page number and what to run once that page's request is sent (if anything), it returns once
# the page's answer is in, with the page's digest (decoding and parsing it) still to run.
PageReader = Callable[[int, Callable[[], None] | None], Awaitable[Callable[[], Page]]]


async def gather_or_cancel(coroutines: Iterable[Awaitable[T]]) -> list[T]:
    """Returns the results in order; when one raises, the others are cancelled and its exception is raised as it is
    (not in a group), so no request outlives a failed poll."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]  # type: ignore[arg-type]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


async def fetch_pages(read_page: PageReader, numbers: range, workers: int) -> list[Page]:
    """Returns the pages of `numbers` in order, read by `workers` tasks that each take the next number when done;
    when one fails the others are cancelled. A task per page, made all at once, would cost the event loop one
    uninterrupted step of tens of ms at a thousand pages.

    Each worker digests the page it read last once its next request is on the wire: the decoding and parsing (about
    a millisecond a page) then overlap the next round trip instead of delaying its request."""
    pages: list[Any] = [None] * len(numbers)
    todo = iter(enumerate(numbers))

    async def worker() -> None:
        held: list[tuple[int, Callable[[], Page]]] = []  # the page read last, not yet digested
        failed: list[Exception] = []  # a digest's error, kept to raise here rather than inside the next request

        def digest_held() -> None:
            while held:
                i, digest = held.pop()
                pages[i] = digest()

        def digest_held_while_sending() -> None:
            try:
                digest_held()
            except Exception as exc:  # raised again by the worker, once the request it ran in is done
                failed.append(exc)

        for i, number in todo:  # shared: each number is taken by one worker
            try:
                digest = await read_page(number, digest_held_while_sending)
            finally:
                if failed:  # the earlier page's error is the poll's, whatever became of this request
                    raise failed.pop()
            digest_held()  # when the reader's transport did not tell of the send
            held.append((i, digest))
            del digest  # held: its raw answer is freed once digested
        digest_held()

    await gather_or_cancel(worker() for _ in range(min(workers, len(numbers))))
    return pages


async def fetch_numbered_pages(
    read_page: PageReader, page_size: int, max_pages: int, skips: Skips, api: str, *, first: int, workers: int,
) -> tuple[list[Any], int]:
    """Returns (every record of every page, pages read) of an API paged by number from `first` with a total.

    The first page gives the total; the rest are read `workers` at a time (the source's concurrency), and when one
    fails the others are cancelled, so no request outlives its poll. Records that arrive while paging push others
    past the first total, so while any page reports a larger total the extra pages are read too, up to `max_pages`.
    """
    records, total = (await read_page(first, None))()  # no page read before it: nothing to run once it is sent
    records = list(records)
    read = 1
    while read < (wanted := max(1, math.ceil(total / page_size))) and read < max_pages:
        batch = range(first + read, first + min(wanted, max_pages))
        for page_records, page_total in await fetch_pages(read_page, batch, workers):
            records.extend(page_records)
            total = max(total, page_total)
        read += len(batch)
    if read < (wanted := math.ceil(total / page_size)):
        skips.add("page_limit", total - read * page_size)
        skips.reached("max_pages")
        log.warning("page limit reached", api=api, total_count=total, pages=wanted, max_pages=max_pages)
    return records, read


def text(record: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    """Returns a trimmed string field ('' when absent), cut to the source's `max_label_length` (counted); raises
    BadRecord for a wrong type, or an id that is missing or longer than that. Fields that are not ids are label
    values that recur across thousands of records (project, quota, owner): one shared copy of each is kept instead of
    one per record."""
    value = record.get(key)
    if value is None:
        if required:
            raise BadRecord(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"{key} is not a string")
    value = value.strip()
    if len(value) > MIN_MAX_LABEL_LENGTH:
        value = _within_label_limit(key, value, required)
    if required:
        if not value:
            raise BadRecord(f"{key} is empty")
        return value
    return sys.intern(value)


# The Skips of the page being parsed (`parse_page`): its source's `max_label_length`, and where a cut is counted.
_parsing: ContextVar[Skips | None] = ContextVar("parsing", default=None)


def _within_label_limit(key: str, value: str, required: bool) -> str:
    """Returns `value` cut to the parsing source's `max_label_length`, counting the cut; raises BadRecord for an id
    (a cut id could name another job)."""
    skips = _parsing.get()
    limit = skips.max_label_length if skips else DEFAULT_MAX_LABEL_LENGTH
    if len(value) <= limit:
        return value
    if skips:
        skips.reached("max_label_length")
    if required:
        raise BadRecord(f"{key} is longer than max_label_length ({limit})")
    return value[:limit]


MB = 1024 * 1024  # the vendors' MB are mebibytes
# The largest magnitude a numeric field may have: far beyond any count, size, time or share the vendors report, and
# small enough that sums over any number of jobs stay finite floats. A larger one (a 400-digit integer, 1e308) would
# be written to the exposition as a value Prometheus refuses, and it would take down the whole scrape.
MAX_NUMBER = 2.0**63
# The largest total count a listing may report: more would ask for more pages than any poll reads.
MAX_TOTAL = 2**31


def number(record: Mapping[str, Any], key: str, scale: int | float = 1) -> float | None:
    """Returns a numeric field times `scale`, None when absent; raises BadRecord for a wrong type, NaN, an infinity
    or a magnitude past MAX_NUMBER.

    Integers stay integers when `scale` is one (an int is written to the exposition faster and without `.0`)."""
    value = record.get(key)
    kind = type(value)  # exact types, as json.loads makes them (and a bool is no number): the cheapest test per field
    if kind is int or (kind is float and math.isfinite(value)):
        if not -MAX_NUMBER <= value <= MAX_NUMBER:  # an int compares with a float exactly, however long
            raise BadRecord(f"{key} is out of range")
        return value * scale if scale != 1 else value
    if value is None:
        return None
    raise BadRecord(f"{key} is not a number")


def amount(record: Mapping[str, Any], key: str, scale: int | float = 1) -> float | None:
    """Returns a field that counts up (a usage, a size, a duration) as `number` does; raises BadRecord when it is
    negative too (a counter cannot go down)."""
    value = number(record, key, scale)
    if value is not None and value < 0:
        raise BadRecord(f"{key} is negative")
    return value


@contextmanager
def parsing(skips: Skips) -> Iterator[None]:
    """Within the block, `text` cuts strings to `skips.max_label_length` and counts each cut in `skips`."""
    token = _parsing.set(skips)
    try:
        yield
    finally:
        _parsing.reset(token)


def parse_page(raw: list[Any], parse: Callable[[Mapping[str, Any]], T], skips: Skips) -> list[T]:
    """Returns the records of one page parsed, out of the garbage collector's view; bad ones are counted
    (`bad_field`) and skipped."""
    parsed: list[T] = []
    with parsing(skips):
        for item in raw:
            try:
                if not isinstance(item, Mapping):
                    raise BadRecord("record is not an object")
                parsed.append(parse(item))
            except BadRecord:
                skips.add("bad_field")
    untrack(parsed)  # as each page arrives, not when the poll ends (docs/performance.md)
    return parsed


def unique(records: Sequence[T], skips: Skips, *, key: Callable[[T], Hashable]) -> list[T]:
    """Returns the records unique by `key`, first seen wins (records move between pages while they are read);
    repeats are counted as `duplicate`."""
    keys = list(map(key, records))
    if len(set(keys)) == len(keys):  # the usual case, told in C: this runs on the event loop at the end of a poll
        return list(records)
    seen: dict[Hashable, T] = {}
    for k, record in zip(keys, records, strict=True):
        if k in seen:
            skips.add("duplicate")
        else:
            seen[k] = record
    return list(seen.values())


def parse_records(
    raw: list[Any], parse: Callable[[Mapping[str, Any]], T], skips: Skips, *, key: Callable[[T], Hashable]
) -> list[T]:
    """Returns the parsed records, unique by `key`; bad ones and repeats are counted and skipped."""
    return unique(parse_page(raw, parse, skips), skips, key=key)


def records_of(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """Returns the list under `key` (empty when null); raises PollError when it is not a list."""
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise PollError("bad_response", f"data.{key} is not a list")
    return items


def integer_field(data: Mapping[str, Any], key: str) -> int:
    """Returns a required non-negative integer envelope field of at most MAX_TOTAL; raises PollError otherwise."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOTAL:
        raise PollError("bad_response", f"data.{key} is missing or not an integer from 0 to {MAX_TOTAL}")
    return value
