"""Verification checks every signed tree head against the records, on the database and in a
JSONL export of a range, which carries its heads and the frontier before it."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import append_events
from audit.events import record_hash
from audit.export import iter_jsonl, verify_export, write_export
from audit.merkle import range_nodes
from audit.prune import prune_records
from audit.query import iter_records
from audit.recorder import AuditConfig, verify_database
from audit.signing import CheckpointSigner, load_signer
from audit.tree import checkpoint_note, grow_and_sign, read_tree
from audit.verify import VerificationReport
from tests.audit.conftest import make_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HEAD_SIZES = [3, 7, 8, 13, 20]


def _at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def _append(session: Session, config: AuditConfig, first: int, end: int) -> None:
    # Event n is recorded at minute n and becomes seq n + 1.
    events = [make_event(n, ts=_at(n)) for n in range(first, end)]
    append_events(session, events, signer=config.signer, policy=config.policy)


def _signed_log(session: Session, config: AuditConfig, *, tail: int = 2) -> None:
    """Records 1..20 with a signed head at each of HEAD_SIZES, then `tail` records no head
    covers yet."""
    done = 0
    for size in HEAD_SIZES:
        _append(session, config, done, size)
        grow_and_sign(session, config.signer)
        session.commit()
        done = size
    _append(session, config, done, done + tail)
    session.commit()


def _tamper(session: Session, statement: str, **params: object) -> None:
    session.execute(text(statement), params)
    session.commit()


def _kinds(report: VerificationReport) -> list[tuple[int, str]]:
    return [(f.seq, f.kind) for f in report.findings]


def test_a_log_with_several_heads_verifies(session: Session, audit_config: AuditConfig) -> None:
    _signed_log(session, audit_config)
    report = verify_database(session, audit_config.public_keys())
    assert report.ok, report.findings
    assert report.records_checked == 22
    assert report.tree_heads_checked == len(HEAD_SIZES)
    assert report.to_dict()["tree_heads_checked"] == len(HEAD_SIZES)
    assert "5 signed tree heads verified" in report.summary()[0]


def test_a_range_checks_the_heads_within_it(session: Session, audit_config: AuditConfig) -> None:
    _signed_log(session, audit_config)
    # seq 6..15: the heads of sizes 7, 8 and 13 end inside, from the stored frontier at 5.
    report = verify_database(session, audit_config.public_keys(), since=_at(5), until=_at(15))
    assert report.ok, report.findings
    assert (report.first_seq, report.last_seq, report.tree_heads_checked) == (6, 15, 3)


def test_a_tampered_head_root_is_found(session: Session, audit_config: AuditConfig) -> None:
    _signed_log(session, audit_config)
    _tamper(session, "UPDATE audit_tree_heads SET root_hash = :r WHERE tree_size = 8", r="0" * 64)
    report = verify_database(session, audit_config.public_keys())
    assert _kinds(report) == [(8, "tree_head_mismatch")]
    assert report.tree_heads_checked == len(HEAD_SIZES) - 1
    assert report.summary()[1].startswith("  seq 8: tree_head_mismatch: tree head of size 8")


def test_a_rewritten_record_no_longer_matches_the_heads_after_it(
    session: Session, audit_config: AuditConfig
) -> None:
    _signed_log(session, audit_config)
    _tamper(session, "UPDATE audit_records SET tenant_id = 2 WHERE seq = 10")
    # Its hash recomputed, as a careful forger would: the chain breaks at 11 and the heads of
    # 13 and 20 no longer match.
    forged = next(r for r in iter_records(session) if r["seq"] == 10)
    _tamper(session, "UPDATE audit_records SET hash = :h WHERE seq = 10", h=record_hash(forged))
    report = verify_database(session, audit_config.public_keys())
    assert _kinds(report) == [
        (11, "chain_broken"),
        (13, "tree_head_mismatch"),
        (20, "tree_head_mismatch"),
    ]
    assert report.tree_heads_checked == 3


def _other_signer() -> CheckpointSigner:
    return load_signer(Path("unused"), base64.b64encode(os.urandom(32)).decode())


def test_a_head_signed_by_another_key_is_found(session: Session, audit_config: AuditConfig) -> None:
    _signed_log(session, audit_config, tail=0)
    _append(session, audit_config, 20, 24)
    grow_and_sign(session, _other_signer())
    session.commit()
    report = verify_database(session, audit_config.public_keys())
    assert _kinds(report) == [(24, "tree_head_unknown_key")]
    assert report.tree_heads_checked == len(HEAD_SIZES)


def test_a_head_claiming_the_trusted_key_but_signed_by_another_is_found(
    session: Session, audit_config: AuditConfig
) -> None:
    _signed_log(session, audit_config)
    origin = read_tree(session).origin
    assert origin is not None
    root = bytes.fromhex(
        session.execute(
            text("SELECT root_hash FROM audit_tree_heads WHERE tree_size = 13")
        ).scalar_one()
    )
    _tamper(
        session,
        "UPDATE audit_tree_heads SET note = :n WHERE tree_size = 13",
        n=checkpoint_note(origin, 13, root, _other_signer()),
    )
    report = verify_database(session, audit_config.public_keys())
    assert _kinds(report) == [(13, "tree_head_signature_invalid")]


def test_a_head_beyond_the_records_is_found(session: Session, audit_config: AuditConfig) -> None:
    _signed_log(session, audit_config, tail=0)
    _tamper(session, "DELETE FROM audit_records WHERE seq > 18")
    report = verify_database(session, audit_config.public_keys())
    assert (19, "tree_head_beyond_records") in _kinds(report)
    assert report.tree_heads_checked == len(HEAD_SIZES) - 1


def test_heads_past_a_gap_are_reported_unverifiable(
    session: Session, audit_config: AuditConfig
) -> None:
    _signed_log(session, audit_config)
    _tamper(session, "DELETE FROM audit_records WHERE seq = 10")
    report = verify_database(session, audit_config.public_keys())
    assert _kinds(report)[0] == (10, "deleted")
    assert (10, "tree_head_unverifiable") in _kinds(report)
    assert report.tree_heads_checked == 3


def test_a_pruned_log_checks_its_heads_from_the_stored_frontier(
    session: Session, audit_config: AuditConfig, tmp_path: Path
) -> None:
    _signed_log(session, audit_config)
    everything = _export(session, audit_config, tmp_path / "all.jsonl")
    prune_records(
        session,
        audit_config,
        before=_at(6),
        export_path=everything,
        public_keys=audit_config.public_keys(),
    )
    session.commit()
    report = verify_database(session, audit_config.public_keys())
    assert report.ok, report.findings
    # Every head past the cut at seq 6, whether or not pruning signed one of its own.
    past_the_cut = session.scalar(text("SELECT count(*) FROM audit_tree_heads WHERE tree_size > 6"))
    assert (report.first_seq, report.tree_heads_checked) == (7, past_the_cut)
    assert report.tree_heads_checked >= 4


# --- exports ---------------------------------------------------------------------------------


def _export(
    session: Session,
    config: AuditConfig,
    path: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Path:
    lines = iter_jsonl(session, since=since, until=until, public_keys=config.public_keys())
    write_export(lines, path)
    return path


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path: Path, entries: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


@pytest.fixture
def middle_export(session: Session, audit_config: AuditConfig, tmp_path: Path) -> Path:
    """An export of seq 6..15, in a log with heads of sizes 3, 7, 8, 13 and 20."""
    _signed_log(session, audit_config)
    return _export(session, audit_config, tmp_path / "mid.jsonl", since=_at(5), until=_at(15))


def test_an_export_of_a_middle_range_carries_its_heads_and_frontier(
    session: Session, audit_config: AuditConfig, middle_export: Path
) -> None:
    entries = _entries(middle_export)
    assert entries[0]["first_seq"] == 6
    frontier = next(e for e in entries if e["type"] == "tree_frontier")
    assert (frontier["tree_size"], frontier["next_seq"]) == (5, 6)
    assert len(frontier["hashes"]) == len(range_nodes(0, 5))
    assert frontier["origin"] == read_tree(session).origin
    heads = [e for e in entries if e["type"] == "tree_head"]
    assert [h["tree_size"] for h in heads] == [7, 8, 13]
    assert all(h["checkpoint"].startswith(f"{frontier['origin']}\n") for h in heads)

    report = verify_export(middle_export, audit_config.public_keys())
    assert report.ok, report.findings
    assert (report.records_checked, report.tree_heads_checked) == (10, 3)


def test_a_whole_export_verifies_every_head(
    session: Session, audit_config: AuditConfig, tmp_path: Path
) -> None:
    _signed_log(session, audit_config)
    path = _export(session, audit_config, tmp_path / "all.jsonl")
    report = verify_export(path, audit_config.public_keys())
    assert report.ok, report.findings
    assert report.tree_heads_checked == len(HEAD_SIZES)


def test_an_export_without_tree_entries_still_verifies(
    audit_config: AuditConfig, middle_export: Path
) -> None:
    kept = [e for e in _entries(middle_export) if not e["type"].startswith("tree_")]
    _rewrite(middle_export, kept)
    report = verify_export(middle_export, audit_config.public_keys())
    assert report.ok, report.findings
    assert report.tree_heads_checked == 0


def test_an_edited_record_in_the_export_is_found(
    audit_config: AuditConfig, middle_export: Path
) -> None:
    entries = _entries(middle_export)
    record = next(e for e in entries if e.get("seq") == 9 and e["type"] == "record")
    record["tenant_id"] = 2
    _rewrite(middle_export, entries)
    assert _kinds(verify_export(middle_export, audit_config.public_keys())) == [(9, "modified")]

    # Rehashed: the chain breaks after it and the head of 13 no longer matches.
    record["hash"] = record_hash({k: v for k, v in record.items() if k != "type"})
    _rewrite(middle_export, entries)
    report = verify_export(middle_export, audit_config.public_keys())
    assert _kinds(report) == [(10, "chain_broken"), (13, "tree_head_mismatch")]
    assert report.tree_heads_checked == 2


def _forge_root(entries: list[dict[str, Any]]) -> None:
    head = next(e for e in entries if e["type"] == "tree_head" and e["tree_size"] == 8)
    head["root_hash"] = base64.b64encode(bytes(32)).decode()


def _forge_note(entries: list[dict[str, Any]]) -> None:
    head = next(e for e in entries if e["type"] == "tree_head" and e["tree_size"] == 8)
    origin, _, root = head["checkpoint"].split("\n")[:3]
    head["checkpoint"] = checkpoint_note(origin, 8, base64.b64decode(root), _other_signer())


def _forge_extra_head(entries: list[dict[str, Any]]) -> None:
    head = next(e for e in entries if e["type"] == "tree_head" and e["tree_size"] == 8)
    origin = head["checkpoint"].split("\n")[0]
    signer = _other_signer()
    note = checkpoint_note(origin, 9, bytes(32), signer)
    entries.append({**head, "tree_size": 9, "checkpoint": note, "key_id": signer.key_id})


def _forge_frontier(entries: list[dict[str, Any]]) -> None:
    frontier = next(e for e in entries if e["type"] == "tree_frontier")
    frontier["hashes"][0] = base64.b64encode(bytes(32)).decode()


def _drop_frontier(entries: list[dict[str, Any]]) -> None:
    entries[:] = [e for e in entries if e["type"] != "tree_frontier"]


@pytest.mark.parametrize(
    ("forge", "expected"),
    [
        (_forge_root, [(8, "tree_head_mismatch")]),
        (_forge_note, [(8, "tree_head_signature_invalid")]),
        (_forge_extra_head, [(9, "tree_head_unknown_key")]),
        (
            _forge_frontier,
            [(7, "tree_head_mismatch"), (8, "tree_head_mismatch"), (13, "tree_head_mismatch")],
        ),
        (_drop_frontier, [(6, "tree_head_unverifiable")]),
    ],
)
def test_a_forged_head_in_the_export_is_found(
    audit_config: AuditConfig,
    middle_export: Path,
    forge: Any,
    expected: list[tuple[int, str]],
) -> None:
    entries = _entries(middle_export)
    forge(entries)
    _rewrite(middle_export, entries)
    report = verify_export(middle_export, audit_config.public_keys())
    assert _kinds(report) == expected
