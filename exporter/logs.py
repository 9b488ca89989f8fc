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


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configures structlog (and the standard library's root logger) for the whole process."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,  # tracebacks become text before the redactor reads them
            _redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,  # tests capture logs after other tests configured them
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s: %(message)s")
