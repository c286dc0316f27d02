"""structlog setup: console or JSON lines, contextvars (station_id, evse_id, transaction_id) in every line.

Library loggers (ocpp, websockets, can) go through the same renderer. `ocpp` and `websockets` stay at WARNING
even in debug mode: their debug output carries frames and handshake headers, i.e. secrets.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Keys whose values must never reach a log line (HOUSE_STYLE: never log secrets).
_SECRET_KEYS = frozenset({"password", "basic_auth_password", "private_key", "token", "authorization"})


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_KEYS.intersection(event_dict):
        event_dict[key] = "***"
    return event_dict


def configure_logging(
    fmt: Literal["console", "json"] = "console",
    level: Literal["debug", "info", "warning", "error"] = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging once for the process (idempotent)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        # filter_by_level first: structlog's stdlib BoundLogger runs the whole chain (timestamp included)
        # before the stdlib level check, so a debug line cost as much as a printed one. It reads the
        # stdlib logger's effective level on each call, so a SIGHUP level change applies at once.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("can", "asyncio"):
        logging.getLogger(name).setLevel(quiet)
    # Never below WARNING: at debug level these libraries log handshake headers (Basic auth) and raw
    # frames (SetVariables may carry SecurityCtrlr.BasicAuthPassword). Our own debug lines name actions.
    for name in ("ocpp", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)
