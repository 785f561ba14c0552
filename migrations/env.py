"""Alembic environment: runs on the engine handed over by db.migrations (or PREDGATE_*)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

import audit.tables
import audit.tree_tables
import auth.tables
import db.changes
import models.tables
from db.base import Base

# Import for their side effect: every table registers on Base.metadata.
_ = (auth.tables, models.tables, audit.tables, audit.tree_tables, db.changes)

target_metadata = Base.metadata


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from config import Settings
        from db.engine import create_db_engine

        engine = create_db_engine(Settings.from_env().database_url)
    assert isinstance(engine, Engine)
    return engine


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
