"""The documented shapes of the OAuth2 endpoints: their form bodies and their answers.

Documentation only: Authlib parses the token and revocation forms itself, and token and
revocation refuse in RFC 6749 error JSON (`OAuthError`), not problem+json.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from spectree import Response

from gateway.schemas import Problem


class ClientCredentials(BaseModel):
    """client_secret_post: the client's credentials in the form instead of HTTP Basic."""

    client_id: str | None = Field(default=None, description="With client_secret_post only.")
    client_secret: str | None = Field(default=None, description="With client_secret_post only.")


class TokenRequest(ClientCredentials):
    grant_type: Literal["client_credentials"]
    scope: str | None = Field(
        default=None,
        description="Space-separated scopes, a subset of the client's; default: all of them.",
    )


class RevocationRequest(ClientCredentials):
    token: str = Field(description="An access token this client was issued.")
    token_type_hint: Literal["access_token"] | None = None


class IntrospectionRequest(BaseModel):
    token: str


class TokenResponse(BaseModel):
    access_token: str = Field(description="An RFC 9068 JWT; send it as Authorization: Bearer.")
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    """RFC 6749 section 5.2 error answer."""

    error: str = Field(description="invalid_request, invalid_client, invalid_grant, ...")
    error_description: str | None = None


class Introspection(BaseModel):
    """RFC 7662: `active`, and when it is true the token's claims (scope, client_id, sub, aud,
    iss, exp, iat, jti), its tenant and its client's role."""

    model_config = ConfigDict(extra="allow")

    active: bool


class KeySet(BaseModel):
    """RFC 7517 JWK set of public keys."""

    keys: list[dict[str, Any]]


class ServerMetadata(BaseModel):
    """RFC 8414 authorisation server metadata; every URL is built from the issuer."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str
    introspection_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    introspection_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    access_token_signing_alg_values_supported: list[str]


# A client whose failed attempts are used up is refused before it is checked: 429 problem+json.
OAUTH_ERRORS: dict[str, Any] = {"HTTP_400": OAuthError, "HTTP_401": OAuthError, "HTTP_429": Problem}
TOKEN_RESPONSES = Response(HTTP_200=TokenResponse, **OAUTH_ERRORS)
# RFC 7009: 200 with an empty body whatever the token was.
REVOCATION_RESPONSES = Response("HTTP_200", **OAUTH_ERRORS)
INTROSPECTION_RESPONSES = Response(HTTP_200=Introspection, HTTP_401=Problem, HTTP_403=Problem)
JWKS_RESPONSES = Response(HTTP_200=KeySet)
METADATA_RESPONSES = Response(HTTP_200=ServerMetadata)
