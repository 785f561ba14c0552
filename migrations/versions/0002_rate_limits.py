"""rate limits: policies on tenants and keys, key lineage for rotation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit", sa.String(length=200), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("rate_limit", sa.String(length=200), nullable=True))
    _backfill_lineage()
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("lineage_id", existing_type=sa.String(length=32), nullable=False)


def _backfill_lineage() -> None:
    # A key's lineage is the first key of its rotation chain (followed back through replaced_by),
    # so keys rotated before this revision already share counters with their predecessors.
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT key_id, replaced_by FROM api_keys")).all()
    predecessor = {successor: key_id for key_id, successor in rows if successor is not None}
    updates = []
    for key_id, _ in rows:
        root, seen = key_id, {key_id}
        while root in predecessor and predecessor[root] not in seen:
            root = predecessor[root]
            seen.add(root)
        updates.append({"key_id": key_id, "lineage_id": root})
    if updates:
        connection.execute(
            sa.text("UPDATE api_keys SET lineage_id = :lineage_id WHERE key_id = :key_id"),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("rate_limit")
        batch_op.drop_column("lineage_id")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("rate_limit")
