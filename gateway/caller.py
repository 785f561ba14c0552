"""Who is calling: the verified principal, resolved once per request from a header credential.

Every consumer (views, the rate limiter and the audit hook) goes through ``resolve_caller`` so
the credential is verified exactly once and the tenant can only come from it. A bearer
credential starting with ``pgk_`` (or any X-API-Key) is an API key; any other bearer credential
is an OAuth2 access token (gateway.access_tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Flask, g, request

from auth.api_keys import KEY_PREFIX, authenticate_api_key
from auth.errors import AuthenticationFailed, AuthError, CredentialsInQuery, TenantSuspended
from auth.principal import Principal
from gateway.access_tokens import authenticate_token
from gateway.audit_notes import note_audit
from gateway.errors import ApiError
from gateway.runtime import db_session, get_runtime

# Query parameters that look like a credential: refused before anything else happens.
CREDENTIAL_QUERY_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "key", "access_token", "token", "x-api-key", "authorization"}
)

P = ParamSpec("P")
R = TypeVar("R")


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


def resolve_caller() -> Principal:
    """Verify the request's credential once and return its principal."""
    cached = g.get("principal")
    if isinstance(cached, Principal):
        return cached
    failed = g.get("caller_failure")
    if isinstance(failed, AuthError):
        raise failed  # refused once already (e.g. by the rate limiter's lookup): same answer
    try:
        principal = _authenticate()
    except AuthError as failure:
        g.caller_failure = failure
        raise
    g.principal = principal
    return principal


def _authenticate() -> Principal:
    credential = presented_credential()
    if not credential.startswith(KEY_PREFIX) and "Authorization" in request.headers:
        return _authenticate_jwt(credential)
    session = db_session()
    try:
        principal = authenticate_api_key(session, get_runtime().settings.secret_key, credential)
    except (AuthenticationFailed, TenantSuspended) as failure:
        # The claimed key id is public; the tenant only once the secret verified.
        if failure.key_id is not None:
            note_audit(principal_type="api_key", principal_id=failure.key_id, auth_method="api_key")
        if failure.tenant_id is not None:
            note_audit(tenant_id=failure.tenant_id)
        raise
    session.commit()
    return principal


def _authenticate_jwt(credential: str) -> Principal:
    try:
        principal = authenticate_token(credential)
    except (AuthenticationFailed, TenantSuspended) as failure:
        note_audit(auth_method="jwt")
        if failure.key_id is not None:  # set only once the token's signature verified
            note_audit(principal_type="client", principal_id=failure.key_id)
        if failure.tenant_id is not None:
            note_audit(tenant_id=failure.tenant_id)
        raise
    db_session().commit()
    return principal


def current_principal() -> Principal | None:
    """The principal if one was verified during this request (for logs and audit)."""
    principal = g.get("principal")
    return principal if isinstance(principal, Principal) else None


def require_scope(scope: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Refuse the view unless the verified caller holds the scope."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            principal = resolve_caller()
            if not principal.has_scope(scope):
                raise ApiError(
                    403,
                    "insufficient_scope",
                    "Forbidden",
                    "This credential is not allowed to use this operation.",
                )
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper

    return decorator


def _refuse_credentials_in_query() -> None:
    if any(name.lower() in CREDENTIAL_QUERY_PARAMS for name in request.args):
        raise CredentialsInQuery("credentials in the query string")


def init_caller(app: Flask) -> None:
    """Refuse URL credentials on every route, before any view or limiter runs."""
    app.before_request(_refuse_credentials_in_query)
