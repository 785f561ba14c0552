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

from auth.oauth import CLIENT_AUTH_METHODS
from auth.principal import ROLE_SCOPES
from auth.signing_keys import published_keys
from gateway.api.oauth_server import get_authorization_server
from gateway.context import RequestContext
from gateway.pipeline import endpoint
from gateway.pipeline.tokens import introspect_token

bp = Blueprint("oauth", __name__)
TAGS = ["oauth"]
# Public keys change only on rotation, and a new key is published before it signs anything.
JWKS_MAX_AGE_SECONDS = 60


@bp.post("/oauth/token")
@endpoint("token.issue", scope=None, tags=TAGS)
def issue_token(ctx: RequestContext) -> ResponseReturnValue:
    """Client credentials grant: a signed RFC 9068 access token, or an RFC 6749 error."""
    return _finish(ctx, get_authorization_server().create_token_response())


@bp.post("/oauth/revoke")
@endpoint("token.revoke", scope=None, tags=TAGS)
def revoke_token(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 7009: the client revokes one of its tokens; 200 whatever the token was."""
    return _finish(ctx, get_authorization_server().create_endpoint_response("revocation"))


@bp.post("/oauth/introspect")
@endpoint("token.introspect", scope="admin", tags=TAGS)
def introspect(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 7662 for admins: whether a token would be accepted now, and its claims if so."""
    return jsonify(introspect_token(request.form.get("token", "")))


@bp.get("/.well-known/jwks.json")
@endpoint("http.request", scope=None, tags=TAGS)
def jwks(ctx: RequestContext) -> ResponseReturnValue:
    """The public keys that verify tokens: the signing key and retired ones still in use."""
    keys = [
        ECKey.import_key(
            key.public_pem, {"kid": key.kid, "alg": key.algorithm, "use": "sig"}
        ).as_dict(private=False)
        for key in published_keys(ctx.db())
    ]
    response = jsonify({"keys": keys})
    response.cache_control.max_age = JWKS_MAX_AGE_SECONDS
    response.cache_control.public = True
    return response


@bp.get("/.well-known/oauth-authorization-server")
@endpoint("http.request", scope=None, tags=TAGS)
def metadata(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 8414 authorisation server metadata."""
    settings = ctx.runtime.settings
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


def _finish(ctx: RequestContext, response: Response) -> Response:
    """Commit what the endpoint wrote (a first signing key, a denylist entry); note failures."""
    if response.status_code >= 400:
        error = (response.get_json(silent=True) or {}).get("error")
        ctx.audit.reason_code = str(error or "invalid_request")
    ctx.db().commit()
    response.headers["Cache-Control"] = "no-store"
    return response
