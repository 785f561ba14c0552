"""What one window of a policy has spent, as the counters report it after a request (for the
response headers) or on demand (`predgate keys usage`, the admin API)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WindowUsage:
    """One window of one policy, as the counter store sees it now."""

    name: str  # e.g. "key-minute"
    scope: str  # "key", "tenant", "address" or "client"
    policy: str  # the whole policy the window belongs to
    source: str  # where that policy was set: "key", "tenant" or "default"
    limit: int
    window_seconds: int
    remaining: int
    reset_at: float  # epoch seconds when a counted unit next leaves the window

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
