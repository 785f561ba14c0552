"""Every route declares the scope it needs; only health, docs, JWKS, metadata and the OAuth
endpoints that authenticate the client themselves are open."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from auth.principal import ROLE_SCOPES
from config import Settings
from tests.conftest import World
from tests.oauth_support import token_headers

OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/oauth/token",
    "/oauth/revoke",  # RFC 7009: authenticates the client (basic or post) itself
    "/metrics",  # PREDGATE_METRICS_ALLOW addresses, or the admin scope (checked by its view)
}
KNOWN_SCOPES = set().union(*ROLE_SCOPES.values())


def required_scope(view: Callable[..., Any]) -> str | None:
    """The scope require_scope set on the view or on any function it wraps (spectree wraps)."""
    current: Any = view
    while current is not None:
        scope = getattr(current, "required_scope", None)
        if scope is not None:
            return str(scope)
        current = getattr(current, "__wrapped__", None)
    return None


def _path(rule: str) -> str:
    """The rule with every variable filled in (the check comes before any lookup)."""
    return re.sub(r"<[^>]+>", "x", rule)


def _method(methods: set[str] | None) -> str:
    return sorted((methods or set()) - {"HEAD", "OPTIONS"})[0]


def _is_docs_page(rule: str, endpoint: str) -> bool:
    # spectree's pages (/docs/swagger/, /docs/redoc/, ...) and Flask's static files.
    return endpoint == "static" or rule.startswith("/docs/")


def test_every_route_declares_a_scope_or_is_deliberately_open(app: Flask) -> None:
    undeclared, unknown = [], []
    for rule in app.url_map.iter_rules():
        if rule.rule in OPEN_PATHS or _is_docs_page(rule.rule, rule.endpoint):
            continue
        scope = required_scope(app.view_functions[rule.endpoint])
        if scope is None:
            undeclared.append(f"{sorted(rule.methods or [])} {rule.rule}")
        elif scope not in KNOWN_SCOPES:
            unknown.append(f"{rule.rule}: {scope}")
    assert undeclared == []
    assert unknown == []


def test_open_routes_exist_and_declare_no_scope(app: Flask) -> None:
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    for path in OPEN_PATHS:
        assert path in rules, path
        assert required_scope(app.view_functions[rules[path].endpoint]) is None, path


def test_scoped_routes_refuse_anonymous_callers(
    make_app: Callable[..., Flask], settings: Settings
) -> None:
    # More scoped routes than the per-address allowance of anonymous requests: raised, so each
    # route answers for itself rather than the limiter for all.
    app = make_app(replace(settings, unauthenticated_rate_limit="1000/minute"))
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if required_scope(view) is None:
            continue
        response = client.open(_path(rule.rule), method=_method(rule.methods))
        assert response.status_code == 401, (rule.rule, response.status_code)


def test_scope_declared_is_the_scope_enforced(
    app: Flask, client: FlaskClient, session: Session, settings: Settings, world: World
) -> None:
    # A token holding every scope but the route's own is refused with insufficient_scope.
    headers = {
        role: token_headers(
            client, session, settings, role=role, tenant="acme" if role == "partner" else None
        )
        for role in ROLE_SCOPES
    }
    for rule in app.url_map.iter_rules():
        scope = required_scope(app.view_functions[rule.endpoint])
        if scope is None:
            continue
        for role, scopes in ROLE_SCOPES.items():
            if scope in scopes:
                continue
            response = client.open(
                _path(rule.rule), method=_method(rule.methods), headers=headers[role]
            )
            assert response.status_code == 403, (rule.rule, role, response.status_code)
            assert response.json is not None
            assert response.json["code"] == "insufficient_scope"


def test_every_declared_event_type_can_be_recorded(app: Flask) -> None:
    # A route whose event type the audit log does not know could answer nothing but a 500.
    from audit.events import EVENT_TYPES
    from gateway.openapi import declared_operations

    declared = {op.declared.event for op in declared_operations(app) if op.declared is not None}
    assert declared
    assert declared - EVENT_TYPES == set()
