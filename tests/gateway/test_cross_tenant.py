"""Tenant isolation across credential types: every partner route, with an API key or a partner
JWT of one tenant, aimed at the other tenant through body, query or headers, answers only for
the credential's own tenant. Roles reach only their own routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from auth.principal import PARTNER_SCOPES
from config import Settings
from tests.conftest import HOUSE, IRIS, World, bearer
from tests.gateway.test_audit_http import record_for
from tests.gateway.test_route_scopes import required_scope
from tests.oauth_support import token_headers

OWN_MODEL = {"acme": "house-price", "globex": "iris"}
OWN_ROW = {"acme": HOUSE, "globex": IRIS}
OTHER = {"acme": "globex", "globex": "acme"}
SHARED_LOG_ROUTES = {"/v1/log/checkpoint", "/v1/log/consistency", "/v1/log/public-key"}
# Ways a caller might try to name another tenant; none of them may be read.
TENANT_HINTS: list[dict[str, Any]] = [
    {},
    {"query": {"tenant": "{other}"}},
    {"query": {"tenant_id": "2"}},
    {"headers": {"X-Tenant": "{other}", "X-Tenant-ID": "2"}},
    {"body": {"tenant": "{other}"}},
]


def _credentials(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> dict[tuple[str, str], dict[str, str]]:
    return {
        ("api_key", "acme"): bearer(world.acme_key),
        ("api_key", "globex"): bearer(world.globex_key),
        ("jwt", "acme"): token_headers(client, session, settings, role="partner", tenant="acme"),
        ("jwt", "globex"): token_headers(
            client, session, settings, role="partner", tenant="globex"
        ),
    }


def _partner_routes(app: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if required_scope(app.view_functions[rule.endpoint]) in PARTNER_SCOPES:
            method = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})[0]
            routes.append((method, re.sub(r"<[^>]+>", "x", rule.rule)))
    return routes


def test_partner_routes_answer_only_for_the_credentials_tenant(
    app: Flask, client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    routes = _partner_routes(app)
    assert {path for _m, path in routes} >= {"/v1/predict", "/v1/model"}
    credentials = _credentials(client, session, settings, world)
    successes_for_other_tenant = []
    attempts = 0
    for (kind, tenant), headers in credentials.items():
        other = OTHER[tenant]
        for method, path in routes:
            for hint in TENANT_HINTS:
                query = {k: v.format(other=other) for k, v in hint.get("query", {}).items()}
                extra = {k: v.format(other=other) for k, v in hint.get("headers", {}).items()}
                body_hint = {k: v.format(other=other) for k, v in hint.get("body", {}).items()}
                # The other tenant's feature row: valid only for the other tenant's model.
                body = {**OWN_ROW[other], **body_hint} if method == "POST" else None
                response = client.open(
                    path,
                    method=method,
                    query_string=query,
                    headers={**headers, **extra},
                    json=body,
                )
                attempts += 1
                payload = response.get_json(silent=True) or {}
                if path in SHARED_LOG_ROUTES:
                    # The transparency log's heads, proofs and key are one for all tenants:
                    # hashes and sizes, nothing that names a tenant or its model.
                    text = response.get_data(as_text=True)
                    assert other not in text
                    assert OWN_MODEL[other] not in text
                    continue
                # Predictions name their model, GET /v1/model is one, the partner OpenAPI
                # document names the model its request schema describes.
                named = payload.get("model") or payload.get("x-model") or {}
                served = named.get("name") or payload.get("name")
                if response.status_code < 400 and served != OWN_MODEL[tenant]:
                    successes_for_other_tenant.append((kind, tenant, path, hint))
                if response.status_code < 400:
                    assert record_for(session, response)["tenant_id"] is not None
                # Own tenant's row through the same route works: the credential itself is fine.
            if method == "POST":
                own = client.open(path, method=method, headers=headers, json=OWN_ROW[tenant])
                assert own.status_code == 200, (kind, tenant, own.get_data(as_text=True))
                assert own.json is not None
                assert own.json["model"]["name"] == OWN_MODEL[tenant]
    assert attempts == len(credentials) * len(routes) * len(TENANT_HINTS)
    assert successes_for_other_tenant == []


def test_records_name_the_credentials_tenant(
    client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    credentials = _credentials(client, session, settings, world)
    tenant_ids = {}
    for (kind, tenant), headers in credentials.items():
        response = client.get("/v1/model", headers=headers, query_string={"tenant": OTHER[tenant]})
        assert response.status_code == 200
        record = record_for(session, response)
        assert record["auth_method"] == kind
        tenant_ids.setdefault(tenant, set()).add(record["tenant_id"])
    assert all(len(ids) == 1 for ids in tenant_ids.values())
    assert tenant_ids["acme"] != tenant_ids["globex"]


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("compliance", "POST", "/v1/predict"),
        ("compliance", "GET", "/v1/model"),
        ("compliance", "GET", "/admin/v1/tenants"),
        ("compliance", "POST", "/admin/v1/clients"),
        ("admin", "POST", "/v1/predict"),
        ("admin", "GET", "/audit/v1/records"),
        ("partner", "GET", "/admin/v1/tenants"),
        ("partner", "POST", "/admin/v1/keys"),
        ("partner", "GET", "/audit/v1/records"),
        ("partner", "POST", "/oauth/introspect"),
    ],
)
def test_roles_are_separated(
    app: Flask,
    client: FlaskClient,
    session: Session,
    settings: Settings,
    world: World,
    role: str,
    method: str,
    path: str,
) -> None:
    if path not in {rule.rule for rule in app.url_map.iter_rules()}:
        pytest.skip(f"{path} is not registered in this build")
    tenant = "acme" if role == "partner" else None
    headers = token_headers(client, session, settings, role=role, tenant=tenant)
    response = client.open(path, method=method, headers=headers, json=HOUSE)
    assert response.status_code == 403
    assert response.json is not None
    assert response.json["code"] == "insufficient_scope"
    record = record_for(session, response)
    assert record["reason_code"] == "insufficient_scope"
    assert record["event_type"] == "authz.denied"
    if role == "partner":
        api_key = client.open(path, method=method, headers=bearer(world.acme_key), json=HOUSE)
        assert api_key.status_code == 403


def test_no_route_alters_or_deletes_audit_records(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/audit/"):
            assert (rule.methods or set()) <= {"GET", "HEAD", "OPTIONS"}, rule.rule
