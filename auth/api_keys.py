"""API keys: issued once, stored only as an HMAC keyed with the server secret, verified in
constant time, revoked or rotated by id.

Key format: ``pgk_<key id: 16 hex>_<secret: 43 base64url chars, 256 random bits>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from auth.errors import (
    AuthenticationFailed,
    InvalidArgument,
    KeyAlreadyRevoked,
    KeyAlreadyRotated,
    KeyNotFound,
    TenantSuspended,
)
from auth.principal import PARTNER_SCOPES, Principal
from auth.tables import ApiKeyRow, TenantRow
from auth.tenants import Tenant, get_tenant, get_tenant_by_id
from db.base import utcnow
from ratelimit.policy import KeyLimits, normalize_policy

KEY_PREFIX = "pgk_"
_KEY_PATTERN = re.compile(r"^pgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# Keys in use are marked in batches by a background task, never by the request that used
# them: once a minute is precise enough for "when was this key last used".
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Verifying an unknown id costs the same HMAC as a known one, so timing does not tell them apart.
_DUMMY_HMAC = "0" * 64


@dataclass(frozen=True)
class ApiKey:
    """What may be shown about a key: never its secret or its hash."""

    key_id: str
    tenant_name: str
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    replaced_by: str | None
    lineage_id: str
    rate_limit: str | None

    def state(self, now: datetime) -> str:
        """`active`, `expired` or `revoked` at the given time."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued key: the only moment the full key exists outside the caller's hands."""

    key: ApiKey
    api_key: str


def hash_secret(server_secret: bytes, key_id: str, secret: str) -> str:
    """HMAC-SHA256 of a key's secret, bound to its id, keyed with the server secret."""
    message = f"api-key:{key_id}:{secret}".encode()
    return hmac.new(server_secret, message, hashlib.sha256).hexdigest()


