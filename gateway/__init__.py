"""The HTTP gateway: the only package that imports Flask."""

from __future__ import annotations

from flask import Flask

from audit.writer import AuditSink
from config import Settings
from gateway.api import (
    admin_clients,
    admin_keys,
    admin_models,
    admin_tenants,
    compliance,
    docs,
    health,
    oauth,
    predictions,
)
from gateway.api.oauth_server import init_oauth_server
from gateway.errors import init_errors
from gateway.logs import configure_logging
from gateway.openapi import init_openapi
from gateway.pipeline import init_pipeline
from gateway.pipeline.tokens import init_access_tokens
from gateway.runtime import build_runtime, init_runtime

BLUEPRINTS = (
    predictions.bp,
    health.bp,
    docs.bp,
    oauth.bp,
    admin_tenants.bp,
    admin_keys.bp,
    admin_clients.bp,
    admin_models.bp,
    compliance.bp,
)


def create_app(settings: Settings | None = None, *, audit_sink: AuditSink | None = None) -> Flask:
    """Build the gateway app. Opens no connection and loads no model until a request needs it.

    `audit_sink` replaces the group-commit writer; only tests and benchmarks pass one.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask("predgate", static_folder=None)  # no static route: every asset is declared
    app.config.update(settings.flask_config())
    app.json.sort_keys = False  # type: ignore[attr-defined]  # answers keep the order they are built in
    app.json.compact = True  # type: ignore[attr-defined]
    init_runtime(app, build_runtime(settings, audit_sink=audit_sink))
    init_pipeline(app)
    init_errors(app)
    init_access_tokens(app)
    init_oauth_server(app, settings)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    init_openapi(app)  # after the blueprints: the document covers every route
    return app
