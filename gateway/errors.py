"""One error shape: every failure becomes RFC 9457 application/problem+json.

Domain errors carry a stable ``code`` and ``status``; a store that fails (the database, the
audit log) is a 503 with its own code, never a bare 500; Werkzeug's HTTP errors get codes from
the table below. Details are fixed sentences: submitted values are never echoed, and the text of
an unexpected exception never leaves the process.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from flask import Flask, Response, json
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from audit.writer import AuditUnavailable
from auth.errors import AuthError, bearer_challenge
from auth.principal import ADMIN_SCOPES, COMPLIANCE_SCOPES
from db.changes import ChangesUnknown
from gateway.context import current_context
from models.errors import ModelError
from ratelimit.errors import RateLimitError

log = logging.getLogger("predgate.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Werkzeug's HTTP errors: status -> (code, title, detail).
HTTP_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "Bad request", "The request could not be understood."),
    404: ("not_found", "Not found", "No resource exists at this path."),
    405: ("method_not_allowed", "Method not allowed", "This path does not accept that method."),
    413: ("payload_too_large", "Payload too large", "The request body exceeds the size limit."),
    415: ("unsupported_media_type", "Unsupported media type", "Send the body as application/json."),
}

# Domain error codes whose message is safe and useful to show as the problem's detail.
PUBLIC_DETAILS: dict[str, str] = {
    "missing_credentials": "Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'.",
    "malformed_credentials": "The credential is not well formed.",
    "invalid_key": "The API key is not valid.",
    "revoked_key": "The API key has been revoked.",
    "expired_key": "The API key has expired.",
    "tenant_suspended": "The tenant of this credential is suspended.",
    "credentials_in_query": "Send credentials in a header, never in the URL.",
    "no_model_assigned": "No model is assigned to this tenant yet.",
    "model_unavailable": "The assigned model cannot be served right now.",
    "model_not_found": "This model, or this version of it, is not registered.",
    "probabilities_unsupported": "Probabilities are available for classifiers only.",
    "unsupported_model_format": "Upload the model as a skops file (skops.io.dump); a pickle or "
    "joblib file is registered only by an operator, with `predgate models register`.",
    "untrusted_model_type": "The skops file holds a type outside the allow-list of supported "
    "scikit-learn models.",
    "rate_limited": "The rate limit is used up; retry after the number of seconds in Retry-After.",
}
DATABASE_UNAVAILABLE = (
    "database_unavailable",
    "Database unavailable",
    "The database cannot be reached right now, so the request was not served; retry shortly.",
)
AUDIT_UNAVAILABLE = (
    "audit_unavailable",
    "Audit log unavailable",
    "The request could not be recorded in the audit log, so it was not answered.",
)
HTTPS_REQUIRED = (
    "https_required",
    "HTTPS required",
    "OAuth endpoints are served over HTTPS only.",
)
# Routes whose refusals the audit record explains (the problem's detail and fields): the
# administrative and compliance routes, few and each worth reading. A partner refusal keeps its
# reason code only.
REFUSALS_RECORDED = ADMIN_SCOPES | COMPLIANCE_SCOPES
# The domain's error bases; each carries code, status and title.
DomainError = AuthError | ModelError | RateLimitError


class ApiError(Exception):
    """An error raised by the HTTP layer itself (validation, content type, limits)."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build the problem+json response every error path uses; its code is the audit reason,
    and on an admin or compliance route its detail (and the fields it names) the refusal."""
    ctx = current_context()
    ctx.audit.reason_code = code
    if status < 500 and ctx.endpoint is not None and ctx.endpoint.scope in REFUSALS_RECORDED:
        # The same words as the answer: built to be shown, so nothing taken from the request
        # beyond field names (truncated and printable).
        ctx.audit.details["refusal"] = detail
        fields = (extra or {}).get("errors")
        if fields:
            ctx.audit.details["fields"] = [
                {"field": f["field"], "reason": f["reason"]} for f in fields
            ]
    body: dict[str, Any] = {
        "type": f"urn:predgate:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": ctx.request_id,
    }
    body.update(extra or {})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_CONTENT_TYPE)
    if status == 401 or code == "insufficient_scope":
        response.headers["WWW-Authenticate"] = bearer_challenge(code)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(exc: ApiError) -> Response:
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, extra=exc.extra, headers=exc.headers
    )


def _handle_domain_error(exc: DomainError) -> Response:
    if exc.status >= 500:
        # The message (which file, which digest) is for operators only.
        log.error("domain error %s: %s", exc.code, exc)
    title = getattr(exc, "title", exc.code.replace("_", " ").capitalize())
    if getattr(exc, "public_detail", None):
        # Built to be shown: what is wrong, with nothing taken from the request.
        detail = str(exc.public_detail)  # type: ignore[union-attr]
    elif getattr(exc, "public_message", False):
        # Messages built only from schema names and limits, never from submitted values.
        detail = str(exc)
    else:
        detail = PUBLIC_DETAILS.get(exc.code, title)
    extra = None
    field = getattr(exc, "field", None)
    if field is not None:
        extra = {"errors": [{"field": field, "reason": getattr(exc, "reason", exc.code)}]}
    return problem_response(exc.status, exc.code, title, detail, extra=extra)


def _handle_store_failure(exc: Exception) -> Response:
    log.warning(
        "request %s: database unavailable (%s)", current_context().request_id, type(exc).__name__
    )
    return problem_response(503, *DATABASE_UNAVAILABLE)


def _handle_audit_unavailable(_exc: AuditUnavailable) -> Response:
    return problem_response(503, *AUDIT_UNAVAILABLE)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, title, detail = HTTP_PROBLEMS.get(
        status, (f"http_{status}", exc.name, "The request could not be processed.")
    )
    headers = {}
    if status == 405 and exc.response is None:
        allow = exc.get_headers()
        headers = {k: v for k, v in allow if k.lower() == "allow"}
    return problem_response(status, code, title, detail, headers=headers)


def _handle_insecure_transport(_exc: InsecureTransportError) -> Response:
    # Authlib serves OAuth over HTTPS only (plain HTTP to loopback aside); behind a proxy that
    # terminates TLS, the scheme is believed from X-Forwarded-Proto of trusted proxies only.
    return problem_response(400, *HTTPS_REQUIRED)


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem_response(
        500, "internal_error", "Internal server error", "The server failed to handle the request."
    )


def init_errors(app: Flask) -> None:
    """Register the single error mapping."""
    app.register_error_handler(ApiError, _handle_api_error)
    for domain_error in (AuthError, ModelError, RateLimitError):
        app.register_error_handler(domain_error, _handle_domain_error)
    # A database that does not answer: the request was not served; retry later.
    for store_failure in (OperationalError, InterfaceError, PoolTimeout, ChangesUnknown):
        app.register_error_handler(store_failure, _handle_store_failure)
    app.register_error_handler(AuditUnavailable, _handle_audit_unavailable)
    app.register_error_handler(InsecureTransportError, _handle_insecure_transport)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