def issue_key(
    session: Session,
    server_secret: bytes,
    *,
    tenant_name: str,
    created_by: str,
    label: str = "",
    expires_in: timedelta | None = None,
    rate_limit: str | None = None,
) -> IssuedKey:
    """Issue a new key for a tenant and return it; only its HMAC is stored."""
    tenant = get_tenant(session, tenant_name)
    if len(label) > 200:
        raise InvalidArgument("a label is at most 200 characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidArgument("an expiry must be in the future")
    policy = normalize_policy(rate_limit) if rate_limit is not None else None
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiKeyRow(
        key_id=key_id,
        tenant_id=tenant.id,
        label=label,
        secret_hmac=hash_secret(server_secret, key_id, secret),
        created_at=now,
        created_by=created_by,
        expires_at=now + expires_in if expires_in is not None else None,
        lineage_id=key_id,
        rate_limit=policy,
    )
    session.add(row)
    session.flush()
    return IssuedKey(key=_to_key(row, tenant.name), api_key=f"{KEY_PREFIX}{key_id}_{secret}")


def list_keys(
    session: Session,
    *,
    tenant_name: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[ApiKey]:
    """Keys, optionally of one tenant, in issue order; `after` a key id, at most `limit`."""
    query = select(ApiKeyRow, TenantRow.name).join(TenantRow, ApiKeyRow.tenant_id == TenantRow.id)
    if tenant_name is not None:
        query = query.where(TenantRow.id == get_tenant(session, tenant_name).id)
    if after is not None:
        # An unknown key id makes the subquery NULL, and the page empty.
        anchor = select(ApiKeyRow.id).where(ApiKeyRow.key_id == after).scalar_subquery()
        query = query.where(ApiKeyRow.id > anchor)
    rows = session.execute(query.order_by(ApiKeyRow.id).limit(limit)).all()
    return [_to_key(row, name) for row, name in rows]


def get_key(session: Session, key_id: str) -> ApiKey:
    """The key with that id."""
    row = _key_row(session, key_id)
    return _to_key(row, get_tenant_by_id(session, row.tenant_id).name)


def revoke_key(session: Session, key_id: str, *, reason: str = "") -> ApiKey:
    """Revoke a key; the next request that presents it is refused. KeyAlreadyRevoked when it
    is revoked already: the first revocation's time and reason stay as they were."""
    row = _key_row(session, key_id)
    refuse_revoked(_to_key(row, ""))
    row.revoked_at = utcnow()
    row.revoked_reason = reason[:200] or None
    session.flush()
    return _to_key(row, get_tenant_by_id(session, row.tenant_id).name)


def refuse_revoked(key: ApiKey) -> None:
    """KeyAlreadyRevoked when the key is revoked (a check a caller may make before acting)."""
    if key.revoked_at is not None:
        raise KeyAlreadyRevoked(f"key {key.key_id} is revoked already; nothing was changed")


def rotate_key(
    session: Session,
    server_secret: bytes,
    key_id: str,
    *,
    created_by: str,
    grace: timedelta = timedelta(hours=24),
) -> IssuedKey:
    """Issue a successor with the same tenant and label; the old key ends after the grace.

    A lineage is a chain with one successor per key: a key that has one already is refused
    with KeyAlreadyRotated naming it, and only the newest key of a lineage can be rotated.
    """
    row = _key_row(session, key_id)
    now = utcnow()
    if row.replaced_by is not None:
        raise KeyAlreadyRotated(
            f"key {key_id} was already rotated to {row.replaced_by}; a key has at most one "
            f"successor, so rotate the newest key of its lineage ({row.replaced_by} or its own "
            "successor) instead"
        )
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise InvalidArgument("only an active key can be rotated")
    if grace < timedelta(0):
        raise InvalidArgument("the grace period cannot be negative")
    tenant = get_tenant_by_id(session, row.tenant_id)
    remaining = row.expires_at - now if row.expires_at is not None else None
    successor = issue_key(
        session,
        server_secret,
        tenant_name=tenant.name,
        created_by=created_by,
        label=row.label,
        expires_in=remaining,
        rate_limit=row.rate_limit,
    )
    # The successor spends from the same rate-limit counters as the key it replaces.
    _key_row(session, successor.key.key_id).lineage_id = row.lineage_id
    grace_end = now + grace
    if row.expires_at is None or grace_end < row.expires_at:
        row.expires_at = grace_end
    row.replaced_by = successor.key.key_id
    session.flush()
    return IssuedKey(key=get_key(session, successor.key.key_id), api_key=successor.api_key)


def set_key_limit(session: Session, key_id: str, *, policy: str | None) -> ApiKey:
    """Set a key's own rate-limit policy (None: inherit); applies to its whole rotation lineage."""
    row = _key_row(session, key_id)
    normalized = normalize_policy(policy) if policy is not None else None
    for member in session.scalars(select(ApiKeyRow).where(ApiKeyRow.lineage_id == row.lineage_id)):
        member.rate_limit = normalized
    session.flush()
    return _to_key(row, get_tenant_by_id(session, row.tenant_id).name)


def key_limits(session: Session, key_id: str) -> KeyLimits:
    """The rate-limit columns of a key and its tenant."""
    found = session.execute(
        select(ApiKeyRow, TenantRow)
        .join(TenantRow, ApiKeyRow.tenant_id == TenantRow.id)
        .where(ApiKeyRow.key_id == key_id)
    ).first()
    if found is None:
        raise KeyNotFound(f"no API key with id {key_id!r}")
    return _limits_of(found[0], found[1])


@dataclass(frozen=True)
class KeyCredential:
    """What verifying a key needs, read with its tenant in one query; workers cache it and drop
    it when anything about keys or tenants changes (db.changes)."""

    key_id: str
    secret_hmac: str
    revoked: bool
    expires_at: datetime | None
    tenant_id: int
    tenant_name: str
    tenant_active: bool
    limits: KeyLimits


def load_key_credential(session: Session, key_id: str) -> KeyCredential | None:
    """The credential of a key id, or None when no key has it."""
    found = session.execute(
        select(ApiKeyRow, TenantRow)
        .join(TenantRow, ApiKeyRow.tenant_id == TenantRow.id)
        .where(ApiKeyRow.key_id == key_id)
    ).first()
    if found is None:
        return None
    row, tenant = found
    return KeyCredential(
        key_id=row.key_id,
        secret_hmac=row.secret_hmac,
        revoked=row.revoked_at is not None,
        expires_at=row.expires_at,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        tenant_active=tenant.status == "active",
        limits=_limits_of(row, tenant),
    )


def parse_key_id(presented: str) -> str | None:
    """The key id a presented key claims (public, for the audit record), if well formed."""
    match = _KEY_PATTERN.match(presented)
    return match.group(1) if match else None


def authenticate_api_key(
    presented: str,
    *,
    server_secret: bytes,
    credential_of: Callable[[str], KeyCredential | None],
    now: datetime,
) -> Principal:
    """Verify a presented key against its credential (`credential_of(key_id)`) and return its
    principal; AuthenticationFailed or TenantSuspended otherwise."""
    match = _KEY_PATTERN.match(presented)
    if match is None:
        raise AuthenticationFailed("malformed_credentials", "The API key is not well formed.")
    key_id, secret = match.groups()
    found = credential_of(key_id)
    expected = found.secret_hmac if found is not None else _DUMMY_HMAC
    if not hmac.compare_digest(hash_secret(server_secret, key_id, secret), expected) or not found:
        raise AuthenticationFailed("invalid_key", "The API key is not valid.", key_id=key_id)
    tenant_id = found.tenant_id
    if found.revoked:
        raise AuthenticationFailed(
            "revoked_key", "The API key has been revoked.", key_id=key_id, tenant_id=tenant_id
        )
    if found.expires_at is not None and found.expires_at <= now:
        raise AuthenticationFailed(
            "expired_key", "The API key has expired.", key_id=key_id, tenant_id=tenant_id
        )
    if not found.tenant_active:
        raise TenantSuspended(
            "The tenant of this API key is suspended.", key_id=key_id, tenant_id=tenant_id
        )
    return Principal(
        principal_type="api_key",
        principal_id=key_id,
        auth_method="api_key",
        role="partner",
        scopes=PARTNER_SCOPES,
        tenant_id=tenant_id,
        tenant_name=found.tenant_name,
        limits=found.limits,
    )


def record_key_use(session: Session, key_ids: Collection[str], *, at: datetime) -> int:
    """Set `last_used_at` of these keys, unless they were marked less than LAST_USED_RESOLUTION
    before `at`; one statement, outside any request. Returns the rows changed."""
    if not key_ids:
        return 0
    # A Core UPDATE: it changes no cached column, so it does not move the change generation.
    result = session.execute(
        update(ApiKeyRow)
        .where(
            ApiKeyRow.key_id.in_(sorted(key_ids)),
            or_(
                ApiKeyRow.last_used_at.is_(None),
                ApiKeyRow.last_used_at <= at - LAST_USED_RESOLUTION,
            ),
        )
        .values(last_used_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _limits_of(row: ApiKeyRow, tenant: TenantRow) -> KeyLimits:
    return KeyLimits(
        lineage_id=row.lineage_id,
        tenant_id=tenant.id,
        key_policy=row.rate_limit,
        tenant_policy=tenant.rate_limit,
    )


def _key_row(session: Session, key_id: str) -> ApiKeyRow:
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
    if row is None:
        raise KeyNotFound(f"no API key with id {key_id!r}")
    return row


def _to_key(row: ApiKeyRow, tenant_name: str) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        tenant_name=tenant_name,
        label=row.label,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
        replaced_by=row.replaced_by,
        lineage_id=row.lineage_id,
        rate_limit=row.rate_limit,
    )


__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "IssuedKey",
    "KeyCredential",
    "Tenant",
    "authenticate_api_key",
    "get_key",
    "hash_secret",
    "issue_key",
    "key_limits",
    "list_keys",
    "load_key_credential",
    "parse_key_id",
    "record_key_use",
    "refuse_revoked",
    "revoke_key",
    "rotate_key",
    "set_key_limit",
]
