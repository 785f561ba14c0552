"""The Merkle tree over the audit records (RFC 9162), stored as the hashes of its complete
subtrees, and the tree heads signed as C2SP checkpoints.

The tree grows behind the chain, never in a request's way: the writer grows it and signs a head
after each checkpoint (so heads come at least as often as checkpoints), and a receipt asked for
a record no head covers yet grows it first. Growth serialises on the `audit_tree` row, not on
the chain's head, so appends go on meanwhile.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Connection, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from audit.events import format_ts
from audit.merkle import (
    NodeId,
    append_leaves,
    consistency_ranges,
    fold,
    hashes_for,
    inclusion_ranges,
    nodes_for,
    range_nodes,
)
from audit.receipt_verifier import note_key_id, record_leaf
from audit.signing import CheckpointSigner
from audit.tables import AuditHeadRow, AuditRecordRow
from audit.tree_tables import AuditTreeHeadRow, AuditTreeNodeRow, AuditTreeRow

TREE_ID = 1
# Leaves added per statement batch while growing (bounds memory on a long backlog).
GROW_STEP = 50_000
Executor = Session | Connection


class TreeGap(RuntimeError):
    """Records the tree needs are missing (pruned before the tree covered them)."""


@dataclass(frozen=True)
class TreeHead:
    """A signed tree head: `size` leaves, `root`, and the checkpoint note that signs them."""

    size: int
    root: bytes
    note: str
    signed_at: datetime
    key_id: str

    def as_json(self) -> dict[str, object]:
        return {
            "tree_size": self.size,
            "root_hash": base64.b64encode(self.root).decode(),
            "signed_at": format_ts(self.signed_at),
            "key_id": self.key_id,
            "checkpoint": self.note,
        }


@dataclass(frozen=True)
class TreeState:
    size: int
    first_seq: int | None
    origin: str | None


def default_origin(signer: CheckpointSigner) -> str:
    """The log's name when none is configured: stable for the life of the log (it is stored
    when the tree begins), different between installations."""
    return f"predgate/audit/{signer.key_id}"


def checkpoint_note(origin: str, size: int, root: bytes, signer: CheckpointSigner) -> str:
    """A C2SP tlog-checkpoint (origin, size, base64 root) in a signed note, key name = origin."""
    text = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    raw_key = signer.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = note_key_id(origin, raw_key) + signer.private_key.sign(text.encode())
    return f"{text}\n\u2014 {origin} {base64.b64encode(signature).decode()}\n"


def read_tree(executor: Executor) -> TreeState:
    row = executor.execute(
        select(AuditTreeRow.size, AuditTreeRow.first_seq, AuditTreeRow.origin).where(
            AuditTreeRow.id == TREE_ID
        )
    ).one()
    return TreeState(int(row[0]), row[1], row[2])


def _lock_tree(executor: Executor) -> TreeState:
    row = executor.execute(
        update(AuditTreeRow)
        .where(AuditTreeRow.id == TREE_ID)
        .values(size=AuditTreeRow.size)
        .returning(AuditTreeRow.size, AuditTreeRow.first_seq, AuditTreeRow.origin)
    ).one()
    return TreeState(int(row[0]), row[1], row[2])


_NODES = select(AuditTreeNodeRow.level, AuditTreeNodeRow.idx, AuditTreeNodeRow.hash)
_INSERT_NODES = {
    "postgresql": "COPY audit_tree_nodes (level, idx, hash) FROM STDIN",
    "sqlite": "INSERT INTO audit_tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
}


def _connection(executor: Executor) -> Connection:
    return executor if isinstance(executor, Connection) else executor.connection()


def read_nodes(executor: Executor, wanted: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """Stored nodes by (level, index): one primary-key lookup per node."""
    keys = sorted(set(wanted))
    if not keys:
        return {}
    connection = _connection(executor)
    if connection.dialect.name == "postgresql":
        queries = [_NODES.where(tuple_(AuditTreeNodeRow.level, AuditTreeNodeRow.idx).in_(keys))]
    else:
        # SQLite scans the whole table for a row-value IN list: one indexed IN list per level.
        by_level: dict[int, list[int]] = {}
        for level, idx in keys:
            by_level.setdefault(level, []).append(idx)
        queries = [
            _NODES.where(AuditTreeNodeRow.level == level, AuditTreeNodeRow.idx.in_(idxs))
            for level, idxs in by_level.items()
        ]
    found: dict[NodeId, bytes] = {}
    for query in queries:
        for level, idx, digest in connection.execute(query):
            found[(int(level), int(idx))] = bytes(digest)
    return found


def _insert_nodes(executor: Executor, nodes: dict[NodeId, bytes]) -> None:
    # Straight to the driver (COPY on PostgreSQL, executemany on SQLite), in the caller's
    # transaction: two rows per record, where SQLAlchemy's per-row work and one INSERT per
    # row on PostgreSQL cost more than the database's own.
    connection = _connection(executor)
    driver = connection.connection.driver_connection
    rows = [(level, idx, digest) for (level, idx), digest in nodes.items()]
    if connection.dialect.name == "postgresql":
        with driver.cursor() as cursor, cursor.copy(_INSERT_NODES["postgresql"]) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    else:
        driver.cursor().executemany(_INSERT_NODES["sqlite"], rows)  # type: ignore[union-attr]


def grow_tree(executor: Executor, *, origin: str, up_to_seq: int | None = None) -> TreeState:
    """Inside the caller's transaction: add the records up to `up_to_seq` (the chain's head
    when None) to the tree. Returns the tree as it now is."""
    state = _lock_tree(executor)
    if state.first_seq is None:
        first = executor.scalar(select(func.min(AuditRecordRow.seq)))
        if first is None:
            return state  # nothing recorded yet: the tree begins with the first record
        state = TreeState(state.size, int(first), state.origin or origin)
        executor.execute(
            update(AuditTreeRow)
            .where(AuditTreeRow.id == TREE_ID)
            .values(first_seq=state.first_seq, origin=state.origin)
        )
    first_seq = state.first_seq
    assert first_seq is not None
    if up_to_seq is None:
        up_to_seq = int(
            executor.execute(select(AuditHeadRow.seq).where(AuditHeadRow.id == 1)).one()[0]
        )
    size = state.size
    while first_seq + size <= up_to_seq:
        start = first_seq + size
        end = min(up_to_seq, start + GROW_STEP - 1)
        rows = executor.execute(
            select(AuditRecordRow.seq, AuditRecordRow.hash)
            .where(AuditRecordRow.seq >= start, AuditRecordRow.seq <= end)
            .order_by(AuditRecordRow.seq)
        ).all()
        if not rows:
            break  # the head moved on but its records are not visible to this transaction
        if int(rows[0][0]) != start or int(rows[-1][0]) != start + len(rows) - 1:
            raise TreeGap(f"audit records from seq {start} are missing: the tree cannot grow")
        frontier = read_nodes(executor, range_nodes(0, size))
        added = append_leaves(size, [record_leaf(h) for _, h in rows], frontier.__getitem__)
        _insert_nodes(executor, added)
        size += len(rows)
    if size != state.size:
        executor.execute(update(AuditTreeRow).where(AuditTreeRow.id == TREE_ID).values(size=size))
    return TreeState(size, first_seq, state.origin)


def tree_root(executor: Executor, size: int) -> bytes:
    """The root of the tree's first `size` leaves."""
    nodes = range_nodes(0, size)
    found = read_nodes(executor, nodes)
    return fold([found[node] for node in nodes])


