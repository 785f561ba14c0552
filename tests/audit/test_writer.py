"""The group-commit writer: concurrent writers (as in several worker processes) keep one
gap-free chain; every record() returns only after its record is committed."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text
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
