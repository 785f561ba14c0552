"""The audit draft of one HTTP request: what its record will say, filled in by each step of the
request path as it runs (the route declares the event type; resolving the caller names the
principal and tenant; the domain call adds the model; a refusal adds its reason), and turned
into an event once the status of the response is known."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.events import AuditEvent

# A refusal by one of these steps is recorded under its class, whatever the route.
AUTHENTICATION_FAILED = "authn.failure"
AUTHORIZATION_DENIED = "authz.denied"
RATE_LIMITED = "ratelimit.exceeded"
# Routes that declare no event type (404, 405, ...) are recorded by the class of their status.
STATUS_EVENT_TYPES = {401: AUTHENTICATION_FAILED, 403: AUTHORIZATION_DENIED, 429: RATE_LIMITED}
GENERIC_EVENT_TYPE = "http.request"
USER_AGENT_LIMIT = 256


@dataclass(frozen=True)
class HttpExchange:
    """What the gateway observed of the request and its response, for the record."""

    request_id: str
    method: str
    route: str | None  # the route template, never the raw URL
    status: int
    source_ip: str | None
    user_agent: str | None
    started_at: datetime
    duration_ms: float
    request_digest: str | None
    response_digest: str | None


@dataclass
class AuditDraft:
    """The record of one request, as the steps that ran so far describe it."""

    # Every event for this request carries it, so a record committed by an administrative act
    # and one for the same request's 503 can never both be stored.
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    event_type: str | None = None  # declared by the route
    refusal_type: str | None = None  # set by the step that refused the caller, if one did
    reason_code: str | None = None
    tenant_id: int | None = None  # from the verified credential only
    principal_type: str | None = None
    principal_id: str | None = None
    auth_method: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    model_sha256: str | None = None
    rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def identify(
        self,
        *,
        principal_type: str | None,
        principal_id: str | None,
        auth_method: str | None,
        tenant_id: int | None,
    ) -> None:
        """Who is calling: a verified principal, or what a refused credential proved of itself
        (a claimed key id is public; a tenant only once the secret verified)."""
        self.principal_type = principal_type or self.principal_type
        self.principal_id = principal_id or self.principal_id
        self.auth_method = auth_method or self.auth_method
        if tenant_id is not None:
            self.tenant_id = tenant_id

    def refused(self, refusal_type: str, reason_code: str) -> None:
        """A step refused the request (authentication, authorisation, rate limit)."""
        self.refusal_type = refusal_type
        self.reason_code = reason_code

    def prediction(self, *, model_name: str, model_version: int, sha256: str, rows: int) -> None:
        """The model version that answered and how many rows it predicted."""
        self.model_name = model_name
        self.model_version = model_version
        self.model_sha256 = sha256
        self.rows = rows

    def final_event_type(self, status: int) -> str:
        """The event type the record takes for a response of this status."""
        return (
            self.refusal_type
            or self.event_type
            or STATUS_EVENT_TYPES.get(status)
            or GENERIC_EVENT_TYPE
        )

    def to_event(self, exchange: HttpExchange, *, instance_id: str, process_id: int) -> AuditEvent:
        """The event for this request, answered with `exchange.status`."""
        status = exchange.status
        return AuditEvent(
            event_id=self.event_id,
            event_type=self.final_event_type(status),
            outcome="success" if status < 400 else "failure" if status < 500 else "error",
            reason_code=self.reason_code if status >= 400 else None,
            instance_id=instance_id,
            process_id=process_id,
            ts=exchange.started_at,
            duration_ms=exchange.duration_ms,
            request_id=exchange.request_id,
            http_status=status,
            http_method=exchange.method[:10],
            route=exchange.route,
            tenant_id=self.tenant_id,
            principal_type=self.principal_type,
            principal_id=self.principal_id,
            auth_method=self.auth_method,
            source_ip=exchange.source_ip,
            user_agent=printable_user_agent(exchange.user_agent),
            model_name=self.model_name,
            model_version=self.model_version,
            model_sha256=self.model_sha256,
            rows=self.rows,
            request_digest=exchange.request_digest,
            response_digest=exchange.response_digest,
            details=dict(self.details) or None,
        )


def printable_user_agent(agent: str | None) -> str | None:
    """The User-Agent with control characters escaped, cut to USER_AGENT_LIMIT characters."""
    if agent is None:
        return None
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in agent)
    return escaped[:USER_AGENT_LIMIT]
