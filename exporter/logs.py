"""Logging: the one structlog configuration. JSON when not on a terminal (containers), console otherwise.

Every event passes a redactor that replaces any configured secret with `[REDACTED]`, as a last line of defence:
no code path is meant to log a secret in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import structlog

_secrets: list[Callable[[], Iterable[str]]] = []


def add_secret_source(source: Callable[[], Iterable[str]]) -> None:
    """Registers a callable returning current secret values to scrub from every log event."""
    _secrets.append(source)


def redact(text: str) -> str:
    """Returns `text` with every known secret value replaced."""
    for source in _secrets:
        for secret in source():
            if secret and len(secret) >= 4 and secret in text:
                text = text.replace(secret, "[REDACTED]")
    return text


def _redactor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event.items()}


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a record comes: test runners swap it between tests, and a
    handler holding the first one would write to a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_handler: logging.Handler | None = None


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configures structlog and the standard library's logging for the whole process: one handler on stderr renders
    both (uvicorn's, APScheduler's and asyncio's lines included) in the one format, through the redactor."""
    global _handler
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    numeric = logging.getLevelName(level.upper())
    stamped = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # tracebacks become text before the redactor reads them
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,  # tests capture logs after other tests configured them
    )
    # Both kinds of line leave through this one handler, whose lock keeps lines from threads whole.
    handler = _Stderr()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _redactor, renderer],
    ))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    # Other libraries' info lines (uvicorn's, APScheduler's "Running job") are noise at info; the exporter's are not.
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("exporter").setLevel(numeric)
    logging.captureWarnings(True)
