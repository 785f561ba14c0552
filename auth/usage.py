"""A key's rate-limit usage as `predgate keys usage` and the admin API show it: every window
that applies to it (its own or inherited policy, its tenant's), read from the counters."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from auth.api_keys import key_limits
from ratelimit.counters import Counters
from ratelimit.policy import credential_policy
from ratelimit.usage import WindowUsage


def key_usage(
    session: Session, counters: Counters, key_id: str, *, default_policy: str
) -> list[WindowUsage]:
    """Each window's usage; CounterStoreUnavailable when the store cannot be read."""
    policy = credential_policy(
        key_limits(session, key_id), principal=f"api_key:{key_id}", default=default_policy
    )
    return list(counters.read(policy, now=time.time()))
