"""The Source contract: a kind added through it alone (its config model, its source, its render) is polled, served
and capped like the built-in ones, with no edit to the exporter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import httpx
import pytest

from exporter.config import ConfigError, SourceConfig, parse_config
from exporter.contract import Api, Fetched, Kind, PollError, RequestCounter
from exporter.credentials import Credentials, static
from exporter.exposition.context import RenderContext
from exporter.exposition.format import gauge, labels
from exporter.runtime import build
from exporter.sources import KINDS
from tests.helpers import KEY_ID, SECRET, eventually, running_exporter, scrape, text_of, value

# ---- the toy kind: its own files would hold exactly this -----------------------------------------------------------


class ToyConfig(SourceConfig):
    """A toy source: `jobs` jobs in each of its `queues`, one API per queue."""

    kind: Literal["toy"]
    queues: list[str]
    jobs: int = 3


class ToyJob(NamedTuple):
    name: str
    size: float


@dataclass(frozen=True)
class ToyJobs:
    queue: str
    jobs: tuple[ToyJob, ...]


def render(ctx: RenderContext, result: ToyJobs) -> tuple[list[Any], int]:
    base = (("source", ctx.source), ("region", ctx.region), ("queue", result.queue))
    kept, dropped = ctx.capped(result.jobs, lambda j: j.size)
    return [gauge("toy_jobs", "Jobs in the queue.", [(labels(base), len(result.jobs))]),
            gauge("toy_job_size", "A job's size.", [(labels((*base, ("job", j.name))), j.size) for j in kept])], dropped


class ToySource:
    def __init__(self, config: ToyConfig, counter: RequestCounter) -> None:
        self._config = config
        self._counter = counter

    @classmethod
    def open(cls, config: ToyConfig, credentials: Callable[[], Credentials], counter: RequestCounter,
             transport: httpx.AsyncBaseTransport | None, clock: Callable[[], float]) -> ToySource:
        return cls(config, counter)

    def apis(self) -> list[Api[ToyJobs]]:
        return [Api(f"List/{q}", self._config.interval, lambda q=q: self.poll(q), render, lambda r: len(r.jobs))
                for q in self._config.queues]

    async def poll(self, queue: str) -> Fetched[ToyJobs]:
        self._counter.add(f"List/{queue}", 200)
        if queue == "broken":
            raise PollError("server", "the toy queue is broken")
        jobs = tuple(ToyJob(f"{queue}-{i}", float(i)) for i in range(self._config.jobs))
        return Fetched(ToyJobs(queue, jobs), pages=1, records=len(jobs))

    async def aclose(self) -> None:
        pass


TOY = Kind(ToyConfig, ToySource.open)

# ---- the tests ------------------------------------------------------------------------------------------------------

WITH_TOY = {**KINDS, TOY.name: TOY}


def toy_config(**settings: Any) -> dict[str, Any]:
    return {"sources": [{"name": "toys", "kind": "toy", "region": "local", "interval": "1s", "queues": ["a", "b"],
                         **settings}]}


async def test_a_kind_added_through_the_contract_is_polled_served_and_capped() -> None:
    config = parse_config(toy_config(jobs=4, max_job_series=5), WITH_TOY)
    exporter = build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), kinds=WITH_TOY)
    async with running_exporter(exporter) as url:
        metrics = await eventually(lambda: _scraped_both(url))
    assert metrics["toy_jobs"] == {
        frozenset({("source", "toys"), ("region", "local"), ("queue", q)}): 4 for q in ("a", "b")
    }
    sizes = {dict(k)["job"]: v for k, v in metrics["toy_job_size"].items()}
    assert len(sizes) == 5, "the source's cap of 5 is split over its two APIs (2 and 3)"
    assert {"a-3", "b-3"} <= set(sizes), "each API keeps its largest jobs"
    assert metrics["cloud_job_exporter_job_series_dropped"] == {frozenset({("source", "toys")}): 3}
    up = {dict(k)["api"]: v for k, v in metrics["cloud_job_exporter_source_up"].items()}
    assert up == {"List/a": 1, "List/b": 1}
    assert metrics["cloud_job_exporter_api_requests_total"][
        frozenset({("source", "toys"), ("api", "List/a"), ("code", "200")})] >= 1


async def _scraped_both(url: str) -> dict[str, Any] | None:
    metrics = await scrape(url)
    return metrics if len(metrics.get("toy_jobs", {})) == 2 else None


async def test_a_failing_api_of_an_added_kind_is_down_alone() -> None:
    config = parse_config(toy_config(queues=["a", "broken"]), WITH_TOY)
    exporter = build(config, credentials=lambda cfg: (lambda: static(KEY_ID, SECRET)), kinds=WITH_TOY)
    for target in exporter.targets:
        await exporter.poller.poll_once(target)
    text = text_of(exporter.poller.published.exposition)
    assert value(text, "cloud_job_exporter_source_up", source="toys", kind="toy", api="List/a") == 1
    assert value(text, "cloud_job_exporter_source_up", source="toys", kind="toy", api="List/broken") == 0
    assert value(text, "cloud_job_exporter_poll_errors_total", source="toys", api="List/broken", reason="server") == 1
    assert 'toy_jobs{source="toys",region="local",queue="a"} 3' in text


def test_an_added_kind_is_validated_by_its_own_model_and_named_in_errors() -> None:
    with pytest.raises(ConfigError, match=r"^sources\[0\]\.queues: required key is missing$"):
        parse_config({"sources": [{"name": "t", "kind": "toy", "region": "local"}]}, WITH_TOY)
    with pytest.raises(ConfigError, match=r"sources\[0\]\.kind: unknown kind 'toy'; expected one of: maxcompute, "):
        parse_config(toy_config(), KINDS)  # the table without it
    with pytest.raises(ConfigError, match=r"expected one of: .*dataarts_factory, toy$"):
        parse_config({"sources": [{"name": "t", "kind": "nope", "region": "local"}]}, WITH_TOY)


def test_two_kinds_of_one_name_are_refused() -> None:
    from exporter.contract import kinds_table

    with pytest.raises(ValueError, match="share a name"):
        kinds_table(TOY, TOY)
