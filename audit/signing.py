"""Ed25519 keys that sign checkpoints: generated into the data directory, or configured."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.events import canonical_json

SIGNING_KEY_FILE = "audit_signing_key.pem"


class SigningKeyError(ValueError):
    """The signing key cannot be read or parsed."""


@dataclass(frozen=True)
class CheckpointSigner:
    """Signs checkpoint statements; its key id names the public key that verifies them."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    def public_pem(self) -> str:
        """The public key in PEM, for export and offline verification."""
        return public_pem(self.public_key)

    def sign(self, statement: dict[str, Any]) -> str:
        """Base64 signature over the canonical JSON of a statement."""
        signature = self.private_key.sign(canonical_json(statement).encode())
        return base64.b64encode(signature).decode()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    """PEM text of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str) -> Ed25519PublicKey:
    """Parse a PEM public key, refusing anything that is not Ed25519."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("the audit public key is not an Ed25519 key")
    return key


def verify_statement(
    public_key: Ed25519PublicKey, statement: dict[str, Any], signature: str
) -> bool:
    """True when the signature over the statement is valid for this key."""
    try:
        public_key.verify(base64.b64decode(signature), canonical_json(statement).encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_signer(data_dir: Path, configured: str = "") -> CheckpointSigner:
    """The configured key (PEM, or base64 of the 32-byte seed), else the data directory's."""
    if configured:
        return CheckpointSigner(_parse_private(configured))
    path = data_dir / SIGNING_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return CheckpointSigner(_parse_private(path.read_text()))
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return CheckpointSigner(_parse_private(pem.decode()))


def _parse_private(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise SigningKeyError("the audit signing key is not a valid Ed25519 private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("the audit signing key is not an Ed25519 key")
    return key
