"""The OAuth2 authorisation server: Authlib's Flask AuthorizationServer with the client
credentials grant, RFC 9068 JWT access tokens (Authlib's JWTBearerTokenGenerator, signed with
the database's active ES256 key) and RFC 7009 revocation onto the (iss, jti) denylist.

One server per app (in ``app.extensions``): its token generator carries that app's issuer,
audience and lifetime.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask, current_app
from joserfc.jwk import ECKey, KeySet

from auth.clients import ClientGrant, client_grant, verify_client_secret
from auth.signing_keys import active_private_key
from auth.tokens import expiry_of, revoke_token
from config import Settings
from gateway.context import current_context
from gateway.pipeline.tokens import decode_access_token

EXTENSION_KEY = "predgate.oauth"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Client(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a client row: confidential, client credentials only, no redirects."""

    def __init__(self, grant: ClientGrant) -> None:
        self.grant = grant

    def get_client_id(self) -> str:
        return self.grant.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes the client holds; all of its grant when none were asked for."""
        if not scope:
            return " ".join(sorted(self.grant.scopes))
        return " ".join(s for s in scope_to_list(scope) if s in self.grant.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        ctx = current_context()
        return verify_client_secret(
            ctx.db(), ctx.runtime.settings.secret_key, self.grant.client_id, client_secret
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """Client credentials; a requested scope outside the client's grant is invalid_scope."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        requested = set(scope_to_list(self.request.payload.scope) or [])
        client = self.request.client
        assert isinstance(client, Client)
        if not requested <= client.grant.scopes:
            raise InvalidScopeError()


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 tokens: typ at+jwt, kid of the active key, aud, tenant; no refresh token."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            issuer=settings.oauth_issuer,
            alg=settings.jwt_algorithm,
            expires_generator=lambda _client, _grant_type: settings.token_lifetime_seconds,
        )
        self.settings = settings

    def get_jwks(self) -> KeySet:
        private = active_private_key(current_context().db(), self.settings.secret_key)
        return KeySet([ECKey.import_key(private.private_pem, {"kid": private.kid})])

    def get_audiences(self, client: Client, user: Any, scope: str) -> str:
        return self.settings.oauth_audience

    def get_extra_claims(
        self, client: Client, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        return {"tenant": client.grant.tenant_name}

    def generate(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = super().generate(
            grant_type,
            client,
            user=user,
            scope=client.get_allowed_scope(scope),
            expires_in=expires_in,
            include_refresh_token=False,
        )
        return token


class TokenRevocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: a client revokes its own access tokens; anything else is a silent no-op."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> dict[str, Any] | None:
        return decode_access_token(token_string)

    def authenticate_token(self, request: Any, client: Client) -> dict[str, Any] | None:
        self.check_params(request, client)
        claims = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if claims is None or claims.get("client_id") != client.get_client_id():
            current_context().audit.details["revoked"] = False
            return None  # unknown, invalid or another client's token: 200 and nothing happens
        return claims

    def revoke_token(self, token: dict[str, Any], request: Any) -> None:
        ctx = current_context()
        revoke_token(
            ctx.db(),
            issuer=str(token["iss"]),
            jti=str(token["jti"]),
            client_id=str(token["client_id"]),
            expires_at=expiry_of(token),
        )
        ctx.audit.details.update(revoked=True, jti=str(token["jti"]))


def _query_client(client_id: str) -> Client | None:
    grant = client_grant(current_context().db(), client_id)
    if grant is None or grant.revoked:
        return None
    return Client(grant)


def _save_token(token: dict[str, Any], request: Any) -> None:
    """JWTs are self-contained: nothing to store; the audit record names the client."""
    client = request.client
    assert isinstance(client, Client)
    audit = current_context().audit
    audit.identify(
        principal_type="client",
        principal_id=client.grant.client_id,
        auth_method="client_secret",
        tenant_id=client.grant.tenant_id,
    )
    audit.details.update(scope=token.get("scope"), expires_in=token.get("expires_in"))


def get_authorization_server(app: Flask | None = None) -> AuthorizationServer:
    """The app's authorisation server."""
    server = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(server, AuthorizationServer)
    return server


def init_oauth_server(app: Flask, settings: Settings) -> None:
    """Build this app's authorisation server."""
    server = AuthorizationServer()
    server.init_app(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", AccessTokenGenerator(settings))
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(TokenRevocation)
    app.extensions[EXTENSION_KEY] = server
