"""The audit log's entry points for callers that hold a transaction (the CLI, admin APIs), and
verification of the stored chain."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from audit.chain import CheckpointPolicy, Placement, append_events, read_head
from audit.events import GENESIS_HASH, AuditEvent
from audit.query import iter_records, list_checkpoints, seq_of_hash, seq_range
from audit.signing import CheckpointSigner, key_id_of, load_public_key, load_signer
from audit.tables import AuditCheckpointRow, AuditRecordRow

# Verification needs `cryptography`, so it is imported where a chain is verified: recording an
# act (every audited command) signs only when a checkpoint is due (audit.signing).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from audit.verify import Progress, VerificationReport


@dataclass(frozen=True)
class AuditConfig:
    """What every writer needs: the signer, the checkpoint policy and who is writing."""

    signer: CheckpointSigner
    policy: CheckpointPolicy
    instance_id: str

    def public_keys(self, extra_pems: tuple[str, ...] = ()) -> dict[str, Ed25519PublicKey]:
        """Keys trusted to verify checkpoints: this instance's, plus any given."""
        keys = {self.signer.key_id: self.signer.public_key}
        for pem in extra_pems:
            key = load_public_key(pem)
            keys[key_id_of(key)] = key
        return keys


def load_audit_config(
    data_dir: Path,
    *,
    signing_key: str,
    instance_id: str,
    checkpoint_records: int = 1000,
    checkpoint_seconds: float = 60.0,
) -> AuditConfig:
    """Build the audit configuration, generating the signing key on first use."""
    return AuditConfig(
        signer=load_signer(data_dir, signing_key),
        policy=CheckpointPolicy(checkpoint_records, checkpoint_seconds),
        instance_id=instance_id,
    )


def admin_event(
    config: AuditConfig,
    *,
    event_type: str,
    principal_type: str,
    principal_id: str,
    auth_method: str,
    outcome: str = "success",
    reason_code: str | None = None,
    tenant_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """An event for an administrative act: who acted, on what, and what changed."""
    return AuditEvent(
        event_type=event_type,
        outcome=outcome,
        reason_code=reason_code,
        instance_id=config.instance_id,
        process_id=os.getpid(),
        tenant_id=tenant_id,
        principal_type=principal_type,
        principal_id=principal_id,
        auth_method=auth_method,
        details=dict(details) if details is not None else None,
    )


def record_event(session: Session, config: AuditConfig, event: AuditEvent) -> Placement:
    """Append one event inside the caller's transaction: it commits with the act it records.
    Returns where the record went."""
    [placement] = append_events(session, [event], signer=config.signer, policy=config.policy)
    return placement


def verify_database(
    session: Session,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> VerificationReport:
    """Verify the stored chain (all of it, or the records in a time range), also while it is
    being appended to.

    The head is read first, then the checkpoints, then the records, then the head again. A head
    and the records it covers commit together, so records appended meanwhile lie at most up to
    the head read last; only a record past that one, or a checkpoint past the last record, is a
    finding. Signed tree heads are checked up to the tree's size read before the records (a
    head signs only records committed before it), from the stored frontier of the leaves
    before the first record.
    """
    from audit.tree_verify import database_walk
    from audit.verify import ChainStart, verify_records

    anchor = session.scalar(
        select(AuditCheckpointRow)
        .where(AuditCheckpointRow.kind == "anchor")
        .order_by(AuditCheckpointRow.seq.desc())
        .limit(1)
    )
    start = ChainStart(anchor.seq + 1, anchor.hash) if anchor else ChainStart(1, GENESIS_HASH)
    first, last, head_seq = None, None, None
    if since is not None or until is not None:
        found = seq_range(session, since=since, until=until)
        if found is None:
            return VerificationReport()
        first, last = found
        if first != start.seq:
            start = ChainStart(first, None)
    else:
        head_seq = read_head(session).seq
    checkpoints = list_checkpoints(session, first_seq=None, last_seq=last)
    assert start.seq is not None
    tree = database_walk(session, public_keys, first_seq=start.seq, last_seq=last)
    return verify_records(
        iter_records(session, first_seq=first, last_seq=last),
        checkpoints,
        public_keys,
        start=start,
        seq_of_hash=lambda hash_: seq_of_hash(session, hash_),
        head_seq=head_seq,
        head_after=lambda: read_head(session).seq,
        progress=progress,
        tree=tree,
    )


def event_committed(engine: Engine, event_id: str) -> bool:
    """Whether a record with this event id is stored (on a connection of its own: the one whose
    commit failed may be gone). Raises if the database cannot be asked."""
    with engine.connect() as connection:
        found = connection.execute(
            select(AuditRecordRow.seq).where(AuditRecordRow.event_id == event_id)
        ).first()
    return found is not None
