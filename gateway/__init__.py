"""The HTTP gateway: the only package that imports Flask."""

from __future__ import annotations

from flask import Flask

from audit.recorder import load_audit_config
from audit.writer import AuditSink, GroupCommitWriter
from config import Settings
from db.engine import create_db_engine, make_session_factory
from gateway.access_tokens import init_access_tokens
from gateway.api import (
    admin_clients,
    admin_keys,
    admin_models,
    admin_tenants,
    compliance,
    docs,
    health,
    model_info,
    oauth,
    predictions,
)
from gateway.audit_hook import init_audit
from gateway.bodies import init_bodies
from gateway.caller import init_caller
from gateway.errors import init_errors
from gateway.extensions import spec
from gateway.logs import configure_logging, init_access_log
from gateway.oauth_server import init_oauth_server
from gateway.rate_limits import init_rate_limits
from gateway.request_id import init_request_id
from gateway.runtime import Runtime, init_runtime
from models.artifacts import ArtifactStore
from models.inference import ModelCache


def create_app(settings: Settings | None = None, *, audit_sink: AuditSink | None = None) -> Flask:
    """Build the gateway app. Opens no connection and loads no model until a request needs it.

    `audit_sink` replaces the group-commit writer; only tests and benchmarks pass one.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask("predgate")
    app.config.update(settings.flask_config())
    engine = create_db_engine(settings.database_url)
    sessions = make_session_factory(engine)
    artifacts = ArtifactStore(settings.artifacts_dir)
    audit_config = load_audit_config(
        settings.data_dir,
        signing_key=settings.audit_signing_key,
        instance_id=settings.instance_id,
        checkpoint_records=settings.audit_checkpoint_records,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
    )
    init_runtime(
        app,
        Runtime(
            settings=settings,
            engine=engine,
            sessions=sessions,
            artifacts=artifacts,
            model_cache=ModelCache(artifacts, maxsize=settings.model_cache_size),
            audit_config=audit_config,
            audit_sink=audit_sink
            or GroupCommitWriter(engine, audit_config.signer, audit_config.policy),
        ),
    )
    init_request_id(app)
    init_access_log(app)
    init_bodies(app)
    init_caller(app)
    init_errors(app)
    init_audit(app)
    init_rate_limits(app)  # after the audit hook: its notes reach the audit record
    init_access_tokens(app)
    init_oauth_server(app, settings)
    for blueprint in (predictions.bp, model_info.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    for blueprint in (admin_tenants.bp, admin_keys.bp, admin_clients.bp, admin_models.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(compliance.bp)
    app.register_blueprint(oauth.bp)
    spec.register(app)
    return app
