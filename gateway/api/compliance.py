"""Compliance API: read, export and verify the audit log (scope `audit:read`). Read-only: no
route here or anywhere else changes or deletes a record. Every read is itself audited.

`GET /audit/v1/records` answers a page of JSON by default; with `Accept: application/x-ndjson`
(the JSONL export `predgate audit verify --file` checks offline) or `Accept: text/csv` it streams
an export of a time range. The export's own audit record is committed before the first byte is
sent (the request path records it before the body is iterated), and the stream reads through a
database session of its own, opened when streaming starts and closed when it ends or is
abandoned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, field_validator
from spectree import Response as SpecResponse
from sqlalchemy.orm import Session, sessionmaker

from audit.events import EVENT_TYPES, OUTCOMES
from audit.export import iter_csv, iter_jsonl
from audit.query import (
    AuditFilter,
    InvalidQuery,
    check_time_range,
    list_checkpoints,
    page_records,
)
from audit.recorder import verify_database
from auth.tenants import get_tenant, list_tenants
from gateway.context import RequestContext
from gateway.errors import ApiError
from gateway.pipeline import endpoint
from gateway.pipeline.bodies import FieldProblem, invalid_inputs
from gateway.presenters import audit_records_json
from gateway.schemas import Problem

bp = Blueprint("compliance", __name__, url_prefix="/audit/v1")
TAGS = ["compliance"]
ERRORS: dict[str, Any] = {f"HTTP_{status}": Problem for status in (401, 403, 404, 422)}
MAX_PAGE = 1000
EXPORT_TYPES = {"application/x-ndjson": "jsonl", "text/csv": "csv"}
EXPORT_MIMETYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def _utc(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # Pydantic refuses it then, naming the field in words of its own: the message of
        # fromisoformat would quote the value.
        return value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(default=None, description="ISO 8601; UTC when no offset.")
    until: datetime | None = Field(default=None, description="ISO 8601, exclusive.")

    _times = field_validator("since", "until", mode="before")(_utc)


class RecordsQuery(TimeRange):
    tenant: str | None = Field(default=None, max_length=64, description="Tenant name.")
    event_type: str | None = Field(default=None, max_length=64)
    outcome: str | None = Field(default=None, max_length=16)
    status: int | None = Field(default=None, ge=100, le=599)
    principal: str | None = Field(default=None, max_length=200, description="Key or client id.")
    request_id: str | None = Field(default=None, max_length=200)
    order: Literal["newest", "oldest"] | None = Field(
        default=None, description="`newest` first (the default) or `oldest` first."
    )
    cursor: str | None = Field(
        default=None, max_length=100, description="The `next_cursor` of the previous page."
    )
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)

    @field_validator("event_type")
    @classmethod
    def _known_event(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENT_TYPES:
            raise ValueError("unknown event type")
        return value

    @field_validator("outcome")
    @classmethod
    def _known_outcome(cls, value: str | None) -> str | None:
        if value is not None and value not in OUTCOMES:
            raise ValueError("unknown outcome")
        return value

    def filters(self) -> dict[str, Any]:
        """The filters given, as the audit record's details show them."""
        return {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in self.model_dump(
                exclude_none=True, exclude={"limit", "cursor", "order"}
            ).items()
        }


class CheckpointsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_seq: int | None = Field(default=None, ge=0)
    to_seq: int | None = Field(default=None, ge=0)


class RecordPage(BaseModel):
    records: list[dict[str, Any]] = Field(
        description="Stored records, each with `tenant` (the name) beside `tenant_id` and "
        "`details` as an object."
    )
    order: Literal["newest", "oldest"]
    next_cursor: str | None = Field(
        description="Opaque; pass as `cursor` for the next page (same order); null: no more."
    )


@bp.get("/records")
@endpoint(
    "audit.read",
    scope="audit:read",
    query=RecordsQuery,
    responses=SpecResponse(HTTP_200=RecordPage, **ERRORS),
    tags=TAGS,
)
def records(ctx: RequestContext, query: RecordsQuery) -> ResponseReturnValue:
    """Records matching the filters, newest first (`order=oldest`: oldest first), a page of
    at most `limit` at a time; `next_cursor` continues the walk, null when nothing is left.

    With `Accept: application/x-ndjson` (the JSONL export, verifiable offline) or `text/csv`:
    a streamed export of the records from `since` to `until`.
    """
    wanted = request.accept_mimetypes.best_match(["application/json", *EXPORT_TYPES])
    if wanted in EXPORT_TYPES:
        return export(ctx, query, EXPORT_TYPES[wanted])
    session = ctx.db()
    tenant_id = get_tenant(session, query.tenant).id if query.tenant else None
    ctx.audit.tenant_id = tenant_id
    ctx.audit.details.update(filters=query.filters(), limit=query.limit)
    audit_filter = AuditFilter(
        tenant_id=tenant_id,
        since=query.since,
        until=query.until,
        event_type=query.event_type,
        outcome=query.outcome,
        http_status=query.status,
        principal_id=query.principal,
        request_id=query.request_id,
        limit=query.limit,
    )
    with _refused_as_invalid():
        check_time_range(query.since, query.until)
        page = page_records(session, audit_filter, order=query.order, cursor=query.cursor)
    # The cursor is recorded once it proved to be one of ours: a refused one may hold anything.
    ctx.audit.details.update(cursor=query.cursor, order=page.order, returned=len(page.records))
    shown = audit_records_json(page.records, list_tenants(session))
    return jsonify({"records": shown, "order": page.order, "next_cursor": page.next_cursor})


