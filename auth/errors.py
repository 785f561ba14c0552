"""Authentication and tenant errors, each with a stable code and the HTTP status it means."""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error this package raises.

    Over HTTP the problem's detail is the class's `public_detail` (a fixed sentence) when it
    has one, else the message when `public_message` is set, else a fixed sentence of the
    gateway's; messages may name what was asked for (a tenant, a key id) for the CLI and logs.
    """

    code = "auth_error"
    status = 400
    title = "Request refused"
    public_message = False
    public_detail: str | None = None


class AuthenticationFailed(AuthError):
    """The credential is missing, malformed, unknown, wrong, expired or revoked."""

    status = 401
    title = "Authentication failed"

    def __init__(
        self, code: str, detail: str, *, key_id: str | None = None, tenant_id: int | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        # The claimed key id (public, for the audit record) and, once the secret verified,
        # the key's tenant.
        self.key_id = key_id
        self.tenant_id = tenant_id


class CredentialsInQuery(AuthError):
    """A credential was sent in the URL, where proxies and logs would keep it."""

    code = "credentials_in_query"
    status = 400
    title = "Credentials are not accepted in the query string"


class TenantSuspended(AuthError):
    """The caller's tenant is suspended."""

    code = "tenant_suspended"
    status = 403
    title = "Tenant suspended"

    def __init__(self, detail: str, *, key_id: str | None = None, tenant_id: int | None = None):
        super().__init__(detail)
        self.key_id = key_id
        self.tenant_id = tenant_id


class TenantNotFound(AuthError):
    """No tenant has that name."""

    code = "tenant_not_found"
    status = 404
    title = "Tenant not found"
    public_detail = "No tenant has this name."


class TenantExists(AuthError):
    """A tenant with that name exists already."""

    code = "tenant_exists"
    status = 409
    title = "Tenant exists"
    public_detail = "A tenant with this name exists already."


class KeyNotFound(AuthError):
    """No API key has that id."""

    code = "key_not_found"
    status = 404
    title = "API key not found"
    public_detail = "No API key has this id."


class KeyAlreadyRotated(AuthError):
    """The key has a successor already: a rotation lineage is a chain, one successor per key,
    so only its newest key can be rotated (a second successor would fork the lineage and
    overwrite `replaced_by`). The message names the successor to rotate instead."""

    code = "key_already_rotated"
    status = 409
    title = "API key already rotated"
    public_message = True


class KeyAlreadyRevoked(AuthError):
    """The key is revoked already; a second revocation changes nothing and records nothing."""

    code = "key_already_revoked"
    status = 409
    title = "API key already revoked"
    public_detail = "This API key is revoked already; nothing was changed."


class ClientAlreadyRevoked(AuthError):
    """The OAuth client is revoked already; a second revocation changes nothing."""

    code = "client_already_revoked"
    status = 409
    title = "OAuth client already revoked"
    public_detail = "This OAuth client is revoked already; nothing was changed."


class InvalidArgument(AuthError):
    """An administrative argument is malformed (name, duration, label) or not allowed in the
    current state (rotating a revoked key).

    The message is the problem's detail: it states the rule that was broken, in words built
    from field names and limits only, never from a submitted value."""

    code = "invalid_argument"
    status = 422
    title = "Invalid argument"
    public_message = True


class NoModelAssigned(AuthError):
    """The tenant has no model assigned yet."""

    code = "no_model_assigned"
    status = 409
    title = "No model assigned"


# RFC 6750 §3.1 error codes for a refused bearer credential (API keys are bearer credentials too).
_BEARER_ERRORS = {
    "missing_credentials": None,  # no credential at all: the challenge names no error
    "malformed_credentials": "invalid_request",
    "insufficient_scope": "insufficient_scope",
}
BEARER_REALM = "predgate"


def bearer_challenge(code: str) -> str:
    """The RFC 6750 WWW-Authenticate challenge for a credential refused with `code` (401s, and
    the 403 of a credential without the scope a route needs)."""
    error = _BEARER_ERRORS.get(code, "invalid_token")
    if error is None:
        return f'Bearer realm="{BEARER_REALM}"'
    return f'Bearer realm="{BEARER_REALM}", error="{error}"'
