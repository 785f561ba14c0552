"""Check a predgate receipt offline: the record, its place in the audit log's Merkle tree
(RFC 9162 §2.1) and the log's signed tree head (a C2SP signed-note checkpoint).

This module stands alone on purpose: it needs Python 3.11+ and, for the signature, the
`cryptography` package, nothing else. A partner can copy this one file instead of installing
the gateway:

    import json
    from receipt_verifier import verify_receipt

    receipt = json.load(open("receipt.json"))
    verified = verify_receipt(receipt, open("audit.pem").read())
    print(verified.seq, verified.tree_size)

and keep the newest checkpoint it has seen, to check with `verify_consistency` that the log
only ever grew by appending. The gateway hashes records and builds its tree with the same
functions, so what this file accepts is exactly what the gateway wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RECEIPT_FORMAT = "predgate-receipt/1"
# The fields a record commits to, in order (the record hash covers all but `hash`).
RECORD_FIELDS = (
    "seq",
    "event_id",
    "ts",
    "duration_ms",
    "request_id",
    "event_type",
    "outcome",
    "reason_code",
    "http_status",
    "http_method",
    "route",
    "tenant_id",
    "principal_type",
    "principal_id",
    "auth_method",
    "source_ip",
    "user_agent",
    "instance_id",
    "process_id",
    "model_name",
    "model_version",
    "model_sha256",
    "rows",
    "request_digest",
    "response_digest",
    "details",
    "prev_hash",
    "hash",
)
# C2SP signed-note: a signature line starts with an em dash and a space; Ed25519 is type 0x01.
_SIGNATURE_PREFIX = "\u2014 "
_ED25519 = b"\x01"


class ReceiptInvalid(ValueError):
    """The receipt does not prove what it claims; `reason` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- records and tree hashing (RFC 9162 §2.1.1) ----------------------------------------------


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of every committed field except the hash itself."""
    content = {name: record[name] for name in RECORD_FIELDS if name != "hash"}
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def leaf_hash(entry: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || entry). A record's entry is its 32-byte hash."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def record_leaf(record_hash_hex: str) -> bytes:
    """The leaf hash of the record whose hash (hex) is given."""
    return leaf_hash(bytes.fromhex(record_hash_hex))


# --- proofs (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------------------


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that an inclusion proof of `leaf` at `index` in a tree of `size` leads to."""
    if not 0 <= index < size:
        raise ReceiptInvalid("proof_invalid", "the leaf index lies outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ReceiptInvalid("proof_invalid", "the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ReceiptInvalid("proof_invalid", "the inclusion proof is too short")
    return r


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ReceiptInvalid unless the tree of `size2` with `root2` extends the tree of
    `size1` with `root1` by appending only."""
    if not 0 <= size1 <= size2:
        raise ReceiptInvalid("consistency_invalid", "the first tree is larger than the second")
    if size1 == size2:
        if proof or root1 != root2:
            raise ReceiptInvalid("consistency_invalid", "two heads of one size disagree (a fork)")
        return
    if size1 == 0:
        return  # the empty tree is a prefix of every tree
    if not proof:
        raise ReceiptInvalid("consistency_invalid", "the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ReceiptInvalid("consistency_invalid", "the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != root1 or sr != root2:
        raise ReceiptInvalid(
            "consistency_invalid", "the newer head does not extend the older one (a fork)"
        )


# --- signed tree heads (C2SP tlog-checkpoint in a C2SP signed note) -------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A verified tree head: the log's origin line, its size and root hash."""

    origin: str
    size: int
    root: bytes


def note_key_id(name: str, raw_public_key: bytes) -> bytes:
    """The 4-byte key id a signed note names: SHA-256(name || LF || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw_public_key).digest()[:4]


def parse_checkpoint(note: str) -> tuple[Checkpoint, str, list[tuple[str, bytes]]]:
    """Split a signed checkpoint into its tree head, the signed text and its signature lines
    (name, key id + signature); nothing is verified here."""
    text, sep, signatures = note.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise ReceiptInvalid("checkpoint_malformed", "the checkpoint is not a signed note")
    text += "\n"
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise ReceiptInvalid("checkpoint_malformed", "the checkpoint lacks origin, size or root")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise ReceiptInvalid("checkpoint_malformed", "the checkpoint's tree size is not a number")
    root = _b64(root_text, "checkpoint_malformed")
    if len(root) != 32:
        raise ReceiptInvalid("checkpoint_malformed", "the checkpoint's root is not a SHA-256")
    lines_signed = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise ReceiptInvalid("checkpoint_malformed", "a signature line is malformed")
        name, _, blob = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        lines_signed.append((name, _b64(blob, "checkpoint_malformed")))
    return Checkpoint(origin, int(size_text), root), text, lines_signed


def verify_checkpoint(note: str, public_key_pem: str, *, origin: str | None = None) -> Checkpoint:
    """The tree head of a checkpoint signed by this Ed25519 key (PEM), else ReceiptInvalid.

    With `origin`, the checkpoint must also name that log.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    checkpoint, text, signatures = parse_checkpoint(note)
    if origin is not None and checkpoint.origin != origin:
        raise ReceiptInvalid("checkpoint_wrong_log", "the checkpoint names another log")
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
    except ValueError:
        raise ReceiptInvalid("public_key_invalid", "the public key is not a PEM key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptInvalid("public_key_invalid", "the public key is not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for name, blob in signatures:
        if name != checkpoint.origin or blob[:4] != note_key_id(name, raw):
            continue
        try:
            key.verify(blob[4:], text.encode())
        except InvalidSignature:
            break
        return checkpoint
    raise ReceiptInvalid(
        "checkpoint_signature_invalid", "the checkpoint is not signed by this public key"
    )


# --- receipts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a receipt proved: this record is entry `seq` of the log whose signed head is
    `checkpoint`."""

    seq: int
    record: dict[str, Any]
    checkpoint: Checkpoint


def verify_receipt(
    receipt: Mapping[str, Any], public_key_pem: str, *, origin: str | None = None
) -> VerifiedReceipt:
    """Check a receipt end to end, else raise ReceiptInvalid (its `reason` says which step):

    1. the record's fields hash to its `hash` (nothing in it was changed);
    2. the checkpoint is signed by the log's key (and names `origin`, when given);
    3. the inclusion proof leads from the record's leaf, at `leaf_index`, to the checkpoint's
       root.
    """
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ReceiptInvalid("receipt_malformed", f"not a {RECEIPT_FORMAT} receipt")
    record = receipt.get("record")
    if not isinstance(record, dict) or any(name not in record for name in RECORD_FIELDS):
        raise ReceiptInvalid("receipt_malformed", "the receipt's record lacks fields")
    if record_hash(record) != record["hash"]:
        raise ReceiptInvalid("record_altered", "the record does not match its hash")
    checkpoint = verify_checkpoint(
        str(receipt.get("checkpoint", "")), public_key_pem, origin=origin
    )
    proof_texts = receipt.get("inclusion_proof")
    if not isinstance(proof_texts, list):
        raise ReceiptInvalid("receipt_malformed", "the receipt has no inclusion proof")
    proof = [_b64(str(p), "receipt_malformed") for p in proof_texts]
    seq, index = record["seq"], receipt.get("leaf_index")
    if not isinstance(seq, int) or not isinstance(index, int) or index < 0:
        raise ReceiptInvalid("receipt_malformed", "the receipt has no sequence number or leaf")
    # The leaf is seq - 1, unless the log was pruned before its tree began (then it counts from
    # the first record kept): the proof fixes the position either way.
    root = root_from_inclusion_proof(index, checkpoint.size, record_leaf(record["hash"]), proof)
    if root != checkpoint.root:
        raise ReceiptInvalid("proof_invalid", "the record is not in the signed tree")
    return VerifiedReceipt(seq=seq, record=dict(record), checkpoint=checkpoint)


def verify_log_growth(
    older_note: str, newer_note: str, proof_b64: Sequence[str], public_key_pem: str
) -> Checkpoint:
    """Check that the log signed in `newer_note` extends the one in `older_note` (both signed
    by the key), with the proof from GET /v1/log/consistency; returns the newer head."""
    older = verify_checkpoint(older_note, public_key_pem)
    newer = verify_checkpoint(newer_note, public_key_pem, origin=older.origin)
    proof = [_b64(p, "consistency_invalid") for p in proof_b64]
    verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    return newer


def _b64(text: str, reason: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptInvalid(reason, "a hash or signature is not base64") from None
