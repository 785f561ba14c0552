"""Rate-limit usage: what each window of a policy has spent, read from the counter store.

The gateway reads it for its response headers and `predgate keys usage` for operators, through
the same `limits` strategy and the same counter names flask-limiter writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.storage import storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from sqlalchemy.orm import Session

from auth.api_keys import key_limits
from auth.limits import LimitPolicy, ScopedLimit, counter_identifiers, resolve_policy, window_name


@dataclass(frozen=True)
class WindowUsage:
    """One window of one policy, as the counter store sees it now."""

    name: str  # e.g. "key-minute"
    scope: str  # "key", "tenant" or "address"
    policy: str  # the whole policy the window belongs to
    source: str  # where that policy was set: "key", "tenant" or "default"
    limit: int
    window_seconds: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted unit leaves the window

    @property
    def used(self) -> int:
        """Units counted in the window."""
        return self.limit - self.remaining

    def seconds_until_reset(self, now: float) -> int:
        """Whole seconds after which a unit is free again (0 when nothing is counted).

        The window admits again only once the oldest counted unit is strictly older than the
        window, so this is the smallest integer `d` with `now + d > reset_at`.
        """
        if self.remaining >= self.limit:
            return 0
        return max(1, math.floor(self.reset_at - now) + 1)

    def reset_epoch(self, now: float) -> int:
        """The first whole epoch second at which a unit is free again (now when none is used)."""
        if self.remaining >= self.limit:
            return math.floor(now)
        return max(math.floor(now) + 1, math.floor(self.reset_at) + 1)

    def to_dict(self, now: float) -> dict[str, Any]:
        """The window's consumption as `keys usage --json` and the admin API show it."""
        return {
            "window": self.name,
            "scope": self.scope,
            "policy": self.policy,
            "policy_source": self.source,
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "used": self.used,
            "remaining": self.remaining,
            "resets_in_seconds": self.seconds_until_reset(now),
        }


def open_counters(storage_uri: str, strategy: str, options: dict[str, Any]) -> RateLimiter:
    """The `limits` strategy over the counter store the gateway writes to."""
    return STRATEGIES[strategy](storage_from_string(storage_uri, **options))


def window_usage(
    counters: RateLimiter, scoped: ScopedLimit, window: RateLimitItem, *, key_prefix: str
) -> WindowUsage:
    """The usage of one window of a scoped policy."""
    reset_at, remaining = counters.get_window_stats(
        window, *counter_identifiers(key_prefix, scoped.counter)
    )
    return WindowUsage(
        name=window_name(scoped.scope, window),
        scope=scoped.scope,
        policy=scoped.policy,
        source=scoped.source,
        limit=window.amount,
        window_seconds=window.get_expiry(),
        remaining=max(0, min(window.amount, remaining)),
        reset_at=reset_at,
    )


def policy_usage(
    counters: RateLimiter, policy: LimitPolicy, *, key_prefix: str
) -> list[WindowUsage]:
    """The usage of every window of every limit in a policy."""
    return [
        window_usage(counters, scoped, window, key_prefix=key_prefix)
        for scoped in policy.limits
        for window in scoped.windows
    ]


def key_usage(
    session: Session,
    counters: RateLimiter,
    key_id: str,
    *,
    default_policy: str,
    key_prefix: str,
) -> list[WindowUsage]:
    """Current consumption of each window that applies to a key (its lineage and its tenant)."""
    policy = resolve_policy(key_limits(session, key_id), default=default_policy)
    return policy_usage(counters, policy, key_prefix=key_prefix)
