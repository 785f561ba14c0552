"""Architecture checks: domain packages stay plain Python; migrations match the tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.base import Base
from db.migrations import MIGRATIONS_DIR, alembic_config

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_PACKAGES = ["auth", "models", "audit", "config", "db"]
FORBIDDEN = ("flask", "werkzeug", "gateway")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_domain_packages_do_not_import_flask(package: str) -> None:
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN or top.startswith("flask_"):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_single_migration_head() -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1


def test_tables_match_migrations(engine, database_url) -> None:
    import audit.tables  # noqa: F401
    import auth.tables  # noqa: F401
    import models.tables  # noqa: F401

    alembic_config(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
