"""Which keys were used: noted in memory by requests, written to `last_used_at` in one statement
by a background task, so authenticating a request never commits anything."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from auth.api_keys import record_key_use
from db.base import utcnow


class KeyUseLog:
    """Key ids used since the last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[str] = set()

    def note(self, key_id: str) -> None:
        """Remember that this key served a request."""
        with self._lock:
            self._used.add(key_id)

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Write what was noted; on failure keep it for the next flush. Returns rows changed."""
        with self._lock:
            used, self._used = self._used, set()
        if not used:
            return 0
        try:
            with sessions() as session, session.begin():
                return record_key_use(session, used, at=utcnow())
        except Exception:
            with self._lock:
                self._used |= used
            raise
