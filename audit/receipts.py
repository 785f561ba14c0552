"""Receipts: what a partner may see of the log, and the proofs that let it check for itself.

A receipt is the record of one of the partner's own requests (every field, so the partner
can recompute its hash: digests, its own ids, the model's name, version and artifact SHA-256,
the status and time; never a feature value or a secret, which no record holds), the newest
signed tree head, and the RFC 9162 inclusion proof from the record's leaf to that head's root.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.query import RECORD_COLUMNS, record_to_dict
from audit.receipt_verifier import RECEIPT_FORMAT
from audit.signing import CheckpointSigner
from audit.tables import AuditRecordRow
from audit.tree import (
    TreeHead,
    consistency_proof,
    grow_and_sign,
    inclusion_proof,
    latest_head,
    read_tree,
)

# What a partner's own requests are recorded as. A record that names the tenant but is an
# administrator's act on it (tenant.suspend, key.issue, ...) is not the tenant's request.
PARTNER_EVENTS = (
    "predict",
    "model.read",
    "docs.read",
    "receipt.read",
    "log.read",
    "token.issue",
    "http.request",
    "authz.denied",
    "ratelimit.exceeded",
)
PARTNER_PRINCIPALS = ("api_key", "client")


class ProofUnavailable(ValueError):
    """A consistency proof was asked for sizes the log cannot prove (`reason` says why)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LogIdentity:
    """What signs the log's heads and what the log is called (None: the stored/default)."""

    signer: CheckpointSigner
    origin: str | None = None


def _b64(values: list[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in values]


def receipt(
    session: Session, log: LogIdentity, *, tenant_id: int, request_id: str
) -> dict[str, Any] | None:
    """The receipt of this tenant's request, or None when the tenant made no such request
    (another tenant's request id is answered exactly like an unknown one).

    A record no signed head covers yet (heads follow checkpoints) gets one now: the tree
    grows and a head is signed in the caller's transaction, which the caller commits.
    """
    row = session.execute(
        select(*RECORD_COLUMNS)
        .where(
            AuditRecordRow.request_id == request_id,
            # `+ 0`: found through the request id's index; SQLite (never ANALYZEd) would
            # otherwise pick the tenant's, and sort all of the tenant's records.
            AuditRecordRow.tenant_id + 0 == tenant_id,
            AuditRecordRow.principal_type.in_(PARTNER_PRINCIPALS),
            AuditRecordRow.event_type.in_(PARTNER_EVENTS),
        )
        .order_by(AuditRecordRow.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    record = record_to_dict(row)
    tree = read_tree(session)
    head = latest_head(session)
    first_seq = tree.first_seq
    if first_seq is None or head is None or record["seq"] - first_seq >= head.size:
        head = grow_and_sign(session, log.signer, origin=log.origin, up_to_seq=None)
        first_seq = read_tree(session).first_seq
    if head is None or first_seq is None or record["seq"] < first_seq:
        return None  # recorded before the tree began over a pruned log: nothing to prove
    index = record["seq"] - first_seq
    return {
        "format": RECEIPT_FORMAT,
        "record": record,
        "leaf_index": index,
        "tree_size": head.size,
        "inclusion_proof": _b64(inclusion_proof(session, index, head.size)),
        "checkpoint": head.note,
        "signed_at": head.as_json()["signed_at"],
        "key_id": head.key_id,
    }


def checkpoint(session: Session) -> TreeHead | None:
    """The newest signed tree head."""
    return latest_head(session)


def consistency(session: Session, old: int, new: int) -> list[str]:
    """The RFC 9162 proof that the tree of `new` leaves extends that of `old` (base64 hashes).

    Both sizes must be sizes the partner can hold a signed head of: at most the newest head.
    """
    newest = latest_head(session)
    newest_size = newest.size if newest is not None else 0
    if not 1 <= old <= new:
        raise ProofUnavailable("invalid_range", "`from` must be at least 1 and at most `to`")
    if new > newest_size:
        raise ProofUnavailable(
            "beyond_newest_head", "`to` is larger than the newest signed tree head"
        )
    return _b64(consistency_proof(session, old, new))
