"""Logging: one line per request with its id, route template and outcome; never a credential,
a query string or a body."""

from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Response, g, request

from gateway.caller import current_principal
from gateway.request_id import current_request_id

access_log = logging.getLogger("predgate.access")


def configure_logging(level: str) -> None:
    """Send predgate's logs to stderr at the configured level."""
    root = logging.getLogger("predgate")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def _start_timer() -> None:
    g.started_at = time.perf_counter()


def _log_request(response: Response) -> Response:
    started = g.get("started_at")
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    principal = current_principal()
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    access_log.info(
        "request_id=%s method=%s route=%s status=%d duration_ms=%.2f tenant=%s principal=%s",
        current_request_id(),
        request.method,
        route,
        response.status_code,
        duration_ms,
        principal.tenant_name if principal else "-",
        principal.principal_id if principal else "-",
    )
    return response


def init_access_log(app: Flask) -> None:
    """Time each request and log it once it is answered."""
    app.before_request(_start_timer)
    app.after_request(_log_request)
