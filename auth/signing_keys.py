"""Token signing keys: ES256 key pairs kept in the database so every replica signs and verifies
with the same keys. Private keys are encrypted at rest with AES-256-GCM under a key derived
(HKDF-SHA256) from the server secret; public keys are published while they can verify a token.

Exactly one key signs at a time (``active_slot = 1``, unique). A rotated-out key stays published
until ``publish_until``: its retirement plus the longest token lifetime plus the clock leeway.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.tables import SigningKeyRow
from db.base import utcnow

ALGORITHM = "ES256"
_ACTIVE = 1
_NONCE_BYTES = 12
_KDF_INFO = b"predgate token signing keys v1"


@dataclass(frozen=True)
class SigningKey:
    """A signing key's public half and its life: never the private key."""

    kid: str
    algorithm: str
    public_pem: str
    created_at: datetime
    retired_at: datetime | None
    publish_until: datetime | None

    def state(self, now: datetime) -> str:
        """`active` (signs), `retired` (still verifies) or `expired`."""
        if self.retired_at is None:
            return "active"
        if self.publish_until is not None and self.publish_until > now:
            return "retired"
        return "expired"


@dataclass(frozen=True)
class PrivateSigningKey:
    """The key that signs now: its id and its PKCS#8 PEM private key (kept in memory only)."""

    kid: str
    algorithm: str
    private_pem: bytes = b""


def ensure_signing_key(session: Session, server_secret: bytes) -> SigningKey:
    """The active key, created first if none exists; safe when several workers race for it."""
    row = _active_row(session)
    if row is not None:
        return _to_key(row)
    try:
        with session.begin_nested():
            row = _new_row(server_secret)
            session.add(row)
    except IntegrityError:
        # Another worker created it first; use theirs.
        row = _active_row(session)
        if row is None:
            raise
    return _to_key(row)


def rotate_signing_key(
    session: Session, server_secret: bytes, *, retire_after: timedelta
) -> tuple[SigningKey, SigningKey | None]:
    """Make a new key the signing key; the old one stays published for `retire_after`.

    Returns (new key, retired key or None).
    """
    now = utcnow()
    old = _active_row(session)
    if old is not None:
        old.active_slot = None
        old.retired_at = now
        old.publish_until = now + retire_after
        session.flush()
    new = _new_row(server_secret)
    session.add(new)
    session.flush()
    return _to_key(new), _to_key(old) if old is not None else None


def list_signing_keys(session: Session) -> list[SigningKey]:
    """Every signing key, newest first."""
    rows = session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.id.desc()))
    return [_to_key(row) for row in rows]


def published_keys(session: Session, *, now: datetime | None = None) -> list[SigningKey]:
    """The keys that may verify a token now: the active one and retired ones not yet expired."""
    moment = now or utcnow()
    rows = session.scalars(
        select(SigningKeyRow)
        .where(or_(SigningKeyRow.retired_at.is_(None), SigningKeyRow.publish_until > moment))
        .order_by(SigningKeyRow.id.desc())
    )
    return [_to_key(row) for row in rows]


def active_private_key(session: Session, server_secret: bytes) -> PrivateSigningKey:
    """The signing key's private half, decrypted (created first if there is none)."""
    ensure_signing_key(session, server_secret)
    row = _active_row(session)
    assert row is not None
    return PrivateSigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        private_pem=_decrypt(server_secret, row.kid, row.private_encrypted),
    )


def _new_row(server_secret: bytes) -> SigningKeyRow:
    private = ec.generate_private_key(ec.SECP256R1())
    kid = secrets.token_urlsafe(12)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKeyRow(
        kid=kid,
        algorithm=ALGORITHM,
        public_pem=public_pem.decode(),
        private_encrypted=_encrypt(server_secret, kid, private_pem),
        active_slot=_ACTIVE,
        created_at=utcnow(),
    )


def _wrapping_key(server_secret: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(
        server_secret
    )
    return AESGCM(derived)


def _encrypt(server_secret: bytes, kid: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    # The kid is authenticated data: a ciphertext moved to another row does not decrypt.
    return nonce + _wrapping_key(server_secret).encrypt(nonce, plaintext, kid.encode())


def _decrypt(server_secret: bytes, kid: str, blob: bytes) -> bytes:
    nonce, ciphertext = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    return _wrapping_key(server_secret).decrypt(nonce, ciphertext, kid.encode())


def _active_row(session: Session) -> SigningKeyRow | None:
    return session.scalar(select(SigningKeyRow).where(SigningKeyRow.active_slot == _ACTIVE))


def _to_key(row: SigningKeyRow) -> SigningKey:
    return SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        public_pem=row.public_pem,
        created_at=row.created_at,
        retired_at=row.retired_at,
        publish_until=row.publish_until,
    )
