"""What a request's handlers want its audit record to say, collected during the request.

Views, the rate limiter and error handlers call ``note_audit`` with record fields (for example
``event_type``, ``reason_code``) or ``note_audit_detail`` with entries for the record's
``details`` object; the audit hook reads them once the response is ready.
"""

from __future__ import annotations

from typing import Any

from flask import g


def note_audit(**fields: Any) -> None:
    """Set top-level fields of this request's audit record (event_type, reason_code, ...)."""
    notes: dict[str, Any] = g.setdefault("audit_notes", {})
    notes.update(fields)


def note_audit_detail(**details: Any) -> None:
    """Add entries to the `details` object of this request's audit record (no secrets)."""
    collected: dict[str, Any] = g.setdefault("audit_details", {})
    collected.update(details)


def audit_notes() -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields and details noted so far."""
    return dict(g.get("audit_notes", {})), dict(g.get("audit_details", {}))
