"""Receipts from the domain functions: they survive retention (the tree keeps its nodes), a log
pruned before its tree began counts leaves from its first kept record, and growth is exact."""

from __future__ import annotations

import base64
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from audit.export import iter_jsonl, write_export
from audit.prune import prune_records
from audit.receipt_verifier import verify_consistency, verify_receipt
from audit.receipts import LogIdentity, consistency, receipt
from audit.recorder import AuditConfig
from audit.tables import AuditRecordRow
from audit.tree import grow_and_sign, head_of_size, read_tree
from tests.audit.conftest import fill_chain

TENANT = 1


def _pem(config: AuditConfig) -> str:
    return config.signer.public_pem()


def test_receipts_and_old_heads_stay_provable_after_a_prune(
    session: Session, audit_config: AuditConfig, tmp_path: Path
) -> None:
    fill_chain(session, audit_config, 12)
    log = LogIdentity(audit_config.signer)
    early = grow_and_sign(session, audit_config.signer)
    session.commit()
    assert early is not None
    assert early.size == 12
    fill_chain(session, audit_config, 8)  # req-0..req-7 again: request ids repeat, seqs don't
    export = tmp_path / "all.jsonl"
    write_export(
        iter_jsonl(session, since=None, until=None, public_keys=audit_config.public_keys()),
        export,
    )
    cut_time = session.scalar(select(AuditRecordRow.ts).where(AuditRecordRow.seq == 11))
    result = prune_records(
        session,
        audit_config,
        before=cut_time,
        export_path=export,
        public_keys=audit_config.public_keys(),
    )
    session.commit()
    assert result.anchor_seq is not None
    assert 1 <= result.anchor_seq <= 10
    assert read_tree(session).size == 20  # the tree covered everything before any deletion

    # A kept record's receipt verifies against the newest head.
    kept = receipt(session, log, tenant_id=TENANT, request_id="req-10")
    session.commit()
    assert kept is not None
    assert verify_receipt(kept, _pem(audit_config)).seq == 11
    # A pruned record has no receipt any more (req-0 now names the later record at seq 13).
    again = receipt(session, log, tenant_id=TENANT, request_id="req-0")
    assert again is not None
    assert again["record"]["seq"] == 13
    # The head signed before the prune is still proven to be a prefix of today's.
    newest = head_of_size(session, kept["tree_size"])
    assert newest is not None
    proof = [base64.b64decode(p) for p in consistency(session, early.size, newest.size)]
    verify_consistency(early.size, newest.size, early.root, newest.root, proof)


def test_a_log_pruned_before_its_tree_began_counts_leaves_from_its_first_kept_record(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 9)
    # As a database pruned before the tree existed: records 1..4 gone, no tree yet.
    session.execute(text("DELETE FROM audit_records WHERE seq <= 4"))
    session.execute(text("UPDATE audit_tree SET size = 0, first_seq = NULL"))
    session.execute(text("DELETE FROM audit_tree_heads"))
    session.execute(text("DELETE FROM audit_tree_nodes"))
    session.commit()
    found = receipt(session, LogIdentity(audit_config.signer), tenant_id=TENANT, request_id="req-7")
    session.commit()
    assert found is not None
    assert read_tree(session).first_seq == 5
    assert (found["record"]["seq"], found["leaf_index"], found["tree_size"]) == (8, 3, 5)
    assert verify_receipt(found, _pem(audit_config)).seq == 8


def test_another_tenant_and_an_unknown_request_get_nothing(
    session: Session, audit_config: AuditConfig
) -> None:
    fill_chain(session, audit_config, 3)
    log = LogIdentity(audit_config.signer)
    assert receipt(session, log, tenant_id=TENANT + 1, request_id="req-1") is None
    assert receipt(session, log, tenant_id=TENANT, request_id="req-99") is None
    assert receipt(session, log, tenant_id=TENANT, request_id="req-1") is not None
