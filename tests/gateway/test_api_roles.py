"""Function-level checks: partners (API key or token) reach no admin or audit route, compliance
reaches neither predictions nor admin routes, admins cannot read or change the audit log.
Every route under /admin/ and /audit/ is walked from the URL map, so a new one is covered."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.oauth_support import token_headers


def routes(app: Flask, prefix: str) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under a prefix, placeholders filled with a sample."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", "sample", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, path


def assert_all_forbidden(
    client: FlaskClient, session: Session, calls: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    session.rollback()
    before = session.execute(text("SELECT count(*) FROM audit_records")).scalar_one()
    for method, path in calls:
        response = client.open(path, method=method, json={}, headers=headers)
        assert response.status_code == 403, (method, path, response.json)
        assert response.json["code"] == "insufficient_scope"
    session.rollback()
    records = session.execute(
        text("SELECT event_type, outcome FROM audit_records WHERE seq > :s ORDER BY seq"),
        {"s": before},
    ).all()
    assert [tuple(r) for r in records] == [("authz.denied", "failure")] * len(calls)


@pytest.fixture
def tokens(client: FlaskClient, session: Session, settings: Settings, world: World):
    def headers(role: str, tenant: str | None = None) -> dict[str, str]:
        return token_headers(client, session, settings, role=role, tenant=tenant)

    return headers


def test_route_tables_are_complete(app: Flask) -> None:
    assert len(list(routes(app, "/admin/v1/"))) == 21  # 20, and the tenant usage route
    assert len(list(routes(app, "/audit/v1/"))) == 4


@pytest.mark.parametrize("credential", ["api_key", "partner_token"])
def test_partners_reach_no_admin_or_audit_route(
    app: Flask, client: FlaskClient, session: Session, world: World, tokens, credential: str
) -> None:
    headers = bearer(world.acme_key) if credential == "api_key" else tokens("partner", "acme")
    calls = [*routes(app, "/admin/"), *routes(app, "/audit/")]
    assert_all_forbidden(client, session, calls, headers)


def test_compliance_cannot_predict_or_administer(
    app: Flask, client: FlaskClient, session: Session, tokens
) -> None:
    calls = [("POST", "/v1/predict"), ("GET", "/v1/model"), *routes(app, "/admin/")]
    assert_all_forbidden(client, session, calls, tokens("compliance"))


def test_admins_cannot_use_the_audit_routes(
    app: Flask, client: FlaskClient, session: Session, tokens
) -> None:
    admin = tokens("admin")
    assert_all_forbidden(client, session, list(routes(app, "/audit/")), admin)
    export = client.get(
        "/audit/v1/records?since=2000-01-01&until=2100-01-01",
        headers={**admin, "Accept": "application/x-ndjson"},
    )
    assert export.status_code == 403
    assert client.post("/v1/predict", json=HOUSE, headers=admin).status_code == 403


def test_every_admin_and_audit_route_declares_its_scope(app: Flask) -> None:
    for prefix, scope in (("/admin/", "admin"), ("/audit/", "audit:read")):
        for rule in app.url_map.iter_rules():
            if rule.rule.startswith(prefix):
                view = app.view_functions[rule.endpoint]
                assert getattr(view, "required_scope", None) == scope, rule.rule
