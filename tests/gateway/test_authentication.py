"""API key authentication over HTTP: every failure is a 401/403/400 problem with a stable code."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from auth.api_keys import issue_key, revoke_key, rotate_key
from auth.tables import ApiKeyRow
from auth.tenants import set_tenant_status
from db.base import utcnow
from db.changes import read_generation
from gateway.runtime import get_runtime
from tests.conftest import HOUSE, World, bearer
from tests.gateway.test_errors import assert_problem


def _swap_secret(key: str) -> str:
    prefix, secret = key[:21], key[21:]
    return prefix + ("A" if secret[0] != "A" else "B") + secret[1:]


def test_missing_credentials_is_401(client: FlaskClient, world: World) -> None:
    assert_problem(client.post("/v1/predict", json=HOUSE), 401, "missing_credentials")


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer pgk_short"},
        {"X-API-Key": "not-a-key"},
    ],
)
def test_malformed_credentials_are_401(client: FlaskClient, world: World, header) -> None:
    assert_problem(
        client.post("/v1/predict", json=HOUSE, headers=header), 401, "malformed_credentials"
    )


def test_unknown_id_and_wrong_secret_are_indistinguishable(
    client: FlaskClient, world: World
) -> None:
    unknown = "pgk_0123456789abcdef_" + world.acme_key[21:]
    wrong_secret = _swap_secret(world.acme_key)
    first = client.post("/v1/predict", json=HOUSE, headers=bearer(unknown))
    second = client.post("/v1/predict", json=HOUSE, headers=bearer(wrong_secret))
    a = assert_problem(first, 401, "invalid_key")
    b = assert_problem(second, 401, "invalid_key")
    a.pop("request_id"), b.pop("request_id")
    assert a == b


def test_revoked_key_is_refused_on_the_next_request(
    client: FlaskClient, world: World, session
) -> None:
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code == 200
    revoke_key(session, world.acme_key_id, reason="leaked")
    session.commit()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert_problem(response, 401, "revoked_key")


def test_expired_key_is_refused(client: FlaskClient, world: World, session, settings) -> None:
    issued = issue_key(
        session,
        settings.secret_key,
        tenant_name="acme",
        created_by="test",
        expires_in=timedelta(seconds=30),
    )
    session.commit()
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(issued.api_key)).status_code == 200
    # Through the ORM, as every predgate change is made: the flush announces it to the caches.
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == issued.key.key_id))
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert_problem(
        client.post("/v1/predict", json=HOUSE, headers=bearer(issued.api_key)), 401, "expired_key"
    )


def test_suspended_tenant_is_403_and_resume_restores(
    client: FlaskClient, world: World, session
) -> None:
    set_tenant_status(session, "acme", status="suspended")
    session.commit()
    assert_problem(
        client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)),
        403,
        "tenant_suspended",
    )
    # Other tenants are unaffected.
    assert client.get("/v1/model", headers=bearer(world.globex_key)).status_code == 200
    set_tenant_status(session, "acme", status="active")
    session.commit()
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code == 200


def test_rotation_keeps_old_key_through_grace(
    client: FlaskClient, world: World, session, settings
) -> None:
    successor = rotate_key(
        session, settings.secret_key, world.acme_key_id, created_by="test", grace=timedelta(hours=1)
    )
    session.commit()
    for key in (world.acme_key, successor.api_key):
        assert client.post("/v1/predict", json=HOUSE, headers=bearer(key)).status_code == 200
    ended = rotate_key(
        session, settings.secret_key, successor.key.key_id, created_by="test", grace=timedelta(0)
    )
    session.commit()
    assert_problem(
        client.post("/v1/predict", json=HOUSE, headers=bearer(successor.api_key)),
        401,
        "expired_key",
    )
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(ended.api_key)).status_code == 200


@pytest.mark.parametrize("param", ["api_key", "key", "access_token", "token", "apikey"])
def test_key_in_query_string_is_refused_and_not_logged(
    client: FlaskClient, world: World, param: str, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.post(f"/v1/predict?{param}={world.acme_key}", json=HOUSE)
    assert_problem(response, 400, "credentials_in_query")
    secret = world.acme_key[21:]
    assert secret not in caplog.text
    assert secret not in response.get_data(as_text=True)


def test_last_used_is_recorded_in_batches_outside_the_request(
    client: FlaskClient, world: World, session, engine
) -> None:
    generation = read_generation(engine)
    client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))

    def last_used():
        return session.execute(
            text("SELECT last_used_at FROM api_keys WHERE key_id = :id"), {"id": world.acme_key_id}
        ).scalar_one()

    assert last_used() is None  # authenticating commits nothing
    get_runtime(client.application).housekeeping.flush_key_use()
    session.rollback()
    assert last_used() is not None
    # Marking use is not a change any cache depends on: no worker drops its caches for it.
    assert read_generation(engine) == generation
