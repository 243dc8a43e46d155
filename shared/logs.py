"""structlog configuration, once per process: JSON or console, with redaction.

Imports: stdlib + structlog + shared.spec.redact.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from shared.spec.redact import is_secret_key, redact, redact_text


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in list(event.items()):
        if isinstance(k, str) and is_secret_key(k) and v is not None:
            event[k] = "***"
        elif isinstance(v, str):
            event[k] = redact_text(v)
        elif isinstance(v, (dict, list)):
            event[k] = redact(v)
    return event


def configure(fmt: str = "console", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty() if hasattr(stream, "isatty") else False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
