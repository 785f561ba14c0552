"""OAuth2 clients (client credentials grant): created with a role and a scope grant, the secret
shown once and stored only as an HMAC keyed with the server secret, revoked or rotated by id.

Client id: ``pgc_<16 hex>``; secret: 43 base64url characters (256 random bits).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth.errors import AuthError, ClientAlreadyRevoked, InvalidArgument
from auth.principal import PARTNER, ROLE_SCOPES
from auth.tables import OAuthClientRow, TenantRow
from auth.tenants import get_tenant
from db.base import utcnow

CLIENT_PREFIX = "pgc_"
_CLIENT_ID_PATTERN = re.compile(r"^pgc_[0-9a-f]{16}$")
_DUMMY_HMAC = "0" * 64


class ClientNotFound(AuthError):
    """No OAuth client has that id."""

    code = "client_not_found"
    status = 404
    title = "OAuth client not found"
    public_detail = "No OAuth client has this id."


@dataclass(frozen=True)
class OAuthClient:
    """What may be shown about a client: never its secret or its hash."""

    client_id: str
    role: str
    tenant_name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedClient:
    """A new client or a new secret: the only moment the secret exists outside the caller."""

    client: OAuthClient
    client_secret: str


@dataclass(frozen=True)
class ClientGrant:
    """What authentication needs about a client: its grant and tenant, read in one query."""

    client_id: str
    role: str
    scopes: frozenset[str]
    tenant_id: int | None
    tenant_name: str | None
    tenant_status: str | None
    tenant_rate_limit: str | None
    revoked: bool


def hash_client_secret(server_secret: bytes, client_id: str, secret: str) -> str:
    """HMAC-SHA256 of a client secret, bound to its id, keyed with the server secret."""
    message = f"oauth-client:{client_id}:{secret}".encode()
    return hmac.new(server_secret, message, hashlib.sha256).hexdigest()


def create_client(
    session: Session,
    server_secret: bytes,
    *,
    role: str,
    tenant_name: str | None = None,
    scopes: Sequence[str] | None = None,
    created_by: str,
) -> IssuedClient:
    """Create a client with a role (and, for partners, a tenant); return it with its secret."""
    if role not in ROLE_SCOPES:
        raise InvalidArgument(f"a role is one of: {', '.join(sorted(ROLE_SCOPES))}")
    if role == PARTNER and tenant_name is None:
        raise InvalidArgument("a partner client needs a tenant")
    if role != PARTNER and tenant_name is not None:
        raise InvalidArgument(f"a client with the {role} role belongs to no tenant")
    granted = _checked_scopes(role, scopes)
    tenant_id = get_tenant(session, tenant_name).id if tenant_name is not None else None
    client_id = CLIENT_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = OAuthClientRow(
        client_id=client_id,
        role=role,
        tenant_id=tenant_id,
        scopes=" ".join(granted),
        secret_hmac=hash_client_secret(server_secret, client_id, secret),
        created_at=utcnow(),
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return IssuedClient(client=_to_client(row, tenant_name), client_secret=secret)


def list_clients(
    session: Session, *, after: str | None = None, limit: int | None = None
) -> list[OAuthClient]:
    """Clients in creation order; `after` a client id, at most `limit`."""
    query = select(OAuthClientRow, TenantRow.name).outerjoin(
        TenantRow, OAuthClientRow.tenant_id == TenantRow.id
    )
    if after is not None:
        # An unknown client id makes the subquery NULL, and the page empty.
        anchor = select(OAuthClientRow.id).where(OAuthClientRow.client_id == after)
        query = query.where(OAuthClientRow.id > anchor.scalar_subquery())
    rows = session.execute(query.order_by(OAuthClientRow.id).limit(limit)).all()
    return [_to_client(row, name) for row, name in rows]


def get_client(session: Session, client_id: str) -> OAuthClient:
    """The client with that id."""
    row, name = _client_with_tenant(session, client_id)
    return _to_client(row, name)


def revoke_client(session: Session, client_id: str) -> OAuthClient:
    """Revoke a client: no new tokens, and every token it holds is refused on the next request.
    ClientAlreadyRevoked when it is revoked already (nothing changes)."""
    row, name = _client_with_tenant(session, client_id)
    refuse_revoked_client(_to_client(row, name))
    row.revoked_at = utcnow()
    session.flush()
    return _to_client(row, name)


def refuse_revoked_client(client: OAuthClient) -> None:
    """ClientAlreadyRevoked when the client is revoked (a check a caller may make first)."""
    if client.revoked_at is not None:
        raise ClientAlreadyRevoked(
            f"OAuth client {client.client_id} is revoked already; nothing was changed"
        )


def rotate_client_secret(session: Session, server_secret: bytes, client_id: str) -> IssuedClient:
    """Replace a client's secret; the old one stops working at once (issued tokens remain)."""
    row, name = _client_with_tenant(session, client_id)
    if row.revoked_at is not None:
        raise InvalidArgument("a revoked client cannot get a new secret")
    secret = secrets.token_urlsafe(32)
    row.secret_hmac = hash_client_secret(server_secret, client_id, secret)
    session.flush()
    return IssuedClient(client=_to_client(row, name), client_secret=secret)


