"""The chain: gap-free seq, linked hashes, signed checkpoints, and a verifier that names the
seq of every kind of tampering (on SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import read_head
from audit.events import GENESIS_HASH, InvalidEvent, record_hash
from audit.query import AuditFilter, iter_records, list_checkpoints, query_records
from audit.recorder import AuditConfig, verify_database
from tests.audit.conftest import fill_chain, make_event


def test_records_are_gap_free_and_linked(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    records = list(iter_records(session))
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert records[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]
    assert all(record_hash(r) == r["hash"] for r in records)
    head = read_head(session)
    assert (head.seq, head.hash) == (12, records[-1]["hash"])


def test_checkpoints_follow_the_policy_and_verify(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 12)
    checkpoints = list_checkpoints(session)
    # The first append signs at once (no checkpoint yet), then every >= 5 records.
    assert [c["seq"] for c in checkpoints] == [3, 9]
    report = verify_database(session, audit_config.public_keys())
    assert report.ok, report.findings
    assert report.records_checked == 12
    assert report.checkpoints_checked == 2
    assert report.uncovered_tail == 3


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        make_event(1, event_type="made.up")


def test_query_filters(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 6)
    assert [r["seq"] for r in query_records(session, AuditFilter(request_id="req-4"))] == [5]
    assert len(query_records(session, AuditFilter(limit=2))) == 2
    assert [r["seq"] for r in query_records(session, AuditFilter(after_seq=4))] == [5, 6]
    assert query_records(session, AuditFilter(tenant_id=2)) == []


def _tamper(session: Session, statement: str, **params: object) -> None:
    session.execute(text(statement), params)
    session.commit()


def _forge_hash(session: Session, seq: int) -> None:
    """Recompute a record's own hash after editing it, as a careful forger would."""
    record = next(r for r in iter_records(session) if r["seq"] == seq)
    _tamper(
        session, "UPDATE audit_records SET hash = :h WHERE seq = :s", h=record_hash(record), s=seq
    )


def _findings(session: Session, config: AuditConfig) -> list[tuple[int, str]]:
    report = verify_database(session, config.public_keys())
    assert not report.ok
    return [(f.seq, f.kind) for f in report.findings]


def test_modified_field_is_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "UPDATE audit_records SET http_status = 500 WHERE seq = 4")
    assert _findings(session, audit_config)[0] == (4, "modified")


def test_modified_and_rehashed_record_breaks_the_link(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "UPDATE audit_records SET tenant_id = 2 WHERE seq = 4")
    _forge_hash(session, 4)
    assert _findings(session, audit_config) == [(5, "chain_broken")]


def test_rewritten_chain_is_caught_by_the_signed_checkpoint(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "UPDATE audit_records SET tenant_id = 2 WHERE seq = 4")
    # A forger with database access rewrites every hash from seq 4 on, and the head.
    previous = None
    for record in iter_records(session):
        if previous is not None and record["seq"] >= 4:
            record = {**record, "prev_hash": previous}
            record["hash"] = record_hash(record)
            _tamper(
                session,
                "UPDATE audit_records SET prev_hash = :p, hash = :h WHERE seq = :s",
                p=record["prev_hash"],
                h=record["hash"],
                s=record["seq"],
            )
        previous = record["hash"]
    _tamper(session, "UPDATE audit_head SET hash = :h", h=previous)
    assert _findings(session, audit_config) == [(9, "checkpoint_mismatch")]


def test_deleted_record_is_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "DELETE FROM audit_records WHERE seq = 7")
    assert _findings(session, audit_config)[0] == (7, "deleted")


def test_forged_insert_is_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    # Make room at seq 6 by shifting the later records up, then insert a well-formed record.
    for seq in range(12, 5, -1):
        _tamper(session, "UPDATE audit_records SET seq = :n WHERE seq = :s", n=seq + 1, s=seq)
    previous = next(r for r in iter_records(session) if r["seq"] == 5)
    forged = make_event(999, tenant_id=2).to_record(seq=6, prev_hash=previous["hash"])
    columns = ", ".join(forged)
    values = ", ".join(f":{name}" for name in forged)
    session.execute(text(f"INSERT INTO audit_records ({columns}) VALUES ({values})"), forged)
    session.commit()
    assert _findings(session, audit_config)[0] == (6, "inserted")


def test_forged_record_past_the_head_is_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    last = list(iter_records(session))[-1]
    forged = make_event(999).to_record(seq=13, prev_hash=last["hash"])
    columns = ", ".join(forged)
    values = ", ".join(f":{name}" for name in forged)
    session.execute(text(f"INSERT INTO audit_records ({columns}) VALUES ({values})"), forged)
    session.commit()
    assert _findings(session, audit_config)[0] == (13, "inserted")


def test_swapped_records_are_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "UPDATE audit_records SET seq = -1 WHERE seq = 4")
    _tamper(session, "UPDATE audit_records SET seq = 4 WHERE seq = 8")
    _tamper(session, "UPDATE audit_records SET seq = 8 WHERE seq = -1")
    findings = _findings(session, audit_config)
    assert findings[0] == (4, "reordered")
    assert (8, "reordered") in findings


def test_truncated_tail_after_last_checkpoint(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "DELETE FROM audit_records WHERE seq > 10")
    findings = _findings(session, audit_config)
    assert findings == [(11, "truncated")]
    report = verify_database(session, audit_config.public_keys())
    assert report.uncovered_tail == 1  # seq 10 remains, after the checkpoint at 9


def test_truncation_before_a_checkpoint_is_named(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "DELETE FROM audit_records WHERE seq > 7")
    _tamper(session, "UPDATE audit_head SET seq = 7")
    assert _findings(session, audit_config)[0] == (8, "truncated")


def test_forged_checkpoint_signature_is_named(session: Session, audit_config: AuditConfig) -> None:
    fill_chain(session, audit_config, 12)
    _tamper(session, "UPDATE audit_checkpoints SET signature = :s WHERE seq = 9", s="A" * 88)
    assert _findings(session, audit_config)[0] == (9, "checkpoint_bad_signature")
