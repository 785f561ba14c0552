"""Audit events: the fixed vocabulary, the record shape, and its canonical serialisation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

# The record's fields, its canonical JSON and its hash are defined once, in the file partners copy
# to verify receipts: what they accept is exactly what the gateway writes.
from audit.receipt_verifier import RECORD_FIELDS as RECORD_FIELDS
from audit.receipt_verifier import canonical_json as canonical_json
from audit.receipt_verifier import record_hash as record_hash

# event_type vocabulary. HTTP requests take the operation's name (or the failure class),
# administrative acts name what they changed.
EVENT_TYPES = frozenset(
    {
        "predict",
        "model.read",
        "health.check",
        "metrics.scrape",
        "docs.read",
        "http.request",
        "authn.failure",
        "authz.denied",
        "ratelimit.exceeded",
        "tenant.create",
        "tenant.suspend",
        "tenant.resume",
        "tenant.assign",
        "tenant.set_limit",
        "tenant.usage",
        "model.register",
        "key.issue",
        "key.rotate",
        "key.revoke",
        "key.set_limit",
        "key.usage",
        "client.create",
        "client.revoke",
        "client.rotate_secret",
        "token.issue",
        "token.revoke",
        "token.introspect",
        "signing_key.rotate",
        "audit.read",
        "audit.export",
        "audit.verify",
        "audit.prune",
        "audit.checkpoint",
        "admin.read",
        "receipt.read",
        "log.read",
    }
)
OUTCOMES = frozenset({"success", "failure", "error"})
GENESIS_HASH = "0" * 64
# Stands for the previous record's hash in a chain template (see AuditEvent.chain_template).
TEMPLATE_PREV_HASH = "@prev@"


class InvalidEvent(ValueError):
    """An event outside the vocabulary or with a malformed field."""


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is placed in the chain (no seq or hash yet)."""

    event_type: str
    outcome: str
    instance_id: str
    process_id: int
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    duration_ms: float | None = None
    request_id: str | None = None
    reason_code: str | None = None
    http_status: int | None = None
    http_method: str | None = None
    route: str | None = None
    tenant_id: int | None = None
    principal_type: str | None = None
    principal_id: str | None = None
    auth_method: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    model_sha256: str | None = None
    rows: int | None = None
    request_digest: str | None = None
    response_digest: str | None = None
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event_type not in EVENT_TYPES:
            raise InvalidEvent(f"unknown audit event type {self.event_type!r}")
        if self.outcome not in OUTCOMES:
            raise InvalidEvent(f"unknown audit outcome {self.outcome!r}")
        if self.ts.tzinfo is None:
            raise InvalidEvent("audit timestamps must be timezone-aware")

    def to_record(self, *, seq: int, prev_hash: str) -> dict[str, Any]:
        """The stored record for this event at a chain position, hash included."""
        values = self._hashed_fields(seq=seq, prev_hash=prev_hash)
        values["hash"] = record_hash(values)
        return {name: values[name] for name in RECORD_FIELDS}

    def chain_template(self) -> str:
        """The canonical JSON of the hashed fields with the chain position left open: `seq`
        is -1 and `prev_hash` is TEMPLATE_PREV_HASH. Filling both in gives exactly the text
        whose SHA-256 is the record's hash (PostgreSQL's audit_append does it under the head
        lock)."""
        return canonical_json(self._hashed_fields(seq=-1, prev_hash=TEMPLATE_PREV_HASH))

    def _hashed_fields(self, *, seq: int, prev_hash: str) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _EVENT_FIELDS}
        values["ts"] = format_ts(self.ts)
        values["duration_ms"] = None if self.duration_ms is None else round(self.duration_ms, 3)
        values["details"] = canonical_json(self.details) if self.details is not None else None
        values["seq"] = seq
        values["prev_hash"] = prev_hash
        return {name: values[name] for name in RECORD_FIELDS if name != "hash"}


_EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))


def format_ts(ts: datetime) -> str:
    """UTC timestamp with microseconds, the one text form the chain hashes."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """Inverse of format_ts."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
