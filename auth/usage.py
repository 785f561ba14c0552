"""Rate-limit usage as `predgate keys usage`, `predgate tenants usage` and the admin API show it:
every window that applies, read from the counters (nothing is spent).

What can be read depends on where the counters live:

- Redis (PREDGATE_REDIS_URL): every process, the CLI included, reads the same exact counters.
- this process's memory (no Redis, the single-process default; `serve` refuses more than one
  worker without Redis): only the serving process holds them, so only its admin API can report
  them, exactly; a CLI command runs in another process and has none to read. While Redis is
  down under PREDGATE_RATELIMIT_ON_STORE_FAILURE=local, the fallback counts in each worker's
  memory are not reported (reading answers CounterStoreUnavailable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from auth.api_keys import key_limits
from auth.tenants import get_tenant
from ratelimit.errors import CounterStoreUnavailable
from ratelimit.policy import credential_policy, tenant_policy
from ratelimit.usage import WindowUsage

if TYPE_CHECKING:  # the Redis client, for annotations only
    from ratelimit.counters import Counters


def key_usage(
    session: Session, counters: Counters, key_id: str, *, default_policy: str
) -> list[WindowUsage]:
    """Each window of the key (its own or inherited policy, and its tenant's aggregate);
    CounterStoreUnavailable when the store cannot be read."""
    policy = credential_policy(
        key_limits(session, key_id), principal=f"api_key:{key_id}", default=default_policy
    )
    return list(counters.read(policy, now=time.time()))


def tenant_usage(
    session: Session, counters: Counters, tenant_name: str, *, default_policy: str
) -> list[WindowUsage]:
    """Each window of the tenant's aggregate limit, which all its keys spend together (none
    when the tenant has no policy of its own: each key is then counted alone, see
    `key_usage`); CounterStoreUnavailable when the store cannot be read."""
    tenant = get_tenant(session, tenant_name)
    policy = tenant_policy(tenant.id, tenant.rate_limit, default=default_policy)
    if not policy.limits:
        return []
    return list(counters.read(policy, now=time.time()))


# Why a usage answer has no windows (`windows_unavailable`), with what the operator can do.
WINDOWS_UNAVAILABLE = {
    "rate_limits_disabled": "Rate limits are off in this gateway's settings: nothing is counted.",
    "counters_in_server_memory": (
        "Without PREDGATE_REDIS_URL the counters live in the serving process's memory, which no "
        "command can read: ask that gateway (GET /admin/v1/keys/KEY_ID/usage or "
        "/admin/v1/tenants/NAME/usage)."
    ),
    "ratelimit_unavailable": "The rate-limit store (PREDGATE_REDIS_URL) cannot be read now.",
}


def windows_unavailable(code: str) -> dict[str, str]:
    """The `windows_unavailable` of a usage answer."""
    return {"code": code, "detail": WINDOWS_UNAVAILABLE[code]}


def read_windows(
    counters: Counters | None, read: Callable[[Counters], list[WindowUsage]]
) -> tuple[list[WindowUsage] | None, dict[str, str] | None]:
    """(windows, None), or (None, why) when rate limits are off (no counters) or the store
    does not answer."""
    if counters is None:
        return None, windows_unavailable("rate_limits_disabled")
    try:
        return read(counters), None
    except CounterStoreUnavailable:
        return None, windows_unavailable("ratelimit_unavailable")
