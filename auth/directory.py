"""The credential directory: what authenticating a request reads (key credentials, OAuth client
grants, the token denylist, the published signing keys), held in each worker and dropped as soon
as the change generation moves (db.changes), so the hot path reads no database row.

A revocation, suspension or rotation moves the generation in the transaction that makes it; a
worker sees it at its next poll. Unknown keys and clients are not cached (issuing one need not
reach every worker first); the denylist caches "not revoked" too, because every token request
asks it and a revocation moves the generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy.orm import Session, sessionmaker

from auth.api_keys import KeyCredential, load_key_credential
from auth.clients import ClientGrant, client_grant
from auth.errors import TenantNotFound
from auth.signing_keys import SigningKey, published_keys
from auth.tenants import Tenant, get_tenant_by_id
from auth.tokens import is_token_revoked
from db.changes import ChangeCache, ChangeWatcher

# A kid no worker has seen may be a key another replica has just rotated in, before this
# worker's next poll: read the keys again, but at most this often, so invented kids cannot
# flood the database.
KEY_MISS_RELOAD_SECONDS = 1.0
T = TypeVar("T")


@dataclass(frozen=True)
class VerifyingKey:
    """A published signing key with its public key parsed once."""

    key: SigningKey
    public: EllipticCurvePublicKey


class CredentialDirectory:
    """Cached lookups for authentication; each miss reads the database once."""

    def __init__(self, sessions: sessionmaker[Session], watcher: ChangeWatcher) -> None:
        self._sessions = sessions
        self._keys: ChangeCache[str, KeyCredential] = ChangeCache(watcher, name="keys")
        self._tenants: ChangeCache[int, Tenant] = ChangeCache(watcher, name="tenants")
        self._clients: ChangeCache[str, ClientGrant] = ChangeCache(watcher, name="clients")
        self._denylist: ChangeCache[tuple[str, str], bool] = ChangeCache(
            watcher, name="token_denylist"
        )
        self._signing: ChangeCache[str, tuple[VerifyingKey, ...]] = ChangeCache(
            watcher, name="signing_keys"
        )
        self._reload_lock = threading.Lock()
        self._reloaded_at = float("-inf")

    def key_credential(self, key_id: str) -> KeyCredential | None:
        """The credential of a key id (None: no such key)."""
        return self._keys.get(key_id, self._reader(lambda s: load_key_credential(s, key_id)))

    def tenant(self, tenant_id: int) -> Tenant:
        """A tenant as it is now: its status, model assignment and rate limit."""
        found = self._tenants.get(tenant_id, self._reader(lambda s: _tenant_or_none(s, tenant_id)))
        if found is None:
            raise TenantNotFound("no such tenant")
        return found

    def client_grant(self, client_id: str) -> ClientGrant | None:
        """An OAuth client's grant as it is now (None: no such client)."""
        return self._clients.get(client_id, self._reader(lambda s: client_grant(s, client_id)))

    def token_revoked(self, issuer: str, jti: str) -> bool:
        """True when the token (issuer, jti) is on the denylist."""
        revoked = self._denylist.get(
            (issuer, jti), self._reader(lambda s: is_token_revoked(s, issuer=issuer, jti=jti))
        )
        return bool(revoked)

    def verifying_key(self, kid: str, *, now: datetime) -> EllipticCurvePublicKey | None:
        """The public key with that kid, if it may verify a token now."""
        found = _find(self._signing.get("published", self._load_published) or (), kid, now)
        if found is not None:
            return found
        with self._reload_lock:
            if time.monotonic() - self._reloaded_at < KEY_MISS_RELOAD_SECONDS:
                return None
            self._reloaded_at = time.monotonic()
        return _find(self._load_published(), kid, now)

    def _load_published(self) -> tuple[VerifyingKey, ...]:
        with self._sessions() as session:
            keys = published_keys(session)
        return tuple(VerifyingKey(key, _public_key(key.public_pem)) for key in keys)

    def _reader(self, lookup: Callable[[Session], T]) -> Callable[[], T]:
        def load() -> T:
            with self._sessions() as session:
                return lookup(session)

        return load


def _tenant_or_none(session: Session, tenant_id: int) -> Tenant | None:
    try:
        return get_tenant_by_id(session, tenant_id)
    except TenantNotFound:
        return None


def _find(keys: tuple[VerifyingKey, ...], kid: str, now: datetime) -> EllipticCurvePublicKey | None:
    for verifying in keys:
        if verifying.key.kid == kid and verifying.key.state(now) != "expired":
            return verifying.public
    return None


def _public_key(pem: str) -> EllipticCurvePublicKey:
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, EllipticCurvePublicKey)
    return key
