"""Per-key rate limits with flask-limiter: who is counted, what a request costs, honest headers,
and what a request meets when the counter store (Redis) is unreachable.

A request to a partner route (POST /v1/predict, GET /v1/model) passes, in order:

1. ``_plan_request``: the caller is resolved once (``gateway.caller.resolve_caller``; a refused
   credential is remembered for the view to report), the policies that apply come from the row
   authentication already read, and a batch of N rows costs N. Without a valid credential the
   request is counted per source address: guessing keys is slow and unknown keys create no
   counters.
2. flask-limiter's hook spends the cost in every window (`limits` strategy; atomic Lua scripts
   in Redis) and raises RateLimitExceeded, which gateway.errors maps to 429 ``rate_limited``.
3. ``_check_outcome``: flask-limiter swallows a store failure, which shows here as "nothing was
   counted"; PREDGATE_RATELIMIT_ON_STORE_FAILURE decides: ``closed`` 503, ``open`` admit,
   ``local`` flask-limiter's in-memory fallback. Each is logged, counted, noted for the audit
   record and, when the request is served anyway, announced in X-RateLimit-Degraded.
4. ``_write_headers``: RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers),
   X-RateLimit-Limit/-Remaining/-Reset of the tightest window, and Retry-After on a 429.

One Limiter per app (not a module-level one): Limiter.init_app keeps the first app's strategy,
key prefix and error handling on the instance, so a shared one could not follow each app's
Settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RequestLimit
from limits.errors import StorageError

from auth.errors import AuthError, InvalidArgument
from auth.limits import (
    COUNTER_SCOPE,
    LimitPolicy,
    ScopedLimit,
    address_policy,
    resolve_policy,
    window_name,
    window_period,
)
from auth.principal import Principal
from auth.usage import WindowUsage, policy_usage
from gateway.api import model_info, predictions
from gateway.audit_notes import note_audit, note_audit_detail
from gateway.bodies import parse_json_body
from gateway.caller import resolve_caller
from gateway.client_address import client_address
from gateway.errors import ApiError
from gateway.request_id import current_request_id
from gateway.runtime import get_runtime
from gateway.schemas import PredictRequest

EXTENSION_KEY = "predgate.rate_limits"
PARTNER_BLUEPRINTS = (predictions.bp, model_info.bp)
_PARTNER_BLUEPRINT_NAMES = frozenset(blueprint.name for blueprint in PARTNER_BLUEPRINTS)
SCOPES = ("key", "tenant", "address")
DEGRADED_HEADER = "X-RateLimit-Degraded"
# Stable, so alerts can match it: one line per request that met an unreachable store.
STORE_FAILURE_LOG = "ratelimit store unavailable"
log = logging.getLogger("predgate.ratelimit")


@dataclass
class RateLimits:
    """One app's limiter, and how many requests met an unreachable store."""

    limiter: Limiter
    key_prefix: str
    on_store_failure: str  # closed, open or local
    _failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count_store_failure(self, mode: str) -> None:
        """Count one request that met an unreachable store."""
        with self._lock:
            self._failures[mode] += 1

    def store_failures(self) -> dict[str, int]:
        """Requests that met an unreachable store, by what applied: closed, open or local."""
        with self._lock:
            return dict(self._failures)

    def fallback_active(self) -> bool:
        """True while flask-limiter counts in its in-memory fallback (local mode, store down)."""
        return self.limiter.limiter.storage is not self.limiter.storage


@dataclass(frozen=True)
class RequestPlan:
    """The limits one request is counted against, and what it costs."""

    policy: LimitPolicy
    cost: int


def get_rate_limits(app: Flask | None = None) -> RateLimits:
    """The rate-limit state of the given (or current) app."""
    state = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(state, RateLimits)
    return state