@contextmanager
def _refused_as_invalid() -> Iterator[None]:
    # The domain names the field and the rule; the 422 says it in the usual shape.
    try:
        yield
    except InvalidQuery as exc:
        problem = FieldProblem(exc.field, exc.reason, str(exc).capitalize())
        raise invalid_inputs("Invalid query parameters", [problem]) from None


def export(ctx: RequestContext, query: RecordsQuery, fmt: str) -> Response:
    """A streamed export of a time range (`Accept: application/x-ndjson` or `text/csv`)."""
    ctx.audit.event_type = "audit.export"
    unsupported = query.model_dump(exclude_none=True, exclude={"since", "until", "limit"})
    problems = [{"field": name, "reason": "missing"} for name in ("since", "until")]
    problems = [p for p in problems if getattr(query, p["field"]) is None]
    problems += [{"field": name, "reason": "not_supported_for_export"} for name in unsupported]
    if problems:
        raise ApiError(
            422,
            "validation_error",
            "Invalid export request",
            "An export takes exactly a time range: since and until.",
            extra={"errors": problems},
        )
    assert query.since is not None
    assert query.until is not None
    with _refused_as_invalid():
        check_time_range(query.since, query.until)
    ctx.audit.details.update(
        since=query.since.isoformat(), until=query.until.isoformat(), format=fmt
    )
    runtime = ctx.runtime
    lines = _export_lines(
        runtime.sessions, fmt, query.since, query.until, runtime.audit_config.public_keys()
    )
    name = f"audit-{query.since:%Y%m%dT%H%M%S}-{query.until:%Y%m%dT%H%M%S}.{fmt}"
    return Response(
        lines,
        mimetype=EXPORT_MIMETYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def _export_lines(
    sessions: sessionmaker[Session],
    fmt: str,
    since: datetime,
    until: datetime,
    public_keys: Mapping[str, Ed25519PublicKey],
) -> Iterator[str]:
    # Runs after the request has ended: its own session, closed however the stream ends.
    with sessions() as session:
        if fmt == "jsonl":
            yield from iter_jsonl(session, since=since, until=until, public_keys=public_keys)
        else:
            yield from iter_csv(session, since=since, until=until)


@bp.get("/verify")
@endpoint(
    "audit.verify", scope="audit:read", query=TimeRange, responses=SpecResponse(**ERRORS), tags=TAGS
)
def verify(ctx: RequestContext, query: TimeRange) -> ResponseReturnValue:
    """Recompute the chain, checkpoints and signed tree heads (all, or a time range); the
    report says what failed."""
    with _refused_as_invalid():
        check_time_range(query.since, query.until)
    report = verify_database(
        ctx.db(), ctx.runtime.audit_config.public_keys(), since=query.since, until=query.until
    )
    ctx.audit.details.update(
        since=query.since and query.since.isoformat(),
        until=query.until and query.until.isoformat(),
        ok=report.ok,
        records=report.records_checked,
        findings=len(report.findings),
        uncovered_tail=report.uncovered_tail,
    )
    return jsonify(report.to_dict())


@bp.get("/checkpoints")
@endpoint(
    "audit.read",
    scope="audit:read",
    query=CheckpointsQuery,
    responses=SpecResponse(**ERRORS),
    tags=TAGS,
)
def checkpoints(ctx: RequestContext, query: CheckpointsQuery) -> ResponseReturnValue:
    """Signed checkpoints and prune anchors, optionally those whose seq lies in a range."""
    found = list_checkpoints(ctx.db(), first_seq=query.from_seq, last_seq=query.to_seq)
    ctx.audit.details.update(resource="checkpoints", returned=len(found))
    return jsonify({"checkpoints": found})


@bp.get("/public-key")
@endpoint("audit.read", scope="audit:read", responses=SpecResponse(**ERRORS), tags=TAGS)
def public_key(ctx: RequestContext) -> ResponseReturnValue:
    """The Ed25519 public key checkpoints are signed with (PEM), to verify exports offline."""
    signer = ctx.runtime.audit_config.signer
    ctx.audit.details["resource"] = "public_key"
    return jsonify(
        {"algorithm": "Ed25519", "key_id": signer.key_id, "public_key": signer.public_pem()}
    )
