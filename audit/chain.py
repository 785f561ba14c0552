"""The append path: place events in the one hash chain and sign checkpoints of its head.

Appends from every worker and replica serialise on the single `audit_head` row: the first
statement of an append updates it (a row lock on PostgreSQL, the write lock on SQLite), so
seq numbers are gap-free and each record's prev_hash is the true previous hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from audit.events import AuditEvent, format_ts, parse_ts
from audit.signing import CheckpointSigner
from audit.tables import AuditCheckpointRow, AuditHeadRow, AuditRecordRow

HEAD_ID = 1


@dataclass(frozen=True)
class CheckpointPolicy:
    """Sign the head at least every `every_records` records or `every_seconds` seconds."""

    every_records: int = 1000
    every_seconds: float = 60.0


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    checkpoint_seq: int
    checkpoint_at: datetime | None


def append_events(
    session: Session,
    events: Sequence[AuditEvent],
    *,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
) -> list[dict[str, Any]]:
    """Append events to the chain inside the caller's transaction; return the records."""
    if not events:
        return []
    head = lock_head(session)
    records = []
    prev_hash, seq = head.hash, head.seq
    for event in events:
        seq += 1
        record = event.to_record(seq=seq, prev_hash=prev_hash)
        prev_hash = record["hash"]
        records.append(record)
    session.execute(insert(AuditRecordRow), [_row_values(record) for record in records])
    session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(seq=seq, hash=prev_hash)
    )
    new_head = Head(seq, prev_hash, head.checkpoint_seq, head.checkpoint_at)
    if checkpoint_due(new_head, policy, datetime.now(UTC)):
        write_checkpoint(session, new_head, signer=signer, kind="checkpoint")
    return records


def lock_head(session: Session) -> Head:
    """Take the chain's write lock and read its head."""
    session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(seq=AuditHeadRow.seq)
    )
    return read_head(session)


def read_head(session: Session) -> Head:
    """The head as committed (or as locked by this transaction)."""
    row = session.execute(select(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID)).scalar_one()
    session.expunge(row)
    return Head(row.seq, row.hash, row.checkpoint_seq, row.checkpoint_at)


def checkpoint_due(head: Head, policy: CheckpointPolicy, now: datetime) -> bool:
    """Records exist past the last checkpoint and enough records or time have gone by."""
    uncovered = head.seq - head.checkpoint_seq
    if uncovered <= 0:
        return False
    if uncovered >= policy.every_records or head.checkpoint_at is None:
        return True
    return now - head.checkpoint_at >= timedelta(seconds=policy.every_seconds)


def checkpoint_now_if_due(
    session: Session, *, signer: CheckpointSigner, policy: CheckpointPolicy
) -> bool:
    """Sign the head if a checkpoint is due (used by the writer's idle tick); commits."""
    if not checkpoint_due(read_head(session), policy, datetime.now(UTC)):
        session.rollback()
        return False
    head = lock_head(session)
    if not checkpoint_due(head, policy, datetime.now(UTC)):
        session.rollback()
        return False
    write_checkpoint(session, head, signer=signer, kind="checkpoint")
    session.commit()
    return True


def write_checkpoint(session: Session, head: Head, *, signer: CheckpointSigner, kind: str) -> None:
    """Sign (kind, seq, hash, ts, key id) of a chain position.

    A `checkpoint` also advances the head's checkpoint mark; an `anchor` (written by
    retention at the cut) leaves it alone.
    """
    now = datetime.now(UTC)
    statement = checkpoint_statement(kind, head.seq, head.hash, format_ts(now), signer.key_id)
    session.add(
        AuditCheckpointRow(
            kind=kind,
            seq=head.seq,
            hash=head.hash,
            ts=now,
            key_id=signer.key_id,
            signature=signer.sign(statement),
        )
    )
    if kind == "checkpoint":
        session.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == HEAD_ID)
            .values(checkpoint_seq=head.seq, checkpoint_at=now)
        )
    session.flush()


def checkpoint_statement(kind: str, seq: int, hash_: str, ts: str, key_id: str) -> dict[str, Any]:
    """What a checkpoint's signature covers."""
    return {"kind": kind, "seq": seq, "hash": hash_, "ts": ts, "key_id": key_id}


def _row_values(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "ts": parse_ts(record["ts"])}
