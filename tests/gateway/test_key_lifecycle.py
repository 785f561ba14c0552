"""Key and client lifecycle over HTTP and the CLI: a second rotation or revocation is refused
with 409 and changes nothing; over HTTP the request's one record is the refusal, the CLI's
second revocation records nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import World
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


def _key_row(session: Session, key_id: str) -> Any:
    session.rollback()
    return session.execute(
        text(
            "SELECT replaced_by, expires_at, revoked_at, revoked_reason FROM api_keys "
            "WHERE key_id = :k"
        ),
        {"k": key_id},
    ).one()


def _counts(session: Session) -> tuple[int, int]:
    session.rollback()
    keys = session.execute(text("SELECT count(*) FROM api_keys")).scalar_one()
    records = session.execute(text("SELECT count(*) FROM audit_records")).scalar_one()
    return keys, records


def test_http_second_rotation_is_409_and_changes_nothing(
    client: FlaskClient, admin, session: Session, world: World
) -> None:
    key_id = world.acme_key_id
    first = client.post(f"/admin/v1/keys/{key_id}/rotate", json={"grace": "1h"}, headers=admin)
    assert first.status_code == 201
    before, (keys, records) = _key_row(session, key_id), _counts(session)

    again = client.post(f"/admin/v1/keys/{key_id}/rotate", headers=admin)
    assert again.status_code == 409
    assert again.json["code"] == "key_already_rotated"
    assert first.json["key_id"] in again.json["detail"]
    assert "newest key of its lineage" in again.json["detail"]
    assert _key_row(session, key_id) == before
    assert _counts(session) == (keys, records + 1)  # the refusal's own record, nothing more
    refusal = record_for(session, again)
    assert (refusal["outcome"], refusal["reason_code"]) == ("failure", "key_already_rotated")


def test_http_second_revocation_is_409_with_no_second_revocation(
    client: FlaskClient, admin, session: Session, world: World
) -> None:
    key_id = world.acme_key_id
    url = f"/admin/v1/keys/{key_id}/revoke"
    assert client.post(url, json={"reason": "leaked"}, headers=admin).status_code == 200
    before, (_, records) = _key_row(session, key_id), _counts(session)

    again = client.post(url, headers=admin)
    assert again.status_code == 409
    assert again.json["code"] == "key_already_revoked"
    assert _key_row(session, key_id) == before  # time and reason of the first revocation
    assert _counts(session)[1] == records + 1
    refusal = record_for(session, again)
    assert (refusal["outcome"], refusal["reason_code"]) == ("failure", "key_already_revoked")


def test_http_second_client_revocation_is_409(
    client: FlaskClient, admin, session: Session, world: World
) -> None:
    created = client.post("/admin/v1/clients", json={"role": "compliance"}, headers=admin)
    url = f"/admin/v1/clients/{created.json['client_id']}/revoke"
    assert client.post(url, headers=admin).status_code == 200
    again = client.post(url, headers=admin)
    assert again.status_code == 409
    assert again.json["code"] == "client_already_revoked"


def _cli_records(session: Session) -> list[tuple[str, str, str | None]]:
    session.rollback()
    rows = session.execute(
        text("SELECT event_type, outcome, reason_code FROM audit_records ORDER BY seq")
    )
    return [tuple(row) for row in rows]


def test_cli_second_rotation_is_one_clear_error(predgate, session: Session) -> None:
    predgate("tenants", "create", "acme")
    issued = json.loads(predgate("keys", "issue", "--tenant", "acme", "--json").stdout)
    rotated = json.loads(predgate("keys", "rotate", issued["key_id"], "--json").stdout)
    before = _key_row(session, issued["key_id"])

    refused = predgate("keys", "rotate", issued["key_id"], ok=False)
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert f"already rotated to {rotated['key_id']}" in refused.stderr
    assert "Traceback" not in refused.output
    assert _key_row(session, issued["key_id"]) == before
    # Refused like any other act: recorded as a failure, and no key was made.
    assert _cli_records(session)[-1] == ("key.rotate", "failure", "key_already_rotated")
    assert _counts(session)[0] == 2


def test_cli_second_revocation_writes_nothing(predgate, session: Session) -> None:
    predgate("tenants", "create", "acme")
    issued = json.loads(predgate("keys", "issue", "--tenant", "acme", "--json").stdout)
    predgate("keys", "revoke", issued["key_id"], "--reason", "leaked")
    before, records = _key_row(session, issued["key_id"]), _cli_records(session)

    refused = predgate("keys", "revoke", issued["key_id"], ok=False)
    assert refused.exit_code == 1
    assert "revoked already" in refused.stderr
    assert _key_row(session, issued["key_id"]) == before
    assert _cli_records(session) == records


def test_cli_revoking_an_unknown_key_is_still_recorded(predgate, session: Session) -> None:
    refused = predgate("keys", "revoke", "0000000000000000", ok=False)
    assert refused.exit_code == 1
    assert _cli_records(session) == [("key.revoke", "failure", "key_not_found")]
