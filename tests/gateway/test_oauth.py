"""POST /oauth/token, /oauth/revoke, /oauth/introspect, the JWKS and the metadata; clients and
signing keys from the CLI. Every token request is audited as token.issue."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from audit.query import AuditFilter, query_records
from auth.tenants import set_tenant_status
from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.test_audit_http import record_for
from tests.oauth_support import issue_client, request_token, token_headers


def _verify(client: FlaskClient, settings: Settings, token: str) -> dict[str, Any]:
    jwks = client.get("/.well-known/jwks.json").json
    assert jwks is not None
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = pyjwt.decode(
        token,
        pyjwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience=settings.oauth_audience,
        issuer=settings.oauth_issuer,
    )
    return claims


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_issue_an_rfc9068_token(
    client: FlaskClient, session: Session, settings: Settings, world: World, method: str
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    form = {"grant_type": "client_credentials"}
    auth = None
    if method == "client_secret_post":
        form.update(client_id=issued.client.client_id, client_secret=issued.client_secret)
    else:
        auth = (issued.client.client_id, issued.client_secret)
    response = client.post("/oauth/token", data=form, auth=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body is not None
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body
    assert body["expires_in"] == settings.token_lifetime_seconds
    token = body["access_token"]
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"]
    claims = _verify(client, settings, token)
    assert claims["sub"] == claims["client_id"] == issued.client.client_id
    assert claims["tenant"] == "acme"
    assert claims["scope"] == "model:read predict receipts:read"
    assert claims["exp"] - claims["iat"] == settings.token_lifetime_seconds
    assert claims["jti"]
    record = record_for(session, response)
    assert record["event_type"] == "token.issue"
    assert record["outcome"] == "success"
    assert record["principal_id"] == issued.client.client_id
    assert record["tenant_id"] is not None
    assert issued.client_secret not in json.dumps(record)
    predicted = client.post("/v1/predict", json=HOUSE, headers=bearer(token))
    assert predicted.status_code == 200
    assert "key-minute" in predicted.headers["RateLimit-Policy"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        # An unknown id is answered as a wrong secret is: which ids exist is not revealed.
        ({"client_id": "pgc_0000000000000000"}, 401, "invalid_client"),
        ({"client_id": "not-a-client"}, 401, "invalid_client"),
        ({"scope": "admin"}, 400, "invalid_scope"),
        ({"scope": "predict audit:read"}, 400, "invalid_scope"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_refusals_are_oauth_errors_and_audited(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    world: World,
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    data = {
        "grant_type": "client_credentials",
        "client_id": issued.client.client_id,
        "client_secret": issued.client_secret,
        **form,
    }
    response = client.post("/oauth/token", data=data)
    assert response.status_code == status
    assert response.json is not None
    assert response.json["error"] == error
    assert "access_token" not in response.json
    record = record_for(session, response)
    assert record["event_type"] == "token.issue"
    assert record["outcome"] == "failure"
    assert record["reason_code"] == error


def test_scope_is_narrowed_to_what_was_asked(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    token = request_token(client, issued, scope="model:read")
    assert token["scope"] == "model:read"
    headers = bearer(str(token["access_token"]))
    assert client.get("/v1/model", headers=headers).status_code == 200
    refused = client.post("/v1/predict", json=HOUSE, headers=headers)
    assert refused.status_code == 403
    assert refused.json is not None
    assert refused.json["code"] == "insufficient_scope"
    assert record_for(session, refused)["reason_code"] == "insufficient_scope"


def test_revoked_client_gets_no_token_and_suspended_tenant_is_refused(
    client: FlaskClient, session: Session, settings: Settings, world: World, predgate
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    token = request_token(client, issued)["access_token"]
    set_tenant_status(session, "acme", status="suspended")
    session.commit()
    refused = client.get("/v1/model", headers=bearer(str(token)))
    assert refused.status_code == 403
    assert refused.json is not None
    assert refused.json["code"] == "tenant_suspended"
    predgate("clients", "revoke", issued.client.client_id)
    again = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client.client_id, issued.client_secret),
    )
    assert again.status_code == 401
    assert again.json is not None
    assert again.json["error"] == "invalid_client"


def test_revoking_another_clients_token_is_a_no_op(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    owner = issue_client(session, settings, role="partner", tenant="acme")
    other = issue_client(session, settings, role="partner", tenant="globex")
    token = str(request_token(client, owner)["access_token"])
    response = client.post(
        "/oauth/revoke", data={"token": token}, auth=(other.client.client_id, other.client_secret)
    )
    assert response.status_code == 200
    assert client.get("/v1/model", headers=bearer(token)).status_code == 200
    wrong = client.post(
        "/oauth/revoke", data={"token": token}, auth=(owner.client.client_id, "wrong")
    )
    assert wrong.status_code == 401
    assert record_for(session, wrong)["reason_code"] == "invalid_client"
    garbage = client.post(
        "/oauth/revoke",
        data={"token": "garbage"},
        auth=(owner.client.client_id, owner.client_secret),
    )
    assert garbage.status_code == 200


def test_introspection_is_for_admins(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    partner = issue_client(session, settings, role="partner", tenant="acme")
    token = str(request_token(client, partner)["access_token"])
    admin = token_headers(client, session, settings, role="admin")
    active = client.post("/oauth/introspect", data={"token": token}, headers=admin)
    assert active.status_code == 200
    assert active.json is not None
    assert active.json["active"] is True
    assert active.json["client_id"] == partner.client.client_id
    assert active.json["tenant"] == "acme"
    record = record_for(session, active)
    assert record["event_type"] == "token.introspect"
    assert record["auth_method"] == "jwt"
    for headers in (bearer(token), bearer(world.acme_key)):
        refused = client.post("/oauth/introspect", data={"token": token}, headers=headers)
        assert refused.status_code == 403
    client.post(
        "/oauth/revoke",
        data={"token": token},
        auth=(partner.client.client_id, partner.client_secret),
    )
    inactive = client.post("/oauth/introspect", data={"token": token}, headers=admin)
    assert inactive.json == {"active": False}
    junk = client.post("/oauth/introspect", data={"token": "x.y.z"}, headers=admin)
    assert junk.json == {"active": False}


def test_metadata_document(client: FlaskClient, settings: Settings) -> None:
    document = client.get("/.well-known/oauth-authorization-server").json
    assert document is not None
    assert document["issuer"] == settings.oauth_issuer
    assert document["token_endpoint"].endswith("/oauth/token")
    assert document["jwks_uri"].endswith("/.well-known/jwks.json")
    assert document["grant_types_supported"] == ["client_credentials"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


def test_signing_key_rotation_keeps_old_tokens_valid(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    world: World,
    predgate: Callable[..., Any],
) -> None:
    issued = issue_client(session, settings, role="partner", tenant="acme")
    old_token = str(request_token(client, issued)["access_token"])
    old_kid = pyjwt.get_unverified_header(old_token)["kid"]
    result = predgate("signing-keys", "rotate")
    assert "signs from now on" in result.output
    new_token = str(request_token(client, issued)["access_token"])
    new_kid = pyjwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid
    kids = {k["kid"] for k in (client.get("/.well-known/jwks.json").json or {})["keys"]}
    assert kids == {old_kid, new_kid}
    for token in (old_token, new_token):
        assert client.get("/v1/model", headers=bearer(token)).status_code == 200
    listed = json.loads(predgate("signing-keys", "list", "--json").output)
    assert {k["kid"]: k["state"] for k in listed} == {new_kid: "active", old_kid: "retired"}
    session.rollback()
    acts = query_records(session, AuditFilter(event_type="signing_key.rotate"))
    assert len(acts) == 1
    assert acts[0]["outcome"] == "success"


def test_cli_clients_lifecycle_is_audited(
    client: FlaskClient, session: Session, world: World, predgate: Callable[..., Any]
) -> None:
    created = json.loads(
        predgate("clients", "create", "--role", "partner", "--tenant", "acme", "--json").output
    )
    assert {"client_id", "client_secret", "role", "tenant", "scopes"} <= set(created)
    cid = created["client_id"]
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cid, created["client_secret"]),
    )
    assert token.status_code == 200
    listed = json.loads(predgate("clients", "list", "--json").output)
    assert [c["client_id"] for c in listed] == [cid]
    assert created["client_secret"] not in json.dumps(listed)
    rotated = json.loads(predgate("clients", "rotate-secret", cid, "--json").output)
    assert rotated["client_secret"] != created["client_secret"]
    predgate("clients", "revoke", cid)
    refused = predgate("clients", "create", "--role", "admin", "--tenant", "acme", ok=False)
    assert refused.exit_code != 0
    narrowed = predgate("clients", "create", "--role", "compliance", "--scopes", "audit:read")
    assert "client secret:" in narrowed.output
    session.rollback()
    events = [
        (r["event_type"], r["outcome"], r["reason_code"])
        for r in query_records(session, AuditFilter())
        if r["event_type"].startswith("client.")
    ]
    assert events == [
        ("client.create", "success", None),
        ("client.rotate_secret", "success", None),
        ("client.revoke", "success", None),
        ("client.create", "failure", "invalid_argument"),
        ("client.create", "success", None),
    ]
