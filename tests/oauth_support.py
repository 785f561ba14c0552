"""OAuth2 helpers for tests: create a client and get an access token through /oauth/token."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm
from sqlalchemy.orm import Session

from auth.clients import IssuedClient, create_client
from auth.signing_keys import active_private_key
from config import Settings


def issue_client(
    session: Session,
    settings: Settings,
    *,
    role: str,
    tenant: str | None = None,
    scopes: list[str] | None = None,
) -> IssuedClient:
    """Create an OAuth client with the domain function and commit it."""
    issued = create_client(
        session,
        settings.secret_key,
        role=role,
        tenant_name=tenant,
        scopes=scopes,
        created_by="test",
    )
    session.commit()
    return issued


def request_token(
    client: FlaskClient, issued: IssuedClient, *, scope: str | None = None
) -> dict[str, object]:
    """POST /oauth/token (client_credentials, client_secret_post); the JSON answer."""
    form = {
        "grant_type": "client_credentials",
        "client_id": issued.client.client_id,
        "client_secret": issued.client_secret,
    }
    if scope is not None:
        form["scope"] = scope
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def token_headers(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    *,
    role: str,
    tenant: str | None = None,
    scopes: list[str] | None = None,
) -> dict[str, str]:
    """A new OAuth client's access token as `{"Authorization": "Bearer <jwt>"}`."""
    issued = issue_client(session, settings, role=role, tenant=tenant, scopes=scopes)
    token = request_token(client, issued)
    return {"Authorization": f"Bearer {token['access_token']}"}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in a JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_claims(settings: Settings, client_id: str, tenant: str | None, **changes: Any) -> dict:
    """The claims the server would issue; `changes` replace them (None removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.oauth_issuer,
        "aud": settings.oauth_audience,
        "sub": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(12),
        "scope": "predict model:read",
        "tenant": tenant,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def forge_token(
    session: Session,
    settings: Settings,
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    key: Any = None,
) -> str:
    """A JWT signed with the server's active key (or `key`); `header` replaces header fields
    (None removes one). Tests may hand-craft tokens; the product never does."""
    signing = active_private_key(session, settings.secret_key)
    session.commit()
    fields: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt", "kid": signing.kid}
    fields.update(header or {})
    fields = {name: value for name, value in fields.items() if value is not None}
    private = key if key is not None else load_pem_private_key(signing.private_pem, None)
    signing_input = unsigned_token(fields, claims).rsplit(".", 1)[0]
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), private)
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand, for algorithms PyJWT refuses to produce."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"
