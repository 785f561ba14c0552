"""Per-app state: settings, database, artifact store and model cache, behind a typed accessor."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.recorder import AuditConfig
from audit.writer import AuditSink
from config import Settings
from models.artifacts import ArtifactStore
from models.inference import ModelCache

EXTENSION_KEY = "predgate.runtime"


@dataclass(frozen=True)
class Runtime:
    """What every request shares within one process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    artifacts: ArtifactStore
    model_cache: ModelCache
    audit_config: AuditConfig
    audit_sink: AuditSink


def init_runtime(app: Flask, runtime: Runtime) -> None:
    """Attach the runtime and close the request's session when the request ends."""
    app.extensions[EXTENSION_KEY] = runtime
    app.teardown_appcontext(_close_session)


def get_runtime(app: Flask | None = None) -> Runtime:
    """The runtime of the given (or current) app."""
    runtime = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(runtime, Runtime)
    return runtime


def db_session() -> Session:
    """The request's database session, opened on first use."""
    if "db_session" not in g:
        g.db_session = get_runtime().sessions()
    session = g.db_session
    assert isinstance(session, Session)
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
