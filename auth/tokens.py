"""Access tokens (RFC 9068 JWTs): the header and claim rules a token must meet, the denylist on
(issuer, jti), and the principal a verified token stands for, checked against its client as the
client is now. The gateway verifies signatures with flask-jwt-extended and calls these rules
from its loaders, so every refusal has its own reason code whatever library did the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.clients import ClientGrant
from auth.errors import AuthenticationFailed, AuthError, TenantSuspended
from auth.principal import PARTNER, Principal
from auth.tables import RevokedTokenRow
from db.base import utcnow
from ratelimit.policy import KeyLimits

MAX_TOKEN_BYTES = 8192
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Headers that name a key by URL or embed one: never fetched, never used, always refused.
KEY_URL_HEADERS = ("jku", "jwk", "x5u", "x5c")
_KID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# PyJWT's refusals after the key was chosen -> reason code.
_PYJWT_CODES: tuple[tuple[type[Exception], str], ...] = (
    (pyjwt.ExpiredSignatureError, "token_expired"),
    (pyjwt.ImmatureSignatureError, "token_not_yet_valid"),
    (pyjwt.InvalidIssuerError, "token_issuer_invalid"),
    (pyjwt.InvalidAudienceError, "token_audience_invalid"),
    (pyjwt.MissingRequiredClaimError, "token_claims_invalid"),
    (pyjwt.InvalidSignatureError, "token_signature_invalid"),
    (pyjwt.InvalidAlgorithmError, "token_alg_not_allowed"),
    (pyjwt.InvalidIssuedAtError, "token_claims_invalid"),
)


def refuse_token(code: str, detail: str = "The access token is not valid.") -> AuthenticationFailed:
    """The 401 for a token refused for `code`."""
    return AuthenticationFailed(code, detail)


def check_token_size(token: str) -> None:
    """Refuse a token over MAX_TOKEN_BYTES before parsing anything of it."""
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise refuse_token("token_too_large", "The access token is too large.")


def check_header(header: Mapping[str, Any], *, algorithm: str) -> str:
    """The RFC 9068 header with our one algorithm and a well-formed kid, no key URLs; returns
    the kid."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise refuse_token("token_alg_none")
    if alg != algorithm:
        raise refuse_token("token_alg_not_allowed")
    if any(name in header for name in KEY_URL_HEADERS):
        raise refuse_token("token_key_header")
    if header.get("typ") not in ACCESS_TOKEN_TYPES:
        raise refuse_token("token_typ_invalid")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise refuse_token("token_kid_malformed")
    return kid


def check_required_claims(claims: Mapping[str, Any], *, max_lifetime: int) -> None:
    """exp, iat and jti must be present (PyJWT verifies exp and iat only when the token carries
    them), and exp - iat may not exceed the lifetime tokens are issued for; PyJWT refuses an
    iat in the future, so a late iat cannot stretch a token either."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise refuse_token("token_exp_missing")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 64:
        raise refuse_token("token_jti_missing")
    iat = claims.get("iat")
    if not isinstance(iat, int | float):
        raise refuse_token("token_iat_missing")
    if exp - iat > max_lifetime:
        raise refuse_token("token_lifetime_too_long", "The access token lives too long.")


def pyjwt_reason(exc: Exception) -> str:
    """The reason code of one of PyJWT's refusals."""
    for kind, code in _PYJWT_CODES:
        if isinstance(exc, kind):
            return code
    return "token_malformed"


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


def principal_from_claims(
    claims: Mapping[str, Any], client_grant: Callable[[str], ClientGrant | None]
) -> Principal:
    """The principal of a verified token: role, tenant and grant from the client as it is now
    (`client_grant(client_id)`), scopes the token's narrowed to that grant. The tenant claim
    must agree."""
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise AuthenticationFailed("token_claims_invalid", "The token's claims are not valid.")
    grant = client_grant(client_id)
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


def decode_token(
    token: str,
    *,
    verifying_key: Callable[[str], Any],
    algorithm: str,
    audience: str,
    issuer: str,
    leeway: int,
    max_lifetime: int,
) -> dict[str, Any] | None:
    """The claims of a token this server issued and would accept now (the same rules as a
    request's token), else None."""
    if len(token.encode()) > MAX_TOKEN_BYTES:
        return None
    try:
        kid = check_header(pyjwt.get_unverified_header(token), algorithm=algorithm)
        key = verifying_key(kid)
        if key is None:
            return None
        claims: dict[str, Any] = pyjwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "jti", "iat", "sub"]},
        )
        check_required_claims(claims, max_lifetime=max_lifetime)
    except (pyjwt.InvalidTokenError, AuthenticationFailed):
        return None
    return claims


def introspection(
    claims: Mapping[str, Any] | None,
    *,
    token_revoked: Callable[[str, str], bool],
    client_grant: Callable[[str], ClientGrant | None],
) -> dict[str, Any]:
    """RFC 7662: active with the token's claims if a request with it would be accepted now."""
    if claims is None:
        return {"active": False}
    try:
        if token_revoked(str(claims["iss"]), str(claims["jti"])):
            return {"active": False}
        principal = principal_from_claims(claims, client_grant)
    except AuthError:
        return {"active": False}
    return {
        "active": True,
        "token_type": "Bearer",
        "scope": " ".join(sorted(principal.scopes)),
        "client_id": principal.principal_id,
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": claims["iss"],
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "jti": claims["jti"],
        "tenant": principal.tenant_name,
        "role": principal.role,
    }
