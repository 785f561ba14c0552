"""Logging: one line per request with its id, route template and outcome; never a credential,
a query string or a body."""

from __future__ import annotations

import logging
import sys

from flask import Response, request

from gateway.context import RequestContext

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


def log_request(ctx: RequestContext, response: Response) -> None:
    """The access-log line of an answered request."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    caller = ctx.caller
    access_log.info(
        "request_id=%s method=%s route=%s status=%d duration_ms=%.2f tenant=%s principal=%s",
        ctx.request_id,
        request.method,
        request.url_rule.rule if request.url_rule is not None else "<unmatched>",
        response.status_code,
        ctx.elapsed_ms(),
        caller.tenant_name if caller else "-",
        caller.principal_id if caller else "-",
    )
