"""PostgreSQL: audit_append(), which chains and stores a batch of audit records under the head's
row lock in one call

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# `records` is a JSON array of strings (one parameter, cheap to send); each is the canonical JSON
# of one record's hashed fields, as
# audit.events.AuditEvent.chain_template writes it: with "seq":-1 and "prev_hash":"@prev@" in
# place of the values only the chain's head can give. Inside JSON strings every quote is
# escaped, so those exact byte sequences can only be the keys predgate wrote. The hash is the
# same SHA-256 of the same text that audit.events.record_hash computes in Python.
# A call received after `deadline` appends nothing: its caller has already answered 503.
CREATE = r"""
CREATE OR REPLACE FUNCTION audit_append(records json, deadline timestamptz)
RETURNS TABLE (head_seq bigint, head_hash text, head_checkpoint_seq bigint,
               head_checkpoint_at timestamptz, appended integer)
LANGUAGE plpgsql AS $$
DECLARE
    position bigint;
    previous text;
    content text;
    digest text;
    count integer := 0;
BEGIN
    IF deadline IS NULL OR statement_timestamp() < deadline THEN
        SELECT h.seq, h.hash INTO position, previous FROM audit_head h WHERE h.id = 1 FOR UPDATE;
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
        h.checkpoint_at, count FROM audit_head h WHERE h.id = 1;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append(json, timestamptz)")