def init_rate_limits(app: Flask) -> None:
    """Count partner requests against their policies; health and docs routes stay unlimited."""
    settings = get_runtime(app).settings
    if not settings.rate_limits_enabled:
        return
    limiter = Limiter(_counter_of("address"), on_breach=_note_breach)
    for scope in SCOPES:
        # A provider that returns "" applies no window: each request gets its key and tenant
        # limits, or its address limit, read per request so policy changes apply at once.
        limit = limiter.shared_limit(
            _policy_of(scope), COUNTER_SCOPE, key_func=_counter_of(scope), cost=_cost
        )
        for blueprint in PARTNER_BLUEPRINTS:
            limit(blueprint)
    app.before_request(_plan_request)
    limiter.init_app(app)  # flask-limiter's hook runs after _plan_request, before _check_outcome
    app.before_request(_check_outcome)
    app.after_request(_write_headers)
    app.extensions[EXTENSION_KEY] = RateLimits(
        limiter=limiter,
        key_prefix=settings.ratelimit_key_prefix,
        on_store_failure=settings.ratelimit_on_store_failure,
    )


def _plan() -> RequestPlan:
    plan = g.get("rate_limit_plan")
    if not isinstance(plan, RequestPlan):
        plan = _make_plan()
        g.rate_limit_plan = plan
    return plan


def _make_plan() -> RequestPlan:
    settings = get_runtime().settings
    try:
        principal = resolve_caller()
    except AuthError:
        address = client_address(settings.trusted_proxies) or "unknown"
        return RequestPlan(address_policy(address, policy=settings.unauthenticated_rate_limit), 1)
    return RequestPlan(
        _principal_policy(principal, default=settings.default_rate_limit),
        _request_cost(settings.max_batch),
    )


def _principal_policy(principal: Principal, *, default: str) -> LimitPolicy:
    if principal.limits is None:  # a credential kind without rate-limit columns
        counter = f"{principal.principal_type}:{principal.principal_id}"
        return LimitPolicy((ScopedLimit("key", counter, default, "default"),))
    policy = resolve_policy(principal.limits, default=default)
    return LimitPolicy(tuple(_checked(scoped, default) for scoped in policy.limits))


def _checked(scoped: ScopedLimit, default: str) -> ScopedLimit:
    # Stored policies are validated when set; a row edited by hand must not go unlimited.
    try:
        scoped.windows  # noqa: B018  (parses and validates)
    except InvalidArgument:
        log.error("invalid stored rate-limit policy for %s; using the default", scoped.counter)
        return ScopedLimit(scoped.scope, scoped.counter, default, "default")
    return scoped


def _request_cost(max_batch: int) -> int:
    """Rows the request asks to predict: a batch of N rows spends N units."""
    if request.endpoint != "predictions.predict":
        return 1
    try:
        body = parse_json_body(PredictRequest)
    except ApiError:
        return 1  # the view answers with the problem; a refused body spends one unit
    rows = len(body.records())
    return rows if 1 <= rows <= max_batch else 1


def _plan_request() -> None:
    if request.blueprint not in _PARTNER_BLUEPRINT_NAMES:
        return
    plan = _plan()
    for scoped in plan.policy.limits:
        for window in scoped.windows:
            if plan.cost > window.amount:
                # It could never be admitted; refuse it before anything is counted.
                raise ApiError(
                    422,
                    "batch_too_large",
                    "Batch too large",
                    f"This credential's rate limit admits at most {window.amount} rows per "
                    f"{window_period(window)}; send smaller batches.",
                )


def _policy_of(scope: str) -> Callable[[], str]:
    def policy() -> str:
        scoped = _plan().policy.for_scope(scope)
        return scoped.policy if scoped is not None else ""

    return policy


def _counter_of(scope: str) -> Callable[[], str]:
    def counter() -> str:
        scoped = _plan().policy.for_scope(scope)
        return scoped.counter if scoped is not None else ""

    return counter


def _cost() -> int:
    return _plan().cost