_HEAD_COLUMNS = (
    AuditTreeHeadRow.tree_size,
    AuditTreeHeadRow.root_hash,
    AuditTreeHeadRow.note,
    AuditTreeHeadRow.ts,
    AuditTreeHeadRow.key_id,
)


def latest_head(executor: Executor) -> TreeHead | None:
    """The newest signed tree head (None before the first)."""
    row = executor.execute(
        select(*_HEAD_COLUMNS).order_by(AuditTreeHeadRow.tree_size.desc()).limit(1)
    ).first()
    return _head(row) if row is not None else None


def head_of_size(executor: Executor, size: int) -> TreeHead | None:
    """The signed head of exactly `size` leaves, if one was signed."""
    row = executor.execute(select(*_HEAD_COLUMNS).where(AuditTreeHeadRow.tree_size == size)).first()
    return _head(row) if row is not None else None


def heads_between(executor: Executor, low: int, high: int) -> list[TreeHead]:
    """Signed heads whose size lies in [low, high], smallest first."""
    rows = executor.execute(
        select(*_HEAD_COLUMNS)
        .where(AuditTreeHeadRow.tree_size >= low, AuditTreeHeadRow.tree_size <= high)
        .order_by(AuditTreeHeadRow.tree_size)
    )
    return [_head(row) for row in rows]


def _head(row: Any) -> TreeHead:
    size, root_hex, note, ts, key_id = row
    return TreeHead(int(size), bytes.fromhex(root_hex), note, ts, key_id)


def grow_and_sign(
    executor: Executor,
    signer: CheckpointSigner,
    *,
    origin: str | None = None,
    up_to_seq: int | None = None,
) -> TreeHead | None:
    """Inside the caller's transaction: grow the tree and sign a head of its new size, unless
    one of that size exists. Returns the newest head (None while the log is empty)."""
    state = grow_tree(executor, origin=origin or default_origin(signer), up_to_seq=up_to_seq)
    newest = latest_head(executor)
    if state.size == 0 or (newest is not None and newest.size >= state.size):
        return newest
    assert state.origin is not None
    root = tree_root(executor, state.size)
    now = datetime.now(UTC)
    note = checkpoint_note(state.origin, state.size, root, signer)
    executor.execute(
        insert(AuditTreeHeadRow).values(
            tree_size=state.size, root_hash=root.hex(), ts=now, key_id=signer.key_id, note=note
        )
    )
    return TreeHead(state.size, root, note, now, signer.key_id)


def inclusion_proof(executor: Executor, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf `index` in the tree's first `size` leaves."""
    ranges = inclusion_ranges(index, size)
    return hashes_for(ranges, read_nodes(executor, nodes_for(ranges)))


def consistency_proof(executor: Executor, old: int, new: int) -> list[bytes]:
    """RFC 9162 consistency proof from the tree's first `old` leaves to its first `new`."""
    ranges = consistency_ranges(old, new)
    return hashes_for(ranges, read_nodes(executor, nodes_for(ranges)))
