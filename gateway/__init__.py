"""The HTTP gateway: the only package that imports Flask."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from audit.writer import AuditSink
    from config import Settings


def create_app(settings: Settings | None = None, *, audit_sink: AuditSink | None = None) -> Flask:
    """Build the gateway app. Opens no connection and loads no model until a request needs it.

    `audit_sink` replaces the group-commit writer; only tests and benchmarks pass one.
    """
    # Imported here, not at the top: `import gateway` is paid by every `predgate` command,
    # and the blueprints pull in the whole model stack (scikit-learn, ONNX).
    from flask import Flask

    from config import Settings
    from gateway.api import (
        admin_clients,
        admin_keys,
        admin_models,
        admin_tenants,
        compliance,
        docs,
        health,
        metrics,
        oauth,
        predictions,
        receipts,
    )
    from gateway.api.oauth_server import init_oauth_server
    from gateway.errors import init_errors
    from gateway.logs import configure_logging
    from gateway.metrics import init_metrics
    from gateway.openapi import init_openapi
    from gateway.pipeline import init_pipeline
    from gateway.pipeline.tokens import init_access_tokens
    from gateway.runtime import build_runtime, init_runtime

    blueprints = (
        predictions.bp,
        health.bp,
        docs.bp,
        oauth.bp,
        admin_tenants.bp,
        admin_keys.bp,
        admin_clients.bp,
        admin_models.bp,
        compliance.bp,
        metrics.bp,
        receipts.bp,
    )
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask("predgate", static_folder=None)  # no static route: every asset is declared
    app.config.update(settings.flask_config())
    app.json.sort_keys = False  # type: ignore[attr-defined]  # answers keep the order they are built in
    app.json.compact = True  # type: ignore[attr-defined]
    init_runtime(app, build_runtime(settings, audit_sink=audit_sink))
    init_pipeline(app)
    init_metrics(app, settings.metrics_allow)
    init_errors(app)
    init_access_tokens(app)
    init_oauth_server(app, settings)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    init_openapi(app)  # after the blueprints: the document covers every route
    return app
