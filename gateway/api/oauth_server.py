"""The OAuth2 authorisation server bound to Flask: Authlib's AuthorizationServer with the
protocol pieces of `auth.oauth`, each request's database session and audit record handed in.

One server per app (in ``app.extensions``): its token generator carries that app's issuer,
audience and lifetime.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from flask import Flask, current_app
from sqlalchemy.orm import Session

from auth.clients import ClientGrant
from auth.oauth import (
    AccessTokenGenerator,
    Client,
    ClientCredentialsGrant,
    OAuthRequest,
    TokenRevocation,
    find_client,
    token_issued,
)
from config import Settings
from gateway.context import current_context
from gateway.pipeline.tokens import decode_access_token

EXTENSION_KEY = "predgate.oauth"


class GatewayOAuthRequest:
    """The current request as the OAuth protocol code sees it (auth.oauth.OAuthRequest)."""

    def session(self) -> Session:
        return current_context().db()

    def server_secret(self) -> bytes:
        return current_context().runtime.settings.secret_key

    def decode_token(self, token: str) -> dict[str, Any] | None:
        return decode_access_token(token)

    def note(self, **details: Any) -> None:
        current_context().audit.details.update(details)

    def identify(self, grant: ClientGrant) -> None:
        current_context().audit.identify(
            principal_type="client",
            principal_id=grant.client_id,
            auth_method="client_secret",
            tenant_id=grant.tenant_id,
        )


class GatewayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's Flask server, telling its endpoints which request they serve."""

    def current_oauth_request(self) -> OAuthRequest:
        return GatewayOAuthRequest()


def get_authorization_server(app: Flask | None = None) -> AuthorizationServer:
    """The app's authorisation server."""
    server = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(server, AuthorizationServer)
    return server


def init_oauth_server(app: Flask, settings: Settings) -> None:
    """Build this app's authorisation server."""
    server = GatewayAuthorizationServer()
    server.init_app(
        app,
        query_client=lambda client_id: find_client(GatewayOAuthRequest(), client_id),
        save_token=_save_token,
    )
    server.register_token_generator(
        "default",
        AccessTokenGenerator(
            issuer=settings.oauth_issuer,
            audience=settings.oauth_audience,
            algorithm=settings.jwt_algorithm,
            lifetime_seconds=settings.token_lifetime_seconds,
            current_request=GatewayOAuthRequest,
        ),
    )
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(TokenRevocation)
    app.extensions[EXTENSION_KEY] = server


def _save_token(token: dict[str, Any], request: Any) -> None:
    client = request.client
    assert isinstance(client, Client)
    token_issued(GatewayOAuthRequest(), token, client)
