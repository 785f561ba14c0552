"""Request inputs: the body size limit, JSON bodies and query strings validated with pydantic
models, each refusal with its own problem and never an echo of what was sent."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from gateway.errors import ApiError
from gateway.front import BODY_TIMED_OUT

ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_FIELD_NAME_SHOWN = 64
MAX_ERRORS_SHOWN = 20
MAX_FIELDS_SAID = 3  # in the detail; `errors` lists up to MAX_ERRORS_SHOWN
CHUNK_BYTES = 65536
BODY_READ = "predgate.body_read"  # WSGI environ key: the request path has read the body
# Pydantic error types whose message is made from the schema alone, never from the input.
SCHEMA_MESSAGES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "model_type",
        "dict_type",
        "list_type",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "none_required",
        "int_parsing",
        "int_from_float",
        "float_parsing",
        "bool_parsing",
        "finite_number",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "literal_error",
        "enum",
        "string_pattern_mismatch",
        "datetime_type",
        "datetime_parsing",
        "datetime_from_date_parsing",
    }
)
# What is wrong, in words, for reasons of our own and for pydantic types not listed above.
REASON_WORDS = {
    "missing": "Field required",
    "extra_forbidden": "Extra inputs are not permitted",
    "repeated": "Given more than once",
    "not_an_object": "Should be a JSON object",
    "value_error": "Not an accepted value",
}
NOT_VALID = "Not valid"


def refuse_oversized_body(limit: int) -> None:
    """408 when the server stopped waiting for the body (gateway.front); 413 on the declared
    length before anything reads the body (a chunked body that reached the app still chunked is
    judged by `read_chunked_body` once the caller is known)."""
    if request.environ.get(BODY_TIMED_OUT):
        raise ApiError(
            408,
            "request_timeout",
            "Request timeout",
            "The request body did not arrive in time; send it without pausing.",
        )
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)


def read_body() -> bytes:
    """The body, read once and kept (for the audit record's digest)."""
    request.environ[BODY_READ] = True
    return request.get_data(cache=True)


def body_already_read() -> bytes | None:
    """The body if the request path read it, else None: a request refused before its body was
    needed (401, 404...) is never made to wait for a body a client sends slowly."""
    return request.get_data(cache=True) if request.environ.get(BODY_READ) else None


def read_chunked_body() -> None:
    """For a chunked body: read it now, 413 past the limit `refuse_oversized_body` set (so it
    is never cut at the limit and parsed), and hand the rest of the request a body of known
    length. Runs after the caller is resolved, so a client without a credential cannot hold a
    thread by sending a chunked body slowly."""
    limit = request.max_content_length
    if request.headers.get("Transfer-Encoding") and limit is not None:
        _buffer_chunked_body(limit)


def _buffer_chunked_body(limit: int) -> None:
    # Werkzeug cuts a stream of undeclared length at the limit without a word, so the JSON in
    # its first `limit` bytes would be parsed and answered. Read it here instead, one byte past
    # the limit at most, and hand the rest of the request a body of known length (the digest
    # in the audit record then covers the whole body that was accepted).
    environ = request.environ
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(min(CHUNK_BYTES, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise _too_large(limit)
    environ[BODY_READ] = True
    environ["wsgi.input"] = io.BytesIO(b"".join(parts))
    environ["CONTENT_LENGTH"] = str(size)
    del environ["HTTP_TRANSFER_ENCODING"]
    request.__dict__.pop("content_length", None)  # Werkzeug caches it: read it afresh


def _too_large(limit: int) -> ApiError:
    return ApiError(
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
    raw = read_body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        invalid = [error for error in errors if error["type"] == "json_invalid"]
        if invalid:
            # The parser's words say where and what (`expected value at line 1 column 9`),
            # never what was there.
            where = str(invalid[0]["msg"]).removeprefix("Invalid JSON: ")
            raise ApiError(
                400, "invalid_json", "Invalid JSON", f"The body is not valid JSON: {where}."
            ) from None
        if any(error["type"] == "model_type" and not error["loc"] for error in errors):
            raise invalid_inputs(
                "Invalid request body",
                [FieldProblem.of("", "not_an_object")],
            ) from None
        raise invalid_inputs("Invalid request body", validation_fields(exc)) from None


def parse_optional_json_body(model: type[ModelT]) -> ModelT:
    """An optional JSON body: absent means every field's default."""
    if not request.content_length and not read_body():
        return model()
    return parse_json_body(model)


def parse_query_args(model: type[ModelT]) -> ModelT:
    """The query string as `model` (each parameter once), or a 422 naming the fields."""
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        raise invalid_inputs(
            "Invalid query parameters",
            [FieldProblem.of(field_path((name,)), "repeated") for name in repeated],
        )
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise invalid_inputs("Invalid query parameters", validation_fields(exc)) from None


@dataclass(frozen=True)
class FieldProblem:
    """One field that is invalid, missing or not accepted: its path, a stable reason, and what
    is wrong in words built from the schema alone (never from what was sent)."""

    field: str
    reason: str
    words: str

    @classmethod
    def of(cls, field: str, reason: str) -> FieldProblem:
        """A problem described by its reason alone."""
        return cls(field, reason, REASON_WORDS.get(reason, NOT_VALID))

    def as_json(self) -> dict[str, str]:
        """The entry of the problem's `errors` (and of the audit record's `fields`)."""
        return {"field": self.field, "reason": self.reason}


def invalid_inputs(title: str, problems: list[FieldProblem]) -> ApiError:
    """The 422 for fields that are invalid, missing or not accepted; its detail says what is
    wrong with each (the first few), its `errors` list them all."""
    said = "; ".join(f"{p.field or 'body'}: {p.words}" for p in problems[:MAX_FIELDS_SAID])
    more = len(problems) - MAX_FIELDS_SAID
    detail = f"{said} (and {more} more)." if more > 0 else f"{said}."
    return ApiError(
        422, "validation_error", title, detail, extra={"errors": [p.as_json() for p in problems]}
    )


def validation_fields(exc: ValidationError) -> list[FieldProblem]:
    """A pydantic error as field problems: paths, reasons and words, never values."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    return [
        FieldProblem(field_path(error["loc"]), error["type"], _words(error["type"], error["msg"]))
        for error in errors[:MAX_ERRORS_SHOWN]
    ]


def _words(kind: str, message: str) -> str:
    # Pydantic's own sentence where it is built from the schema (limits, expected values,
    # patterns); a validator's message or a parser's error may quote the input, so not those.
    if kind in SCHEMA_MESSAGES:
        return message
    return REASON_WORDS.get(kind, NOT_VALID)


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
