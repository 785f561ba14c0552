"""GET /v1/model: what the caller's tenant is served."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from auth.tenants import get_assignment
from gateway.caller import require_scope, resolve_caller
from gateway.extensions import documented
from gateway.runtime import db_session
from gateway.schemas import ModelInfo, Problem
from models.registry import get_model

bp = Blueprint("model_info", __name__)


@bp.get("/v1/model")
@documented(
    resp=Response(
        HTTP_200=ModelInfo,
        HTTP_401=Problem,
        HTTP_403=Problem,
        HTTP_409=Problem,
        HTTP_429=Problem,
        HTTP_503=Problem,
    ),
    tags=["predictions"],
)
@require_scope("model:read")
def assigned_model() -> ResponseReturnValue:
    """The assigned model's name, version, task, feature schema and classes."""
    principal = resolve_caller()
    session = db_session()
    assert principal.tenant_id is not None
    model_name, model_version = get_assignment(session, tenant_id=principal.tenant_id)
    meta = get_model(session, model_name, model_version)
    return jsonify(
        {
            "name": meta.name,
            "version": meta.version,
            "task": meta.task,
            "features": list(meta.features),
            "classes": list(meta.classes) if meta.classes is not None else None,
            "runtime": meta.runtime,
        }
    )
