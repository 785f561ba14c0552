"""Reading the audit log: filtered queries with a cursor, pages newest or oldest first, and
bounded-memory iteration."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS, format_ts
from audit.tables import AuditCheckpointRow, AuditRecordRow

MAX_QUERY_LIMIT = 10_000
ITER_BATCH = 1000
NEWEST, OLDEST = "newest", "oldest"
# A cursor is `v1:<order>:<last seq seen>`, base64url without padding: opaque to callers, so
# its form may change; seq is gap-free and only grows, so records appended while a caller
# pages never shift a page (newest-first pages continue below the last seq seen).
_CURSOR = re.compile(r"^v1:(newest|oldest):([0-9]{1,18})$")


class InvalidQuery(ValueError):
    """A query the log cannot answer as asked: a time range that ends before it starts, a
    cursor this code did not give out, or one read in the other order. The message names the
    field, never its value."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.code = reason


@dataclass(frozen=True)
class AuditFilter:
    """The filters of `predgate audit query` and of the compliance API."""

    tenant_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None
    outcome: str | None = None
    http_status: int | None = None
    principal_id: str | None = None
    request_id: str | None = None
    after_seq: int | None = None  # cursor: records after this seq
    limit: int = 100


# Plain column selects: rows stay out of the session's identity map, so memory stays bounded.
RECORD_COLUMNS = [getattr(AuditRecordRow, name) for name in RECORD_FIELDS]
_COLUMNS = RECORD_COLUMNS


def record_to_dict(row: Any) -> dict[str, Any]:
    """A stored record (a row of `_COLUMNS`) as the dict that exports and hashes use."""
    values = dict(zip(RECORD_FIELDS, row, strict=True))
    values["ts"] = format_ts(values["ts"])
    return values


@dataclass(frozen=True)
class RecordPage:
    """A page of stored records, the cursor for the next one (None: no more), and, when asked,
    how many more records match after this page."""

    records: list[dict[str, Any]]
    next_cursor: str | None
    order: str
    remaining: int | None = None


def check_time_range(since: datetime | None, until: datetime | None) -> None:
    """InvalidQuery when `until` is not after `since` (the range would be empty)."""
    if since is not None and until is not None and until <= since:
        raise InvalidQuery("until", "range_reversed", "until must be later than since")


