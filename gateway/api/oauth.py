"""OAuth2 endpoints: token (client credentials), revocation (RFC 7009), introspection
(RFC 7662, admins only), the JWKS and the authorisation server metadata (RFC 8414).

Token and revocation authenticate the client themselves (client_secret_basic or _post) and
answer in RFC 6749 error JSON, as OAuth clients expect; the rest is problem+json.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from joserfc.jwk import ECKey

from auth.principal import ROLE_SCOPES
from auth.signing_keys import published_keys
from gateway.access_tokens import introspect_token
from gateway.audit_notes import note_audit
from gateway.caller import require_scope, resolve_caller
from gateway.oauth_server import CLIENT_AUTH_METHODS, get_authorization_server
from gateway.runtime import db_session, get_runtime

bp = Blueprint("oauth", __name__)
# Public keys change only on rotation, and a new key is published before it signs anything.
JWKS_MAX_AGE_SECONDS = 60


@bp.post("/oauth/token")
def issue_token() -> ResponseReturnValue:
    """Client credentials grant: a signed RFC 9068 access token, or an RFC 6749 error."""
    note_audit(event_type="token.issue")
    response = get_authorization_server().create_token_response()
    return _finish(response)


@bp.post("/oauth/revoke")
def revoke_token() -> ResponseReturnValue:
    """RFC 7009: the client revokes one of its tokens; 200 whatever the token was."""
    note_audit(event_type="token.revoke")
    response = get_authorization_server().create_endpoint_response("revocation")
    return _finish(response)


@bp.post("/oauth/introspect")
@require_scope("admin")
def introspect() -> ResponseReturnValue:
    """RFC 7662 for admins: whether a token would be accepted now, and its claims if so."""
    note_audit(event_type="token.introspect")
    resolve_caller()
    return jsonify(introspect_token(request.form.get("token", "")))


@bp.get("/.well-known/jwks.json")
def jwks() -> ResponseReturnValue:
    """The public keys that verify tokens: the signing key and retired ones still in use."""
    keys = [
        ECKey.import_key(
            key.public_pem, {"kid": key.kid, "alg": key.algorithm, "use": "sig"}
        ).as_dict(private=False)
        for key in published_keys(db_session())
    ]
    response = jsonify({"keys": keys})
    response.cache_control.max_age = JWKS_MAX_AGE_SECONDS
    response.cache_control.public = True
    return response


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> ResponseReturnValue:
    """RFC 8414 authorisation server metadata."""
    settings = get_runtime().settings
    document: dict[str, Any] = {
        "issuer": settings.oauth_issuer,
        "token_endpoint": url_for("oauth.issue_token", _external=True),
        "jwks_uri": url_for("oauth.jwks", _external=True),
        "revocation_endpoint": url_for("oauth.revoke_token", _external=True),
        "introspection_endpoint": url_for("oauth.introspect", _external=True),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "scopes_supported": sorted(set().union(*ROLE_SCOPES.values())),
        "access_token_signing_alg_values_supported": [settings.jwt_algorithm],
    }
    return jsonify(document)


def _finish(response: Response) -> Response:
    """Commit what the endpoint wrote (a first signing key, a denylist entry); note failures."""
    if response.status_code >= 400:
        error = (response.get_json(silent=True) or {}).get("error")
        note_audit(reason_code=str(error or "invalid_request"))
    db_session().commit()
    response.headers["Cache-Control"] = "no-store"
    return response
