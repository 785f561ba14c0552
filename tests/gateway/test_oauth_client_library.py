"""A real OAuth2 client library (requests-oauthlib, RFC 6749 client credentials) gets a token
from a running `predgate serve` and calls POST /v1/predict with it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from config import Settings
from tests.conftest import HOUSE
from tests.ratelimit_support import free_port
from tests.serving_support import start_serving

# What is tested is the OAuth2 exchange with a client library, which no database changes.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@dataclass(frozen=True)
class Served:
    base: str  # the running gateway's URL
    client_id: str
    client_secret: str
    model: str  # the model the partner client's tenant is served


@pytest.fixture
def served(
    settings: Settings, predgate: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """`predgate serve` over the demo, and a partner OAuth client of its first tenant."""
    # The test server listens on plain HTTP on loopback; production sits behind TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    demo = json.loads(predgate("demo", "--json").stdout)
    tenant = demo["tenants"][0]["tenant"]
    created = json.loads(
        predgate("clients", "create", "--role", "partner", "--tenant", tenant, "--json").stdout
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server, _ = start_serving(
        settings,
        port=port,
        # The metadata advertises URLs under the configured issuer, never the request's Host.
        env={"PREDGATE_OAUTH_ISSUER": base, "PREDGATE_INSTANCE_ID": "oauth-client-test"},
    )
    try:
        yield Served(
            base, created["client_id"], created["client_secret"], demo["tenants"][0]["model"]
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_requests_oauthlib_gets_a_token_and_predicts(served: Served) -> None:
    metadata = requests.get(
        f"{served.base}/.well-known/oauth-authorization-server", timeout=5
    ).json()
    oauth = OAuth2Session(client=BackendApplicationClient(client_id=served.client_id))
    token = oauth.fetch_token(
        token_url=metadata["token_endpoint"],
        client_id=served.client_id,
        client_secret=served.client_secret,
        timeout=10,
    )
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"]) == {"predict", "model:read", "receipts:read"}
    response = oauth.post(f"{served.base}/v1/predict", json=HOUSE, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model"]["name"] == served.model
    revoked = requests.post(
        metadata["revocation_endpoint"],
        data={"token": token["access_token"]},
        auth=(served.client_id, served.client_secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    refused = oauth.post(f"{served.base}/v1/predict", json=HOUSE, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"


def test_authlib_client_fetches_and_refetches_its_token(served: Served) -> None:
    # The README's Python example: Authlib's requests client, which fetches a new token by
    # itself when the current one expires, if told the grant is client_credentials.
    from authlib.integrations.requests_client import OAuth2Session as AuthlibSession

    client = AuthlibSession(
        served.client_id,
        served.client_secret,
        token_endpoint=f"{served.base}/oauth/token",
        grant_type="client_credentials",
    )
    first = client.fetch_token()
    answer = client.post(f"{served.base}/v1/predict", json=HOUSE, timeout=10)
    assert answer.status_code == 200, answer.text
    # The token runs out: the next call fetches a new one before it is sent.
    client.token["expires_at"] = 0
    again = client.post(f"{served.base}/v1/predict", json=HOUSE, timeout=10)
    assert again.status_code == 200, again.text
    assert client.token["access_token"] != first["access_token"]
