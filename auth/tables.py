"""Tables of tenants and API keys. Every key row belongs to exactly one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # The assigned model: a name, and a pinned version or NULL for "the latest version".
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
