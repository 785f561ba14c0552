"""Group commit: request threads hand events to one writer thread per process and wait until
their record is committed ("no audit, no answer"); the writer commits whatever is waiting in
one transaction, so durability does not serialise the workers."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter
from sqlalchemy import Connection, Engine

from audit.chain import CheckpointPolicy, Head, append_and_commit, checkpoint_now_if_due
from audit.events import AuditEvent
from audit.signing import CheckpointSigner

log = logging.getLogger("predgate.audit")

AUDIT_WRITE_FAILURES = Counter(
    "predgate_audit_write_failures_total", "Audit records that could not be committed"
)
AUDIT_RECORDS = Counter("predgate_audit_records_total", "Audit records committed")


class AuditUnavailable(Exception):
    """The audit store could not commit the record; the request must not be answered."""

    code = "audit_unavailable"


class AuditSink(Protocol):
    """Where request records go: the group-commit writer, or a test-only null sink."""

    def record(self, event: AuditEvent) -> None: ...

    def close(self) -> None: ...


class NullAuditSink:
    """Discards events. Only for tests and the benchmark's baseline; never configurable."""

    def record(self, event: AuditEvent) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class _Pending:
    event: AuditEvent
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommitWriter:
    """One writer thread per process; started on first use, so it is never forked."""

    def __init__(
        self,
        engine: Engine,
        signer: CheckpointSigner,
        policy: CheckpointPolicy,
        *,
        wait_seconds: float = 15.0,
        max_batch: int = 500,
        tick_seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._policy = policy
        self._wait_seconds = wait_seconds
        self._max_batch = max_batch
        self._tick_seconds = tick_seconds
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._held: Connection | None = None
        self._head_hint: Head | None = None
        self.failures = 0

    def record(self, event: AuditEvent) -> None:
        """Commit the event's record, or raise AuditUnavailable."""
        self._ensure_thread()
        pending = _Pending(event)
        self._queue.put(pending)
        if not pending.done.wait(self._wait_seconds):
            self._count_failure()
            raise AuditUnavailable("the audit writer did not commit in time")
        if pending.error is not None:
            raise AuditUnavailable("the audit store rejected the write") from pending.error

    def close(self) -> None:
        """Stop the writer thread after it has committed what is waiting."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._queue.put(None)
            thread.join(timeout=self._wait_seconds)
            if self._held is not None:
                self._held.close()
                self._held = None
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # A forked child inherits neither the thread nor a usable queue or connection.
            self._queue = queue.SimpleQueue()
            self._held = None
            self._head_hint = None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._tick_seconds)
            except queue.Empty:
                self._tick()
                continue
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _connection(self) -> Connection:
        # The writer keeps one connection: no pool checkout or liveness ping per batch.
        if self._held is None or self._held.closed or self._held.invalidated:
            self._held = self._engine.connect()
        return self._held

    def _drop_connection(self) -> None:
        if self._held is not None:
            with contextlib.suppress(Exception):
                self._held.invalidate()
                self._held.close()
        self._held = None

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            _records, self._head_hint = append_and_commit(
                self._connection(),
                [pending.event for pending in batch],
                signer=self._signer,
                policy=self._policy,
                head_hint=self._head_hint,
            )
            AUDIT_RECORDS.inc(len(batch))
        except Exception as exc:  # any store failure fails these requests, never drops them
            log.error("audit write of %d records failed: %s", len(batch), type(exc).__name__)
            self._drop_connection()
            self._head_hint = None
            for pending in batch:
                pending.error = exc
                self._count_failure()
        finally:
            for pending in batch:
                pending.done.set()

    def _tick(self) -> None:
        try:
            checkpoint_now_if_due(self._connection(), signer=self._signer, policy=self._policy)
        except Exception as exc:  # retried at the next tick
            log.warning("audit checkpoint tick failed: %s", type(exc).__name__)
            self._drop_connection()

    def _count_failure(self) -> None:
        self.failures += 1
        AUDIT_WRITE_FAILURES.inc()
