"""POST /v1/predict: the caller's tenant's model, and nothing else."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from auth.tenants import get_assignment
from gateway.audit_notes import note_audit
from gateway.bodies import parse_json_body
from gateway.caller import require_scope, resolve_caller
from gateway.extensions import documented
from gateway.request_id import current_request_id
from gateway.runtime import db_session, get_runtime
from gateway.schemas import PredictRequest, PredictResponse, Problem
from models.serving import predict_records

bp = Blueprint("predictions", __name__)

ERROR_RESPONSES: dict[str, Any] = {
    f"HTTP_{status}": Problem for status in (400, 401, 403, 413, 415, 422, 429, 503)
}


@bp.post("/v1/predict")
@documented(
    json=PredictRequest,
    resp=Response(HTTP_200=PredictResponse, **ERROR_RESPONSES),
    tags=["predictions"],
)
@require_scope("predict")
def predict() -> ResponseReturnValue:
    """Predict one record or a batch with the model assigned to the caller's tenant."""
    principal = resolve_caller()
    body = parse_json_body(PredictRequest)
    session = db_session()
    assert principal.tenant_id is not None
    model_name, model_version = get_assignment(session, tenant_id=principal.tenant_id)
    runtime = get_runtime()
    served = predict_records(
        session,
        runtime.model_cache,
        model_name=model_name,
        model_version=model_version,
        records=body.records(),
        batched=body.instances is not None,
        probabilities=body.return_probabilities,
        max_batch=runtime.settings.max_batch,
    )
    note_audit(
        model_name=served.model.name,
        model_version=served.model.version,
        model_sha256=served.model.artifact_sha256,
        rows=served.rows,
    )
    answer: dict[str, Any] = {
        "predictions": served.prediction.predictions,
        "model": {"name": served.model.name, "version": served.model.version},
        "request_id": current_request_id(),
    }
    if served.prediction.probabilities is not None:
        answer["probabilities"] = served.prediction.probabilities
    return jsonify(answer)
