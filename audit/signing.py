"""Ed25519 keys that sign checkpoints: generated into the data directory, or configured.

`cryptography` is imported when a key is generated, used or verified, not with this module:
most administrative acts record an event without signing anything, and the import costs a
quick command about 6% of its CPU (bench/cli_start.py)."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.events import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNING_KEY_FILE = "audit_signing_key.pem"
SEED_BYTES = 32
# An Ed25519 private key in PKCS #8 (RFC 8410), the form generated here, is this DER prefix
# and the 32-byte seed: such a PEM is read without `cryptography`, any other text is parsed by it.
_PKCS8_PEM_HEADER = "-----BEGIN PRIVATE KEY-----"
_PKCS8_PEM_FOOTER = "-----END PRIVATE KEY-----"
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_INVALID_KEY = "the audit signing key is not a valid Ed25519 private key"


class SigningKeyError(ValueError):
    """The signing key cannot be read or parsed."""


@dataclass(frozen=True)
class CheckpointSigner:
    """Signs checkpoint statements; its key id names the public key that verifies them.

    Holds the key's 32-byte seed; the key itself is made on first use."""

    seed: bytes = field(repr=False)

    @cached_property
    def private_key(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @cached_property
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
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    """PEM text of a public key."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str) -> Ed25519PublicKey:
    """Parse a PEM public key, refusing anything that is not Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("the audit public key is not an Ed25519 key")
    return key


def verify_statement(
    public_key: Ed25519PublicKey, statement: dict[str, Any], signature: str
) -> bool:
    """True when the signature over the statement is valid for this key."""
    from cryptography.exceptions import InvalidSignature

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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return CheckpointSigner(_parse_private(pem.decode()))


def _parse_private(text: str) -> bytes:
    """The seed of a private key given as PEM or as base64 of the seed; SigningKeyError if the
    text is neither, or holds a key that is not Ed25519."""
    text = text.strip()
    if not text.startswith("-----BEGIN"):
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError as exc:  # binascii.Error included
            raise SigningKeyError(_INVALID_KEY) from exc
        if len(seed) != SEED_BYTES:
            raise SigningKeyError(_INVALID_KEY)
        return seed
    return _pkcs8_seed(text) or _parse_pem(text)


def _pkcs8_seed(text: str) -> bytes | None:
    """The seed of an Ed25519 key in PKCS #8 PEM; None for any other text."""
    lines = text.splitlines()
    if len(lines) < 3 or lines[0] != _PKCS8_PEM_HEADER or lines[-1] != _PKCS8_PEM_FOOTER:
        return None
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        return None
    if len(der) != len(_PKCS8_ED25519_PREFIX) + SEED_BYTES:
        return None
    return der[len(_PKCS8_ED25519_PREFIX) :] if der.startswith(_PKCS8_ED25519_PREFIX) else None


def _parse_pem(text: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(_INVALID_KEY) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("the audit signing key is not an Ed25519 key")
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