def verify_client_secret(
    session: Session, server_secret: bytes, client_id: str, presented: str
) -> bool:
    """True when the client exists, is not revoked and the secret matches (constant time)."""
    well_formed = _CLIENT_ID_PATTERN.match(client_id) is not None
    # Two columns, no ORM object: a known id costs the same as an unknown one, within the noise.
    row = session.execute(
        select(OAuthClientRow.secret_hmac, OAuthClientRow.revoked_at).where(
            OAuthClientRow.client_id == client_id
        )
    ).first()
    expected = row.secret_hmac if row is not None and well_formed else _DUMMY_HMAC
    matches = hmac.compare_digest(hash_client_secret(server_secret, client_id, presented), expected)
    return matches and row is not None and well_formed and row.revoked_at is None


def client_grant(session: Session, client_id: str) -> ClientGrant | None:
    """A client's role, scopes and tenant as they are now; None when no such client exists."""
    if _CLIENT_ID_PATTERN.match(client_id) is None:
        return None
    # Plain columns, no ORM objects: cheap, and as cheap for a known id as for an unknown one.
    row = session.execute(
        select(
            OAuthClientRow.client_id,
            OAuthClientRow.role,
            OAuthClientRow.scopes,
            OAuthClientRow.revoked_at,
            TenantRow.id,
            TenantRow.name,
            TenantRow.status,
            TenantRow.rate_limit,
        )
        .outerjoin(TenantRow, OAuthClientRow.tenant_id == TenantRow.id)
        .where(OAuthClientRow.client_id == client_id)
    ).first()
    if row is None:
        return None
    found_id, role, scopes, revoked_at, tenant_id, tenant_name, tenant_status, tenant_limit = row
    return ClientGrant(
        client_id=found_id,
        role=role,
        scopes=frozenset(scopes.split()),
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        tenant_status=tenant_status,
        tenant_rate_limit=tenant_limit,
        revoked=revoked_at is not None,
    )


def _checked_scopes(role: str, scopes: Sequence[str] | None) -> tuple[str, ...]:
    allowed = ROLE_SCOPES[role]
    if scopes is None:
        return tuple(sorted(allowed))
    wanted = {scope.strip() for scope in scopes if scope.strip()}
    if not wanted or not wanted <= allowed:
        raise InvalidArgument(
            f"the scopes of a client with the {role} role are one or more of: "
            f"{', '.join(sorted(allowed))}"
        )
    return tuple(sorted(wanted))


def _client_with_tenant(session: Session, client_id: str) -> tuple[OAuthClientRow, str | None]:
    found = session.execute(
        select(OAuthClientRow, TenantRow.name)
        .outerjoin(TenantRow, OAuthClientRow.tenant_id == TenantRow.id)
        .where(OAuthClientRow.client_id == client_id)
    ).first()
    if found is None:
        raise ClientNotFound(f"no OAuth client with id {client_id!r}")
    return found[0], found[1]


def _to_client(row: OAuthClientRow, tenant_name: str | None) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id,
        role=row.role,
        tenant_name=tenant_name,
        scopes=tuple(row.scopes.split()),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )
