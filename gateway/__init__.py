"""The HTTP gateway: the only package that imports Flask."""

from __future__ import annotations

from flask import Flask
from models.inference import ModelCache

from config import Settings
from db.engine import create_db_engine, make_session_factory
from gateway.api import docs, health, model_info, predictions
from gateway.bodies import init_bodies
from gateway.caller import init_caller
from gateway.errors import init_errors
from gateway.extensions import spec
from gateway.logs import configure_logging, init_access_log
from gateway.request_id import init_request_id
from gateway.runtime import Runtime, init_runtime
from models.artifacts import ArtifactStore


def create_app(settings: Settings | None = None) -> Flask:
    """Build the gateway app. Opens no connection and loads no model until a request needs it."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask("predgate")
    app.config.update(settings.flask_config())
    engine = create_db_engine(settings.database_url)
    init_runtime(
        app,
        Runtime(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            artifacts=ArtifactStore(settings.artifacts_dir),
            model_cache=ModelCache(
                ArtifactStore(settings.artifacts_dir), maxsize=settings.model_cache_size
            ),
        ),
    )
    init_request_id(app)
    init_access_log(app)
    init_bodies(app)
    init_caller(app)
    init_errors(app)
    for blueprint in (predictions.bp, model_info.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    spec.register(app)
    return app
