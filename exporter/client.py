"""The HTTP client each source shares: keep-alive, timeouts, User-Agent, and a count of requests by status."""

from __future__ import annotations

from collections import Counter

import httpx

from exporter import __version__
from exporter.config import SourceConfig

USER_AGENT = f"cloud-job-exporter/{__version__}"


class RequestCounter:
    """Counts HTTP requests by (api, status code); `error` stands for no response."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, api: str, code: int | str) -> None:
        """Counts one request of `api` that ended with `code`."""
        self.counts[(api, str(code))] += 1


def make_client(
    config: SourceConfig, base_url: str, auth: httpx.Auth, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """Returns the source's one AsyncClient: pooled connections sized for its concurrency, and its timeouts."""
    limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
    )
