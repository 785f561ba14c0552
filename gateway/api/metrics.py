"""GET /metrics: Prometheus' text format, for scrapers at PREDGATE_METRICS_ALLOW addresses
(loopback by default) or any caller whose credential holds the admin scope.

Declared a probe, as /healthz and /readyz are: a scrape is never held waiting for the audit
log, so the counters that show an audit outage stay readable during one. Its record is queued:
always for a refused scrape or one made with a credential, for a routine one from an allowed
address only with PREDGATE_AUDIT_HEALTH_CHECKS.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from audit.draft import AUTHORIZATION_DENIED
from gateway.context import RequestContext
from gateway.errors import ApiError
from gateway.metrics import exposition, get_metrics
from gateway.pipeline import authenticate, endpoint, require_scope
from gateway.pipeline.client_address import client_address

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@endpoint("metrics.scrape", scope=None, probe=True, tags=["operations"])
def scrape(ctx: RequestContext) -> Response:
    """Every predgate metric, summed over this server's workers."""
    _authorize_scrape(ctx)
    return exposition()


def _authorize_scrape(ctx: RequestContext) -> None:
    """Pass an allowed address, or a verified credential with the admin scope; else 403 (401
    for a credential that does not verify, counted against the address as anywhere else)."""
    if get_metrics().may_scrape(client_address()):
        return
    if "Authorization" not in request.headers and "X-API-Key" not in request.headers:
        ctx.audit.refused(AUTHORIZATION_DENIED, "metrics_forbidden")
        raise ApiError(
            403,
            "metrics_forbidden",
            "Forbidden",
            "Metrics are served to the configured addresses, or with the admin scope.",
        )
    require_scope(ctx, authenticate(ctx), "admin")
