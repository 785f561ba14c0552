"""Rate-limit policies: how much a partner credential may spend, per key and per tenant.

A policy is a rate string of the `limits` library, such as ``100/minute;5000/day``: one or more
windows, each with its own amount. One unit is one predicted row (a batch of N rows spends N).

Which policies apply to a key (``resolve_policy``):

- the key's own policy, else its tenant's policy, else the settings default, counted per key
  *lineage* (a key and the successors ``rotate_key`` issued for it share their counters);
- the tenant's policy, when set, is also the aggregate of all the tenant's keys. A key without a
  policy of its own is then counted only in the tenant's windows: its own windows would be the
  same windows over a subset of the same requests, so they could never refuse first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ratelimit.errors import BatchTooLarge, InvalidPolicy

MAX_POLICY_LENGTH = 200
# Counters are named (key prefix, counter, scope) as flask-limiter named its shared limits; every
# partner route uses this one scope, so POST /v1/predict and GET /v1/model spend the same windows.
COUNTER_SCOPE = "partner"
POLICY_EXAMPLE = "100/minute;5000/day"
log = logging.getLogger("predgate.ratelimit")

# `limits` loads its asyncio storage layer on import: a command that only names policies (the
# settings, `tenants list`) should not pay for it, so it is imported where a policy is parsed.
if TYPE_CHECKING:
    from limits import RateLimitItem


@lru_cache(maxsize=512)
def parse_policy(text: str) -> tuple[RateLimitItem, ...]:
    """The windows of a policy such as `100/minute;5000/day`; InvalidPolicy when malformed."""
    if not text.strip() or len(text) > MAX_POLICY_LENGTH:
        raise InvalidPolicy(
            f"a rate-limit policy is 1-{MAX_POLICY_LENGTH} characters, e.g. {POLICY_EXAMPLE}"
        )
    from limits import parse_many

    try:
        windows = tuple(parse_many(text))
    except ValueError:
        raise InvalidPolicy(
            "a rate-limit policy is AMOUNT/PERIOD windows joined by ';' (PERIOD: second, minute, "
            f"hour, day, month or year, optionally with a multiple such as 10minutes), "
            f"e.g. {POLICY_EXAMPLE}"
        ) from None
    if any(window.amount < 1 for window in windows):
        raise InvalidPolicy("every window of a rate-limit policy admits at least 1 unit")
    lengths = [window.get_expiry() for window in windows]
    if len(set(lengths)) != len(lengths):
        raise InvalidPolicy("a rate-limit policy names each window length once")
    return tuple(sorted(windows, key=lambda window: window.get_expiry()))


def normalize_policy(text: str) -> str:
    """The canonical spelling of a valid policy (`100/minute;5000/day`), as it is stored."""
    return ";".join(window_spec(window) for window in parse_policy(text))


def window_spec(window: RateLimitItem) -> str:
    """One window in policy syntax: `100/minute`, `10/5minute`."""
    return f"{window.amount}/{window_period(window)}"


def window_period(window: RateLimitItem) -> str:
    """`minute`, or `5minute` for a window of five minutes."""
    name = window.GRANULARITY.name
    return name if window.multiples == 1 else f"{window.multiples}{name}"


def window_name(scope: str, window: RateLimitItem) -> str:
    """A window's name in headers and usage: `key-minute`, `tenant-day`, `address-5minute`."""
    return f"{scope}-{window_period(window)}"


@dataclass(frozen=True)
class KeyLimits:
    """The limit columns of a key and its tenant, as authentication read them."""

    lineage_id: str
    tenant_id: int
    key_policy: str | None
    tenant_policy: str | None


@dataclass(frozen=True)
class ScopedLimit:
    """One policy and the counter it spends: a key lineage, a tenant or a source address."""

    scope: str  # "key", "tenant", "address" or "client"
    counter: str  # e.g. "key:<lineage id>", never a secret
    policy: str
    source: str  # where the policy was set: "key", "tenant" or "default"

    @property
    def windows(self) -> tuple[RateLimitItem, ...]:
        """The policy's windows, shortest first."""
        return parse_policy(self.policy)


