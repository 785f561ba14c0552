"""A key's rate-limit usage as `predgate keys usage` and the admin API show it: every window
that applies to it (its own or inherited policy, its tenant's), read from the counters."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from auth.api_keys import key_limits
from config import Settings
from ratelimit.counters import Counters
from ratelimit.policy import credential_policy
from ratelimit.usage import WindowUsage


def key_usage(
    session: Session, counters: Counters, settings: Settings, key_id: str
) -> list[WindowUsage]:
    """Each window's usage; CounterStoreUnavailable when the store cannot be read."""
    policy = credential_policy(
        key_limits(session, key_id),
        principal=f"api_key:{key_id}",
        default=settings.default_rate_limit,
    )
    return list(counters.read(policy, now=time.time()))


def key_usage_json(
    session: Session, counters: Counters, settings: Settings, key_id: str
) -> dict[str, Any]:
    """The usage presented: `{"key_id", "windows": [...]}`."""
    now = time.time()
    windows = key_usage(session, counters, settings, key_id)
    return {"key_id": key_id, "windows": [u.to_dict(now) for u in windows]}
