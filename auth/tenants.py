"""Tenants: create, list, suspend, resume, and the model each one is assigned."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.errors import InvalidArgument, NoModelAssigned, TenantExists, TenantNotFound
from auth.tables import TenantRow
from db.base import utcnow
from models.registry import get_model
from ratelimit.policy import normalize_policy

_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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
        """`name@version`, or `name` when it follows the latest version."""
        if self.model_name is None:
            return None
        if self.model_version is None:
            return self.model_name
        return f"{self.model_name}@{self.model_version}"


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


def list_tenants(session: Session) -> list[Tenant]:
    """All tenants by name."""
    return [_to_tenant(r) for r in session.scalars(select(TenantRow).order_by(TenantRow.name))]


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


def assign_model(session: Session, name: str, *, model_name: str, version: int | None) -> Tenant:
    """Route the tenant's predictions to a model; version None follows the latest version."""
    row = _tenant_row(session, name)
    get_model(session, model_name, version)  # refuses a model or version that does not exist
    row.model_name = model_name
    row.model_version = version
    row.updated_at = utcnow()
    session.flush()
    return _to_tenant(row)


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