@dataclass(frozen=True)
class LimitPolicy:
    """Every limit one request is counted against."""

    limits: tuple[ScopedLimit, ...]

    def for_scope(self, scope: str) -> ScopedLimit | None:
        """The limit of that scope, if one applies."""
        return next((limit for limit in self.limits if limit.scope == scope), None)


def resolve_policy(limits: KeyLimits, *, default: str) -> LimitPolicy:
    """The limits of a key: its own (or inherited) policy, and its tenant's aggregate."""
    key_counter = f"key:{limits.lineage_id}"
    if limits.key_policy is not None:
        scoped = [ScopedLimit("key", key_counter, limits.key_policy, "key")]
    elif limits.tenant_policy is None:
        scoped = [ScopedLimit("key", key_counter, default, "default")]
    else:
        scoped = []
    if limits.tenant_policy is not None:
        scoped.append(tenant_limit(limits.tenant_id, limits.tenant_policy))
    return LimitPolicy(tuple(scoped))


def tenant_limit(tenant_id: int, policy: str) -> ScopedLimit:
    """A tenant's aggregate limit: one counter that all the tenant's keys spend."""
    return ScopedLimit("tenant", f"tenant:{tenant_id}", policy, "tenant")


def tenant_policy(tenant_id: int, policy: str | None, *, default: str) -> LimitPolicy:
    """The tenant's aggregate windows alone, as `tenants usage` reads them (none without a
    tenant policy: each key is then counted on its own)."""
    if policy is None:
        return LimitPolicy(())
    return LimitPolicy((_valid_or_default(tenant_limit(tenant_id, policy), default),))


def address_policy(address: str, *, policy: str, client_id: str | None = None) -> LimitPolicy:
    """The limit of a request without a valid credential: counted per source address, and for
    an OAuth client that failed to authenticate also per client id it named (so a client's
    secret cannot be guessed from many addresses either)."""
    scoped = [ScopedLimit("address", f"address:{address}", policy, "default")]
    if client_id is not None:
        scoped.append(ScopedLimit("client", f"client:{client_id}", policy, "default"))
    return LimitPolicy(tuple(scoped))


@lru_cache(maxsize=4096)
def credential_policy(limits: KeyLimits | None, *, principal: str, default: str) -> LimitPolicy:
    """The limits of a verified credential; one without limit columns (an admin or compliance
    client) is counted on its own under the default policy."""
    if limits is None:
        return LimitPolicy((ScopedLimit("key", principal, default, "default"),))
    resolved = resolve_policy(limits, default=default)
    return LimitPolicy(tuple(_valid_or_default(scoped, default) for scoped in resolved.limits))


def _valid_or_default(scoped: ScopedLimit, default: str) -> ScopedLimit:
    # Stored policies are validated when set; a row edited by hand must not go unlimited.
    try:
        scoped.windows  # noqa: B018  (parses and validates)
    except InvalidPolicy:
        log.error("invalid stored rate-limit policy for %s; using the default", scoped.counter)
        return ScopedLimit(scoped.scope, scoped.counter, default, "default")
    return scoped


@dataclass(frozen=True)
class RequestPlan:
    """The limits one request is counted against, and what it costs."""

    policy: LimitPolicy
    cost: int


def plan_request(policy: LimitPolicy, *, cost: int) -> RequestPlan:
    """The request's plan; BatchTooLarge when a window could never admit its cost."""
    for scoped in policy.limits:
        for window in scoped.windows:
            if cost > window.amount:
                raise BatchTooLarge(
                    f"This credential's rate limit admits at most {window.amount} rows per "
                    f"{window_period(window)}; send smaller batches."
                )
    return RequestPlan(policy, cost)


def counter_key(key_prefix: str, scoped: ScopedLimit, window: RateLimitItem) -> str:
    """The store key of one window of one counter.

    The name `limits` (flask-limiter's engine) gives the same window, so counters written before
    predgate counted them itself keep their history.
    """
    return window.key_for(key_prefix, scoped.counter, COUNTER_SCOPE)
