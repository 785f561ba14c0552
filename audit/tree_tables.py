"""The Merkle tree's tables: its size, the hashes of its complete subtrees, and its signed
heads. Apart from audit.tables so that commands which only read records (`predgate audit
query`) do not build them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class AuditTreeRow(Base):
    """One row: how many records the Merkle tree holds as leaves; locking it serialises growth.

    Leaf i is the record with seq `first_seq + i` (1 for a log that had all its records when
    the tree began; a log pruned before then starts at its first kept record). `origin` names
    the log in its signed tree heads; fixed when the tree begins.
    """

    __tablename__ = "audit_tree"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    first_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    origin: Mapped[str | None] = mapped_column(String(200), nullable=True)


class AuditTreeNodeRow(Base):
    """The hash of one complete subtree: leaves [idx * 2**level, (idx + 1) * 2**level).

    Kept when records are pruned, so every signed head can still be proven consistent.
    """

    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditTreeHeadRow(Base):
    """A signed tree head: the C2SP checkpoint note, exactly as signed."""

    __tablename__ = "audit_tree_heads"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text)
