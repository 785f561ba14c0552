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

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.orm import Session

from audit.events import AuditEvent, canonical_json, format_ts
from audit.signing import CheckpointSigner
from audit.tables import AuditCheckpointRow, AuditHeadRow, AuditRecordRow

HEAD_ID = 1
# Appends run on an ORM session (admin acts, in the caller's transaction) or on a plain
# connection (the request writer, which needs no ORM machinery).
Executor = Session | Connection


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


class AppendExpired(RuntimeError):
    """The database received the append after its deadline and refused it: nothing committed."""


# PostgreSQL: one statement, sent in autocommit mode, so a batch costs one round trip and the
# head's row lock is held for that statement only. It moves the head, inserts the records and,
# when due, the signed checkpoint, all only if the head is still where this writer believes it
# is and the statement runs before its deadline (a database that was frozen past the answer's
# deadline must not commit a record that contradicts it). Otherwise the head is rewritten with
# its own values, which takes its row lock and returns its latest version: the writer re-chains
# on that and tries again.
_PG_OK = (
    "(seq = :old_seq AND hash = :old_hash AND (CAST(:deadline AS timestamptz) IS NULL "
    "OR statement_timestamp() < CAST(:deadline AS timestamptz)))"
)
_PG_MOVED = "(SELECT seq FROM moved) = :new_seq AND (SELECT hash FROM moved) = :new_hash"
_PG_APPEND = text(
    f"""
    WITH moved AS (
        UPDATE audit_head SET
            seq = CASE WHEN {_PG_OK} THEN :new_seq ELSE seq END,
            hash = CASE WHEN {_PG_OK} THEN :new_hash ELSE hash END,
            checkpoint_seq = CASE WHEN {_PG_OK} AND :checkpoint THEN :new_seq
                ELSE checkpoint_seq END,
            checkpoint_at = CASE WHEN {_PG_OK} AND :checkpoint
                THEN CAST(:checkpoint_at AS timestamptz) ELSE checkpoint_at END
        WHERE id = :head_id
        RETURNING seq, hash, checkpoint_seq, checkpoint_at
    ),
    appended AS (
        INSERT INTO audit_records
        SELECT * FROM json_populate_recordset(NULL::audit_records, CAST(:rows AS json))
        WHERE {_PG_MOVED}
        RETURNING seq
    ),
    signed AS (
        INSERT INTO audit_checkpoints (kind, seq, hash, ts, key_id, signature)
        SELECT 'checkpoint', :new_seq, :new_hash, CAST(:checkpoint_at AS timestamptz),
               :key_id, :signature
        WHERE :checkpoint AND {_PG_MOVED}
        RETURNING id
    )
    SELECT seq, hash, checkpoint_seq, checkpoint_at,
           (SELECT count(*) FROM appended) AS appended,
           (CAST(:deadline AS timestamptz) IS NULL
            OR statement_timestamp() < CAST(:deadline AS timestamptz)) AS in_time
    FROM moved
    """  # noqa: S608  (no value is formatted in: only the constant condition above)
)
OPTIMISTIC_ATTEMPTS = 3


def append_and_commit(
    connection: Connection,
    events: Sequence[AuditEvent],
    *,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    head_hint: Head | None = None,
    deadline: datetime | None = None,
) -> tuple[list[dict[str, Any]], Head]:
    """Append events and commit them (the request writer's path).

    On PostgreSQL `connection` is in autocommit mode and the append is one statement, refused
    with AppendExpired when the database runs it after `deadline`. Returns the records and the
    new head, which the caller passes back as `head_hint`.
    """
    if connection.dialect.name != "postgresql":
        with connection.begin():
            return _append_sqlite(connection, events, signer, policy, head_hint)
    head = head_hint
    for _attempt in range(OPTIMISTIC_ATTEMPTS):
        if head is None:
            head = read_head(connection)
        records = _chain(events, head)
        new_head = Head(
            records[-1]["seq"], records[-1]["hash"], head.checkpoint_seq, head.checkpoint_at
        )
        now = datetime.now(UTC)
        checkpoint = checkpoint_due(new_head, policy, now)
        statement = checkpoint_statement(
            "checkpoint", new_head.seq, new_head.hash, format_ts(now), signer.key_id
        )
        row = connection.execute(
            _PG_APPEND,
            {
                "head_id": HEAD_ID,
                "old_seq": head.seq,
                "old_hash": head.hash,
                "new_seq": new_head.seq,
                "new_hash": new_head.hash,
                "rows": canonical_json(records),
                "deadline": deadline,
                "checkpoint": checkpoint,
                "checkpoint_at": now if checkpoint else None,
                "key_id": signer.key_id,
                "signature": signer.sign(statement) if checkpoint else "",
            },
        ).one()
        current = Head(int(row[0]), str(row[1]), int(row[2]), _utc(row[3]))
        if int(row[4]) == len(records):
            return records, current
        if not row[5]:
            raise AppendExpired("the database received the append after its deadline")
        head = current  # another writer appended first: chain onto its head and try again
    # Another writer with a long queue can win every race: take the head's lock instead (two
    # round trips, but this writer is certain to get through).
    with connection.engine.begin() as locked:
        records = append_events(locked, events, signer=signer, policy=policy)
        if deadline is not None and datetime.now(UTC) >= deadline:
            raise AppendExpired("the append reached the database after its deadline")
        return records, read_head(locked)


def _append_sqlite(
    connection: Connection,
    events: Sequence[AuditEvent],
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    hint: Head | None,
) -> tuple[list[dict[str, Any]], Head]:
    # In the embedded default one process writes, so the head it wrote last is almost always
    # still the head: move it conditionally (which also takes the write lock) and skip reading
    # it. If anything else appended meanwhile, fall back to lock-and-read in this transaction.
    if hint is not None:
        records = _chain(events, hint)
        moved = connection.execute(
            update(AuditHeadRow)
            .where(
                AuditHeadRow.id == HEAD_ID,
                AuditHeadRow.seq == hint.seq,
                AuditHeadRow.hash == hint.hash,
            )
            .values(seq=records[-1]["seq"], hash=records[-1]["hash"])
        ).rowcount
        if moved == 1:
            rows = [{**r, "ts": e.ts} for r, e in zip(records, events, strict=True)]
            connection.execute(insert(AuditRecordRow), rows)
            head = Head(
                records[-1]["seq"], records[-1]["hash"], hint.checkpoint_seq, hint.checkpoint_at
            )
            if checkpoint_due(head, policy, datetime.now(UTC)):
                checkpoint_locked_if_due(connection, signer=signer, policy=policy)
                head = read_head(connection)
            return records, head
    records = append_events(connection, events, signer=signer, policy=policy)
    return records, read_head(connection)


def _chain(events: Sequence[AuditEvent], head: Head) -> list[dict[str, Any]]:
    records = []
    prev_hash, seq = head.hash, head.seq
    for event in events:
        seq += 1
        record = event.to_record(seq=seq, prev_hash=prev_hash)
        prev_hash = record["hash"]
        records.append(record)
    return records


def append_events(
    session: Executor,
    events: Sequence[AuditEvent],
    *,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
) -> list[dict[str, Any]]:
    """Append events to the chain inside the caller's transaction; return the records."""
    if not events:
        return []
    head = lock_head(session)
    records = _chain(events, head)
    rows = [{**record, "ts": event.ts} for record, event in zip(records, events, strict=True)]
    seq, prev_hash = records[-1]["seq"], records[-1]["hash"]
    session.execute(insert(AuditRecordRow), rows)
    session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(seq=seq, hash=prev_hash)
    )
    new_head = Head(seq, prev_hash, head.checkpoint_seq, head.checkpoint_at)
    if checkpoint_due(new_head, policy, datetime.now(UTC)):
        write_checkpoint(session, new_head, signer=signer, kind="checkpoint")
    return records


_HEAD_COLUMNS = (
    AuditHeadRow.seq,
    AuditHeadRow.hash,
    AuditHeadRow.checkpoint_seq,
    AuditHeadRow.checkpoint_at,
)


def lock_head(session: Executor) -> Head:
    """Take the chain's write lock and read its head, in one statement."""
    row = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == HEAD_ID)
        .values(seq=AuditHeadRow.seq)
        .returning(*_HEAD_COLUMNS)
    ).one()
    return Head(row[0], row[1], row[2], _utc(row[3]))


def read_head(session: Executor) -> Head:
    """The head as committed (or as locked by this transaction)."""
    row = session.execute(select(*_HEAD_COLUMNS).where(AuditHeadRow.id == HEAD_ID)).one()
    return Head(row[0], row[1], row[2], _utc(row[3]))


def _utc(value: datetime | None) -> datetime | None:
    # RETURNING hands back the raw column value (naive on SQLite) without the type's
    # result processing on every backend, so normalise here.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def checkpoint_due(head: Head, policy: CheckpointPolicy, now: datetime) -> bool:
    """Records exist past the last checkpoint and enough records or time have gone by."""
    uncovered = head.seq - head.checkpoint_seq
    if uncovered <= 0:
        return False
    if uncovered >= policy.every_records or head.checkpoint_at is None:
        return True
    return now - head.checkpoint_at >= timedelta(seconds=policy.every_seconds)


def checkpoint_now_if_due(
    connection: Connection, *, signer: CheckpointSigner, policy: CheckpointPolicy
) -> bool:
    """Sign the head if a checkpoint is due (the writer's idle tick); commits."""
    with connection.begin():
        due = checkpoint_due(read_head(connection), policy, datetime.now(UTC))
    if not due:
        return False
    with connection.begin():
        return checkpoint_locked_if_due(connection, signer=signer, policy=policy)


def checkpoint_locked_if_due(
    connection: Executor, *, signer: CheckpointSigner, policy: CheckpointPolicy
) -> bool:
    """Inside the caller's transaction: lock the head, and sign it if still due."""
    head = lock_head(connection)
    if not checkpoint_due(head, policy, datetime.now(UTC)):
        return False
    write_checkpoint(connection, head, signer=signer, kind="checkpoint")
    return True


def write_checkpoint(session: Executor, head: Head, *, signer: CheckpointSigner, kind: str) -> None:
    """Sign (kind, seq, hash, ts, key id) of a chain position.

    A `checkpoint` also advances the head's checkpoint mark; an `anchor` (written by
    retention at the cut) leaves it alone.
    """
    now = datetime.now(UTC)
    statement = checkpoint_statement(kind, head.seq, head.hash, format_ts(now), signer.key_id)
    session.execute(
        insert(AuditCheckpointRow).values(
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


def checkpoint_statement(kind: str, seq: int, hash_: str, ts: str, key_id: str) -> dict[str, Any]:
    """What a checkpoint's signature covers."""
    return {"kind": kind, "seq": seq, "hash": hash_, "ts": ts, "key_id": key_id}
