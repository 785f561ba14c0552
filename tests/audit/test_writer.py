"""The group-commit writer: concurrent writers (as in several worker processes) keep one
gap-free chain; every record() returns only after its record is committed."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from audit.query import iter_records
from audit.recorder import AuditConfig, verify_database
from audit.writer import GroupCommitWriter
from db.engine import create_db_engine
from tests.audit.conftest import make_event

WRITERS = 3
THREADS_PER_WRITER = 4
EVENTS_PER_THREAD = 25


def test_concurrent_writers_share_one_chain(
    session: Session, engine: Engine, audit_config: AuditConfig, database_url: str
) -> None:
    # One engine per writer, as each worker process has its own.
    engines = [create_db_engine(database_url) for _ in range(WRITERS)]
    writers = [GroupCommitWriter(e, audit_config.signer, audit_config.policy) for e in engines]
    committed: list[str] = []
    lock = threading.Lock()

    def produce(writer: GroupCommitWriter, index: int) -> None:
        for number in range(EVENTS_PER_THREAD):
            request_id = f"w{index}-{number}"
            writer.commit(make_event(0, request_id=request_id))
            # commit() has returned: the row must already be visible to anyone.
            with engine.connect() as connection:
                found = connection.execute(
                    text("SELECT count(*) FROM audit_records WHERE request_id = :r"),
                    {"r": request_id},
                ).scalar_one()
            assert found == 1
            with lock:
                committed.append(request_id)

    threads = [
        threading.Thread(target=produce, args=(writer, w * THREADS_PER_WRITER + t))
        for w, writer in enumerate(writers)
        for t in range(THREADS_PER_WRITER)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for writer in writers:
        writer.close()
    for each in engines:
        each.dispose()

    total = WRITERS * THREADS_PER_WRITER * EVENTS_PER_THREAD
    assert len(committed) == total
    records = list(iter_records(session))
    assert [r["seq"] for r in records] == list(range(1, total + 1))
    assert sorted(r["request_id"] for r in records) == sorted(committed)
    report = verify_database(session, audit_config.public_keys())
    assert report.ok, report.findings
    assert report.checkpoints_checked >= 1


def test_a_record_already_committed_is_dropped_and_the_writer_goes_on(
    session: Session, engine: Engine, audit_config: AuditConfig
) -> None:
    # After a lost acknowledgement the gateway answers 503 and submits the record again with the
    # same event id; if the first one committed after all, the store refuses the second. The
    # writer must drop it and keep writing, not retry it forever with the store marked down.
    writer = GroupCommitWriter(engine, audit_config.signer, audit_config.policy)
    try:
        answered = make_event(1)
        writer.commit(answered)
        writer.submit(dataclasses.replace(answered, http_status=503))
        writer.commit(make_event(2))  # raises AuditUnavailable when the writer is stuck
        assert writer.dropped == 0
    finally:
        writer.close()
    records = list(iter_records(session))
    assert [(r["request_id"], r["http_status"]) for r in records] == [
        ("req-1", 200),
        ("req-2", 200),
    ]


class AckDroppingProxy:
    """A TCP relay to PostgreSQL that, once armed, passes the client's next message on and then
    cuts both connections instead of passing the server's answer back: the statement ran (and,
    in autocommit mode, committed) but the client only sees its connection fail."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers and self.armed.is_set():
                    self.armed.clear()
                    self.cuts += 1
                    break
                sink.sendall(data)
        # Either side ending ends both; the other pipe's recv() then fails and closes nothing
        # twice that matters (close() is idempotent).
        for each in (source, sink):
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_commit_whose_acknowledgement_was_lost_is_found_and_answered(
    session: Session, audit_config: AuditConfig, database_url: str
) -> None:
    url = make_url(database_url)
    proxy = AckDroppingProxy((url.host or "127.0.0.1", url.port or 5432))
    engine = create_db_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    writer = GroupCommitWriter(engine, audit_config.signer, audit_config.policy)
    try:
        writer.commit(make_event(1))  # connects through the relay
        proxy.armed.set()
        # The append commits, its answer is lost: the writer must look it up and report it
        # committed (the client then gets 200, as the record says), not answer 503.
        writer.commit(make_event(2))
        assert proxy.cuts == 1
        writer.commit(make_event(3))
        assert (writer.failures, writer.dropped) == (0, 0)
    finally:
        writer.close()
        engine.dispose()
        proxy.close()
    records = list(iter_records(session))
    assert [(r["request_id"], r["http_status"]) for r in records] == [
        ("req-1", 200),
        ("req-2", 200),
        ("req-3", 200),
    ]
    assert verify_database(session, audit_config.public_keys()).ok
