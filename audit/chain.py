"""The append path: place events in the one hash chain and sign checkpoints of its head.

Appends from every worker and replica serialise on the single `audit_head` row: the first
statement of an append updates it (a row lock on PostgreSQL, the write lock on SQLite), so
seq numbers are gap-free and each record's prev_hash is the true previous hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.events import RECORD_FIELDS, AuditEvent, format_ts
from audit.signing import CheckpointSigner
from audit.tables import AuditCheckpointRow, AuditHeadRow, AuditRecordRow

HEAD_ID = 1
log = logging.getLogger("predgate.audit")
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


@dataclass(frozen=True)
class Placement:
    """Where a record went: its seq and its hash (what an answer's receipt header names)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Appended:
    """The chain's head after an append, and the place of each appended record in order."""

    head: Head
    placements: list[Placement]


class AppendExpired(RuntimeError):
    """The database received the append after its deadline and refused it: nothing committed."""


# PostgreSQL: one call of the audit_append() function (migration 0006), sent in autocommit mode,
# so a batch costs one round trip. It takes the head's row lock, chains the records from their
# templates (SHA-256 in the database, over the same text Python hashes), stores them and moves
# the head, all in one statement: writers in several processes queue on the lock for the
# length of that statement, and none ever has to chain again. A call the database receives
# after its deadline appends nothing (a database frozen past the answer's deadline must not
# commit a record that contradicts it).
_PG_APPEND_DRIVER = (
    "SELECT head_seq, head_hash, head_checkpoint_seq, head_checkpoint_at, appended, prev_hash "
    "FROM audit_append(CAST(%(records)s AS json), CAST(%(deadline)s AS timestamptz))"
)
_PG_APPEND = text(
    _PG_APPEND_DRIVER.replace("%(records)s", ":records").replace("%(deadline)s", ":deadline")
)


def append_and_commit(
    connection: Connection,
    events: Sequence[AuditEvent],
    *,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    head_hint: Head | None = None,
    deadline: datetime | None = None,
) -> Appended:
    """Append events and commit them (the request writer's path); returns the new head, which
    the caller may pass back as `head_hint` (SQLite uses it to skip reading the head), and
    where each record went.

    On PostgreSQL `connection` is in autocommit mode, the append is one round trip and
    AppendExpired says the database received it after `deadline` and stored nothing. A
    checkpoint that falls due is signed in a short transaction of its own.
    """
    if connection.dialect.name != "postgresql":
        with connection.begin():
            return _append_sqlite(connection, events, signer, policy, head_hint)
    appended = _append_postgresql(connection, events, deadline)
    if checkpoint_due(appended.head, policy, datetime.now(UTC)):
        with connection.engine.begin() as own:
            checkpoint_locked_if_due(own, signer=signer, policy=policy)
    return appended


def _append_postgresql(
    executor: Executor, events: Sequence[AuditEvent], deadline: datetime | None
) -> Appended:
    params = {
        "records": json.dumps([event.chain_template() for event in events]),
        "deadline": deadline,
    }
    if isinstance(executor, Connection):
        # The request writer's path, once per batch: straight to psycopg, whose statement
        # handling is all it needs.
        driver = executor.connection.driver_connection
        with _driver_errors(executor):
            row = driver.execute(_PG_APPEND_DRIVER, params).fetchone()  # type: ignore[union-attr]
    else:
        row = executor.execute(_PG_APPEND, params).one()
    if int(row[4]) != len(events):
        raise AppendExpired("the database received the append after its deadline")
    head = Head(int(row[0]), str(row[1]), int(row[2]), _utc(row[3]))
    # The database chained the batch onto `prev_hash`; the same templates hashed here give
    # each record's hash, and the last one must be the head's.
    records = _chain(events, Head(head.seq - len(events), str(row[5]), 0, None))
    if records[-1]["hash"] != head.hash:
        # The records are committed either way (and verify names the difference): only the
        # answers go without the hash they could not be told.
        log.error("audit records hashed differently in the database: no Audit-Record header")
        return Appended(head, [])
    return Appended(head, [Placement(r["seq"], r["hash"]) for r in records])


def _append_sqlite(
    connection: Connection,
    events: Sequence[AuditEvent],
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    hint: Head | None,
) -> Appended:
    # In the embedded default one process writes, so the head it wrote last is almost always
    # still the head: move it conditionally (which also takes the write lock) and skip reading
    # it. If anything else appended meanwhile, fall back to lock-and-read in this transaction.
    # Plain DB-API calls: this runs for every batch, and SQLAlchemy's statement handling cost
    # more than SQLite's own work.
    if hint is not None:
        records = _chain(events, hint)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with _driver_errors(connection):
            cursor.execute(
                _SQLITE_MOVE_HEAD,
                (records[-1]["seq"], records[-1]["hash"], HEAD_ID, hint.seq, hint.hash),
            )
            moved = cursor.rowcount == 1
            if moved:
                cursor.executemany(
                    _SQLITE_INSERT,
                    [_sqlite_row(r, e) for r, e in zip(records, events, strict=True)],
                )
        if moved:
            head = Head(
                records[-1]["seq"], records[-1]["hash"], hint.checkpoint_seq, hint.checkpoint_at
            )
            if checkpoint_due(head, policy, datetime.now(UTC)):
                checkpoint_locked_if_due(connection, signer=signer, policy=policy)
                head = read_head(connection)
            return Appended(head, [Placement(r["seq"], r["hash"]) for r in records])
    placements = append_events(connection, events, signer=signer, policy=policy)
    return Appended(read_head(connection), placements)


@contextlib.contextmanager
def _driver_errors(connection: Connection) -> Iterator[None]:
    """Raise a driver's error as SQLAlchemy's (IntegrityError, OperationalError, ... with
    `connection_invalidated` set when the connection was lost), as if the statement had gone
    through SQLAlchemy: callers tell a taken event id from a lost commit by those classes."""
    dialect = connection.dialect
    dbapi = dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        driver = connection.connection.dbapi_connection
        lost = dialect.is_disconnect(exc, driver, None)
        raise DBAPIError.instance(
            None, None, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc


_SQLITE_MOVE_HEAD = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = ? AND seq = ? AND hash = ?"
_SQLITE_INSERT = (
    f"INSERT INTO audit_records ({', '.join(RECORD_FIELDS)}) "  # noqa: S608 (constant names)
    f"VALUES ({', '.join('?' for _ in RECORD_FIELDS)})"
)


def _sqlite_row(record: dict[str, Any], event: AuditEvent) -> tuple[Any, ...]:
    # Timestamps as SQLAlchemy stores them on SQLite (naive UTC text), so queries match.
    stored = {**record, "ts": event.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
    return tuple(stored[name] for name in RECORD_FIELDS)


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
) -> list[Placement]:
    """Append events to the chain inside the caller's transaction (an administrative act and
    its record commit together); returns where each went."""
    if not events:
        return []
    dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
    if dialect.name == "postgresql":
        appended = _append_postgresql(session, events, None)
        new_head, placements = appended.head, appended.placements
    else:
        head = lock_head(session)
        records = _chain(events, head)
        rows = [{**record, "ts": event.ts} for record, event in zip(records, events, strict=True)]
        seq, prev_hash = records[-1]["seq"], records[-1]["hash"]
        session.execute(insert(AuditRecordRow), rows)
        session.execute(
            update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(seq=seq, hash=prev_hash)
        )
        new_head = Head(seq, prev_hash, head.checkpoint_seq, head.checkpoint_at)
        placements = [Placement(r["seq"], r["hash"]) for r in records]
    if checkpoint_due(new_head, policy, datetime.now(UTC)):
        write_checkpoint(session, lock_head(session), signer=signer, kind="checkpoint")
    return placements


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