def encode_cursor(seq: int, order: str) -> str:
    """The opaque cursor that continues a walk in `order` after the record `seq`."""
    return base64.urlsafe_b64encode(f"v1:{order}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(last seq seen, order) of a cursor; InvalidQuery when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = _CURSOR.match(text)
    if match is None:
        raise InvalidQuery("cursor", "invalid_cursor", "the cursor is not one this log gave out")
    return int(match.group(2)), match.group(1)


def page_records(
    session: Session,
    audit_filter: AuditFilter,
    *,
    order: str | None = None,
    cursor: str | None = None,
    count_remaining: bool = False,
) -> RecordPage:
    """One page of records matching the filter: newest first unless `order` is `oldest`; a
    cursor continues the walk it came from (in its order), and `limit` (capped) is honoured.

    `audit_filter.after_seq` is ignored here: the cursor says where to continue."""
    after: int | None = None
    if cursor is not None:
        after, cursor_order = decode_cursor(cursor)
        if order is not None and order != cursor_order:
            raise InvalidQuery(
                "cursor",
                "cursor_order",
                f"the cursor continues a walk in {cursor_order}-first order",
            )
        order = cursor_order
    order = order or NEWEST
    if order not in (NEWEST, OLDEST):
        raise InvalidQuery("order", "invalid_order", "the order is newest or oldest")
    limit = max(1, min(audit_filter.limit, MAX_QUERY_LIMIT))
    matching = replace(audit_filter, after_seq=None)
    query = _filtered(select(*_COLUMNS), matching)
    newest_first = order == NEWEST
    if after is not None:
        query = query.where(
            AuditRecordRow.seq < after if newest_first else AuditRecordRow.seq > after
        )
    seq_order = AuditRecordRow.seq.desc() if newest_first else AuditRecordRow.seq
    # One more than the page: whether there is a next page costs no second query.
    rows = [
        record_to_dict(row) for row in session.execute(query.order_by(seq_order).limit(limit + 1))
    ]
    if len(rows) <= limit:
        return RecordPage(rows, None, order, 0 if count_remaining else None)
    records = rows[:limit]
    last = int(records[-1]["seq"])
    remaining = None
    if count_remaining:
        beyond = AuditRecordRow.seq < last if newest_first else AuditRecordRow.seq > last
        counted = _filtered(select(func.count()).select_from(AuditRecordRow), matching)
        remaining = int(session.scalar(counted.where(beyond)) or 0)
    return RecordPage(records, encode_cursor(last, order), order, remaining)


def query_records(session: Session, audit_filter: AuditFilter) -> list[dict[str, Any]]:
    """Records matching the filter, oldest first, at most `limit` (capped)."""
    limit = max(1, min(audit_filter.limit, MAX_QUERY_LIMIT))
    query = _filtered(select(*_COLUMNS), audit_filter).order_by(AuditRecordRow.seq)
    return [record_to_dict(row) for row in session.execute(query.limit(limit))]


def _filtered(query: Select[Any], f: AuditFilter) -> Select[Any]:
    record = AuditRecordRow
    if f.tenant_id is not None:
        query = query.where(record.tenant_id == f.tenant_id)
    if f.since is not None:
        query = query.where(record.ts >= f.since)
    if f.until is not None:
        query = query.where(record.ts < f.until)
    if f.event_type is not None:
        query = query.where(record.event_type == f.event_type)
    if f.outcome is not None:
        query = query.where(record.outcome == f.outcome)
    if f.http_status is not None:
        query = query.where(record.http_status == f.http_status)
    if f.principal_id is not None:
        query = query.where(record.principal_id == f.principal_id)
    if f.request_id is not None:
        query = query.where(record.request_id == f.request_id)
    if f.after_seq is not None:
        query = query.where(record.seq > f.after_seq)
    return query


def seq_range(
    session: Session, *, since: datetime | None, until: datetime | None
) -> tuple[int, int] | None:
    """The contiguous seq range from the first record at or after `since` to the last before
    `until` (records are not strictly time-ordered across workers, so ranges go by seq)."""
    query = select(func.min(AuditRecordRow.seq), func.max(AuditRecordRow.seq))
    if since is not None:
        query = query.where(AuditRecordRow.ts >= since)
    if until is not None:
        query = query.where(AuditRecordRow.ts < until)
    first, last = session.execute(query).one()
    if first is None or last is None:
        return None
    return int(first), int(last)


def iter_records(
    session: Session, *, first_seq: int | None = None, last_seq: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every record in seq order, fetched in batches (bounded memory)."""
    cursor = (first_seq - 1) if first_seq is not None else None
    while True:
        query = select(*_COLUMNS).order_by(AuditRecordRow.seq).limit(ITER_BATCH)
        if cursor is not None:
            query = query.where(AuditRecordRow.seq > cursor)
        if last_seq is not None:
            query = query.where(AuditRecordRow.seq <= last_seq)
        records = [record_to_dict(row) for row in session.execute(query)]
        if not records:
            return
        yield from records
        cursor = records[-1]["seq"]


def list_checkpoints(
    session: Session, *, first_seq: int | None = None, last_seq: int | None = None
) -> list[dict[str, Any]]:
    """Checkpoints and anchors, optionally those whose seq lies in a range."""
    query = select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq, AuditCheckpointRow.id)
    if first_seq is not None:
        query = query.where(AuditCheckpointRow.seq >= first_seq)
    if last_seq is not None:
        query = query.where(AuditCheckpointRow.seq <= last_seq)
    return [
        {
            "kind": row.kind,
            "seq": row.seq,
            "hash": row.hash,
            "ts": format_ts(row.ts),
            "key_id": row.key_id,
            "signature": row.signature,
        }
        for row in session.scalars(query)
    ]


def seq_of_hash(session: Session, hash_: str) -> int | None:
    """The seq of the record with this hash, if any."""
    found = session.scalar(select(AuditRecordRow.seq).where(AuditRecordRow.hash == hash_).limit(1))
    return int(found) if found is not None else None
