"""The verified caller: who is calling, for which tenant, with which rights."""

from __future__ import annotations

from dataclasses import dataclass

from ratelimit.policy import KeyLimits

PARTNER = "partner"
ADMIN = "admin"
COMPLIANCE = "compliance"
PARTNER_SCOPES = frozenset({"predict", "model:read", "receipts:read"})
ADMIN_SCOPES = frozenset({"admin"})
COMPLIANCE_SCOPES = frozenset({"audit:read"})
# What each role may be granted; a credential holds these or fewer. API keys are partner
# credentials.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    PARTNER: PARTNER_SCOPES,
    ADMIN: ADMIN_SCOPES,
    COMPLIANCE: COMPLIANCE_SCOPES,
}


@dataclass(frozen=True)
class Principal:
    """A caller whose credential has been verified; the only source of a request's tenant."""

    principal_type: str  # "api_key" or "client"
    principal_id: str  # key id or client id, never a secret
    auth_method: str  # "api_key" or "jwt"
    role: str  # "partner", "admin" or "compliance"
    scopes: frozenset[str]
    tenant_id: int | None
    tenant_name: str | None
    # The rate-limit columns read with the credential, so limiting needs no query of its own.
    limits: KeyLimits | None = None

    def has_scope(self, scope: str) -> bool:
        """True when this principal was granted the scope."""
        return scope in self.scopes
