"""The rate-limit step of a partner request: who is counted (the verified credential, else the
client address), what it costs, one check-and-spend in the counters, and the headers that say
what is left. The arithmetic lives in the `ratelimit` package; this adapts it to the request."""

from __future__ import annotations

import time
from typing import NoReturn

from audit.draft import RATE_LIMITED
from auth.principal import Principal
from gateway.context import RateLimitState, RequestContext
from gateway.pipeline.client_address import client_address
from ratelimit.errors import BatchTooLarge, RateLimited
from ratelimit.headers import rate_limit_headers
from ratelimit.policy import (
    LimitPolicy,
    RequestPlan,
    address_policy,
    credential_policy,
    plan_request,
)
from ratelimit.usage import WindowUsage


def charge(
    ctx: RequestContext, caller: Principal | None, *, cost: int, client_id: str | None = None
) -> None:
    """Spend `cost` units of the caller's limits (without a valid credential: the address's,
    and `client_id`'s when an OAuth client failed to authenticate); BatchTooLarge before
    anything is counted, RateLimited (429) when a window has no room, CounterStoreUnavailable
    (503) when the store is down in the closed mode."""
    limiter = ctx.runtime.limiter
    if limiter is None:
        return
    settings = ctx.runtime.settings
    if caller is None:
        policy = _failure_policy(ctx, client_id)
    else:
        policy = credential_policy(
            caller.limits,
            principal=f"{caller.principal_type}:{caller.principal_id}",
            default=settings.default_rate_limit,
        )
    now = time.time()
    try:
        plan = plan_request(policy, cost=cost)
    except BatchTooLarge:
        # Never admissible, so nothing is spent; the headers still say what is left.
        ctx.rate = RateLimitState(RequestPlan(policy, cost), now, limiter.read(policy, now=now))
        raise
    state = RateLimitState(plan=plan, now=now)
    ctx.rate = state
    state.outcome = limiter.spend(state.plan, now=state.now, request_id=ctx.request_id)
    if state.outcome.degraded is not None:
        ctx.audit.details["ratelimit_degraded"] = state.outcome.degraded
    spend = state.outcome.spend
    if spend is None or spend.admitted:
        return
    refusing = spend.refusing()[0]
    _refuse(ctx, refusing)


def refuse_spent_failure_budget(ctx: RequestContext, client_id: str | None) -> None:
    """Before an OAuth client is authenticated: 429 when its address or the client id it names
    has no failed attempt left in the window, so a secret cannot be guessed past the limit.
    Spends nothing (a failure is charged when it happens); a store that cannot say lets the
    attempt through to that charge, which applies the store-failure mode."""
    limiter = ctx.runtime.limiter
    if limiter is None:
        return
    policy = _failure_policy(ctx, client_id)
    now = time.time()
    outcome = limiter.read(policy, now=now)
    if outcome is None or outcome.spend is None:
        return
    spent = [usage for usage in outcome.spend.windows if usage.remaining < 1]
    if spent:
        ctx.rate = RateLimitState(RequestPlan(policy, 1), now, outcome)
        _refuse(ctx, spent[0])


def _failure_policy(ctx: RequestContext, client_id: str | None) -> LimitPolicy:
    settings = ctx.runtime.settings
    address = client_address() or "unknown"
    return address_policy(address, policy=settings.unauthenticated_rate_limit, client_id=client_id)


def _refuse(ctx: RequestContext, refusing: WindowUsage) -> NoReturn:
    ctx.audit.refused(RATE_LIMITED, "rate_limited")
    ctx.audit.details.update(
        policy=refusing.policy,
        window=refusing.name,
        remaining=refusing.remaining,
        limit_scope=refusing.scope,
    )
    raise RateLimited(
        "The rate limit is used up; retry after the number of seconds in Retry-After."
    )


def response_headers(ctx: RequestContext) -> dict[str, str]:
    """The rate-limit headers of this request's response (none if it was not counted)."""
    if ctx.rate is None:
        return {}
    return rate_limit_headers(ctx.rate.plan, ctx.rate.outcome, now=ctx.rate.now)
