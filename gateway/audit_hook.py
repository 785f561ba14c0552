"""Every HTTP request yields exactly one audit record, committed before the response leaves
("no audit, no answer"): if the record cannot be committed the caller gets 503 instead."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from audit.digests import body_digest, tenant_digest_key
from audit.events import AuditEvent
from audit.writer import AuditUnavailable
from gateway.audit_notes import audit_notes
from gateway.bodies import request_body_limit
from gateway.caller import current_principal
from gateway.client_address import client_address
from gateway.errors import problem_response
from gateway.request_id import current_request_id
from gateway.runtime import get_runtime

log = logging.getLogger("predgate.audit")

USER_AGENT_LIMIT = 256
# event_type by endpoint; failures of authentication, authorisation and rate limits take
# their own types whatever the route.
ENDPOINT_EVENT_TYPES = {
    "predictions.predict": "predict",
    "model_info.assigned_model": "model.read",
    "health.healthz": "health.check",
    "health.readyz": "health.check",
    "docs.openapi_document": "docs.read",
    "docs.docs_page": "docs.read",
}
STATUS_EVENT_TYPES = {401: "authn.failure", 403: "authz.denied", 429: "ratelimit.exceeded"}


def _start_clock() -> None:
    g.audit_started_at = datetime.now(UTC)
    g.audit_started_perf = time.perf_counter()


def _record_response(response: Response) -> Response:
    if g.get("audit_recorded"):
        return response  # an admin act committed its record in the transaction of its change
    runtime = get_runtime()
    event_type = _event_type(response.status_code)
    if event_type == "health.check" and not runtime.settings.audit_health_checks:
        return response
    try:
        runtime.audit_sink.record(_build_event(response, event_type))
    except AuditUnavailable:
        log.error(
            "request %s not answered: its audit record was not committed", current_request_id()
        )
        return problem_response(
            503,
            "audit_unavailable",
            "Audit log unavailable",
            "The request could not be recorded in the audit log, so it was not answered.",
        )
    return response


def _event_type(status: int) -> str:
    noted, _details = audit_notes()
    if "event_type" in noted:
        return str(noted["event_type"])
    if status in STATUS_EVENT_TYPES:
        return STATUS_EVENT_TYPES[status]
    endpoint = request.endpoint or ""
    if endpoint in ENDPOINT_EVENT_TYPES:
        return ENDPOINT_EVENT_TYPES[endpoint]
    if request.path.startswith("/docs"):
        return "docs.read"
    return "http.request"


def _build_event(response: Response, event_type: str) -> AuditEvent:
    return request_event(
        event_type,
        status=response.status_code,
        response_body=None if response.is_streamed else response.get_data(),
    )


def request_event(
    event_type: str,
    *,
    status: int,
    response_body: bytes | None,
    tenant_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """This request's audit event. Admin acts pass the tenant they acted on and what changed."""
    runtime = get_runtime()
    noted, noted_details = audit_notes()
    principal = current_principal()
    if tenant_id is None and principal is not None:
        tenant_id = principal.tenant_id
    if tenant_id is None:  # no credential verified, or an admin acting on a tenant
        tenant_id = noted.get("tenant_id")
    details = {**noted_details, **(details or {})}
    digest_key = tenant_digest_key(runtime.settings.secret_key, tenant_id)
    started = g.get("audit_started_perf")
    return AuditEvent(
        event_type=event_type,
        outcome="success" if status < 400 else "failure" if status < 500 else "error",
        reason_code=noted.get("reason_code") if status >= 400 else None,
        instance_id=runtime.settings.instance_id,
        process_id=os.getpid(),
        ts=g.get("audit_started_at") or datetime.now(UTC),
        duration_ms=(time.perf_counter() - started) * 1000 if started is not None else None,
        request_id=current_request_id(),
        http_status=status,
        http_method=request.method[:10],
        route=request.url_rule.rule if request.url_rule is not None else None,
        tenant_id=tenant_id,
        principal_type=principal.principal_type if principal else noted.get("principal_type"),
        principal_id=principal.principal_id if principal else noted.get("principal_id"),
        auth_method=principal.auth_method if principal else noted.get("auth_method"),
        source_ip=client_address(runtime.settings.trusted_proxies),
        user_agent=_user_agent(),
        model_name=noted.get("model_name"),
        model_version=noted.get("model_version"),
        model_sha256=noted.get("model_sha256"),
        rows=noted.get("rows"),
        request_digest=_request_digest(digest_key),
        response_digest=None if response_body is None else body_digest(digest_key, response_body),
        details=details or None,
    )


def _request_digest(key: bytes) -> str | None:
    length = request.content_length
    limit = get_runtime().settings.max_body_bytes
    if length is not None and length > limit:
        return None  # refused unread (413); reading it now would defeat the limit
    if request_body_limit() != limit:
        return None  # an upload (a model file) is not read again for a digest
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return None  # a chunked body past the limit: the request was refused unread
    return body_digest(key, body) if body else None


def _user_agent() -> str | None:
    agent = request.headers.get("User-Agent")
    if agent is None:
        return None
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in agent)
    return escaped[:USER_AGENT_LIMIT]


def init_audit(app: Flask) -> None:
    """Start each request's clock and record its outcome once the response is ready.

    Registered after the other response hooks so it runs first among them (Flask runs them
    in reverse), and the access log reports what the client really received.
    """
    app.before_request_funcs.setdefault(None, []).insert(0, _start_clock)
    app.after_request(_record_response)
