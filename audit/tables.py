"""Audit tables: append-only records, the chain head, and signed checkpoints (the Merkle tree
over the records is in audit.tree_tables)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class AuditRecordRow(Base):
    __tablename__ = "audit_records"

    # Assigned under the head lock, so gap-free and in chain order across every writer.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    event_type: Mapped[str] = mapped_column(String(40), index=True)
    outcome: Mapped[str] = mapped_column(String(10))
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    http_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    route: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tenant_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    principal_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    principal_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    auth_method: Mapped[str | None] = mapped_column(String(20), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(600), nullable=True)
    instance_id: Mapped[str] = mapped_column(String(100))
    process_id: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Canonical JSON of what an administrative act changed (never a secret).
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), index=True)


class AuditHeadRow(Base):
    """One row: the newest record's seq and hash; locking it serialises chain appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger)
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditCheckpointRow(Base):
    """A signed statement that the chain's record `seq` has hash `hash`.

    kind `checkpoint` is written periodically; kind `anchor` marks where pruned records ended.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(200))
