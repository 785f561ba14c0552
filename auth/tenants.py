"""Tenants: create, list, suspend, resume, and the model each one is assigned."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.assignments import UNCHANGED, describe_assignment
from auth.errors import InvalidArgument, NoModelAssigned, TenantExists, TenantNotFound
from auth.tables import TenantRow
from db.base import utcnow
from models.errors import InvalidModelRef, ModelNotFound
from models.registry import ModelVersion, get_model, parse_model_ref
from ratelimit.policy import normalize_policy

_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# The channel that follows a model's newest version, stored as a NULL version.
LATEST: Final = "latest"
# What an operator assigns: a version number (pinned), None (pinned to the version that is the
# latest at the time of assignment) or LATEST (each version registered later is served at once).
VersionChoice = int | Literal["latest"] | None


@dataclass(frozen=True)
class Tenant:
    """A partner company; every credential and every audit record belongs to one."""

    id: int
    name: str
    status: str
    model_name: str | None
    model_version: int | None
    created_at: datetime
    rate_limit: str | None = None

    def assignment(self) -> tuple[str, int | None]:
        """(model name, pinned version or None); NoModelAssigned when there is none."""
        if self.model_name is None:
            raise NoModelAssigned("no model is assigned to this tenant")
        return self.model_name, self.model_version

    @property
    def model_ref(self) -> str | None:
        """`name@version` when pinned, `name@latest` when it follows the latest version."""
        if self.model_name is None:
            return None
        return f"{self.model_name}@{LATEST if self.model_version is None else self.model_version}"


@dataclass(frozen=True)
class Assignment:
    """The outcome of assigning a model: the tenant as it is now (as it would be, for a dry
    run), the reference it had before, and what the change means for its partners."""

    tenant: Tenant
    previous: str | None
    changes: tuple[str, ...]
    dry_run: bool = False

    @property
    def assigned(self) -> str:
        """The reference assigned: `name@version` or `name@latest`."""
        assert self.tenant.model_ref is not None  # an assignment always names a model
        return self.tenant.model_ref

    @property
    def unchanged(self) -> bool:
        """True when the tenant already had exactly this assignment."""
        return self.previous == self.assigned


def _to_tenant(row: TenantRow) -> Tenant:
    return Tenant(
        id=row.id,
        name=row.name,
        status=row.status,
        model_name=row.model_name,
        model_version=row.model_version,
        created_at=row.created_at,
        rate_limit=row.rate_limit,
    )


def create_tenant(session: Session, *, name: str) -> Tenant:
    """Create an active tenant with no model assigned."""
    if not _TENANT_NAME.match(name):
        raise InvalidArgument(
            "a tenant name is 1-64 lowercase letters, digits, '-' or '_', starting alphanumeric"
        )
    if session.scalar(select(TenantRow.id).where(TenantRow.name == name)) is not None:
        raise TenantExists(f"tenant {name!r} exists")
    now = utcnow()
    row = TenantRow(name=name, status="active", created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return _to_tenant(row)


def list_tenants(
    session: Session, *, after: str | None = None, limit: int | None = None
) -> list[Tenant]:
    """Tenants by name; `after` a name, at most `limit`."""
    query = select(TenantRow)
    if after is not None:
        query = query.where(TenantRow.name > after)
    rows = session.scalars(query.order_by(TenantRow.name).limit(limit))
    return [_to_tenant(r) for r in rows]


def get_tenant(session: Session, name: str) -> Tenant:
    """The tenant with that name."""
    return _to_tenant(_tenant_row(session, name))


def get_tenant_by_id(session: Session, tenant_id: int) -> Tenant:
    """The tenant with that id."""
    row = session.get(TenantRow, tenant_id)
    if row is None:
        raise TenantNotFound("no such tenant")
    return _to_tenant(row)


def get_assignment(session: Session, *, tenant_id: int) -> tuple[str, int | None]:
    """The (model name, pinned version or None) the tenant's requests are routed to."""
    return get_tenant_by_id(session, tenant_id).assignment()


def list_assignments(session: Session) -> set[tuple[str, int | None]]:
    """Every distinct model assignment across tenants."""
    rows = session.execute(
        select(TenantRow.model_name, TenantRow.model_version).where(
            TenantRow.model_name.is_not(None)
        )
    ).all()
    return {(name, version) for name, version in rows if name is not None}


def set_tenant_status(session: Session, name: str, *, status: str) -> Tenant:
    """Suspend (`suspended`) or resume (`active`) a tenant; effective on its next request."""
    if status not in {"active", "suspended"}:
        raise InvalidArgument("status is active or suspended")
    row = _tenant_row(session, name)
    row.status = status
    row.updated_at = utcnow()
    session.flush()
    return _to_tenant(row)


def parse_assignment_ref(text: str) -> tuple[str, VersionChoice]:
    """Split `NAME`, `NAME@VERSION` or `NAME@latest` into (name, None | version | LATEST)."""
    base, at, channel = text.rpartition("@")
    try:
        if at and channel == LATEST:
            name, version = parse_model_ref(base)
            if version is None:
                return name, LATEST
            raise InvalidModelRef("a version and @latest together")
        return parse_model_ref(text)
    except InvalidModelRef:
        raise InvalidModelRef(
            "a model assignment is NAME (pinned to its latest version now), NAME@VERSION "
            "(pinned) or NAME@latest (follows each new version): a name of 1-100 lowercase "
            "letters, digits, '.', '_' or '-' starting alphanumeric, and a version from 1"
        ) from None


def assign_model(
    session: Session,
    name: str,
    *,
    model_name: str,
    version: VersionChoice,
    dry_run: bool = False,
) -> Assignment:
    """Route the tenant's predictions to a model version and say what that changes.

    A number pins that version; None pins the version that is the latest now; LATEST follows
    each new version as it is registered. Registering a version never moves a pinned tenant.
    A dry run changes nothing and answers the same.
    """
    row = _tenant_row(session, name)
    before = _to_tenant(row)
    target = get_model(session, model_name, None if version == LATEST else version)
    stored = None if version == LATEST else target.version
    after = replace(before, model_name=model_name, model_version=stored)
    if before.model_ref == after.model_ref:
        changes: tuple[str, ...] = (UNCHANGED,)
    else:
        changes = describe_assignment(
            _served(session, before),
            target,
            followed_latest=before.model_name is not None and before.model_version is None,
            follows_latest=stored is None,
        )
        # Nothing is written when nothing changes: the generation stays, no cache is dropped.
        if not dry_run:
            row.model_name, row.model_version = model_name, stored
            row.updated_at = utcnow()
            session.flush()
            after = _to_tenant(row)
    return Assignment(tenant=after, previous=before.model_ref, changes=changes, dry_run=dry_run)


def _served(session: Session, tenant: Tenant) -> ModelVersion | None:
    """The version the tenant is served now, None when there is none."""
    if tenant.model_name is None:
        return None
    try:
        return get_model(session, tenant.model_name, tenant.model_version)
    except ModelNotFound:
        return None  # versions are never deleted; said as "nothing served" all the same


def set_tenant_limit(session: Session, name: str, *, policy: str | None) -> Tenant:
    """Set the tenant's rate-limit policy (None: the settings default per key, no aggregate)."""
    row = _tenant_row(session, name)
    row.rate_limit = normalize_policy(policy) if policy is not None else None
    row.updated_at = utcnow()
    session.flush()
    return _to_tenant(row)


def _tenant_row(session: Session, name: str) -> TenantRow:
    row = session.scalar(select(TenantRow).where(TenantRow.name == name))
    if row is None:
        raise TenantNotFound(f"no tenant named {name!r}")
    return row
