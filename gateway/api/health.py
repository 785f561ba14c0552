"""GET /healthz (the process answers) and GET /readyz (it can serve)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response
from sqlalchemy.exc import SQLAlchemyError

from auth.tenants import list_assignments
from db.migrations import DatabaseNotMigrated, ensure_at_head
from gateway.extensions import spec
from gateway.runtime import db_session, get_runtime
from gateway.schemas import HealthStatus
from models.errors import ModelError
from models.registry import get_model

bp = Blueprint("health", __name__)
log = logging.getLogger("predgate.health")


@bp.get("/healthz")
@spec.validate(resp=Response(HTTP_200=HealthStatus), tags=["health"], security={})
def healthz() -> ResponseReturnValue:
    """The process is up."""
    return jsonify({"status": "ok", "checks": {}})


@bp.get("/readyz")
@spec.validate(
    resp=Response(HTTP_200=HealthStatus, HTTP_503=HealthStatus), tags=["health"], security={}
)
def readyz() -> ResponseReturnValue:
    """The database is reachable and migrated, and every assigned model loads."""
    runtime = get_runtime()
    checks: dict[str, str] = {}
    try:
        ensure_at_head(runtime.engine)
        checks["database"] = "ok"
    except DatabaseNotMigrated:
        checks["database"] = "not_migrated"
    except SQLAlchemyError:
        checks["database"] = "unreachable"
    if checks["database"] == "ok":
        session = db_session()
        for name, version in sorted(list_assignments(session), key=str):
            ref = name if version is None else f"{name}@{version}"
            try:
                runtime.model_cache.get(get_model(session, name, version))
                checks[f"model:{ref}"] = "ok"
            except ModelError as exc:
                log.warning("model %s not ready: %s", ref, exc)
                checks[f"model:{ref}"] = exc.code
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )
