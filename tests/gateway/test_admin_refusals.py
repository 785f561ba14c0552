"""Every refusal of an admin or compliance request says what was wrong, in the problem's detail
and in its audit record (`refusal`, and `fields` for a body or query that does not validate),
and neither ever repeats a submitted value."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers

CANARY = "zz-canary-7f3a9c"  # 16 characters: fits every admin string field
CANARY_NUMBER = 918273645123


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


@pytest.fixture
def auditor(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="compliance")


def refused(
    session: Session, response: Any, status: int, code: str, event_type: str
) -> tuple[str, dict[str, Any]]:
    """The problem's detail and the record's details of a refusal recorded as `event_type`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["code"] == code
    record = record_for(session, response)
    assert (record["event_type"], record["outcome"]) == (event_type, "failure")
    assert (record["http_status"], record["reason_code"]) == (status, code)
    # The record says why in the answer's words.
    assert record["details"]["refusal"] == problem["detail"]
    assert record["details"].get("fields") == problem.get("errors")
    return problem["detail"], record["details"]


@pytest.mark.parametrize(
    ("body", "detail", "fields"),
    [
        ('{"name": "x",', "The body is not valid JSON: EOF while parsing", None),
        ("[1]", "body: Should be a JSON object.", [("", "not_an_object")]),
        ("{}", "name: Field required.", [("name", "missing")]),
        (
            '{"name": "x1", "tenant_id": 7}',
            "tenant_id: Extra inputs are not permitted.",
            [("tenant_id", "extra_forbidden")],
        ),
        ('{"name": 5}', "name: Input should be a valid string.", [("name", "string_type")]),
        (
            '{"name": 5, "a": 1, "b": 2, "c": 3}',
            "name: Input should be a valid string; a: Extra inputs are not permitted; "
            "b: Extra inputs are not permitted (and 1 more).",
            [("name", "string_type")] + [(f, "extra_forbidden") for f in "abc"],
        ),
    ],
    ids=["invalid-json", "not-an-object", "missing", "extra", "wrong-type", "several"],
)
def test_a_body_that_does_not_validate_says_which_field_and_why(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    body: str,
    detail: str,
    fields: list[tuple[str, str]] | None,
) -> None:
    response = client.post(
        "/admin/v1/tenants", data=body, content_type="application/json", headers=admin
    )
    status, code = (422, "validation_error") if fields else (400, "invalid_json")
    said, details = refused(session, response, status, code, "tenant.create")
    assert said.startswith(detail)
    expected = [{"field": f, "reason": r} for f, r in fields] if fields else None
    assert details.get("fields") == expected


def test_a_body_of_the_wrong_type_is_refused_with_reason(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    response = client.post("/admin/v1/tenants", data="name=x", headers=admin)
    said, _ = refused(session, response, 415, "unsupported_media_type", "tenant.create")
    assert said == "Send the body as application/json."


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "event_type", "words", "kept"),
    [
        (
            "post",
            "/admin/v1/tenants",
            {"name": "Bad Name"},
            422,
            "invalid_argument",
            "tenant.create",
            "a tenant name is 1-64 lowercase letters",
            {},
        ),
        (
            "post",
            "/admin/v1/tenants",
            {"name": "acme"},
            409,
            "tenant_exists",
            "tenant.create",
            "A tenant with this name exists already.",
            {"tenant": "acme"},
        ),
        (
            "post",
            "/admin/v1/tenants/initech/suspend",
            None,
            404,
            "tenant_not_found",
            "tenant.suspend",
            "No tenant has this name.",
            {"tenant": "initech", "status": "suspended"},
        ),
        (
            "post",
            "/admin/v1/keys",
            {"tenant": "initech"},
            404,
            "tenant_not_found",
            "key.issue",
            "No tenant has this name.",
            {"tenant": "initech"},
        ),
        (
            "put",
            "/admin/v1/tenants/acme/rate-limit",
            {"rate_limit": "lots"},
            422,
            "invalid_argument",
            "tenant.set_limit",
            "a rate-limit policy is AMOUNT/PERIOD windows joined by ';'",
            {"tenant": "acme"},  # named by the URL; the malformed policy is not kept
        ),
        (
            "post",
            "/admin/v1/keys",
            {"tenant": "acme", "rate_limit": "0/minute"},
            422,
            "invalid_argument",
            "key.issue",
            "every window of a rate-limit policy admits at least 1 unit",
            {},
        ),
        (
            "post",
            "/admin/v1/keys",
            {"tenant": "acme", "expires_in": "forever"},
            422,
            "invalid_argument",
            "key.issue",
            "a duration is a number followed by s, m, h, d or w",
            {},
        ),
        (
            "post",
            "/admin/v1/keys/0000000000000000/revoke",
            None,
            404,
            "key_not_found",
            "key.revoke",
            "No API key has this id.",
            {"key_id": "0000000000000000"},
        ),
        (
            "post",
            "/admin/v1/clients",
            {"role": "admin", "tenant": "acme"},
            422,
            "invalid_argument",
            "client.create",
            "a client with the admin role belongs to no tenant",
            {},
        ),
        (
            "post",
            "/admin/v1/clients",
            {"role": "compliance", "scopes": ["admin"]},
            422,
            "invalid_argument",
            "client.create",
            "the scopes of a client with the compliance role are one or more of: audit:read",
            {},
        ),
        (
            "post",
            "/admin/v1/clients/pgc_0000000000000000/rotate-secret",
            None,
            404,
            "client_not_found",
            "client.rotate_secret",
            "No OAuth client has this id.",
            {"client_id": "pgc_0000000000000000"},
        ),
    ],
    ids=[
        "invalid-tenant-name",
        "duplicate-tenant",
        "unknown-tenant",
        "key-for-unknown-tenant",
        "invalid-tenant-policy",
        "invalid-key-policy",
        "invalid-duration",
        "revoke-unknown-key",
        "admin-client-with-tenant",
        "scopes-outside-the-role",
        "unknown-client",
    ],
)
def test_a_domain_refusal_says_what_was_wrong(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
    event_type: str,
    words: str,
    kept: dict[str, Any],
) -> None:
    response = getattr(client, method)(path, json=body, headers=admin)
    said, details = refused(session, response, status, code, event_type)
    assert said.startswith(words)
    assert said not in {"Invalid argument", "Not found", response.json["title"]}
    for name, value in kept.items():
        assert details[name] == value
    if not kept:
        assert set(details) == {"refusal"}


def test_an_upload_that_is_not_skops_is_refused_with_reason(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    response = client.post(
        "/admin/v1/models",
        data={"name": "notes", "file": (io.BytesIO(b"just some notes\n"), "m.skops")},
        headers=admin,
        content_type="multipart/form-data",
    )
    said, details = refused(session, response, 415, "unsupported_model_format", "model.register")
    assert said.startswith("an uploaded model must be a skops file")
    assert details == {"model": "notes", "format": "unknown", "refusal": said}


def test_an_upload_without_its_file_names_the_part(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    response = client.post(
        "/admin/v1/models", data={"name": "m"}, headers=admin, content_type="multipart/form-data"
    )
    said, details = refused(session, response, 422, "validation_error", "model.register")
    assert said == "file: Field required."
    assert details["fields"] == [{"field": "file", "reason": "missing"}]


@pytest.mark.parametrize(
    ("query", "words", "field"),
    [
        ("limit=0", "limit: Input should be greater than or equal to 1.", "limit"),
        ("since=yesterday", "since: Input should be a valid datetime", "since"),
        ("tenant=a&tenant=b", "tenant: Given more than once.", "tenant"),
        ("tenant=initech", "No tenant has this name.", None),
    ],
)
def test_a_compliance_query_refusal_says_what_was_wrong(
    client: FlaskClient,
    auditor: dict[str, str],
    session: Session,
    world: World,
    query: str,
    words: str,
    field: str | None,
) -> None:
    response = client.get(f"/audit/v1/records?{query}", headers=auditor)
    status, code = (422, "validation_error") if field else (404, "tenant_not_found")
    said, details = refused(session, response, status, code, "audit.read")
    assert said.startswith(words)
    if field is not None:
        assert [f["field"] for f in details["fields"]] == [field]


def test_a_partner_refusal_keeps_its_reason_code_only(
    client: FlaskClient, session: Session, world: World
) -> None:
    response = client.post("/v1/predict", json={**HOUSE, "pool": 1}, headers=bearer(world.acme_key))
    assert response.status_code == 422
    record = record_for(session, response)
    assert record["reason_code"] == "validation_error"
    assert "refusal" not in (record["details"] or {})


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/admin/v1/tenants", {"name": CANARY.upper()}, 422),
        ("post", "/admin/v1/tenants", {"name": [CANARY]}, 422),
        ("post", "/admin/v1/tenants", {"name": CANARY_NUMBER}, 422),
        ("put", "/admin/v1/tenants/acme/rate-limit", {"rate_limit": CANARY_NUMBER}, 422),
        ("put", "/admin/v1/tenants/acme/rate-limit", {"rate_limit": f"{CANARY}/day"}, 422),
        ("put", "/admin/v1/tenants/acme/model", {"model": CANARY.upper()}, 422),
        ("put", "/admin/v1/tenants/acme/model", {"model": "iris", "dry_run": CANARY}, 422),
        ("post", "/admin/v1/keys", {"tenant": "acme", "expires_in": CANARY}, 422),
        ("post", "/admin/v1/keys", {"tenant": "acme", "label": {"x": CANARY}}, 422),
        ("post", "/admin/v1/keys", {"tenant": "acme", "rate_limit": CANARY}, 422),
        ("post", "/admin/v1/keys/ACME/rotate", {"grace": CANARY}, 422),
        ("post", "/admin/v1/keys/ACME/revoke", {"reason": CANARY_NUMBER}, 422),
        ("post", "/admin/v1/clients", {"role": CANARY}, 422),
        ("post", "/admin/v1/clients", {"role": "admin", "scopes": [CANARY]}, 422),
        ("post", "/admin/v1/models", {"name": CANARY.upper(), "file": "FILE"}, 422),
        ("post", "/admin/v1/models", {"name": "m", "file": "FILE", "x": CANARY}, 422),
        ("get", f"/audit/v1/records?since={CANARY}", None, 422),
        ("get", f"/audit/v1/records?event_type={CANARY}", None, 422),
        ("get", f"/audit/v1/records?limit={CANARY_NUMBER}", None, 422),
    ],
)
def test_refusals_never_repeat_a_submitted_value(
    client: FlaskClient,
    admin: dict[str, str],
    auditor: dict[str, str],
    session: Session,
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    path = path.replace("ACME", world.acme_key_id)
    headers = auditor if path.startswith("/audit/") else admin
    if path == "/admin/v1/models":
        assert body is not None
        form = {**body, "file": (io.BytesIO(b"not a model"), "m.skops")}
        response = client.post(path, data=form, headers=headers, content_type="multipart/form-data")
    else:
        response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    record = json.dumps(record_for(session, response))
    assert record_for(session, response)["details"]["refusal"] == response.json["detail"]
    for canary in (CANARY, CANARY.upper(), str(CANARY_NUMBER)):
        assert canary not in response.get_data(as_text=True)
        assert canary not in record
