"""Request inputs: the body size limit, JSON bodies and query strings validated with pydantic
models, each refusal with its own problem and never an echo of what was sent."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from gateway.errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_FIELD_NAME_SHOWN = 64
MAX_ERRORS_SHOWN = 20


def refuse_oversized_body(limit: int) -> None:
    """413 on the declared length before anything reads the body; Werkzeug enforces the same
    limit while reading a body of undeclared length."""
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413,
            "payload_too_large",
            "Payload too large",
            f"The request body exceeds the limit of {limit} bytes.",
        )


def parse_json_body(model: type[ModelT]) -> ModelT:
    """The JSON body as `model`, or a 400/413/415/422 problem."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    # Bounded by max_content_length (413 past it); cached for the audit record's digest.
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
        fields = _fields(exc)
        first = fields[0]
        raise ApiError(
            422,
            "validation_error",
            "Invalid request body",
            f"{first['field'] or 'body'}: {errors[0]['msg']}.",
            extra={"errors": fields},
        ) from None


def parse_optional_json_body(model: type[ModelT]) -> ModelT:
    """An optional JSON body: absent means every field's default."""
    if not request.content_length and not request.get_data(cache=True):
        return model()
    return parse_json_body(model)


def parse_query_args(model: type[ModelT]) -> ModelT:
    """The query string as `model` (each parameter once), or a 422 naming the fields."""
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        raise invalid_inputs(
            "Invalid query parameters",
            [{"field": field_path((name,)), "reason": "repeated"} for name in repeated],
        )
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise invalid_inputs("Invalid query parameters", _fields(exc)) from None


def invalid_inputs(title: str, fields: list[dict[str, str]]) -> ApiError:
    """The 422 for fields that are invalid, missing or not accepted."""
    return ApiError(
        422,
        "validation_error",
        title,
        f"{fields[0]['field']}: invalid, missing or not accepted.",
        extra={"errors": fields},
    )


def validation_fields(exc: ValidationError) -> list[dict[str, str]]:
    """A pydantic error as the problem's `errors`: field paths and reasons, never values."""
    return _fields(exc)


def _fields(exc: ValidationError) -> list[dict[str, str]]:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    return [
        {"field": field_path(error["loc"]), "reason": error["type"]}
        for error in errors[:MAX_ERRORS_SHOWN]
    ]


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
