"""The one per-request object: everything the steps of the request path share, under a single
`flask.g` key, typed."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import g
from pydantic import BaseModel
from sqlalchemy.orm import Session

from audit.chain import Placement
from audit.draft import AuditDraft
from auth.principal import Principal
from db.changes import CHANGED_CACHED
from gateway.runtime import Runtime, get_runtime
from ratelimit.limiter import Outcome
from ratelimit.policy import RequestPlan

CONTEXT_KEY = "predgate_request"
log = logging.getLogger("predgate.request")


@dataclass(frozen=True)
class Endpoint:
    """What a route declares where it is defined: its audit event type, the scope it needs
    (None: open), what it parses, whether it is rate limited and at what cost."""

    event: str
    scope: str | None
    body: type[BaseModel] | None = None
    optional_body: bool = False  # an absent body means every field's default
    query: type[BaseModel] | None = None
    limited: bool = False
    # Units a parsed body spends (given PREDGATE_MAX_BATCH); default 1.
    cost: Callable[[Any, int], int] | None = None
    probe: bool = False  # a liveness/readiness probe: audited only if configured, never waited on
    upload: bool = False  # the body may reach PREDGATE_MAX_MODEL_UPLOAD_BYTES
    # The view authenticates an OAuth client itself (token, revocation): failures are limited
    # per address and client id, and refused up front once that budget is spent.
    client_auth: bool = False


@dataclass
class RateLimitState:
    """The plan a request was counted under and what the counters said."""

    plan: RequestPlan
    now: float
    outcome: Outcome | None = None


@dataclass
class RequestContext:
    """One request, as the steps of the request path fill it in."""

    runtime: Runtime
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)
    endpoint: Endpoint | None = None
    caller: Principal | None = None
    audit: AuditDraft = field(init=False)
    rate: RateLimitState | None = None
    # Set when an administrative act committed this request's record with its change.
    recorded_status: int | None = None
    recorded_placement: Placement | None = None  # where an act's own record went
    _session: Session | None = None

    def __post_init__(self) -> None:
        # One record per request: the request's id names its record too.
        self.audit = AuditDraft(event_id=self.request_id)

    def db(self) -> Session:
        """The request's database session, opened on first use (admin and compliance routes;
        the partner path reads only caches)."""
        if self._session is None:
            self._session = self.runtime.sessions()
        return self._session

    def close_db(self) -> None:
        """Close the session; a failure to (the database went away) changes no answer. If it
        changed something workers cache, this process looks at once (others within a poll)."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.info.pop(CHANGED_CACHED, False):
            self.runtime.watcher.poll()
        try:
            session.close()
        except Exception as exc:
            log.warning("request %s: closing its session failed: %s", self.request_id, exc)
            with contextlib.suppress(Exception):
                session.invalidate()

    def tenant_id(self) -> int:
        """The verified caller's tenant (partner routes, which resolve a partner caller)."""
        tenant_id = self.caller.tenant_id if self.caller is not None else None
        if tenant_id is None:
            raise RuntimeError("this route has no partner caller")
        return tenant_id

    def elapsed_ms(self) -> float:
        """Milliseconds since the request began."""
        return (time.perf_counter() - self.started) * 1000


def current_context() -> RequestContext:
    """This request's context, created on first use."""
    ctx = g.get(CONTEXT_KEY)
    if not isinstance(ctx, RequestContext):
        ctx = RequestContext(runtime=get_runtime())
        setattr(g, CONTEXT_KEY, ctx)
    return ctx
