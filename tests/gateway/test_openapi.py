"""The OpenAPI document is complete: every route of the URL map, problem answers as
application/problem+json, the credential schemes as alternatives with each operation's scope,
the OAuth endpoints with their form bodies and RFC 6749 errors; generated once per app."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import gateway.openapi
from auth.principal import PARTNER_SCOPES, ROLE_SCOPES
from gateway.context import Endpoint

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
OPERATION_KEYS = {"get", "put", "post", "delete", "patch"}
# Error answers in another shape: RFC 6749 error JSON (OAuth clients expect it), the health report.
NOT_PROBLEMS = {
    ("/oauth/token", "400"),
    ("/oauth/token", "401"),
    ("/oauth/revoke", "400"),
    ("/oauth/revoke", "401"),
    ("/readyz", "503"),
}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert isinstance(response.json, dict)
    return response.json


def _routes(app: Flask) -> list[tuple[str, str, Endpoint]]:
    """(OpenAPI path, method, declaration) for every route the app answers."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        declared = app.view_functions[rule.endpoint].endpoint  # type: ignore[attr-defined]
        path = re.sub(r"<(?:[^<>]*:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.append((path, method.lower(), declared))
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in OPERATION_KEYS
    ]


def test_every_route_is_documented(app: Flask, document: dict[str, Any]) -> None:
    routes = {(path, method) for path, method, _ in _routes(app)}
    documented = {(path, method) for path, method, _ in _operations(document)}
    assert routes == documented
    for path in (
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/docs",
        "/docs/assets/{name}",
        "/openapi.json",
    ):
        assert path in document["paths"], path


def test_problem_answers_are_problem_json(document: dict[str, Any], client: FlaskClient) -> None:
    for path, method, operation in _operations(document):
        for status, answer in operation["responses"].items():
            content = answer.get("content", {})
            refs = {media: body["schema"].get("$ref") for media, body in content.items()}
            if PROBLEM_REF in refs.values():
                assert refs == {PROBLEM: PROBLEM_REF}, (path, method, status)
            if int(status) >= 400 and (path, status) not in NOT_PROBLEMS:
                assert refs == {PROBLEM: PROBLEM_REF}, (path, method, status)
    schemas = document["components"]["schemas"]
    assert not [name for name in schemas if name.startswith(("ValidationError", "Problem."))]
    # The schema is the shape gateway.errors sends.
    problem = schemas["Problem"]
    answered = client.get("/v1/predict")
    assert answered.content_type == PROBLEM
    assert set(answered.json or {}) == set(problem["required"])
    assert "errors" in problem["properties"]


def test_security_schemes_are_alternatives_with_the_operation_scope(
    app: Flask, document: dict[str, Any]
) -> None:
    assert document["security"] == [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}, {"OAuth2": []}]
    for path, method, declared in _routes(app):
        security = document["paths"][path][method]["security"]
        assert all(len(requirement) <= 1 for requirement in security), (path, method)
        if declared.scope is None:
            expected: list[dict[str, list[str]]] = (
                [{"ClientSecretBasic": []}, {}] if declared.client_auth else []
            )
        elif declared.scope in PARTNER_SCOPES:
            expected = [
                {"ApiKeyBearer": []},
                {"ApiKeyHeader": []},
                {"OAuth2": [declared.scope]},
            ]
        else:  # API keys are partner credentials: admin and compliance need a token
            expected = [{"OAuth2": [declared.scope]}]
        assert security == expected, (path, method)
    predict = document["paths"]["/v1/predict"]["post"]["security"]
    assert {"OAuth2": ["predict"]} in predict
    assert {"ApiKeyBearer": []} in predict
    assert document["paths"]["/admin/v1/tenants"]["post"]["security"] == [{"OAuth2": ["admin"]}]
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_oauth2_scheme_lists_every_scope(document: dict[str, Any]) -> None:
    flow = document["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == set().union(*ROLE_SCOPES.values())
    assert document["components"]["securitySchemes"]["ClientSecretBasic"]["scheme"] == "basic"


def test_token_endpoint_is_documented(document: dict[str, Any]) -> None:
    token = document["paths"]["/oauth/token"]["post"]
    schemas = document["components"]["schemas"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    fields = schemas[form["$ref"].rsplit("/", 1)[1]]
    assert {"grant_type", "scope", "client_id", "client_secret"} <= set(fields["properties"])
    assert fields["required"] == ["grant_type"]
    assert token["security"] == [{"ClientSecretBasic": []}, {}]  # basic, or the form (post)
    for status in ("400", "401"):
        # RFC 6749 error JSON, as OAuth clients expect: not problem+json.
        content = token["responses"][status]["content"]
        assert list(content) == ["application/json"]
        error = schemas[content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert "error" in error["required"]
    revoke = document["paths"]["/oauth/revoke"]["post"]
    assert "application/x-www-form-urlencoded" in revoke["requestBody"]["content"]
    assert list(revoke["responses"]["401"]["content"]) == ["application/json"]
    introspect = document["paths"]["/oauth/introspect"]["post"]
    assert introspect["security"] == [{"OAuth2": ["admin"]}]
    assert list(introspect["responses"]["403"]["content"]) == [PROBLEM]
    # A real upload stays multipart.
    upload = document["paths"]["/admin/v1/models"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]


def test_the_document_is_generated_once(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = client.get("/openapi.json").json

    def refuse(*_args: object) -> None:
        raise AssertionError("generated per request")

    monkeypatch.setattr(gateway.openapi, "complete_document", refuse)
    monkeypatch.setattr(gateway.openapi, "declared_operations", refuse)
    assert client.get("/openapi.json").json == first
