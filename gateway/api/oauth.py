"""OAuth2 endpoints: token (client credentials), revocation (RFC 7009), introspection
(RFC 7662, admins only), the JWKS and the authorisation server metadata (RFC 8414).

Token and revocation authenticate the client themselves (client_secret_basic or _post) and
answer in RFC 6749 error JSON, as OAuth clients expect; the rest is problem+json. Every URL the
metadata advertises is built from the configured issuer (PREDGATE_OAUTH_ISSUER, the gateway's
public base URL), never from the request's Host, which a caller chooses.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from joserfc.jwk import ECKey

from auth.oauth import (
    INTROSPECTION_PATH,
    ISSUE_PATH,
    JWKS_PATH,
    METADATA_PATH,
    REVOCATION_PATH,
    server_metadata,
)
from auth.signing_keys import published_keys
from gateway.api.oauth_server import get_authorization_server
from gateway.api.oauth_shapes import (
    INTROSPECTION_RESPONSES,
    JWKS_RESPONSES,
    METADATA_RESPONSES,
    REVOCATION_RESPONSES,
    TOKEN_RESPONSES,
    IntrospectionRequest,
    RevocationRequest,
    TokenRequest,
)
from gateway.context import RequestContext
from gateway.pipeline import endpoint
from gateway.pipeline.tokens import introspect_token

bp = Blueprint("oauth", __name__)
TAGS = ["oauth"]
# Public keys change only on rotation, and a new key is published before it signs anything.
JWKS_MAX_AGE_SECONDS = 60


@bp.post(ISSUE_PATH)
@endpoint(
    "token.issue",
    scope=None,
    client_auth=True,
    form=TokenRequest,
    responses=TOKEN_RESPONSES,
    tags=TAGS,
)
def issue_token(ctx: RequestContext) -> ResponseReturnValue:
    """Client credentials grant: a signed RFC 9068 access token, or an RFC 6749 error."""
    return _finish(ctx, get_authorization_server().create_token_response())


@bp.post(REVOCATION_PATH)
@endpoint(
    "token.revoke",
    scope=None,
    client_auth=True,
    form=RevocationRequest,
    responses=REVOCATION_RESPONSES,
    tags=TAGS,
)
def revoke_token(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 7009: the client revokes one of its tokens; 200 whatever the token was."""
    return _finish(ctx, get_authorization_server().create_endpoint_response("revocation"))


@bp.post(INTROSPECTION_PATH)
@endpoint(
    "token.introspect",
    scope="admin",
    form=IntrospectionRequest,
    responses=INTROSPECTION_RESPONSES,
    tags=TAGS,
)
def introspect(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 7662 for admins: whether a token would be accepted now, and its claims if so."""
    return jsonify(introspect_token(request.form.get("token", "")))


@bp.get(JWKS_PATH)
@endpoint("http.request", scope=None, responses=JWKS_RESPONSES, tags=TAGS)
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


@bp.get(METADATA_PATH)
@endpoint("http.request", scope=None, responses=METADATA_RESPONSES, tags=TAGS)
def metadata(ctx: RequestContext) -> ResponseReturnValue:
    """RFC 8414 authorisation server metadata."""
    settings = ctx.runtime.settings
    return jsonify(server_metadata(settings.oauth_issuer, algorithm=settings.jwt_algorithm))


def _finish(ctx: RequestContext, response: Response) -> Response:
    """Commit what the endpoint wrote (a first signing key, a denylist entry); note failures."""
    if response.status_code >= 400:
        error = (response.get_json(silent=True) or {}).get("error")
        ctx.audit.reason_code = str(error or "invalid_request")
    ctx.db().commit()
    response.headers["Cache-Control"] = "no-store"
    return response
