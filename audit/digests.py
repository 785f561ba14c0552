"""Keyed digests of request and response bodies: per tenant, so a digest reveals nothing
across tenants and cannot be recomputed without the server secret."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache


@lru_cache(maxsize=1024)
def tenant_digest_key(server_secret: bytes, tenant_id: int | None) -> bytes:
    """The HMAC key for one tenant's bodies (or for unauthenticated traffic)."""
    label = f"audit-digest:{tenant_id if tenant_id is not None else 'anonymous'}"
    return hmac.new(server_secret, label.encode(), hashlib.sha256).digest()


def body_digest(key: bytes, body: bytes) -> str:
    """HMAC-SHA256 of a body."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()
