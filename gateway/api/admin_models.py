"""Admin API, models: list, show NAME or NAME@VERSION, register an uploaded skops file.

An upload may be up to PREDGATE_MAX_MODEL_UPLOAD_BYTES (every other route keeps
PREDGATE_MAX_BODY_BYTES). It must be a skops file, built only from the allow-list in
models.formats: a pickle or joblib file would run code in this process as it loads, so it is
refused by its content, and an operator registers one with `predgate models register`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field, ValidationError
from spectree import Response

from gateway.api.acts import actor, admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    ModelList,
    ModelListQuery,
    ModelVersionOut,
    StrictBody,
)
from gateway.context import RequestContext
from gateway.errors import ApiError
from gateway.pages import cut_page
from gateway.pipeline import endpoint
from gateway.pipeline.bodies import FieldProblem, field_path, invalid_inputs, validation_fields
from gateway.presenters import model_json
from models.formats import sniff_format
from models.registry import get_model, list_models, parse_model_ref, register_upload

bp = Blueprint("admin_models", __name__, url_prefix="/admin/v1/models")
TAGS = ["admin: models"]
UPLOAD_FIELD = "file"


class ModelUpload(StrictBody):
    """The form fields of a registration; the skops file goes in the `file` part."""

    name: str = Field(max_length=100)
    features: str | None = Field(
        default=None, max_length=10_000, description="Comma-separated, when the model has none."
    )

    def feature_list(self) -> list[str] | None:
        """The features as a list, or None to use the model's own."""
        if self.features is None:
            return None
        return [f.strip() for f in self.features.split(",")]


@bp.get("")
@endpoint(
    "admin.read",
    scope="admin",
    query=ModelListQuery,
    responses=Response(HTTP_200=ModelList, **ERROR_RESPONSES),
    tags=TAGS,
)
def list_all(ctx: RequestContext, query: ModelListQuery) -> ResponseReturnValue:
    """Registered versions by name then version, a page at a time."""
    found = list_models(ctx.db(), after=query.after_version(), limit=query.limit + 1)
    page = cut_page(query.kind, found, query.limit, lambda m: f"{m.name}@{m.version}")
    return jsonify({"models": [model_json(m) for m in page.items], "next_cursor": page.next_cursor})


@bp.get("/<ref>")
@endpoint(
    "admin.read",
    scope="admin",
    responses=Response(HTTP_200=ModelVersionOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def show(ctx: RequestContext, ref: str) -> ResponseReturnValue:
    """NAME (its latest version) or NAME@VERSION."""
    name, version = parse_model_ref(ref)
    return jsonify(model_json(get_model(ctx.db(), name, version)))


@bp.post("")
@endpoint(
    "model.register",
    scope="admin",
    form=ModelUpload,
    upload=True,
    responses=Response(HTTP_201=ModelVersionOut, **ERROR_RESPONSES),
    tags=TAGS,
)
def register(ctx: RequestContext) -> ResponseReturnValue:
    """Register an uploaded skops file of a fitted scikit-learn model as NAME's next version."""
    with admin_act(ctx) as act:
        form = _upload_form()
        data = request.files[UPLOAD_FIELD].read()
        # Recorded first, so the record of a refused upload says what was sent.
        act.details.update(model=form.name, format=sniff_format(data))
        meta = register_upload(
            act.session,
            ctx.runtime.artifacts,
            name=form.name,
            data=data,
            registered_by=actor(ctx),
            features=form.feature_list(),
        )
        act.details.update(
            version=meta.version, sha256=meta.artifact_sha256, runtime=meta.runtime, task=meta.task
        )
        act.status = 201
    return jsonify(model_json(meta)), 201


def _upload_form() -> ModelUpload:
    if request.mimetype != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the model as multipart/form-data with a 'file' part.",
        )
    missing = [] if UPLOAD_FIELD in request.files else [FieldProblem.of(UPLOAD_FIELD, "missing")]
    extra_files = [
        FieldProblem.of(
            field_path((name,)), "extra_forbidden" if name != UPLOAD_FIELD else "repeated"
        )
        for name in request.files
        if name != UPLOAD_FIELD or len(request.files.getlist(name)) > 1
    ]
    form: ModelUpload | None = None
    problems: list[FieldProblem] = []
    try:
        form = ModelUpload.model_validate(request.form.to_dict())
    except ValidationError as exc:
        problems = validation_fields(exc)
    problems += missing + extra_files
    if problems or form is None:
        raise invalid_inputs("Invalid upload", problems)
    return form
