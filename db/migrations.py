"""Alembic, driven from code: upgrade to head, and tell whether a database is at head.

Telling is done without Alembic: every command and readiness probe asks, and importing Alembic
costs more CPU than the rest of a quick command (bench/cli_start.py). It reads the revision
table Alembic keeps and the `revision`/`down_revision` lines of the migration files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps
_REVISION_LINE = re.compile(
    r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|\"[^\"]*\"|'[^']*')\s*$", re.MULTILINE
)


class DatabaseNotMigrated(RuntimeError):
    """The database is not at the revision this code expects."""


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs the repository's migrations on this engine."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest revision in the migrations folder: the one no other revision follows."""
    revisions: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            down = found.get("down_revision", "None")
            revisions[found["revision"].strip("\"'")] = None if down == "None" else down[1:-1]
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        raise DatabaseNotMigrated(
            f"the migrations folder holds {len(heads)} heads, not one: {sorted(heads)}"
        )
    return heads.pop()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        version = connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return None if version is None else str(version)


def upgrade(engine: Engine) -> str:
    """Apply every pending migration; return the revision reached."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")
    return head_revision()


def ensure_at_head(engine: Engine) -> None:
    """Raise DatabaseNotMigrated, saying what to run, unless the database is at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseNotMigrated(
            f"the database is at revision {current or 'none (empty)'}, this code needs {head}: "
            "run `predgate db upgrade`"
        )
