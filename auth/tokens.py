"""Access tokens after their signature verified: the denylist on (issuer, jti) and the
principal a token stands for, checked against its client as the client is now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.clients import client_grant
from auth.errors import AuthenticationFailed, TenantSuspended
from auth.limits import KeyLimits
from auth.principal import PARTNER, Principal
from auth.tables import RevokedTokenRow
from db.base import utcnow


def revoke_token(
    session: Session, *, issuer: str, jti: str, client_id: str, expires_at: datetime
) -> None:
    """Deny a token from now until it expires; revoking it twice is a no-op."""
    now = utcnow()
    # Entries past their token's expiry can go: the token is refused as expired anyway.
    session.execute(delete(RevokedTokenRow).where(RevokedTokenRow.expires_at < now))
    if is_token_revoked(session, issuer=issuer, jti=jti):
        return
    try:
        with session.begin_nested():
            session.add(
                RevokedTokenRow(
                    issuer=issuer,
                    jti=jti[:64],
                    client_id=client_id,
                    revoked_at=now,
                    expires_at=expires_at,
                )
            )
    except IntegrityError:
        pass  # revoked concurrently: the same outcome


def is_token_revoked(session: Session, *, issuer: str, jti: str) -> bool:
    """True when the token (issuer, jti) is on the denylist."""
    found = session.scalar(
        select(RevokedTokenRow.id).where(
            RevokedTokenRow.issuer == issuer, RevokedTokenRow.jti == jti[:64]
        )
    )
    return found is not None


def expiry_of(claims: Mapping[str, Any]) -> datetime:
    """The token's exp claim as an aware datetime."""
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def principal_from_claims(session: Session, claims: Mapping[str, Any]) -> Principal:
    """The principal of a verified token: role, tenant and grant from the client row as it is
    now, scopes the token's narrowed to that grant. The tenant claim must agree."""
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise AuthenticationFailed("token_claims_invalid", "The token's claims are not valid.")
    grant = client_grant(session, client_id)
    if grant is None:
        raise AuthenticationFailed("token_claims_invalid", "The token's client is unknown.")
    if grant.revoked:
        # The signature verified, so the client id is authentic: the audit record may name it.
        raise AuthenticationFailed(
            "client_revoked",
            "The token's client has been revoked.",
            key_id=client_id,
            tenant_id=grant.tenant_id,
        )
    if claims.get("tenant") != grant.tenant_name:
        raise AuthenticationFailed("token_claims_invalid", "The token's tenant does not match.")
    scope_claim = claims.get("scope")
    if not isinstance(scope_claim, str):
        raise AuthenticationFailed("token_claims_invalid", "The token carries no scope.")
    if grant.tenant_id is not None and grant.tenant_status != "active":
        raise TenantSuspended(
            "The tenant of this client is suspended.", key_id=client_id, tenant_id=grant.tenant_id
        )
    limits = None
    if grant.role == PARTNER and grant.tenant_id is not None:
        # Counted per client (its lineage is its id) and in its tenant's aggregate, as a key.
        limits = KeyLimits(
            lineage_id=client_id,
            tenant_id=grant.tenant_id,
            key_policy=None,
            tenant_policy=grant.tenant_rate_limit,
        )
    return Principal(
        principal_type="client",
        principal_id=client_id,
        auth_method="jwt",
        role=grant.role,
        scopes=frozenset(scope_claim.split()) & grant.scopes,
        tenant_id=grant.tenant_id,
        tenant_name=grant.tenant_name,
        limits=limits,
    )
