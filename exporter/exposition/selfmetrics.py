"""The exporter's own metrics: health, timing and counts of every polled API."""

from __future__ import annotations

import platform

from exporter import __version__
from exporter.exposition.format import Family, counter, frozen_histogram, gauge, labels
from exporter.store import View


def self_families(view: View, dropped: dict[str, int]) -> list[Family]:
    """Returns the self-metric families for one view; `dropped` is per-job series left out, by source."""
    polled = [s for s in view.states if s.polls]
    return [
        gauge("cloud_job_exporter_build_info", "Build information; always 1.",
              [(labels((("version", __version__), ("python_version", platform.python_version()))), 1)]),
        gauge("cloud_job_exporter_source_up", "1 if the last poll of this source's API succeeded, else 0.",
              [(labels((("source", s.source), ("kind", s.kind), ("api", s.api))), int(s.up)) for s in polled]),
        gauge("cloud_job_exporter_last_success_timestamp_seconds",
              "When the last successful poll of the API ended (UNIX seconds).",
              [(labels((("source", s.source), ("api", s.api))), s.last_success) for s in view.states]),
        frozen_histogram("cloud_job_exporter_poll_duration_seconds", "Wall time of one poll of an API, all pages.",
                         [(labels((("source", src), ("api", api))), h)
                          for (src, api), h in view.durations.histograms.get("poll_duration", {}).items()]),
        counter("cloud_job_exporter_api_requests_total", "HTTP requests to the vendor API by status code "
                "(`error`: no response).",
                [(labels((("source", s), ("api", a), ("code", c))), n) for (s, a, c), n in view.requests.items()]),
        counter("cloud_job_exporter_poll_errors_total", "Failed polls by reason.",
                [(labels((("source", s), ("api", a), ("reason", r))), n) for (s, a, r), n in view.poll_errors.items()]),
        counter("cloud_job_exporter_polls_skipped_total", "Scheduled polls that did not run, by reason (overlap: "
                "the previous poll was still running; backoff: the vendor asked to wait).",
                [(labels((("source", s), ("api", a), ("reason", r))), n)
                 for (s, a, r), n in view.polls_skipped.items()]),
        counter("cloud_job_exporter_records_skipped_total", "Records left out of polls, by reason (bad_field, "
                "duplicate, page_limit; GetJobInfo: not_found, gave_up, failed, queue_full).",
                [(labels((("source", s), ("api", a), ("reason", r))), n)
                 for (s, a, r), n in view.records_skipped.items()]),
        gauge("cloud_job_exporter_job_series_dropped", "Jobs left out of the per-job series by max_job_series.",
              [(labels((("source", s),)), n) for s, n in dropped.items()]),
    ]
