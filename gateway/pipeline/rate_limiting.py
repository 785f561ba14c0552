"""The rate-limit step of a partner request: who is counted (the verified credential, else the
client address), what it costs, one check-and-spend in the counters, and the headers that say
what is left. The arithmetic lives in the `ratelimit` package; this adapts it to the request."""

from __future__ import annotations

import time

from audit.draft import RATE_LIMITED
from auth.principal import Principal
from gateway.context import RateLimitState, RequestContext
from gateway.pipeline.client_address import client_address
from ratelimit.errors import BatchTooLarge, RateLimited
from ratelimit.headers import rate_limit_headers
from ratelimit.policy import RequestPlan, address_policy, credential_policy, plan_request


def charge(ctx: RequestContext, caller: Principal | None, *, cost: int) -> None:
    """Spend `cost` units of the caller's limits (the address's, without a valid credential);
    BatchTooLarge before anything is counted, RateLimited (429) when a window has no room,
    CounterStoreUnavailable (503) when the store is down in the closed mode."""
    limiter = ctx.runtime.limiter
    if limiter is None:
        return
    settings = ctx.runtime.settings
    if caller is None:
        address = client_address(settings.trusted_proxies) or "unknown"
        policy = address_policy(address, policy=settings.unauthenticated_rate_limit)
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
