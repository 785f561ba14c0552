"""Shared fixtures: settings per test, an app and client on SQLite and (when
PREDGATE_TEST_DATABASE_URL is set) PostgreSQL, and builders for tenants, keys and models."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import joblib
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from auth.api_keys import issue_key
from auth.tenants import assign_model, create_tenant
from config import Settings
from db.base import Base
from db.engine import create_db_engine, make_session_factory
from db.migrations import upgrade
from gateway import create_app
from gateway.cli import cli
from gateway.runtime import get_runtime
from models.artifacts import ArtifactStore
from models.registry import ModelVersion, register_model
from tests import fixtures_models
from tests.ratelimit_support import REDIS_URL_VARIABLE, RUN_KEY_PREFIX, delete_keys_with_prefix

PG_URL_VARIABLE = "PREDGATE_TEST_DATABASE_URL"


@pytest.fixture(scope="session", autouse=True)
def redis_cleanup() -> Iterator[None]:
    """Delete, once the run ends, every counter it left in the shared test Redis: tests count
    under key prefixes of this run (tests.ratelimit_support.unique_key_prefix)."""
    yield
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        delete_keys_with_prefix(client, RUN_KEY_PREFIX)
    finally:
        client.close()


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_URL_VARIABLE) else ["sqlite"]


@dataclass(frozen=True)
class Database:
    """A migrated database for this test session, reset between tests."""

    backend: str
    url: str
    template: Path | None  # SQLite: a migrated file copied for each test


@pytest.fixture(scope="session", params=_backends())
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """One migrated database per backend and session."""
    if request.param == "sqlite":
        template = tmp_path_factory.mktemp("db") / "template.db"
        engine = create_db_engine(f"sqlite:///{template}")
        upgrade(engine)
        engine.dispose()
        yield Database("sqlite", "", template)
        return
    base_url = os.environ.get(PG_URL_VARIABLE)
    if not base_url:  # a test asked for PostgreSQL alone
        pytest.skip(f"{PG_URL_VARIABLE} is not set")
    schema = f"predgate_test_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield Database("postgresql", url, None)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(database: Database, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database for one test."""
    if database.template is not None:
        path = tmp_path / "predgate.db"
        shutil.copyfile(database.template, path)
        yield f"sqlite:///{path}"
        return
    yield database.url
    engine = create_db_engine(database.url)
    tables = ", ".join(
        f'"{t.name}"'
        for t in reversed(Base.metadata.sorted_tables)
        if t.name not in ("audit_head", "audit_tree", "change_generation")
    )
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # Back to the state the migration leaves: an empty chain at the genesis hash.
        connection.execute(
            text(
                "UPDATE audit_head SET seq = 0, hash = :genesis, checkpoint_seq = 0, "
                "checkpoint_at = NULL"
            ),
            {"genesis": "0" * 64},
        )
        connection.execute(text("UPDATE audit_tree SET size = 0, first_seq = NULL, origin = NULL"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own data directory, database and secret."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key=secrets.token_hex(32).encode(),
        max_batch=50,
        max_body_bytes=64 * 1024,
        model_cache_size=4,
        instance_id="test",
        # Every request sees changes made just before it (production polls every 250 ms).
        change_poll_seconds=0,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    get_runtime(application).close()


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build extra apps (other settings or sinks); their resources are released afterwards,
    before the test's database is emptied (hence `database_url`: set up first, torn down last;
    an app still running would write its final checkpoint into the emptying tables)."""
    built: list[Flask] = []

    def build(settings: Settings, **kwargs: Any) -> Flask:
        application = create_app(settings, **kwargs)
        built.append(application)
        return application

    yield build
    for application in built:
        get_runtime(application).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    db_engine = create_db_engine(settings.database_url)
    yield db_engine
    db_engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_session_factory(engine)() as db_session:
        yield db_session


@pytest.fixture
def artifacts(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.artifacts_dir)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small fitted joblib files, built once per session."""
    folder = tmp_path_factory.mktemp("model-files")
    paths = {}
    for name, estimator in fixtures_models.build_estimators().items():
        paths[name] = folder / f"{name}.joblib"
        joblib.dump(estimator, paths[name])
    return paths


@dataclass
class World:
    """Two tenants, each with its own model and key: acme -> house-price, globex -> iris."""

    acme_key: str
    globex_key: str
    acme_key_id: str
    globex_key_id: str
    house_price: ModelVersion
    iris: ModelVersion


@pytest.fixture
def world(
    session: Session, settings: Settings, artifacts: ArtifactStore, model_files: dict[str, Path]
) -> World:
    """The demo's shape, built with the domain functions the CLI uses."""
    house = register_model(
        session,
        artifacts,
        name="house-price",
        artifact_path=model_files["house-price"],
        registered_by="test",
    )
    iris = register_model(
        session, artifacts, name="iris", artifact_path=model_files["iris"], registered_by="test"
    )
    keys = {}
    for tenant, model in (("acme", "house-price"), ("globex", "iris")):
        create_tenant(session, name=tenant)
        assign_model(session, tenant, model_name=model, version=None)
        keys[tenant] = issue_key(
            session, settings.secret_key, tenant_name=tenant, created_by="test"
        )
    session.commit()
    return World(
        acme_key=keys["acme"].api_key,
        globex_key=keys["globex"].api_key,
        acme_key_id=keys["acme"].key.key_id,
        globex_key_id=keys["globex"].key.key_id,
        house_price=house,
        iris=iris,
    )


@pytest.fixture
def predgate(settings: Settings) -> Callable[..., Any]:
    """Run `predgate ARGS...` with this test's settings in the environment."""
    env = {
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
    }

    def run(*args: str, ok: bool = True):
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def bearer(key: str) -> dict[str, str]:
    """Authorization header for a key or token."""
    return {"Authorization": f"Bearer {key}"}


HOUSE = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
