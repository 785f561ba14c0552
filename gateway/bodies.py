"""Request bodies: size, media type, JSON syntax and schema, each with its own problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from pydantic import BaseModel, ValidationError

from gateway.errors import ApiError
from gateway.runtime import get_runtime

ModelT = TypeVar("ModelT", bound=BaseModel)
ViewT = TypeVar("ViewT", bound=Callable[..., Any])
_UPLOAD_MARK = "predgate_accepts_upload"
MAX_FIELD_NAME_SHOWN = 64


def parse_json_body(model: type[ModelT]) -> ModelT:
    """Parse and validate the JSON body, or raise a 400/413/415/422 problem.

    Parsed once per request: the rate limiter weighs a batch by its rows before the view runs,
    and the view reuses that outcome.
    """
    outcome = g.get("parsed_body")
    if not (isinstance(outcome, tuple) and outcome[0] is model):
        try:
            outcome = (model, _parse_json_body(model))
        except ApiError as problem:
            outcome = (model, problem)
        g.parsed_body = outcome
    result = outcome[1]
    if isinstance(result, model):
        return result
    raise result


def _parse_json_body(model: type[ModelT]) -> ModelT:
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    # Bounded by MAX_CONTENT_LENGTH (413 past it); cached for the audit record's digest.
    raw = request.get_data(cache=True)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise ApiError(
                400, "invalid_json", "Invalid JSON", "The body is not valid JSON."
            ) from None
        if any(error["type"] == "model_type" and not error["loc"] for error in errors):
            raise ApiError(
                422,
                "validation_error",
                "Invalid request body",
                "The body must be a JSON object.",
                extra={"errors": [{"field": "", "reason": "not_an_object"}]},
            ) from None
        fields = [
            {"field": field_path(error["loc"]), "reason": error["type"]} for error in errors[:20]
        ]
        first = fields[0]
        raise ApiError(
            422,
            "validation_error",
            "Invalid request body",
            f"{first['field'] or 'body'}: {errors[0]['msg']}.",
            extra={"errors": fields},
        ) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('instances', 0, 'area')` -> `instances[0].area`, truncated and printable."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = "".join(c if c.isprintable() else "?" for c in part)[:MAX_FIELD_NAME_SHOWN]
            path += f".{name}" if path else name
    return path


def accepts_upload(view: ViewT) -> ViewT:
    """Mark a view whose body may reach PREDGATE_MAX_MODEL_UPLOAD_BYTES, not max_body_bytes."""
    setattr(view, _UPLOAD_MARK, True)
    return view


def request_body_limit() -> int:
    """The body size this request's route accepts."""
    settings = get_runtime().settings
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and getattr(view, _UPLOAD_MARK, False):
        return settings.max_model_upload_bytes
    return settings.max_body_bytes


def _refuse_oversized_body() -> None:
    # Refuse on the declared length before anything reads the body; Werkzeug enforces the
    # same limit while reading a body of undeclared length.
    limit = request_body_limit()
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413,
            "payload_too_large",
            "Payload too large",
            f"The request body exceeds the limit of {limit} bytes.",
        )


def init_bodies(app: Flask) -> None:
    """Check body size on every request, before authentication or parsing."""
    app.before_request(_refuse_oversized_body)
