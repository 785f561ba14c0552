"""The Merkle tree over the audit records (RFC 9162) and its signed tree heads; PostgreSQL's
audit_append() also returns the hash the batch chained onto, so each record's own hash is
known to the request it answers

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0006, with `prev_hash`: the head's hash before this batch. From it the caller computes
# every record's hash, in Python, from the same templates.
APPEND = r"""
CREATE FUNCTION audit_append(records json, deadline timestamptz)
RETURNS TABLE (head_seq bigint, head_hash text, head_checkpoint_seq bigint,
               head_checkpoint_at timestamptz, appended integer, prev_hash text)
LANGUAGE plpgsql AS $$
DECLARE
    position bigint;
    previous text;
    first_previous text;
    content text;
    digest text;
    count integer := 0;
BEGIN
    IF deadline IS NULL OR statement_timestamp() < deadline THEN
        SELECT h.seq, h.hash INTO position, previous FROM audit_head h WHERE h.id = 1 FOR UPDATE;
        first_previous := previous;
        FOR content IN SELECT json_array_elements_text(records) LOOP
            position := position + 1;
            content := replace(content, '"prev_hash":"@prev@"', '"prev_hash":"' || previous || '"');
            content := replace(content, '"seq":-1,', '"seq":' || position || ',');
            digest := encode(sha256(convert_to(content, 'UTF8')), 'hex');
            INSERT INTO audit_records SELECT * FROM json_populate_record(
                NULL::audit_records, (left(content, -1) || ',"hash":"' || digest || '"}')::json);
            previous := digest;
            count := count + 1;
        END LOOP;
        IF count > 0 THEN
            UPDATE audit_head SET seq = position, hash = previous WHERE id = 1;
        END IF;
    END IF;
    RETURN QUERY SELECT h.seq::bigint, h.hash::text, h.checkpoint_seq::bigint,
        h.checkpoint_at, count, first_previous FROM audit_head h WHERE h.id = 1;
END
$$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_tree",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.Column("origin", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_tree")),
    )
    tree = sa.table("audit_tree", sa.column("id", sa.Integer), sa.column("size", sa.BigInteger))
    op.bulk_insert(tree, [{"id": 1, "size": 0}])
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_nodes")),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("ts", db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_audit_tree_heads")),
    )
    with op.batch_alter_table("audit_tree_heads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_tree_heads_ts"), ["ts"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # The result type changes, so the function is replaced rather than redefined.
        op.execute("DROP FUNCTION audit_append(json, timestamptz)")
        op.execute(APPEND)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Back to 0006's function (its module name starts with a digit: imported by name).
        previous = importlib.import_module("migrations.versions.0006_audit_append_function")
        op.execute("DROP FUNCTION audit_append(json, timestamptz)")
        op.execute(previous.CREATE)
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_tree_nodes")
    op.drop_table("audit_tree")
