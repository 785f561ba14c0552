"""Helpers for the admin and compliance API tests: a role's token, and a response's record."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from audit.query import AuditFilter, query_records


def record_for(session: Session, response: Any) -> dict[str, Any]:
    """The one audit record of a response, its details decoded."""
    session.rollback()  # see what the app committed
    found = query_records(session, AuditFilter(request_id=response.headers["X-Request-ID"]))
    assert len(found) == 1, found
    record = found[0]
    record["details"] = json.loads(record["details"]) if record["details"] else None
    return record


def assert_client_record(record: dict[str, Any], event_type: str, status: int) -> None:
    """A successful request by an OAuth client (JWT) recorded as `event_type`."""
    assert record["event_type"] == event_type
    assert record["outcome"] == "success"
    assert record["http_status"] == status
    assert record["principal_type"] == "client"
    assert record["principal_id"].startswith("pgc_")
    assert record["auth_method"] == "jwt"
    assert record["source_ip"] == "127.0.0.1"
