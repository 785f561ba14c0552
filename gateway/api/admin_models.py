"""Admin API, models: list, show NAME or NAME@VERSION, register an uploaded joblib file.

An upload may be up to PREDGATE_MAX_MODEL_UPLOAD_BYTES (every other route keeps
PREDGATE_MAX_BODY_BYTES); it is written to a private temporary file and handed to the same
`register_model` as `predgate models register`, which verifies it before anything is stored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import Field, ValidationError
from spectree import Response

from gateway.admin_acts import admin_act
from gateway.api.admin_shapes import (
    ERROR_RESPONSES,
    ModelList,
    ModelVersionOut,
    StrictBody,
    actor,
    model_json,
)
from gateway.audit_notes import note_audit
from gateway.bodies import accepts_upload, field_path
from gateway.caller import require_scope
from gateway.errors import ApiError
from gateway.extensions import documented
from gateway.runtime import db_session, get_runtime
from models.registry import get_model, list_models, parse_model_ref, register_model

bp = Blueprint("admin_models", __name__, url_prefix="/admin/v1/models")
TAGS = ["admin: models"]
UPLOAD_FIELD = "file"


class ModelUpload(StrictBody):
    """The form fields of a registration; the joblib file goes in the `file` part."""

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
@documented(resp=Response(HTTP_200=ModelList, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def list_all() -> ResponseReturnValue:
    """Every registered version, by name then version."""
    note_audit(event_type="admin.read")
    return jsonify({"models": [model_json(m) for m in list_models(db_session())]})


@bp.get("/<ref>")
@documented(resp=Response(HTTP_200=ModelVersionOut, **ERROR_RESPONSES), tags=TAGS)
@require_scope("admin")
def show(ref: str) -> ResponseReturnValue:
    """NAME (its latest version) or NAME@VERSION."""
    note_audit(event_type="admin.read")
    name, version = parse_model_ref(ref)
    return jsonify(model_json(get_model(db_session(), name, version)))


@bp.post("")
@documented(
    form=ModelUpload,
    resp=Response(HTTP_201=ModelVersionOut, **ERROR_RESPONSES),
    tags=TAGS,
)
@require_scope("admin")
@accepts_upload
def register() -> ResponseReturnValue:
    """Register an uploaded fitted scikit-learn joblib file as the next version of NAME."""
    with (
        admin_act("model.register") as act,
        tempfile.TemporaryDirectory(prefix="predgate-upload-") as folder,
    ):
        form = _upload_form()
        act.details["model"] = form.name
        path = Path(folder) / "model.joblib"
        request.files[UPLOAD_FIELD].save(path)
        meta = register_model(
            act.session,
            get_runtime().artifacts,
            name=form.name,
            artifact_path=path,
            registered_by=actor(),
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
    missing = [] if UPLOAD_FIELD in request.files else [{"field": "file", "reason": "missing"}]
    extra_files = [
        {"field": field_path((name,)), "reason": "extra_forbidden"}
        for name in request.files
        if name != UPLOAD_FIELD or len(request.files.getlist(name)) > 1
    ]
    form: ModelUpload | None = None
    problems: list[dict[str, str]] = []
    try:
        form = ModelUpload.model_validate(request.form.to_dict())
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        problems = [{"field": field_path(e["loc"]), "reason": e["type"]} for e in errors[:20]]
    problems += missing + extra_files
    if problems or form is None:
        raise ApiError(
            422,
            "validation_error",
            "Invalid upload",
            f"{problems[0]['field']}: invalid, missing or not accepted.",
            extra={"errors": problems},
        )
    return form
