"""The edge a hostile client meets: RFC 6750 challenges, headers every answer carries, no stray
routes, and refused credentials limited per address on every route that checks one (the OAuth
endpoints also per client id, refused up front once the budget is spent)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

import auth.clients
from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import record_for
from tests.gateway.conftest import LimitedApp
from tests.gateway.test_errors import assert_problem
from tests.oauth_support import issue_client, token_headers

# Edge checks (sizes, framing, headers) happen before any database work: one backend suffices.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

UNKNOWN_KEY = "pgk_0123456789abcdef_" + "A" * 43
CREDENTIAL_ROUTES = [
    ("POST", "/v1/predict"),
    ("GET", "/v1/model"),
    ("GET", "/admin/v1/tenants"),
    ("GET", "/audit/v1/records"),
]


@pytest.mark.parametrize(("method", "path"), CREDENTIAL_ROUTES)
@pytest.mark.parametrize(
    ("headers", "code", "challenge"),
    [
        ({}, "missing_credentials", 'Bearer realm="predgate"'),
        (
            {"Authorization": "Basic abc"},
            "malformed_credentials",
            'Bearer realm="predgate", error="invalid_request"',
        ),
        (bearer(UNKNOWN_KEY), "invalid_key", 'Bearer realm="predgate", error="invalid_token"'),
        (
            bearer("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
            None,
            'Bearer realm="predgate", error="invalid_token"',
        ),
    ],
)
def test_every_401_carries_an_rfc6750_challenge(
    client: FlaskClient,
    method: str,
    path: str,
    headers: dict[str, str],
    code: str | None,
    challenge: str,
) -> None:
    response = client.open(path, method=method, json=HOUSE, headers=headers)
    assert response.status_code == 401
    if code is not None:
        assert response.get_json(force=True)["code"] == code
    assert response.headers["WWW-Authenticate"] == challenge


def test_a_credential_without_the_scope_is_challenged_for_it(
    client: FlaskClient, world: World
) -> None:
    response = client.get("/admin/v1/tenants", headers=bearer(world.acme_key))
    assert_problem(response, 403, "insufficient_scope")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="predgate", error="insufficient_scope"'
    )


def test_every_answer_says_nosniff_and_secrets_are_never_cached(
    client: FlaskClient, world: World, session: Session, settings: Settings
) -> None:
    admin = token_headers(client, session, settings, role="admin")
    answers = {
        "predict": client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)),
        "problem": client.post("/v1/predict", json=HOUSE),
        "not found": client.get("/nowhere"),
        "key issued": client.post("/admin/v1/keys", json={"tenant": "acme"}, headers=admin),
        "audit": client.get(
            "/audit/v1/records",
            headers=token_headers(client, session, settings, role="compliance"),
        ),
        "openapi": client.get("/openapi.json"),
    }
    assert answers["key issued"].status_code == 201, answers["key issued"].get_data(as_text=True)
    for name, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
    for name in ("predict", "problem", "key issued", "audit"):
        assert answers[name].headers["Cache-Control"] == "no-store", name
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.headers["X-Content-Type-Options"] == "nosniff"
    assert "public" in jwks.headers["Cache-Control"]  # public keys may be cached


def test_there_is_no_static_route(client: FlaskClient) -> None:
    assert "static" not in {rule.endpoint for rule in client.application.url_map.iter_rules()}
    assert_problem(client.get("/static/anything.txt"), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), CREDENTIAL_ROUTES[2:])
def test_bad_credentials_are_limited_per_address_on_every_route(
    limited: LimitedApp, session: Session, method: str, path: str
) -> None:
    client = limited(unauthenticated_rate_limit="3/minute")
    for _ in range(3):
        assert_problem(
            client.open(path, method=method, headers=bearer(UNKNOWN_KEY)), 401, "invalid_key"
        )
    refused = client.open(path, method=method, headers=bearer(UNKNOWN_KEY))
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    record = record_for(session, refused)
    assert (record["http_status"], record["reason_code"]) == (429, "rate_limited")
    other = client.open(
        path, method=method, headers=bearer(UNKNOWN_KEY), environ_base={"REMOTE_ADDR": "10.0.0.7"}
    )
    assert_problem(other, 401, "invalid_key")


def _token(client: FlaskClient, client_id: str, secret: str, address: str = "127.0.0.1"):
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        environ_base={"REMOTE_ADDR": address},
    )


def test_wrong_client_secrets_are_limited_per_address_and_then_refused_up_front(
    limited: LimitedApp, session: Session, settings: Settings, world: World
) -> None:
    client = limited(unauthenticated_rate_limit="3/minute")
    issued = issue_client(session, settings, role="partner", tenant="acme")
    client_id = issued.client.client_id
    for _ in range(3):
        assert _token(client, client_id, "wrong").status_code == 401
    # The budget of failures is spent: even the right secret is not checked from here.
    refused = _token(client, client_id, issued.client_secret)
    assert_problem(refused, 429, "rate_limited")
    record = record_for(session, refused)
    assert (record["event_type"], record["route"], record["http_status"]) == (
        "ratelimit.exceeded",
        "/oauth/token",
        429,
    )
    # Revocation authenticates the client the same way and shares the budget.
    revoke = client.post(
        "/oauth/revoke", data={"token": "x", "client_id": client_id, "client_secret": "wrong"}
    )
    assert_problem(revoke, 429, "rate_limited")


def test_wrong_client_secrets_are_limited_per_client_id_across_addresses(
    limited: LimitedApp, session: Session, settings: Settings, world: World
) -> None:
    client = limited(unauthenticated_rate_limit="3/minute")
    issued = issue_client(session, settings, role="partner", tenant="acme")
    client_id = issued.client.client_id
    for number in range(3):
        assert _token(client, client_id, "wrong", address=f"10.0.0.{number + 1}").status_code == 401
    refused = _token(client, client_id, issued.client_secret, address="10.0.0.99")
    assert_problem(refused, 429, "rate_limited")
    assert refused.get_json()["code"] == "rate_limited"
    # Another client from a fresh address is not affected.
    other = issue_client(session, settings, role="partner", tenant="globex")
    answered = _token(client, other.client.client_id, other.client_secret, address="10.0.0.50")
    assert answered.status_code == 200


def test_known_and_unknown_client_ids_cost_the_same_work(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    revoked = issue_client(session, settings, role="partner", tenant="globex")
    auth.clients.revoke_client(session, revoked.client.client_id)
    session.commit()
    calls: list[str] = []
    original = auth.clients.hash_client_secret
    monkeypatch.setattr(
        auth.clients,
        "hash_client_secret",
        lambda *args: calls.append("hash") or original(*args),
    )
    statuses = {}
    for name, client_id in (
        ("known", issued.client.client_id),
        ("revoked", revoked.client.client_id),
        ("unknown", "pgc_00000000000000ff"),
        ("malformed", "not-a-client"),
    ):
        calls.clear()
        response = _token(client, client_id, "wrong-secret")
        statuses[name] = (response.status_code, response.get_json()["error"], len(calls))
    # The same answer, after the same hashing, whichever id was named.
    assert set(statuses.values()) == {(401, "invalid_client", 1)}, statuses


def test_oauth_works_behind_a_tls_terminating_proxy_and_refuses_plain_http(
    settings: Settings, session: Session, world: World, make_app
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    form = {
        "grant_type": "client_credentials",
        "client_id": issued.client.client_id,
        "client_secret": issued.client_secret,
    }
    public = {"Host": "api.example.com"}
    proxied = make_app(replace(settings, trusted_proxies=("127.0.0.0/8",))).test_client()
    answered = proxied.post(
        "/oauth/token",
        data=form,
        headers={**public, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"},
    )
    assert answered.status_code == 200, answered.get_data(as_text=True)
    assert record_for(session, answered)["source_ip"] == "203.0.113.5"
    # Plain HTTP to a public name, or a forwarded scheme from an untrusted peer: a clear 400.
    direct = make_app(settings).test_client()
    for response in (
        direct.post("/oauth/token", data=form, headers=public),
        direct.post("/oauth/token", data=form, headers={**public, "X-Forwarded-Proto": "https"}),
    ):
        assert_problem(response, 400, "https_required")
