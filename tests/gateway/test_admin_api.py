"""Admin API: each route's answer, its one audit record (principal and what changed, committed
with the change), the database row, and the bad inputs it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import assert_client_record, record_for
from tests.oauth_support import token_headers


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


def tenant_row(session: Session, name: str) -> Any:
    session.rollback()
    return session.execute(
        text(
            "SELECT id, status, model_name, model_version, rate_limit FROM tenants WHERE name = :n"
        ),
        {"n": name},
    ).first()


def assert_admin_record(record: dict[str, Any], event_type: str, status: int) -> None:
    assert_client_record(record, event_type, status)
    assert record["route"].startswith("/admin/v1/")


def test_tenant_lifecycle(client: FlaskClient, admin, session: Session, world: World) -> None:
    created = client.post("/admin/v1/tenants", json={"name": "initech"}, headers=admin)
    assert created.status_code == 201
    assert created.json["tenant"] == "initech"
    assert created.json["status"] == "active"
    row = tenant_row(session, "initech")
    record = record_for(session, created)
    assert_admin_record(record, "tenant.create", 201)
    assert record["tenant_id"] == row.id
    assert record["details"] == {"tenant": "initech"}
    assert record["http_method"] == "POST"

    steps = [
        ("put", "/model", {"model": "iris@1"}, "tenant.assign", {"model": "iris@1"}),
        ("put", "/rate-limit", {"rate_limit": "10/minute"}, "tenant.set_limit", None),
        ("post", "/suspend", None, "tenant.suspend", {"status": "suspended"}),
        ("post", "/resume", None, "tenant.resume", {"status": "active"}),
    ]
    for method, suffix, body, event_type, details in steps:
        response = getattr(client, method)(
            f"/admin/v1/tenants/initech{suffix}", json=body, headers=admin
        )
        assert response.status_code == 200, response.json
        record = record_for(session, response)
        assert_admin_record(record, event_type, 200)
        assert record["tenant_id"] == row.id
        for key, value in (details or {}).items():
            assert record["details"][key] == value
    row = tenant_row(session, "initech")
    assert (row.status, row.model_name, row.model_version, row.rate_limit) == (
        "active",
        "iris",
        1,
        "10/minute",
    )

    listed = client.get("/admin/v1/tenants", headers=admin)
    assert [t["tenant"] for t in listed.json["tenants"]] == ["acme", "globex", "initech"]
    assert record_for(session, listed)["event_type"] == "admin.read"
    shown = client.get("/admin/v1/tenants/initech", headers=admin)
    assert shown.json["model"] == "iris@1"
    assert shown.json["rate_limit"] == "10/minute"


def test_admin_acts_on_any_tenant(client: FlaskClient, admin, session, world: World) -> None:
    suspended = client.post("/admin/v1/tenants/globex/suspend", headers=admin)
    assert suspended.status_code == 200
    refused = client.post("/v1/predict", json=HOUSE, headers=bearer(world.globex_key))
    assert refused.status_code == 403
    assert refused.json["code"] == "tenant_suspended"
    served = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert served.status_code == 200


def test_refused_act_is_one_failure_record(client: FlaskClient, admin, session, world) -> None:
    before = session.execute(text("SELECT count(*) FROM audit_records")).scalar_one()
    response = client.post("/admin/v1/tenants", json={"name": "acme"}, headers=admin)
    assert response.status_code == 409
    assert response.json["code"] == "tenant_exists"
    record = record_for(session, response)
    assert record["event_type"] == "tenant.create"
    assert record["outcome"] == "failure"
    assert record["reason_code"] == "tenant_exists"
    assert record["principal_id"].startswith("pgc_")
    assert record["details"] == {
        "tenant": "acme",
        "refusal": "A tenant with this name exists already.",
    }
    after = session.execute(text("SELECT count(*) FROM audit_records")).scalar_one()
    assert after == before + 1
    assert session.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 2


SECRET_VALUE = "zz-secret-value-zz"
EVENTS = {
    "/admin/v1/tenants": "tenant.create",
    "/admin/v1/keys": "key.issue",
    "/admin/v1/clients": "client.create",
}


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field"),
    [
        ("/admin/v1/tenants", {"name": "x1", "tenant_id": 7}, 422, "validation_error", "tenant_id"),
        (
            "/admin/v1/tenants",
            {"name": "x1", "status": "active"},
            422,
            "validation_error",
            "status",
        ),
        (
            "/admin/v1/tenants",
            {"name": "x1", "extra": SECRET_VALUE},
            422,
            "validation_error",
            "extra",
        ),
        ("/admin/v1/tenants", {"name": 5}, 422, "validation_error", "name"),
        ("/admin/v1/tenants", {}, 422, "validation_error", "name"),
        ("/admin/v1/tenants", [SECRET_VALUE], 422, "validation_error", ""),
        ("/admin/v1/tenants", {"name": SECRET_VALUE.upper()}, 422, "invalid_argument", None),
        (
            "/admin/v1/keys",
            {"tenant": "acme", "expires_in": "forever"},
            422,
            "invalid_argument",
            None,
        ),
        ("/admin/v1/keys", {"tenant": "acme", "secret_hmac": "00"}, 422, "validation_error", None),
        ("/admin/v1/keys", {"tenant": SECRET_VALUE}, 404, "tenant_not_found", None),
        ("/admin/v1/keys", {"tenant": "acme", "rate_limit": "lots"}, 422, "invalid_argument", None),
        ("/admin/v1/clients", {"role": "root"}, 422, "validation_error", "role"),
        ("/admin/v1/clients", {"role": "admin", "tenant": "acme"}, 422, "invalid_argument", None),
    ],
)
def test_bad_bodies_are_refused(
    client: FlaskClient, admin, session, world: World, path, body, status, code, field
) -> None:
    keys_before = session.execute(text("SELECT count(*) FROM api_keys")).scalar_one()
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == code
    if field is not None:
        assert field in [error["field"] for error in response.json["errors"]]
    assert SECRET_VALUE not in response.get_data(as_text=True).lower()
    assert SECRET_VALUE.upper() not in response.get_data(as_text=True)
    record = record_for(session, response)
    assert (record["event_type"], record["outcome"]) == (EVENTS[path], "failure")
    assert record["reason_code"] == code
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 2
    assert session.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == keys_before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope"}, 404, "model_not_found"),
        ({"model": "iris@9"}, 404, "model_not_found"),
        ({"model": "Iris@x"}, 422, "invalid_model_ref"),
        ({"model": "iris", "tenant": "globex"}, 422, "validation_error"),
        ({"model": 1}, 422, "validation_error"),
    ],
)
def test_bad_model_assignments(client, admin, session, world: World, body, status, code) -> None:
    response = client.put("/admin/v1/tenants/acme/model", json=body, headers=admin)
    assert response.status_code == status
    assert response.json["code"] == code
    record = record_for(session, response)
    assert (record["event_type"], record["outcome"], record["reason_code"]) == (
        "tenant.assign",
        "failure",
        code,
    )
    assert tenant_row(session, "acme").model_name == "house-price"


def test_body_must_be_json(client: FlaskClient, admin, world: World) -> None:
    response = client.post("/admin/v1/tenants", data="name=x", headers=admin)
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"


def test_keys(client: FlaskClient, admin, session: Session, world: World) -> None:
    issued = client.post(
        "/admin/v1/keys", json={"tenant": "acme", "label": "ci", "expires_in": "30d"}, headers=admin
    )
    assert issued.status_code == 201
    assert issued.headers["Cache-Control"] == "no-store"
    api_key, key_id = issued.json["api_key"], issued.json["key_id"]
    assert api_key.startswith(f"pgk_{key_id}_")
    record = record_for(session, issued)
    assert_admin_record(record, "key.issue", 201)
    assert record["details"]["key_id"] == key_id
    assert api_key not in json.dumps(record)
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(api_key)).status_code == 200

    listed = client.get("/admin/v1/keys?tenant=acme", headers=admin)
    assert [k["key_id"] for k in listed.json["keys"]] == [world.acme_key_id, key_id]
    text_body = listed.get_data(as_text=True)
    assert api_key.rsplit("_", 1)[1] not in text_body
    assert "secret" not in text_body
    assert "hmac" not in text_body

    limited = client.put(
        f"/admin/v1/keys/{key_id}/rate-limit", json={"rate_limit": "5/second"}, headers=admin
    )
    assert limited.json["rate_limit"] == "5/second"
    assert record_for(session, limited)["event_type"] == "key.set_limit"

    rotated = client.post(f"/admin/v1/keys/{key_id}/rotate", json={"grace": "1h"}, headers=admin)
    assert rotated.status_code == 201
    successor = rotated.json["key_id"]
    assert record_for(session, rotated)["details"] == {
        "key_id": key_id,
        "grace": "1h",
        "new_key_id": successor,
    }
    revoked = client.post(f"/admin/v1/keys/{key_id}/revoke", headers=admin)
    assert revoked.json["state"] == "revoked"
    assert record_for(session, revoked)["event_type"] == "key.revoke"
    refused = client.post("/v1/predict", json=HOUSE, headers=bearer(api_key))
    assert refused.json["code"] == "revoked_key"

    usage = client.get(f"/admin/v1/keys/{successor}/usage", headers=admin)
    assert usage.status_code == 200
    assert usage.json["windows"][0]["window"] == "key-second"
    assert record_for(session, usage)["event_type"] == "key.usage"

    missing = client.post("/admin/v1/keys/0000000000000000/revoke", headers=admin)
    assert missing.status_code == 404
    assert missing.json["code"] == "key_not_found"


def test_clients(client: FlaskClient, admin, session: Session, world: World) -> None:
    created = client.post(
        "/admin/v1/clients", json={"role": "partner", "tenant": "globex"}, headers=admin
    )
    assert created.status_code == 201, created.json
    assert created.headers["Cache-Control"] == "no-store"
    client_id, secret = created.json["client_id"], created.json["client_secret"]
    assert created.json["scopes"] == ["model:read", "predict", "receipts:read"]
    record = record_for(session, created)
    assert_admin_record(record, "client.create", 201)
    assert record["details"]["client_id"] == client_id
    assert secret not in json.dumps(record)

    listed = client.get("/admin/v1/clients", headers=admin)
    assert client_id in [c["client_id"] for c in listed.json["clients"]]
    assert secret not in listed.get_data(as_text=True)

    rotated = client.post(f"/admin/v1/clients/{client_id}/rotate-secret", headers=admin)
    assert rotated.json["client_secret"] != secret
    assert record_for(session, rotated)["event_type"] == "client.rotate_secret"
    revoked = client.post(f"/admin/v1/clients/{client_id}/revoke", headers=admin)
    assert revoked.json["revoked_at"] is not None
    assert record_for(session, revoked)["event_type"] == "client.revoke"
    missing = client.post("/admin/v1/clients/pgc_0000000000000000/revoke", headers=admin)
    assert missing.json["code"] == "client_not_found"


def test_models_list_and_show(client: FlaskClient, admin, world: World) -> None:
    # Registering over HTTP: tests/gateway/test_admin_models.py.
    listed = client.get("/admin/v1/models", headers=admin)
    assert [m["name"] for m in listed.json["models"]] == ["house-price", "iris"]
    shown = client.get("/admin/v1/models/iris@1", headers=admin)
    assert shown.json["artifact_sha256"] == world.iris.artifact_sha256
    assert client.get("/admin/v1/models/iris@2", headers=admin).status_code == 404
    assert client.get("/admin/v1/models/Iris", headers=admin).json["code"] == "invalid_model_ref"


def test_change_and_record_commit_together(
    client: FlaskClient, admin, session: Session, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr("gateway.api.acts.record_event", refuse)
    response = client.post("/admin/v1/tenants", json={"name": "initech"}, headers=admin)
    assert response.status_code == 500
    assert "audit store" not in response.get_data(as_text=True)
    assert tenant_row(session, "initech") is None  # no change without its record
    record = record_for(session, response)  # the hook still records the failed attempt
    assert (record["event_type"], record["outcome"]) == ("tenant.create", "error")
