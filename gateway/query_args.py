"""Query strings: validated with a pydantic model, refused with the same 422 problem as bodies."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from gateway.bodies import field_path
from gateway.errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_query_args(model: type[ModelT]) -> ModelT:
    """The query string as `model` (each parameter once), or a 422 naming the fields."""
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        raise _invalid([{"field": field_path((name,)), "reason": "repeated"} for name in repeated])
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        raise _invalid(
            [{"field": field_path(error["loc"]), "reason": error["type"]} for error in errors[:20]]
        ) from None


def _invalid(fields: list[dict[str, str]]) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        "Invalid query parameters",
        f"{fields[0]['field']}: invalid or not accepted.",
        extra={"errors": fields},
    )
