"""Migration 0008: every tenant that followed its model's latest version (a NULL version, what a
bare NAME used to store) is pinned to the version it was served, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from alembic import command
from sqlalchemy import Engine, text

from db.changes import read_generation
from db.engine import create_db_engine
from db.migrations import alembic_config
from tests.conftest import PG_URL_VARIABLE

NOW = "2026-01-01 00:00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database no migration has touched."""
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    base_url = os.environ.get(PG_URL_VARIABLE)
    if not base_url:
        pytest.skip(f"{PG_URL_VARIABLE} is not set")
    schema = f"predgate_migration_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    engine = create_db_engine(f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_following_tenants_are_pinned_to_the_version_they_were_served(
    empty_engine: Engine,
) -> None:
    config = alembic_config(empty_engine)
    command.upgrade(config, "0007")
    with empty_engine.begin() as connection:
        for name, version in (("house-price", 1), ("house-price", 3), ("iris", 1), ("iris", 2)):
            connection.execute(
                text(
                    "INSERT INTO model_versions (name, version, task, features, artifact_sha256, "
                    "artifact_size, runtime, registered_by, registered_at) "
                    "VALUES (:name, :version, 'regression', '[]', 'h', 1, 'onnx', 't', :now)"
                ),
                {"name": name, "version": version, "now": NOW},
            )
        # acme and initech followed "latest", globex was pinned, umbrella has no model.
        for tenant, model, version in (
            ("acme", "house-price", None),
            ("globex", "iris", 1),
            ("initech", "iris", None),
            ("umbrella", None, None),
        ):
            connection.execute(
                text(
                    "INSERT INTO tenants (name, status, model_name, model_version, created_at, "
                    "updated_at) VALUES (:tenant, 'active', :model, :version, :now, :now)"
                ),
                {"tenant": tenant, "model": model, "version": version, "now": NOW},
            )
    generation = read_generation(empty_engine)

    command.upgrade(config, "0008")
    with empty_engine.connect() as connection:
        assignments = {
            name: (model, version)
            for name, model, version in connection.execute(
                text("SELECT name, model_name, model_version FROM tenants")
            )
        }
    assert assignments == {
        "acme": ("house-price", 3),
        "globex": ("iris", 1),
        "initech": ("iris", 2),
        "umbrella": (None, None),
    }
    assert read_generation(empty_engine) > generation  # running workers drop cached tenants

    command.downgrade(config, "0007")  # nothing to undo: pinned versions stay as they are
    with empty_engine.connect() as connection:
        pinned = connection.execute(
            text("SELECT model_version FROM tenants WHERE name = 'acme'")
        ).scalar_one()
    assert pinned == 3
