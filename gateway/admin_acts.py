"""Audited administrative acts over HTTP: the change and its audit record commit in one
transaction, as `predgate` commands do (`gateway.cli.context.CliContext.act`).

A successful act writes its own record, with the acting principal and what changed, in the
request's database transaction and marks the request as audited, so the audit hook adds no
second record. A refused act is rolled back and left to the audit hook, which records the
failure with its reason code: exactly one record per request either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import g
from sqlalchemy.orm import Session

from audit.recorder import record_event
from gateway.audit_hook import request_event
from gateway.audit_notes import note_audit, note_audit_detail
from gateway.caller import resolve_caller
from gateway.runtime import db_session, get_runtime


@dataclass
class HttpAdminAct:
    """What an admin request changes: filled in by the view, recorded with the change."""

    session: Session
    details: dict[str, Any]
    tenant_id: int | None = None
    status: int = 200


@contextmanager
def admin_act(event_type: str, **details: Any) -> Iterator[HttpAdminAct]:
    """Run an administrative change and commit it together with its audit record."""
    resolve_caller()  # the acting principal, verified by require_scope; the record names it
    session = db_session()
    act = HttpAdminAct(session=session, details=dict(details))
    try:
        yield act
        event = request_event(
            event_type,
            status=act.status,
            response_body=None,  # not built yet; it may hold a secret shown once anyway
            tenant_id=act.tenant_id,
            details=act.details,
        )
        record_event(session, get_runtime().audit_config, event)
        session.commit()
    except BaseException:
        session.rollback()
        # The audit hook records the refusal (its status and reason code) as this act.
        note_audit(event_type=event_type, tenant_id=act.tenant_id)
        note_audit_detail(**act.details)
        raise
    g.audit_recorded = True
