"""RFC 8414 metadata: the issuer and every advertised URL come from PREDGATE_OAUTH_ISSUER, never
from the request's Host; the document passes Authlib's validator; tokens carry that issuer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import jwt as pyjwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from flask import Flask
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import World, bearer
from tests.oauth_support import issue_client, request_token

ISSUER = "https://gw.example.com"
URL_MEMBERS = ("token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint")


@pytest.fixture
def public_app(settings: Settings, make_app: Callable[..., Flask]) -> Flask:
    """The gateway configured with a public https base URL."""
    return make_app(replace(settings, oauth_issuer=ISSUER))


def test_metadata_validates_with_authlib(public_app: Flask) -> None:
    document = public_app.test_client().get("/.well-known/oauth-authorization-server").json
    assert document is not None
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == ISSUER
    assert document["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert document["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert document["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert document["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert document["grant_types_supported"] == ["client_credentials"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Host": "evil.example"}, id="host"),
        pytest.param({"X-Forwarded-Host": "evil.example"}, id="x-forwarded-host"),
        pytest.param({"Forwarded": "host=evil.example;proto=http"}, id="forwarded"),
    ],
)
def test_no_url_comes_from_the_request(public_app: Flask, headers: dict[str, str]) -> None:
    client = public_app.test_client()
    response = client.get(
        "/.well-known/oauth-authorization-server",
        base_url="http://evil.example",
        headers=headers,
    )
    assert response.status_code == 200
    assert "evil.example" not in response.get_data(as_text=True)
    document = response.json
    assert document is not None
    for member in URL_MEMBERS:
        assert document[member].startswith(f"{ISSUER}/"), member


def test_default_issuer_is_a_url_the_validator_accepts(settings: Settings, client) -> None:
    # The zero-config issuer is plain http on loopback, which RFC 8252 and Authlib allow.
    document = client.get("/.well-known/oauth-authorization-server").json
    assert document is not None
    assert document["issuer"] == settings.oauth_issuer == "http://127.0.0.1:8000"
    AuthorizationServerMetadata(document).validate()


def test_tokens_carry_the_configured_issuer_and_are_accepted(
    public_app: Flask, session: Session, settings: Settings, world: World
) -> None:
    client = public_app.test_client()
    issued = issue_client(session, settings, role="partner", tenant="acme")
    token = str(request_token(client, issued)["access_token"])
    assert pyjwt.decode(token, options={"verify_signature": False})["iss"] == ISSUER
    assert client.get("/v1/model", headers=bearer(token)).status_code == 200
