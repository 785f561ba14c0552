"""The OAuth2 authorisation server's protocol pieces, on Authlib's framework-free core: clients of
the client credentials grant, RFC 9068 JWT access tokens (Authlib's JWTBearerTokenGenerator,
signed with the database's active ES256 key) and RFC 7009 revocation onto the (iss, jti)
denylist. The gateway binds them to Flask and hands each request's `OAuthRequest` in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc.jwk import ECKey, KeySet
from sqlalchemy.orm import Session

from auth.clients import ClientGrant, client_grant, verify_client_secret
from auth.principal import ROLE_SCOPES
from auth.signing_keys import active_private_key
from auth.tokens import expiry_of, revoke_token

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# Where the gateway serves the protocol's endpoints, under the issuer URL.
ISSUE_PATH = "/oauth/token"
REVOCATION_PATH = "/oauth/revoke"
INTROSPECTION_PATH = "/oauth/introspect"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"


def server_metadata(issuer: str, *, algorithm: str) -> dict[str, Any]:
    """The RFC 8414 metadata document: the issuer and URLs under it, from configuration only
    (never from a request's Host)."""
    return {
        "issuer": issuer,
        "token_endpoint": issuer + ISSUE_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "introspection_endpoint": issuer + INTROSPECTION_PATH,
        "grant_types_supported": ["client_credentials"],
        # RFC 8414 requires the member; with no authorisation endpoint, the one response type
        # that fits is "none" (OAuth 2.0 Multiple Response Type Encoding Practices): nothing.
        "response_types_supported": ["none"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "scopes_supported": sorted(set().union(*ROLE_SCOPES.values())),
        "access_token_signing_alg_values_supported": [algorithm],
    }


class OAuthRequest(Protocol):
    """What the protocol needs from the HTTP request it serves (the gateway provides it)."""

    def session(self) -> Session:
        """The request's database session."""

    def server_secret(self) -> bytes:
        """The key of the credential hashes."""

    def decode_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this server would accept now, else None."""

    def note(self, **details: Any) -> None:
        """Add details to the request's audit record."""

    def identify(self, grant: ClientGrant) -> None:
        """The client that authenticated, for the request's audit record."""


class Client(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a client row: confidential, client credentials only, no redirects."""

    def __init__(self, grant: ClientGrant, request: OAuthRequest) -> None:
        self.grant = grant
        self._request = request

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
        matches = verify_client_secret(
            self._request.session(),
            self._request.server_secret(),
            self.grant.client_id,
            client_secret,
        )
        return matches and not self.grant.revoked

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def find_client(request: OAuthRequest, client_id: str) -> Client:
    """The client with that id. An unknown or revoked id gets a stand-in whose secret is checked
    with the same queries and hashing and never matches, so the time an answer takes does not
    tell which client ids exist."""
    grant = client_grant(request.session(), client_id)
    if grant is None or grant.revoked:
        grant = ClientGrant(
            client_id=client_id,
            role="none",
            scopes=frozenset(),
            tenant_id=None,
            tenant_name=None,
            tenant_status=None,
            tenant_rate_limit=None,
            revoked=True,
        )
    return Client(grant, request)


def token_issued(request: OAuthRequest, token: dict[str, Any], client: Client) -> None:
    """JWTs are self-contained: nothing is stored; the audit record names the client."""
    request.identify(client.grant)
    request.note(scope=token.get("scope"), expires_in=token.get("expires_in"))


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

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithm: str,
        lifetime_seconds: int,
        current_request: Callable[[], OAuthRequest],
    ) -> None:
        super().__init__(
            issuer=issuer,
            alg=algorithm,
            expires_generator=lambda _client, _grant_type: lifetime_seconds,
        )
        self.audience = audience
        self._current_request = current_request

    def get_jwks(self) -> KeySet:
        request = self._current_request()
        private = active_private_key(request.session(), request.server_secret())
        return KeySet([ECKey.import_key(private.private_pem, {"kid": private.kid})])

    def get_audiences(self, client: Client, user: Any, scope: str) -> str:
        return self.audience

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
        return self._oauth_request().decode_token(token_string)

    def authenticate_token(self, request: Any, client: Client) -> dict[str, Any] | None:
        self.check_params(request, client)
        claims = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if claims is None or claims.get("client_id") != client.get_client_id():
            self._oauth_request().note(revoked=False)
            return None  # unknown, invalid or another client's token: 200 and nothing happens
        return claims

    def revoke_token(self, token: dict[str, Any], request: Any) -> None:
        oauth_request = self._oauth_request()
        revoke_token(
            oauth_request.session(),
            issuer=str(token["iss"]),
            jti=str(token["jti"]),
            client_id=str(token["client_id"]),
            expires_at=expiry_of(token),
        )
        oauth_request.note(revoked=True, jti=str(token["jti"]))

    def _oauth_request(self) -> OAuthRequest:
        # The server that registered this endpoint knows the request being served.
        current: OAuthRequest = self.server.current_oauth_request()
        return current
