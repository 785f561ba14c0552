"""Typed feature schema per model version: each feature's type, categories and whether it may
be missing

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 20:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for versions registered before types were recorded: every feature a required number,
    # which is what those versions accepted.
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("feature_schema", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("feature_schema")
