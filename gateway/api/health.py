"""GET /healthz (liveness: the process answers, whatever the database does) and GET /readyz
(readiness: the database, Redis and every assigned model can serve)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from gateway.context import RequestContext
from gateway.pipeline import endpoint
from gateway.readiness import readiness_checks
from gateway.schemas import HealthStatus

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint(
    "health.check",
    scope=None,
    probe=True,
    responses=Response(HTTP_200=HealthStatus),
    tags=["health"],
)
def healthz(ctx: RequestContext) -> ResponseReturnValue:
    """The process is up (no database or Redis call: a store outage must not fail liveness)."""
    return jsonify({"status": "ok", "checks": {}})


@bp.get("/readyz")
@endpoint(
    "health.check",
    scope=None,
    probe=True,
    responses=Response(HTTP_200=HealthStatus, HTTP_503=HealthStatus),
    tags=["health"],
)
def readyz(ctx: RequestContext) -> ResponseReturnValue:
    """The database is reachable and migrated, Redis answers, the audit log can be written,
    and every assigned model loads."""
    checks = readiness_checks(ctx.runtime)
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )
