"""The request writer: request threads hand their records to one writer thread per process, which
commits whatever is waiting as one batch (group commit, one round trip on PostgreSQL).

"The record is the answer": a request is answered only once its record committed, and the
client gets 503 ``audit_unavailable`` otherwise; the gateway then submits the record again
saying 503, with the same event id, so the record always says what the client got. The cases:

- committed in time: the answer is sent as built;
- still queued at the wait deadline, or the store is known to be down: never sent, so it can
  never commit: answered 503 at once;
- in flight (the database has it but has not answered): the request waits for the truth, up to
  `in_doubt_seconds`. The statement carries that deadline, and the database refuses it if it runs
  it later, so a database frozen past it cannot commit a record the client never got;
- the connection failed mid-statement: the writer reconnects, ends the old session and looks the
  events up, so it knows whether they committed before anyone is answered.

At most `max_waiters_per_batch` requests wait on one batch, so a hung database holds only that
many of a worker's threads and the others stay free for liveness probes and fast 503s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from audit.chain import (
    AppendExpired,
    CheckpointPolicy,
    Head,
    Placement,
    append_and_commit,
    checkpoint_locked_if_due,
    checkpoint_now_if_due,
    read_head,
)
from audit.events import AuditEvent
from audit.signing import CheckpointSigner
from audit.tables import AuditRecordRow
from audit.tree_signer import TreeHeadSigner

log = logging.getLogger("predgate.audit")
# A record nobody waits for (a 503's, a probe's) is sent again after a failure, this many times
# at most: retries happen once per second while the store is down, so minutes of outage.
MAX_SENDS = 600
RETRY_SECONDS = 1.0

WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class WriterMetrics:
    """What the writers of this process count (Prometheus)."""

    write_failures: Counter
    records: Counter
    contradictions: Counter
    write_seconds: Histogram
    batch_errors: Counter
    tree_seconds: Histogram
    tree_failures: Counter


@functools.cache
def writer_metrics() -> WriterMetrics:
    """This process's writer metrics, built with its first writer, never at import:
    `predgate serve` switches prometheus-client to per-worker files before it forks."""
    return WriterMetrics(
        write_failures=Counter(
            "predgate_audit_write_failures",
            "Requests answered 503 because their record did not commit",
        ),
        records=Counter("predgate_audit_records", "Audit records committed"),
        contradictions=Counter(
            "predgate_audit_contradictions",
            "Records that committed after their request was answered 503 (in doubt past the bound)",
        ),
        write_seconds=Histogram(
            "predgate_audit_write_seconds",
            "Time to append and commit one batch of records (group commit), failures included",
            buckets=WRITE_BUCKETS,
        ),
        batch_errors=Counter(
            "predgate_audit_batch_errors",
            "Batches whose append failed in the store (each is retried or answered 503)",
        ),
        tree_seconds=Histogram(
            "predgate_audit_tree_grow_seconds",
            "Time to grow the Merkle tree over new records and sign its head, after a "
            "checkpoint (off the request path)",
            buckets=WRITE_BUCKETS,
        ),
        tree_failures=Counter(
            "predgate_audit_tree_failures",
            "Attempts to grow the Merkle tree or sign its head that failed (retried later)",
        ),
    )


class AuditUnavailable(Exception):
    """The record was not committed; the request must be answered 503 audit_unavailable."""

    code = "audit_unavailable"


class AuditSink(Protocol):
    """Where request records go: the group-commit writer, or a test-only null sink."""

    def commit(self, event: AuditEvent) -> Placement | None:
        """Return once the event's record committed (with where it went, when known);
        AuditUnavailable otherwise."""

    def submit(self, event: AuditEvent) -> None:
        """Queue the event's record without waiting (a 503's record, a probe's)."""

    def available(self) -> bool:
        """False while the store is known to be down."""

    def close(self) -> None:
        """Commit what is queued, sign a final checkpoint, stop."""


class NullAuditSink:
    """Discards events. Only for tests and the benchmark's baseline; never configurable."""

    def commit(self, event: AuditEvent) -> Placement | None:
        return None

    def submit(self, event: AuditEvent) -> None:
        return None

    def available(self) -> bool:
        return True

    def close(self) -> None:
        return None


class _State(Enum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    COMMITTED = "committed"
    FAILED = "failed"  # definitively not committed
    ABANDONED = "abandoned"  # its request was answered 503 before it was sent


@dataclass
class _Pending:
    event: AuditEvent
    waiter: bool
    in_doubt_until: float = 0.0  # monotonic; a waiter stops waiting for an in-flight batch then
    attempts: int = 0  # sends so far of a record nobody waits for
    state: _State = _State.QUEUED
    done: threading.Event = field(default_factory=threading.Event)
    placement: Placement | None = None


class GroupCommitWriter:
    """One writer thread per process; started on first use, so it is never forked."""

    def __init__(
        self,
        engine: Engine,
        signer: CheckpointSigner,
        policy: CheckpointPolicy,
        *,
        wait_seconds: float = 5.0,
        in_doubt_seconds: float = 30.0,
        stall_seconds: float = 1.0,
        max_batch: int = 100,
        max_waiters_per_batch: int = 4,
        backlog_limit: int = 10_000,
        tick_seconds: float = 1.0,
        grow_tree: bool = True,
        log_origin: str | None = None,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._policy = policy
        self.wait_seconds = wait_seconds
        self.in_doubt_seconds = max(in_doubt_seconds, wait_seconds)
        self.stall_seconds = stall_seconds
        self._max_batch = max_batch
        self._max_waiters = max(1, max_waiters_per_batch)
        self._backlog_limit = backlog_limit
        self._tick_seconds = tick_seconds
        self._lock = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self._held: Connection | None = None
        self._head_hint: Head | None = None
        self._down = False  # the last attempt failed and none succeeded since
        self._retry_at = 0.0
        self._stop_by = float("inf")
        self._in_flight_since: float | None = None
        self.failures = 0
        self.dropped = 0
        self._metrics = writer_metrics()
        # After each checkpoint, the tree thread grows the Merkle tree and signs its head.
        self._tree = (
            TreeHeadSigner(
                engine,
                signer,
                origin=log_origin,
                seconds=self._metrics.tree_seconds,
                failures=self._metrics.tree_failures,
            )
            if grow_tree
            else None
        )

    # --- request threads ------------------------------------------------------------------

    def commit(self, event: AuditEvent) -> Placement | None:
        """Commit the event's record before returning (with its seq and hash), or raise
        AuditUnavailable."""
        self._ensure_thread()
        if not self.available():
            self._count_failure()
            raise AuditUnavailable("the audit store is down")
        now = time.monotonic()
        pending = _Pending(event, waiter=True, in_doubt_until=now + self.in_doubt_seconds)
        deadline = now + self.wait_seconds
        with self._lock:
            self._queue.append(pending)
            self._lock.notify()
        while not pending.done.wait(0.05):
            with self._lock:
                if pending.state is _State.QUEUED and (
                    time.monotonic() > deadline or not self._available_locked()
                ):
                    pending.state = _State.ABANDONED  # the writer skips it: it never commits
                    break
                if pending.state is _State.IN_FLIGHT and time.monotonic() > pending.in_doubt_until:
                    log.error(
                        "audit record %s in doubt after %.0f s: answering 503",
                        event.event_id,
                        self.in_doubt_seconds,
                    )
                    break
        if pending.state is not _State.COMMITTED:
            self._count_failure()
            raise AuditUnavailable("the audit record was not committed")
        return pending.placement

    def submit(self, event: AuditEvent) -> None:
        """Queue the event without waiting; kept and retried while the store is down."""
        self._ensure_thread()
        with self._lock:
            self._queue.append(_Pending(event, waiter=False))
            self._trim_backlog()
            self._lock.notify()

    def available(self) -> bool:
        """False while the store is known to be down or a statement hangs."""
        with self._lock:
            return self._available_locked()

    def close(self) -> None:
        """Commit what is queued, sign a final checkpoint and its tree head, and stop the writer
        and tree threads."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            with self._lock:
                self._stopping = True
                self._stop_by = time.monotonic() + self.wait_seconds
                self._lock.notify()
            thread.join(timeout=self.wait_seconds + 5)
            if self._tree is not None:
                self._tree.stop(timeout=self.wait_seconds + 5)
            if not thread.is_alive():
                self._final_checkpoint()
            self._drop_connection()
        self._thread = None

    # --- the writer thread ----------------------------------------------------------------

    def _available_locked(self) -> bool:
        if self._down:
            return False
        started = self._in_flight_since
        return started is None or time.monotonic() - started < self.stall_seconds

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # A forked child inherits neither the thread nor a usable queue or connection.
            self._queue = deque()
            self._held = None
            self._head_hint = None
            self._down = False
            self._stopping = False
            self._stop_by = float("inf")
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
            if self._tree is not None:
                self._tree.start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._write(batch)
            else:
                self._tick()

    def _next_batch(self) -> list[_Pending] | None:
        """The next batch (empty on an idle tick), or None once stopping with nothing left
        (or with the store still down when the time to stop has come)."""
        with self._lock:
            while True:
                now = time.monotonic()
                if self._stopping and (not self._queue or now >= self._stop_by):
                    self._give_up_queue()
                    return None
                if self._down and now < self._retry_at:
                    # A down store is tried again once per retry interval, however many
                    # records arrive meanwhile.
                    self._lock.wait(min(self._retry_at, self._stop_by) - now)
                    continue
                if not self._queue:
                    self._lock.wait(self._tick_seconds)
                    if not self._queue and not self._stopping:
                        return []  # idle: time for the checkpoint tick
                    continue
                break
            batch: list[_Pending] = []
            waiters = 0
            kept: deque[_Pending] = deque()
            while self._queue and len(batch) < self._max_batch:
                pending = self._queue.popleft()
                if pending.state is _State.ABANDONED:
                    continue
                if pending.waiter:
                    if waiters >= self._max_waiters:
                        kept.append(pending)
                        continue
                    waiters += 1
                pending.state = _State.IN_FLIGHT
                batch.append(pending)
            self._queue.extendleft(reversed(kept))
            if not batch and self._stopping:
                return None
            if batch:
                self._in_flight_since = time.monotonic()
            return batch

    def _write(self, batch: list[_Pending]) -> None:
        try:
            try:
                with self._metrics.write_seconds.time():
                    appended = append_and_commit(
                        self._connection(),
                        [pending.event for pending in batch],
                        signer=self._signer,
                        policy=self._policy,
                        head_hint=self._head_hint,
                        deadline=self._deadline(batch),
                    )
                self._head_hint = appended.head
                # Empty when the places could not be told: the records committed all the same.
                for pending, placement in zip(batch, appended.placements, strict=False):
                    pending.placement = placement
            except IntegrityError:
                # An event id is taken: a record that was in doubt committed after all. Nothing
                # of this batch committed; drop the duplicates and send the rest again.
                self._head_hint = None
                with self._engine.connect() as connection:
                    taken = self._committed_ids(batch, connection)
                self._requeue(batch, taken)
                return
            except AppendExpired:
                self._set_down(False)  # the database answered, late
                self._finish(batch, committed=set())
                return
            except Exception as exc:
                log.error("audit write of %d records failed: %s", len(batch), type(exc).__name__)
                self._metrics.batch_errors.inc()
                self._set_down(True)  # new requests fail fast until a write succeeds
                if not _in_doubt(exc, self._engine):
                    # The statement failed in the database: nothing of it committed.
                    self._drop_connection()
                    self._head_hint = None
                    self._requeue([p for p in batch if not p.waiter], set())
                    self._finish([p for p in batch if p.waiter], committed=set())
                    return
                # The connection failed mid-statement: it may have committed.
                backend = _backend_pid(self._held) if self._held is not None else None
                self._drop_connection()
                self._head_hint = None
                committed = self._resolve(batch, backend)
                self._set_down(False)  # it answered the lookup
                self._requeue([p for p in batch if not p.waiter], committed)
                self._finish([p for p in batch if p.waiter], committed=committed)
                return
            self._metrics.records.inc(len(batch))
            self._set_down(False)
            self._finish(batch, committed={p.event.event_id for p in batch})
        finally:
            with self._lock:
                self._in_flight_since = None
        if self._head_hint is not None and self._tree is not None:
            self._tree.ask(self._head_hint.checkpoint_seq)

    def _deadline(self, batch: list[_Pending]) -> datetime | None:
        # The earliest moment a waiter stops waiting, in the database's terms (wall clock).
        bounds = [p.in_doubt_until for p in batch if p.waiter]
        if not bounds:
            return None
        return datetime.now(UTC) + timedelta(seconds=min(bounds) - time.monotonic())

    def _requeue(
        self, pendings: list[_Pending], committed: set[str], *, retry: bool = True
    ) -> None:
        """Send again what did not commit; what did is done (a 503's record whose original
        committed is dropped: the original says 200 though the client got 503). With `retry`
        False the store refused these records outright: they are counted as lost."""
        again = []
        for pending in pendings:
            if pending.event.event_id not in committed:
                if retry:
                    again.append(pending)
                else:
                    self.dropped += 1
                    log.error("audit record of request %s lost", pending.event.request_id)
                    pending.state = _State.FAILED
                    pending.done.set()
                continue
            if not pending.waiter:
                log.error(
                    "audit record of request %s committed after its request was answered 503",
                    pending.event.request_id,
                )
                self._metrics.contradictions.inc()
            pending.state = _State.COMMITTED
            pending.done.set()
        with self._lock:
            for pending in reversed(again):
                pending.state = _State.QUEUED
                self._queue.appendleft(pending)

    def _finish(self, batch: list[_Pending], *, committed: set[str]) -> None:
        with self._lock:
            for pending in batch:
                ok = pending.event.event_id in committed
                pending.state = _State.COMMITTED if ok else _State.FAILED
                pending.done.set()

    def _set_down(self, down: bool) -> None:
        with self._lock:
            self._down = down
            if down:
                self._retry_at = time.monotonic() + RETRY_SECONDS

    def _give_up_queue(self) -> None:
        # Stopping while the store is down: what is left cannot be written by this process.
        for pending in self._queue:
            if pending.state is not _State.ABANDONED:
                self.dropped += 1
                pending.state = _State.FAILED
                pending.done.set()
        if self._queue:
            log.error("audit writer stopped with %d records unwritten", len(self._queue))
        self._queue.clear()

    def _resolve(self, batch: list[_Pending], backend: int | None) -> set[str]:
        """Which of the batch's events committed, once the database answers again. The old
        session is ended first, so a statement it still holds cannot commit afterwards."""
        while True:
            try:
                with self._engine.connect() as connection:
                    if backend is not None:
                        _terminate(connection, backend)
                    return self._committed_ids(batch, connection)
            except Exception as exc:  # still unreachable: look again shortly
                log.warning("audit store still unreachable: %s", type(exc).__name__)
                if self._stopping and time.monotonic() >= self._stop_by:
                    return set()  # the process is going: nobody can be told anyway
                time.sleep(0.5)

    def _committed_ids(self, batch: list[_Pending], connection: Connection) -> set[str]:
        ids = [p.event.event_id for p in batch]
        found = connection.execute(
            select(AuditRecordRow.event_id).where(AuditRecordRow.event_id.in_(ids))
        ).scalars()
        return set(found)

    def _connection(self) -> Connection:
        # One held connection: no pool checkout or liveness ping per batch. On PostgreSQL it
        # runs in autocommit mode, so the append statement commits itself: one round trip.
        if self._held is None or self._held.closed or self._held.invalidated:
            connection = self._engine.connect()
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._held = connection
        return self._held

    def _drop_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.invalidate()
                held.close()

    def _tick(self) -> None:
        try:
            if self._engine.dialect.name == "postgresql":
                with self._engine.begin() as connection:
                    checkpoint_locked_if_due(connection, signer=self._signer, policy=self._policy)
                    head = read_head(connection)
            else:
                connection = self._connection()
                checkpoint_now_if_due(connection, signer=self._signer, policy=self._policy)
                with connection.begin():
                    head = read_head(connection)
        except Exception as exc:  # retried at the next tick
            log.warning("audit checkpoint tick failed: %s", type(exc).__name__)
            self._drop_connection()
            return
        if self._tree is not None:
            self._tree.ask(head.checkpoint_seq)

    def _final_checkpoint(self) -> None:
        try:
            with self._engine.begin() as connection:
                checkpoint_locked_if_due(
                    connection, signer=self._signer, policy=CheckpointPolicy(1, 0.0)
                )
                head = read_head(connection)
        except Exception as exc:
            log.warning("final audit checkpoint failed: %s", type(exc).__name__)
            return
        if head.checkpoint_seq > 0 and self._tree is not None:
            self._tree.sign_now()

    def _trim_backlog(self) -> None:
        while len(self._queue) > self._backlog_limit:
            dropped = self._queue.popleft()
            self.dropped += 1
            log.error("audit backlog full: record of request %s dropped", dropped.event.request_id)

    def _count_failure(self) -> None:
        self.failures += 1
        self._metrics.write_failures.inc()


def _in_doubt(exc: Exception, engine: Engine) -> bool:
    """Whether a failed append may have committed: only when a PostgreSQL connection broke
    mid-statement (SQLite commits in this process: an error means nothing was written)."""
    return (
        engine.dialect.name == "postgresql"
        and isinstance(exc, DBAPIError)
        and bool(exc.connection_invalidated)
    )


def _terminate(connection: Connection, backend: int) -> None:
    """End a PostgreSQL session and wait (at most 5 s) until it is gone."""
    connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    for _ in range(50):
        alive = connection.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend}
        ).first()
        connection.commit()
        if alive is None:
            return
        time.sleep(0.1)
    raise RuntimeError(f"database session {backend} did not end")


def _backend_pid(connection: Connection) -> int | None:
    if connection.dialect.name != "postgresql":
        return None
    with contextlib.suppress(Exception):
        info = connection.connection.driver_connection.info  # type: ignore[union-attr]
        return int(info.backend_pid)
    return None
