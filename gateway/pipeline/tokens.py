"""Verifying access tokens with flask-jwt-extended. Its loaders apply the token rules of
`auth.tokens` (header before any key is chosen, required claims, the denylist) with keys and
clients from the worker's credential directory, so verification reads no database row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt as pyjwt
from flask import current_app
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException, RevokedTokenError

from auth.errors import AuthenticationFailed
from auth.principal import Principal
from auth.tokens import (
    check_header,
    check_required_claims,
    check_token_size,
    decode_token,
    introspection,
    principal_from_claims,
    pyjwt_reason,
    refuse_token,
)
from db.base import utcnow
from gateway.extensions import jwt_manager
from gateway.runtime import get_runtime


@jwt_manager.decode_key_loader
def _verifying_key(header: Mapping[str, Any], _claims: Mapping[str, Any]) -> Any:
    """Check the header before anything is verified, then pick the published key by kid."""
    runtime = get_runtime()
    kid = check_header(header, algorithm=runtime.settings.jwt_algorithm)
    key = runtime.directory.verifying_key(kid, now=utcnow())
    if key is None:
        raise refuse_token("token_kid_unknown")
    return key


@jwt_manager.token_in_blocklist_loader
def _is_revoked(_header: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """The denylist on (iss, jti), once the required claims are there."""
    runtime = get_runtime()
    check_required_claims(claims, max_lifetime=runtime.settings.token_lifetime_seconds)
    return runtime.directory.token_revoked(str(claims["iss"]), str(claims["jti"]))


def authenticate_token(credential: str) -> Principal:
    """Verify the request's bearer token and return its principal; 401 with a reason otherwise."""
    check_token_size(credential)
    try:
        verified = verify_jwt_in_request(locations=["headers"], verify_type=False)
    except AuthenticationFailed:
        raise
    except RevokedTokenError as revoked:
        # Raised only after the signature verified: the client id is authentic.
        client_id = revoked.jwt_data.get("client_id")
        raise AuthenticationFailed(
            "token_revoked",
            "The access token has been revoked.",
            key_id=client_id if isinstance(client_id, str) else None,
        ) from None
    except pyjwt.InvalidTokenError as exc:
        raise refuse_token(pyjwt_reason(exc)) from None
    except JWTExtendedException:
        raise refuse_token("token_malformed") from None
    if verified is None:  # flask-jwt-extended exempts OPTIONS
        raise refuse_token("token_malformed")
    return principal_from_claims(verified[1], get_runtime().directory.client_grant)


def decode_access_token(token: str) -> dict[str, Any] | None:
    """The claims of a token this server issued and would accept now, else None (for
    revocation and introspection, where an unusable token is not an error)."""
    runtime = get_runtime()
    settings = runtime.settings
    return decode_token(
        token,
        verifying_key=lambda kid: runtime.directory.verifying_key(kid, now=utcnow()),
        algorithm=settings.jwt_algorithm,
        audience=settings.oauth_audience,
        issuer=settings.oauth_issuer,
        leeway=current_app.config["JWT_DECODE_LEEWAY"],
        max_lifetime=settings.token_lifetime_seconds,
    )


def introspect_token(token: str) -> dict[str, Any]:
    """RFC 7662: active with the token's claims if a request with it would be accepted now."""
    directory = get_runtime().directory
    return introspection(
        decode_access_token(token),
        token_revoked=directory.token_revoked,
        client_grant=directory.client_grant,
    )


def init_access_tokens(app: Any) -> None:
    """Bind flask-jwt-extended to the app."""
    jwt_manager.init_app(app)
