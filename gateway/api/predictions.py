"""POST /v1/predict and GET /v1/model: the caller's tenant's model, and nothing else."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from gateway.context import RequestContext
from gateway.pipeline import endpoint
from gateway.presenters import assigned_model_json
from gateway.schemas import ModelInfo, PredictRequest, PredictResponse, Problem
from models.serving import predict_records

bp = Blueprint("predictions", __name__)
TAGS = ["predictions"]
ERRORS: dict[str, Any] = {
    f"HTTP_{s}": Problem for s in (400, 401, 403, 409, 413, 415, 422, 429, 503)
}


@bp.post("/v1/predict")
@endpoint(
    "predict",
    scope="predict",
    body=PredictRequest,
    limited=True,
    cost=PredictRequest.cost,
    responses=Response(HTTP_200=PredictResponse, **ERRORS),
    tags=TAGS,
)
def predict(ctx: RequestContext, body: PredictRequest) -> ResponseReturnValue:
    """Predict one record or a batch with the model assigned to the caller's tenant."""
    runtime = ctx.runtime
    model_name, model_version = runtime.directory.tenant(ctx.tenant_id()).assignment()
    served = predict_records(
        runtime.catalog,
        runtime.model_cache,
        model_name=model_name,
        model_version=model_version,
        records=body.records(),
        batched=body.instances is not None,
        probabilities=body.return_probabilities,
        max_batch=runtime.settings.max_batch,
    )
    ctx.audit.prediction(
        model_name=served.model.name,
        model_version=served.model.version,
        sha256=served.model.artifact_sha256,
        rows=served.rows,
    )
    return jsonify(PredictResponse.of(served, request_id=ctx.request_id))


@bp.get("/v1/model")
@endpoint(
    "model.read",
    scope="model:read",
    limited=True,
    responses=Response(HTTP_200=ModelInfo, **ERRORS),
    tags=TAGS,
)
def assigned_model(ctx: RequestContext) -> ResponseReturnValue:
    """The assigned model's name, version, task, feature schema and classes."""
    runtime = ctx.runtime
    model_name, model_version = runtime.directory.tenant(ctx.tenant_id()).assignment()
    return jsonify(assigned_model_json(runtime.catalog.version(model_name, model_version)))
