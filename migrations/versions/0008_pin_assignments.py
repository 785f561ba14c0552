"""Pin assignments: every tenant that followed its model's latest version is pinned to the
version it is served now

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

tenants = sa.table(
    "tenants", sa.column("model_name", sa.String), sa.column("model_version", sa.Integer)
)
model_versions = sa.table("model_versions", sa.column("name", sa.String), sa.column("version"))
change_generation = sa.table(
    "change_generation", sa.column("id", sa.Integer), sa.column("generation", sa.BigInteger)
)


def upgrade() -> None:
    # A NULL version used to mean "follow the latest", which is what assigning a bare NAME
    # stored; from now on it means the explicit NAME@latest channel. Nobody chose that channel
    # before it existed, so each such tenant keeps the version it is served today and a new
    # registration no longer reaches it unassigned.
    served = (
        sa.select(sa.func.max(model_versions.c.version))
        .where(model_versions.c.name == tenants.c.model_name)
        .scalar_subquery()
    )
    op.execute(
        tenants.update()
        .where(tenants.c.model_name.is_not(None), tenants.c.model_version.is_(None))
        .values(model_version=served)
    )
    # Workers cache assignments until the generation moves (db.changes); move it with them.
    op.execute(
        change_generation.update()
        .where(change_generation.c.id == 1)
        .values(generation=change_generation.c.generation + 1)
    )


def downgrade() -> None:
    # Nothing to undo: a pinned version means the same to the code before this revision, and
    # which tenants followed the latest version before the upgrade was not kept (guessing it
    # back would unpin tenants that an operator has pinned since).
    pass
