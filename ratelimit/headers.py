"""Rate-limit response headers, from what the counters reported for the request:

- ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers -10): one item per
  window, ``q`` its quota, ``w`` its length, ``r`` what remains, ``t`` seconds until a unit frees;
- ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` of the window with the least remaining;
- ``Retry-After`` on a refusal: when every window that refused frees a unit;
- ``X-RateLimit-Degraded`` while the store is down and the request was admitted anyway.
"""

from __future__ import annotations

from ratelimit.limiter import Outcome
from ratelimit.policy import RequestPlan, window_name

DEGRADED_HEADER = "X-RateLimit-Degraded"


def rate_limit_headers(plan: RequestPlan, outcome: Outcome | None, *, now: float) -> dict[str, str]:
    """The headers of a response to a request counted under `plan` (outcome None: the store
    failed and nothing can be said but the policy)."""
    headers = {
        "RateLimit-Policy": ", ".join(
            f'"{window_name(scoped.scope, window)}";q={window.amount};w={window.get_expiry()}'
            for scoped in plan.policy.limits
            for window in scoped.windows
        )
    }
    if outcome is not None and outcome.degraded is not None:
        headers[DEGRADED_HEADER] = outcome.degraded
    if outcome is None or outcome.spend is None or not outcome.spend.windows:
        return headers  # nothing was counted: no invented numbers
    usage = outcome.spend.windows
    headers["RateLimit"] = ", ".join(
        f'"{u.name}";r={u.remaining};t={u.seconds_until_reset(now)}' for u in usage
    )
    tightest = min(usage, key=lambda u: (u.remaining, -u.reset_at))
    headers["X-RateLimit-Limit"] = str(tightest.limit)
    headers["X-RateLimit-Remaining"] = str(tightest.remaining)
    headers["X-RateLimit-Reset"] = str(tightest.reset_epoch(now))
    refusing = outcome.spend.refusing()
    if refusing:
        headers["Retry-After"] = str(max([1, *(u.seconds_until_reset(now) for u in refusing)]))
    return headers
