"""Administrative acts over HTTP: the change and its audit record commit in one transaction, as
`predgate` commands do. A refused act is rolled back and recorded by the request path as a
failure with its reason code and, from `gateway.errors`, its refusal in words: exactly one
record per request either way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.recorder import event_committed, record_event
from gateway.context import RequestContext
from gateway.pipeline.recording import request_event

log = logging.getLogger("predgate.audit")
# Refusals that mean an argument is malformed (not: names nothing that exists, or conflicts).
MALFORMED_ARGUMENTS = frozenset({"invalid_argument", "invalid_model_ref", "validation_error"})


@dataclass
class AdminAct:
    """What an admin request changes: filled in by the view, recorded with the change."""

    session: Session
    details: dict[str, Any] = field(default_factory=dict)
    tenant_id: int | None = None
    status: int = 200


@contextmanager
def admin_act(ctx: RequestContext, **details: Any) -> Iterator[AdminAct]:
    """Run an administrative change and commit it together with its audit record."""
    act = AdminAct(session=ctx.db(), details=dict(details))
    try:
        yield act
        _describe(ctx, act)
        # No response digest: the response may hold a secret shown once.
        placement = record_event(
            act.session, ctx.runtime.audit_config, request_event(ctx, None, status=act.status)
        )
        _commit(ctx, act.session)
        ctx.recorded_placement = placement
    except BaseException as refused:
        with contextlib.suppress(Exception):
            act.session.rollback()
        if getattr(refused, "code", None) in MALFORMED_ARGUMENTS:
            _keep_only_path_arguments(act)
        _describe(ctx, act)
        raise
    ctx.recorded_status = act.status


def actor(ctx: RequestContext) -> str:
    """Who is acting, as recorded on what the request creates (`http:<type>:<id>`)."""
    caller = ctx.caller
    assert caller is not None  # admin routes resolve their caller first
    return f"http:{caller.principal_type}:{caller.principal_id}"


def _keep_only_path_arguments(act: AdminAct) -> None:
    # An argument is malformed, and which one is not known here: keep only what the URL names
    # (the tenant, key or client acted on) and none of the body's values, one of which may be
    # a secret pasted into the wrong field. The refusal the request path records says what is
    # wrong.
    named = {value for value in (request.view_args or {}).values() if isinstance(value, str)}
    act.details = {k: v for k, v in act.details.items() if isinstance(v, str) and v in named}


def _describe(ctx: RequestContext, act: AdminAct) -> None:
    ctx.audit.details.update(act.details)
    if act.tenant_id is not None:
        ctx.audit.tenant_id = act.tenant_id  # the tenant acted on


def _commit(ctx: RequestContext, session: Session) -> None:
    try:
        session.commit()
    except DBAPIError:
        # The commit may have reached the database before the connection failed: ask.
        with contextlib.suppress(Exception):
            if event_committed(ctx.runtime.engine, ctx.audit.event_id):
                log.warning(
                    "request %s: commit answered with an error but was stored", ctx.request_id
                )
                return
        raise
