"""Partner traffic counted from the audit log: per UTC day and HTTP status, for a tenant or one
key; and per key over a period, for a tenant.

The queries filter on `tenant_id` or `principal_id` and a `ts` range, each of which has an index
(audit/tables.py), and group in the database: no record is read into this process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from audit.tables import AuditRecordRow

MAX_DAYS = 90
# The records of partner requests; administrative acts on a tenant carry its id too.
PARTNER_EVENTS = (
    "predict",
    "model.read",
    "docs.read",
    "http.request",
    "authn.failure",
    "authz.denied",
    "ratelimit.exceeded",
)
PREDICT = "predict"


@dataclass
class TrafficCounts:
    """Partner requests by outcome: what was served, refused, limited or failed."""

    requests: int = 0
    predictions: int = 0  # answered predict requests
    rows: int = 0  # rows those predictions scored
    refused: int = 0  # 4xx other than 429: authentication, scope, validation
    rate_limited: int = 0  # 429
    errors: int = 0  # 5xx
    by_status: Counter[int] = field(default_factory=Counter)

    def add(self, event_type: str, status: int, count: int, rows: int) -> None:
        """Count `count` records of one event type and status."""
        self.requests += count
        self.by_status[status] += count
        if event_type == PREDICT and 200 <= status < 300:
            self.predictions += count
            self.rows += rows
        elif status == 429:
            self.rate_limited += count
        elif 400 <= status < 500:
            self.refused += count
        elif status >= 500:
            self.errors += count

    def to_dict(self) -> dict[str, Any]:
        """The counts as the CLI's --json and the admin API show them."""
        return {
            "requests": self.requests,
            "predictions": self.predictions,
            "rows": self.rows,
            "refused": self.refused,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
        }


@dataclass(frozen=True)
class DailyUsage:
    """Each UTC day of a period, oldest first, with every day listed (zeros included)."""

    since: datetime
    days: list[tuple[date, TrafficCounts]]
    by_key: dict[str, TrafficCounts] | None  # per key over the period (tenant usage only)

    def to_dict(self) -> dict[str, Any]:
        """The period as the CLI's --json and the admin API show it."""
        shown: dict[str, Any] = {
            "days": len(self.days),
            "since": self.since.isoformat(),
            "daily": [{"day": on.isoformat(), **counts.to_dict()} for on, counts in self.days],
            "total": self.total().to_dict(),
        }
        if self.by_key is not None:
            shown["by_key"] = [
                {"key_id": key_id, **counts.to_dict()} for key_id, counts in self.by_key.items()
            ]
        return shown

    def total(self) -> TrafficCounts:
        """The whole period."""
        total = TrafficCounts()
        for _day, counts in self.days:
            for status, n in counts.by_status.items():
                total.by_status[status] += n
            total.requests += counts.requests
            total.predictions += counts.predictions
            total.rows += counts.rows
            total.refused += counts.refused
            total.rate_limited += counts.rate_limited
            total.errors += counts.errors
        return total


def period_start(days: int, now: datetime) -> datetime:
    """Midnight UTC of the first of the last `days` days (today is the last)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days is 1-{MAX_DAYS}")
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


def tenant_daily_usage(session: Session, *, tenant_id: int, days: int, now: datetime) -> DailyUsage:
    """The tenant's partner traffic per day and status, and per key over the period."""
    since = period_start(days, now)
    where = AuditRecordRow.tenant_id == tenant_id
    by_key: dict[str, TrafficCounts] = {}
    query = (
        select(
            AuditRecordRow.principal_id,
            AuditRecordRow.event_type,
            AuditRecordRow.http_status,
            func.count(),
            func.coalesce(func.sum(AuditRecordRow.rows), 0),
        )
        .where(*_partner_traffic(where, since), AuditRecordRow.principal_type == "api_key")
        .group_by(
            AuditRecordRow.principal_id, AuditRecordRow.event_type, AuditRecordRow.http_status
        )
    )
    for key_id, event_type, status, count, rows in session.execute(query):
        # principal_id and http_status are not null here: the query filters on them.
        by_key.setdefault(str(key_id), TrafficCounts()).add(
            event_type, int(status or 0), count, int(rows or 0)
        )
    return DailyUsage(since, _per_day(session, where, since, days), dict(sorted(by_key.items())))


def key_daily_usage(session: Session, *, key_id: str, days: int, now: datetime) -> DailyUsage:
    """The key's partner traffic per day and status (refusals of it included)."""
    since = period_start(days, now)
    where = (AuditRecordRow.principal_id == key_id) & (AuditRecordRow.principal_type == "api_key")
    return DailyUsage(since, _per_day(session, where, since, days), None)


def _partner_traffic(where: ColumnElement[bool], since: datetime) -> list[ColumnElement[bool]]:
    return [
        where,
        AuditRecordRow.ts >= since,
        AuditRecordRow.event_type.in_(PARTNER_EVENTS),
        AuditRecordRow.http_status.is_not(None),
    ]


def _per_day(
    session: Session, where: ColumnElement[bool], since: datetime, days: int
) -> list[tuple[date, TrafficCounts]]:
    day = _utc_day(session)
    query = (
        select(
            day,
            AuditRecordRow.event_type,
            AuditRecordRow.http_status,
            func.count(),
            func.coalesce(func.sum(AuditRecordRow.rows), 0),
        )
        .where(*_partner_traffic(where, since))
        .group_by(day, AuditRecordRow.event_type, AuditRecordRow.http_status)
    )
    first = since.date()
    per_day = {first + timedelta(days=i): TrafficCounts() for i in range(days)}
    for on, event_type, status, count, rows in session.execute(query):
        when = on if isinstance(on, date) else date.fromisoformat(str(on))
        per_day.setdefault(when, TrafficCounts()).add(
            event_type, int(status or 0), count, int(rows or 0)
        )
    return sorted(per_day.items())


def _utc_day(session: Session) -> ColumnElement[Any]:
    # PostgreSQL stores timestamptz (the day depends on the session's zone unless converted);
    # SQLite stores UTC text, whose date() is the UTC day.
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", AuditRecordRow.ts))
    return func.date(AuditRecordRow.ts)
