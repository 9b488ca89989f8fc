"""The exporter's own metrics, as prometheus-client makes them: its health, timing and counts of every polled API
(from a store View), and the process and platform collectors (`process_*`, `python_*`), in a registry of their own.

They are a few dozen series, written once per publish by prometheus-client's own exposition code; the job families
keep the renderer of `format.py`, which prometheus-client cannot match at 20,000 jobs (docs/performance.md).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.exposition.format import le_text
from exporter.store import View
from exporter.tally import HistogramValue

OPENMETRICS_EOF = b"# EOF\n"


def _buckets(value: HistogramValue) -> list[tuple[str, float]]:
    """Returns a histogram's cumulative (le, count) pairs, +Inf last."""
    return list(zip(map(le_text, (*value.bounds, float("inf"))), accumulate(value.counts), strict=True))


def _counter(name: str, help_: str, label_names: list[str], rows: Mapping[tuple[str, ...], float]) -> Metric:
    family = CounterMetricFamily(name, help_, labels=label_names)
    for values, n in rows.items():
        family.add_metric(list(values), n)
    return family


def _gauge(name: str, help_: str, label_names: list[str], rows: Iterable[tuple[tuple[str, ...], float | None]]
           ) -> Metric:
    family = GaugeMetricFamily(name, help_, labels=label_names)
    for values, v in rows:
        if v is not None:
            family.add_metric(list(values), v)
    return family


class ExporterCollector(Collector):
    """Collects the self-metrics of the view last given to `update`."""

    def __init__(self) -> None:
        self._view: View | None = None
        self._dropped: Mapping[str, int] = {}

    def update(self, view: View, dropped: Mapping[str, int]) -> None:
        """Sets the view to collect from, and the per-job series left out of it, by source."""
        self._view, self._dropped = view, dropped

    def collect(self) -> Iterator[Metric]:
        yield _gauge("cloud_job_exporter_build_info", "Build information; always 1.", ["version", "python_version"],
                     [((__version__, platform.python_version()), 1)])
        view = self._view
        if view is None:
            return
        yield _gauge("cloud_job_exporter_config_last_reload_successful",
                     "1 if the last (re)load of the config file was applied, 0 if it was refused.", [],
                     [((), int(view.config.last_successful))])
        yield _gauge("cloud_job_exporter_config_last_reload_success_timestamp_seconds",
                     "When the config file was last loaded and applied (UNIX seconds).", [],
                     [((), view.config.last_success)])
        yield from _shard_metrics(view)
        yield _gauge("cloud_job_exporter_source_up", "1 if the last poll of this source's API succeeded, else 0.",
                     ["source", "kind", "api"],
                     [((s.source, s.kind, s.api), int(s.up)) for s in view.states if s.polls])
        yield _gauge("cloud_job_exporter_poll_interval_seconds",
                     "Seconds between two polls of the API: its interval, or the whole intervals its last poll took "
                     "when that was longer.", ["source", "api"], [((s.source, s.api), s.cadence) for s in view.states])
        yield _gauge("cloud_job_exporter_last_success_timestamp_seconds",
                     "When the last successful poll of the API ended (UNIX seconds).", ["source", "api"],
                     [((s.source, s.api), s.last_success) for s in view.states])
        durations = HistogramMetricFamily("cloud_job_exporter_poll_duration_seconds",
                                          "Wall time of one poll of an API, all pages.", labels=["source", "api"])
        for values, h in view.durations.histograms.get("poll_duration", {}).items():
            durations.add_metric(list(values), _buckets(h), h.total)
        yield durations
        yield _counter("cloud_job_exporter_api_requests_total", "HTTP requests to the vendor API by status code "
                       "(`error`: no response).", ["source", "api", "code"], view.requests)
        yield _counter("cloud_job_exporter_poll_errors_total", "Failed polls by reason.", ["source", "api", "reason"],
                       view.poll_errors)
        yield _counter("cloud_job_exporter_polls_skipped_total", "Scheduled polls that did not run, by reason "
                       "(overlap: the previous poll was still running; backoff: the vendor asked to wait).",
                       ["source", "api", "reason"], view.polls_skipped)
        yield _counter("cloud_job_exporter_records_skipped_total", "Records left out of polls, by reason (bad_field, "
                       "duplicate, page_limit; GetJobInfo: not_found, gave_up, failed, queue_full).",
                       ["source", "api", "reason"], view.records_skipped)
        yield _counter("cloud_job_exporter_limits_reached_total", "Times a poll reached one of the source's bounds, by "
                       "its config key (max_response_size, max_page_items, max_label_length, max_pages).",
                       ["source", "api", "limit"], view.limits_reached)
        yield _gauge("cloud_job_exporter_job_series_dropped", "Jobs left out of the per-job series by max_job_series.",
                     ["source"], [((s,), n) for s, n in self._dropped.items()])


def _shard_metrics(view: View) -> Iterator[Metric]:
    """Yields this replica's place among the shards and, for every unit of work of the config, whether it polls it
    (the rules in deploy/prometheus/alerts.yaml find a unit polled by no shard, or by two)."""
    shard = view.shard
    yield _gauge("cloud_job_exporter_shard_ordinal", "This replica's shard (0 when not sharded).", [],
                 [((), shard.ordinal)])
    yield _gauge("cloud_job_exporter_total_shards", "How many shards the units of work are split over (1: not "
                 "sharded).", [], [((), shard.total)])
    yield _gauge("cloud_job_exporter_shard_units", "Units of work this replica polls.", [],
                 [((), sum(view.units.values()))])
    yield _gauge("cloud_job_exporter_unit_polled", "1 if this replica polls the unit of work (a source's listing: "
                 "a workspace, a quota), 0 if another shard does.", ["source", "unit", "shard"],
                 [((source, unit, str(shard.ordinal)), int(polled)) for (source, unit), polled in view.units.items()])


class SelfMetrics:
    """The registry of the exporter's own metrics: ExporterCollector, and prometheus-client's process (CPU, memory,
    file descriptors), platform (`python_info`) and garbage-collector collectors."""

    def __init__(self) -> None:
        self.collector = ExporterCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)

    def expose(self, view: View, dropped: Mapping[str, int]) -> tuple[bytes, bytes]:
        """Returns the families in the text format and in OpenMetrics (without its closing `# EOF`)."""
        self.collector.update(view, dropped)
        return generate_latest(self.registry), generate_openmetrics(self.registry).removesuffix(OPENMETRICS_EOF)
