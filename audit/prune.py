"""Retention: the only path that deletes audit records. It deletes only what a verified export
holds, and leaves a signed anchor so the remaining chain still verifies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from audit.chain import Head, lock_head, write_checkpoint
from audit.export import export_hash_at, export_seq_range, verify_export
from audit.recorder import AuditConfig
from audit.tables import AuditCheckpointRow, AuditRecordRow
from audit.tree import grow_and_sign
from audit.verify import Progress


class PruneRefused(ValueError):
    """The export does not verify or does not cover what would be deleted."""


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    anchor_seq: int | None


def prune_records(
    session: Session,
    config: AuditConfig,
    *,
    before: datetime,
    export_path: Path,
    public_keys: Mapping[str, Ed25519PublicKey],
    progress: Progress | None = None,
    origin: str | None = None,
) -> PruneResult:
    """Delete records older than `before` that the export covers; sign an anchor at the cut.
    `progress(records verified)` follows the export's verification, the long part. The Merkle
    tree first grows over every record (`origin` names the log if its tree begins now)."""
    lock_head(session)
    first = session.scalar(select(func.min(AuditRecordRow.seq)))
    newer = session.scalar(select(func.min(AuditRecordRow.seq)).where(AuditRecordRow.ts >= before))
    last_seq = session.scalar(select(func.max(AuditRecordRow.seq)))
    if first is None or last_seq is None:
        return PruneResult(0, None)
    # Cut where the first record at or after `before` begins, keeping the chain contiguous.
    cut = (newer - 1) if newer is not None else last_seq
    if cut < first:
        return PruneResult(0, None)
    report = verify_export(export_path, public_keys, progress=progress)
    if not report.ok:
        raise PruneRefused(f"the export does not verify: {report.findings[0].message}")
    export_first, export_last = export_seq_range(export_path)
    if export_first is None or export_last is None or export_first > first or export_last < cut:
        raise PruneRefused(f"the export must cover seq {first}..{cut}")
    cut_hash = session.scalar(select(AuditRecordRow.hash).where(AuditRecordRow.seq == cut))
    if cut_hash is None or export_hash_at(export_path, cut) != cut_hash:
        raise PruneRefused(f"the export's record at seq {cut} differs from the database's")
    # The Merkle tree keeps its nodes, not the records: it must hold every record before any
    # is deleted, or no head could ever cover them again.
    grow_and_sign(session, config.signer, origin=origin)
    deleted = session.scalar(select(func.count()).where(AuditRecordRow.seq <= cut)) or 0
    session.execute(delete(AuditRecordRow).where(AuditRecordRow.seq <= cut))
    session.execute(delete(AuditCheckpointRow).where(AuditCheckpointRow.seq <= cut))
    write_checkpoint(session, Head(cut, cut_hash, 0, None), signer=config.signer, kind="anchor")
    return PruneResult(int(deleted), cut)
