"""Partner receipts and the transparency log (scope `receipts:read`): a partner proves for
itself, with a short proof and the log's public key, what the gateway answered it.

    GET /v1/receipts/{request_id}   the record of one of the caller's tenant's requests, the
                                    newest signed tree head and the inclusion proof
    GET /v1/log/checkpoint          the newest signed tree head (a C2SP checkpoint)
    GET /v1/log/consistency         proof that one head's tree extends an older one's
    GET /v1/log/public-key          the key that signs the heads, and the log's name

Another tenant's request id is answered exactly like an unknown one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from spectree import Response

from audit.receipts import LogIdentity, ProofUnavailable, checkpoint, consistency, receipt
from audit.tree import grow_and_sign, read_tree
from gateway.context import RequestContext
from gateway.errors import ApiError
from gateway.pipeline import endpoint
from gateway.pipeline.bodies import FieldProblem, invalid_inputs
from gateway.schemas import Problem

bp = Blueprint("receipts", __name__)
TAGS = ["receipts"]
ERRORS: dict[str, Any] = {f"HTTP_{s}": Problem for s in (400, 401, 403, 404, 422, 429, 503)}
REQUEST_ID_MAX = 64


class Receipt(BaseModel):
    format: str = Field(description="`predgate-receipt/1`.")
    record: dict[str, Any] = Field(
        description="The stored record, every field it commits to (SHA-256 of its canonical "
        "JSON is `hash`): digests, the caller's own ids, model name, version and artifact "
        "SHA-256, status and time. No feature value or secret."
    )
    leaf_index: int = Field(description="The record's leaf in the log's Merkle tree.")
    tree_size: int
    inclusion_proof: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes.")
    checkpoint: str = Field(description="The signed tree head (C2SP signed-note checkpoint).")
    signed_at: str
    key_id: str


class Checkpoint(BaseModel):
    tree_size: int
    root_hash: str = Field(description="Base64 SHA-256, as in the checkpoint.")
    signed_at: str
    key_id: str
    checkpoint: str = Field(description="C2SP signed-note checkpoint text.")


class ConsistencyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_size: int = Field(alias="from", ge=1, description="The older head's tree size.")
    to_size: int = Field(alias="to", ge=1, description="The newer head's tree size.")


class ConsistencyProof(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes.")


class LogKey(BaseModel):
    origin: str | None = Field(description="The log's name: the first line of its checkpoints.")
    key_id: str
    public_key: str = Field(description="Ed25519 public key, PEM.")


def _log(ctx: RequestContext) -> LogIdentity:
    settings = ctx.runtime.settings
    if not settings.receipts_enabled:
        raise ApiError(
            404,
            "receipts_disabled",
            "Receipts are switched off",
            "This gateway does not issue receipts (PREDGATE_RECEIPTS=off).",
        )
    return LogIdentity(ctx.runtime.audit_config.signer, settings.log_origin or None)


def _not_found() -> ApiError:
    return ApiError(
        404,
        "receipt_not_found",
        "No such request",
        "Your tenant made no request with this id, or its record is not in the log.",
    )


@bp.get("/v1/receipts/<request_id>")
@endpoint(
    "receipt.read",
    scope="receipts:read",
    limited=True,
    responses=Response(HTTP_200=Receipt, **ERRORS),
    tags=TAGS,
)
def get_receipt(ctx: RequestContext, request_id: str) -> ResponseReturnValue:
    """The receipt of one of your requests: its record, the newest signed tree head and the
    inclusion proof. Verify it offline with the log's public key."""
    log = _log(ctx)
    if len(request_id) > REQUEST_ID_MAX:
        raise _not_found()
    session = ctx.db()
    found = receipt(session, log, tenant_id=ctx.tenant_id(), request_id=request_id)
    session.commit()  # a head signed for this receipt
    if found is None:
        raise _not_found()
    return jsonify(found)


@bp.get("/v1/log/checkpoint")
@endpoint(
    "log.read",
    scope="receipts:read",
    limited=True,
    responses=Response(HTTP_200=Checkpoint, **ERRORS),
    tags=TAGS,
)
def get_checkpoint(ctx: RequestContext) -> ResponseReturnValue:
    """The newest signed tree head; keep it, and later ask for proof that the log grew from
    it by appending only."""
    log = _log(ctx)
    session = ctx.db()
    head = checkpoint(session)
    if head is None:  # a log with records but no head yet gets its first one
        head = grow_and_sign(session, log.signer, origin=log.origin)
        session.commit()
    if head is None:
        raise ApiError(404, "log_empty", "The log is empty", "No record has been written yet.")
    return jsonify(head.as_json())


@bp.get("/v1/log/consistency")
@endpoint(
    "log.read",
    scope="receipts:read",
    query=ConsistencyQuery,
    limited=True,
    responses=Response(HTTP_200=ConsistencyProof, **ERRORS),
    tags=TAGS,
)
def get_consistency(ctx: RequestContext, query: ConsistencyQuery) -> ResponseReturnValue:
    """Proof that the tree of `to` leaves extends the tree of `from` leaves (RFC 9162)."""
    _log(ctx)
    try:
        proof = consistency(ctx.db(), query.from_size, query.to_size)
    except ProofUnavailable as exc:
        field = "to" if exc.reason == "beyond_newest_head" else "from"
        problem = FieldProblem(field, exc.reason, str(exc))
        raise invalid_inputs("The sizes cannot be proven", [problem]) from None
    return jsonify({"from": query.from_size, "to": query.to_size, "proof": proof})


@bp.get("/v1/log/public-key")
@endpoint(
    "log.read",
    scope="receipts:read",
    limited=True,
    responses=Response(HTTP_200=LogKey, **ERRORS),
    tags=TAGS,
)
def get_public_key(ctx: RequestContext) -> ResponseReturnValue:
    """The Ed25519 key that signs the log's tree heads (compare it with the one the operator
    gave you out of band), and the log's name."""
    log = _log(ctx)
    origin = read_tree(ctx.db()).origin or log.origin
    signer = log.signer
    return jsonify({"origin": origin, "key_id": signer.key_id, "public_key": signer.public_pem()})