def _note_breach(breached: RequestLimit) -> None:
    """flask-limiter's on_breach: note the 429 for the audit record before any response hook."""
    plan = _plan()
    scoped = next((s for s in plan.policy.limits if s.counter in breached.request_args), None)
    note_audit(event_type="ratelimit.exceeded", reason_code="rate_limited")
    if scoped is None:
        return
    name = window_name(scoped.scope, breached.limit)
    usage = _usage(plan)
    remaining = next((u.remaining for u in usage or () if u.name == name), None)
    note_audit_detail(
        policy=scoped.policy, window=name, remaining=remaining, limit_scope=scoped.scope
    )
    if get_rate_limits().fallback_active():
        note_audit_detail(ratelimit_degraded="local")


def _check_outcome() -> None:
    """After flask-limiter's hook: apply the store-failure mode if nothing was counted."""
    if not isinstance(g.get("rate_limit_plan"), RequestPlan):
        return
    state = get_rate_limits()
    if state.fallback_active():
        _note_degraded(state, "local", "counted in this process's memory")
    elif not state.limiter.current_limits:
        if state.on_store_failure == "closed":
            _note_store_failure(state, "closed", "refused")
            g.rate_limit_uncounted = True
            raise ApiError(
                503,
                "ratelimit_unavailable",
                "Rate limiting unavailable",
                "Rate limits cannot be checked right now, so the request was not served; "
                "retry shortly.",
            )
        _note_degraded(state, "open", "admitted without limits")
        g.rate_limit_uncounted = True


def _note_degraded(state: RateLimits, mode: str, outcome: str) -> None:
    g.rate_limit_degraded = mode
    note_audit_detail(ratelimit_degraded=mode)
    _note_store_failure(state, mode, outcome)


def _note_store_failure(state: RateLimits, mode: str, outcome: str) -> None:
    state.count_store_failure(mode)
    if mode == "closed":
        note_audit(reason_code="ratelimit_unavailable")
    log.warning(
        "%s: request %s %s (PREDGATE_RATELIMIT_ON_STORE_FAILURE=%s)",
        STORE_FAILURE_LOG,
        current_request_id(),
        outcome,
        mode,
    )


def _usage(plan: RequestPlan) -> list[WindowUsage] | None:
    """Every window's usage after this request's hits; None when the store cannot say."""
    cached = g.get("rate_limit_usage")
    if isinstance(cached, list):
        return cached
    state = get_rate_limits()
    try:
        usage = policy_usage(state.limiter.limiter, plan.policy, key_prefix=state.key_prefix)
    except StorageError:
        log.warning("%s: no usage headers for request %s", STORE_FAILURE_LOG, current_request_id())
        return None
    g.rate_limit_usage = usage
    return usage


def _write_headers(response: Response) -> Response:
    plan = g.get("rate_limit_plan")
    if not isinstance(plan, RequestPlan):
        return response
    response.headers["RateLimit-Policy"] = ", ".join(
        f'"{window_name(scoped.scope, window)}";q={window.amount};w={window.get_expiry()}'
        for scoped in plan.policy.limits
        for window in scoped.windows
    )
    degraded = g.get("rate_limit_degraded")
    if degraded is None and get_rate_limits().fallback_active():
        degraded = "local"  # a 429 from the fallback never reached _check_outcome
    if degraded is not None:
        response.headers[DEGRADED_HEADER] = degraded
    usage = None if g.get("rate_limit_uncounted") else _usage(plan)
    if not usage:
        return response  # nothing was counted, or the store cannot say: no invented numbers
    now = time.time()
    response.headers["RateLimit"] = ", ".join(
        f'"{u.name}";r={u.remaining};t={u.seconds_until_reset(now)}' for u in usage
    )
    tightest = min(usage, key=lambda u: (u.remaining, -u.reset_at))
    response.headers["X-RateLimit-Limit"] = str(tightest.limit)
    response.headers["X-RateLimit-Remaining"] = str(tightest.remaining)
    response.headers["X-RateLimit-Reset"] = str(tightest.reset_epoch(now))
    if response.status_code == 429:
        blocking = [u.seconds_until_reset(now) for u in usage if u.remaining < plan.cost]
        response.headers["Retry-After"] = str(max([1, *blocking]))
    return response
