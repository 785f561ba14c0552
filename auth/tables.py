"""Tables of tenants, API keys, OAuth clients, token signing keys and revoked tokens.
Every key row belongs to exactly one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # The assigned model: a name, and a pinned version or NULL for the NAME@latest channel
    # (each version registered is served at once); assigning a bare NAME pins its latest.
    model_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Rate-limit policy ("100/minute;5000/day"): the default for the tenant's keys and the
    # aggregate of all of them; NULL for the settings default per key and no aggregate.
    rate_limit: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    # HMAC-SHA256 of the secret keyed with the server secret; the secret itself is never stored.
    secret_hmac: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The key id of the first key in this key's rotation chain: rate-limit counters are kept per
    # lineage, so a successor shares its predecessor's allowance during the grace period.
    lineage_id: Mapped[str] = mapped_column(String(32))
    # This key's own rate-limit policy; NULL inherits the tenant's, else the settings default.
    rate_limit: Mapped[str | None] = mapped_column(String(200), nullable=True)


class OAuthClientRow(Base):
    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # Partner clients belong to exactly one tenant; admin and compliance clients to none.
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id"), index=True, nullable=True
    )
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated, the client's grant
    # HMAC-SHA256 of the secret keyed with the server secret; the secret itself is never stored.
    secret_hmac: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_pem: Mapped[str] = mapped_column(Text)
    # AES-GCM (key derived from the server secret) of the PKCS#8 private key: nonce + ciphertext.
    private_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # 1 for the one key that signs now, NULL once retired: the unique index makes two workers
    # creating the first key at once collide instead of both signing with different keys.
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A retired key stays published (and verifies) until every token it signed has expired.
    publish_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RevokedTokenRow(Base):
    __tablename__ = "revoked_tokens"
    __table_args__ = (UniqueConstraint("issuer", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(200))
    jti: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The token's own exp: past it the entry can go, the token is refused as expired anyway.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
