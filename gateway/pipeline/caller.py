"""Who is calling: the credential from the request's headers, verified once, into a principal.

A bearer credential starting with ``pgk_`` (or any X-API-Key) is an API key, verified against
the worker's cached key credentials; any other bearer credential is an OAuth2 access token
(gateway.pipeline.tokens). The tenant can only come from what verified.
"""

from __future__ import annotations

from flask import request

from audit.draft import AuditDraft
from auth.api_keys import KEY_PREFIX, authenticate_api_key
from auth.errors import AuthenticationFailed, CredentialsInQuery, TenantSuspended
from auth.principal import Principal
from db.base import utcnow
from gateway.pipeline.tokens import authenticate_token
from gateway.runtime import Runtime

MAX_CLIENT_ID_CHARS = 64
# Query parameters that look like a credential: refused before anything else happens.
CREDENTIAL_QUERY_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "key", "access_token", "token", "x-api-key", "authorization"}
)


def refuse_credentials_in_url() -> None:
    """400 credentials_in_query when the query string carries something like a credential."""
    if not request.query_string:
        return
    if any(name.lower() in CREDENTIAL_QUERY_PARAMS for name in request.args):
        raise CredentialsInQuery("credentials in the query string")


def presented_credential() -> str:
    """The raw credential from Authorization: Bearer or X-API-Key; never from the URL."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed(
                "malformed_credentials", "Use 'Authorization: Bearer <key>'."
            )
        return value.strip()
    api_key = request.headers.get("X-API-Key")
    if api_key is not None and api_key.strip():
        return api_key.strip()
    raise AuthenticationFailed("missing_credentials", "No credential was presented.")


def oauth_client_id() -> str | None:
    """The client id an OAuth client's request names (HTTP Basic or the form), unverified:
    only a rate-limit counter's name, so cut to a bounded length."""
    basic = request.authorization
    named = basic.username if basic is not None and basic.type == "basic" else None
    named = named or request.form.get("client_id")
    return named[:MAX_CLIENT_ID_CHARS] if named else None


def resolve_caller(runtime: Runtime, audit: AuditDraft) -> Principal:
    """Verify the request's credential and return its principal; the audit draft learns who
    called, or as much as a refused credential proved of itself."""
    credential = presented_credential()
    is_token = not credential.startswith(KEY_PREFIX) and "Authorization" in request.headers
    method = "jwt" if is_token else "api_key"
    try:
        if is_token:
            principal = authenticate_token(credential)
        else:
            principal = authenticate_api_key(
                credential,
                server_secret=runtime.settings.secret_key,
                credential_of=runtime.directory.key_credential,
                now=utcnow(),
            )
            runtime.key_use.note(principal.principal_id)
    except (AuthenticationFailed, TenantSuspended) as failure:
        # A claimed key id is public; a client id only once the token's signature verified.
        claimed = failure.key_id is not None
        audit.identify(
            principal_type=("client" if is_token else "api_key") if claimed else None,
            principal_id=failure.key_id,
            auth_method=method if claimed or is_token else None,
            tenant_id=failure.tenant_id,
        )
        raise
    audit.identify(
        principal_type=principal.principal_type,
        principal_id=principal.principal_id,
        auth_method=principal.auth_method,
        tenant_id=principal.tenant_id,
    )
    return principal
