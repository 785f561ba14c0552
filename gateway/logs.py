"""Logging: one line per request with its id, route template and outcome; never a credential,
a query string, a header or a body.

Every line, predgate's own and those of libraries (granian, SQLAlchemy...), goes through one
stdlib handler whose structlog formatter renders it as one JSON object per line
(PREDGATE_LOG_FORMAT=json, the default) or as readable text for development (text). Code keeps
using `logging.getLogger`; fields travel as `extra`, and an exception becomes a structured
`exception` field, without the values of local variables (they may hold keys or features).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from flask import Response, request
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor

from gateway.context import RequestContext

LOG_FORMATS = ("json", "text")
LEADING_FIELDS = ("timestamp", "level", "logger", "event")
# Set on a record by another handler's formatter that ran first; the event already says it.
FORMATTER_LEFTOVERS = ("message", "asctime")
access_log = logging.getLogger("predgate.access")


class _PredgateHandler(logging.StreamHandler[TextIO]):
    """The one handler predgate installs (so configuring again replaces it, never adds one)."""


def log_formatter(log_format: str) -> logging.Formatter:
    """The formatter of `log_format` ("json" or "text") for stdlib log records."""
    # What a record carries, in this order: when, how bad, which logger, its `extra` fields.
    pre_chain: list[Processor] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _leading_fields,
    ]
    if log_format == "json":
        renderers: list[Processor] = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    elif log_format == "text":
        renderers = [
            structlog.dev.ConsoleRenderer(
                colors=False,
                sort_keys=False,
                # Never rich's traceback: it prints local variables.
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    else:
        raise ValueError(f"unknown log format {log_format!r}; expected one of {LOG_FORMATS}")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    )


def _leading_fields(_logger: object, _method: str, event: EventDict) -> EventDict:
    """The fields every line has, first, so a line reads from its time to its details."""
    for leftover in FORMATTER_LEFTOVERS:
        event.pop(leftover, None)
    leading: EventDict = {key: event.pop(key, None) for key in LEADING_FIELDS}
    leading.update(event)
    return leading


def configure_logging(
    level: str, log_format: str = "json", *, stream: TextIO | None = None
) -> None:
    """Send every log line to `stream` (stderr) in `log_format`; predgate's at `level`."""
    handler = _installed_handler() or _PredgateHandler()
    handler.setStream(stream or sys.stderr)
    handler.setFormatter(log_formatter(log_format))
    # The root logger's own level stays as it is: at INFO, SQLAlchemy would log every
    # statement with its parameters. Its handler carries library lines (granian's too).
    for logger in (logging.getLogger(), logging.getLogger("predgate")):
        if handler not in logger.handlers:
            logger.addHandler(handler)
    predgate = logging.getLogger("predgate")
    predgate.setLevel(level)
    predgate.propagate = False  # its lines are handled once, at its own level


def _installed_handler() -> _PredgateHandler | None:
    for handler in logging.getLogger("predgate").handlers:
        if isinstance(handler, _PredgateHandler):
            return handler
    return None


def log_request(ctx: RequestContext, response: Response) -> None:
    """The access-log line of an answered request: its route template, never its URL."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    caller = ctx.caller
    draft = ctx.audit
    rule = request.url_rule
    access_log.info(
        "request",
        extra={
            "request_id": ctx.request_id,
            "method": request.method,
            "route": rule.rule if rule is not None else None,
            "status": response.status_code,
            "duration_ms": round(ctx.elapsed_ms(), 2),
            "tenant": caller.tenant_name if caller else None,
            "principal": caller.principal_id if caller else None,
            "model": draft.model_name,
            "model_version": draft.model_version,
            # After TrustedProxies: the same address the audit record names.
            "client": request.remote_addr,
        },
    )
