"""The Source contract: what a source kind gives the exporter, and all that the runtime, the poller and the renderer
know of it.

A kind is a `Kind` in the table `exporter.sources.KINDS`: its config model, and how to open a `Source` from a
validated config. A source lists its `Api`s; each polls on its own interval, returns its records in a `Fetched`,
and says how those records become metric families (`render`) and how many jobs they hold (`jobs`, for the per-job
cap that the source's APIs share). Nothing here knows a vendor, a metric name or HTTP; `docs/extending.md` walks
through adding a kind.

A kind's records (its `records` module) are plain and immutable: frozen dataclasses, and per-job NamedTuples of str,
int, float and None, held in exact `tuple` fields of the result (which the store takes out of the garbage collector's
view, so nothing else may be in them). Times are UNIX seconds, sizes bytes, strings trimmed; a field the API did not
return is None and yields no sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, get_args

if TYPE_CHECKING:
    import httpx

    from exporter.config import SourceConfig
    from exporter.credentials import Credentials
    from exporter.exposition.context import RenderContext
    from exporter.exposition.format import Family

R = TypeVar("R")
C = TypeVar("C", bound="SourceConfig")


class RequestCounter:
    """Counts HTTP requests by (api, status code); `error` stands for no response."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, api: str, code: int | str) -> None:
        """Counts one request of `api` that ended with `code`."""
        self.counts[(api, str(code))] += 1


class PollError(Exception):
    """A poll of one API failed; `reason` is the `poll_errors_total` label, `str()` is safe to log."""

    def __init__(
        self, reason: str, message: str, *, request_id: str | None = None, retry_after: float | None = None,
        code: str = "", limit: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.request_id = request_id
        self.retry_after = retry_after
        self.code = code  # the vendor's error code, e.g. OBJECT_NOT_EXIST, when the response had one
        self.limit = limit  # the config key of the bound the response broke (`max_response_size`), if that failed it


@dataclass(frozen=True, slots=True)
class Fetched(Generic[R]):
    """What one successful poll of one API produced: its records (`result`, plain immutable data of the kind's own
    types) and how they were obtained."""

    result: R
    pages: int
    records: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)  # bounds reached, by config key (`max_pages`)


# (the families of one result, how many jobs the per-job cap left out of them)
Rendered = tuple[list["Family"], int]


@dataclass(frozen=True, slots=True)
class Api(Generic[R]):
    """One polled API of a source.

    - `name`: its name in labels and logs (the vendor's operation, with a partition such as `ListJobRuns/w-1`);
    - `interval`: seconds between polls;
    - `fetch`: polls it once, returning its records, or raising PollError;
    - `render`: turns a result into metric families (the only place its metric names live); called off the event
      loop, once per result, with the source's labels and this API's share of the per-job cap;
    - `jobs`: how many jobs a result could give per-job series to; None for an API with no per-job series (its
      results take no share of `max_job_series`);
    - `unit`: the unit of work it belongs to, which one shard polls whole (`exporter.sharding`): APIs that share
      state (MaxCompute's listings and the GetJobInfo that follows them) name one unit; "" for the API alone.
    """

    name: str
    interval: float
    fetch: Callable[[], Awaitable[Fetched[R]]]
    render: Callable[[RenderContext, R], Rendered]
    jobs: Callable[[R], int] | None = None
    unit: str = ""

    @property
    def shard_unit(self) -> str:
        """Returns the name of its unit of work: `unit`, or the API's own name."""
        return self.unit or self.name


class Source(Protocol):
    """One configured source: the APIs it polls, and what to close when the exporter stops."""

    def apis(self) -> Sequence[Api[Any]]:
        """Returns the APIs to poll, each with its own interval."""
        ...

    async def aclose(self) -> None:
        """Releases what the source holds (its HTTP client)."""
        ...


@dataclass(frozen=True, slots=True)
class Kind(Generic[C]):
    """A source kind: its config model (whose `kind` field is a Literal of the kind's name), and `open`, which makes
    a source from (its validated config, its credentials, the request counter it reports to, a transport that
    replaces the network in tests and the demo, or None, and the clock in UNIX seconds its polls and signatures
    read: `time.time`, or a test's or the soak's accelerated one)."""

    config: type[C]
    open: Callable[[C, Callable[[], Credentials], RequestCounter, httpx.AsyncBaseTransport | None,
                    Callable[[], float]], Source]
    # The permission each operation needs, as the vendor's API page names it (a RAM action such as
    # `odps:GetJobInfo`): `probe` says which to grant when the vendor denies access. An operation whose page names
    # none is left out, so that nothing is guessed.
    permissions: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Returns the kind's name, as the config's `kind` key gives it."""
        return get_args(self.config.model_fields["kind"].annotation)[0]


def kinds_table(*kinds: Kind[Any]) -> Mapping[str, Kind[Any]]:
    """Returns the kinds keyed by name; raises ValueError when two share one."""
    table = {k.name: k for k in kinds}
    if len(table) != len(kinds):
        raise ValueError("two source kinds share a name")
    return table


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A source's identity and per-job settings, what the renderer and the self-metrics know of it; and, for the
    status page, the endpoint it polls and where its keys come from (names and paths, never a key)."""

    source: str
    kind: str
    region: str
    per_job_series: bool = True
    max_job_series: int = 5000
    owner_label: str = "keep"  # keep, hash or drop
    endpoint: str = ""
    credentials: str = ""

    @classmethod
    def of(cls, config: SourceConfig, credentials: str = "") -> SourceInfo:
        """Returns the info of a configured source whose keys come from where `credentials` says."""
        return cls(config.name, config.kind, config.region, config.per_job_series, config.max_job_series,
                   config.owner_label, config.endpoint or config.default_endpoint(), credentials)
