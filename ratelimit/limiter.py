"""The rate limiter: spend a request's plan in the counter store, and decide what a request meets
when the store (Redis) does not answer (PREDGATE_RATELIMIT_ON_STORE_FAILURE):

- ``closed``: refuse (CounterStoreUnavailable, answered 503 ``ratelimit_unavailable``);
- ``open``: admit without counting;
- ``local``: count in this process's memory under the same policies, and try the store again
  after 1, 2, 4 ... 32 seconds (per process, so N workers may admit up to N times a limit).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from ratelimit.counters import Counters, MemoryCounters, Spend
from ratelimit.errors import CounterStoreUnavailable
from ratelimit.policy import LimitPolicy, RequestPlan

FAILURE_MODES = ("closed", "open", "local")
# Stable, so alerts can match it: one line per request that met an unreachable store.
STORE_FAILURE_LOG = "ratelimit store unavailable"
MAX_BACKOFF_SECONDS = 32.0
log = logging.getLogger("predgate.ratelimit")


@dataclass(frozen=True)
class Outcome:
    """What the limiter did for one request."""

    spend: Spend | None  # None: nothing was counted (the store is down, mode `open`)
    degraded: str | None = None  # "open" or "local" while the store is down

    @property
    def admitted(self) -> bool:
        """True unless a window refused the request."""
        return self.spend is None or self.spend.admitted


class RateLimiter:
    """Spends plans in the store, applying the store-failure mode when it does not answer."""

    def __init__(
        self,
        store: Counters,
        *,
        on_store_failure: str,
        local: MemoryCounters | None = None,
    ) -> None:
        if on_store_failure not in FAILURE_MODES:
            raise ValueError(f"unknown store-failure mode {on_store_failure!r}")
        if on_store_failure == "local" and local is None:
            raise ValueError("the local mode needs local counters")
        self.store = store
        self.on_store_failure = on_store_failure
        self._local = local
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._retry_store_at = 0.0
        self._backoff = 0.0

    def spend(self, plan: RequestPlan, *, now: float, request_id: str) -> Outcome:
        """Check and spend the plan; CounterStoreUnavailable in the closed mode when the store
        is down."""
        if self._local is not None and now < self._retry_store_at:
            return self._fallback(plan, now, request_id, "counted in this process's memory")
        try:
            spend = self.store.spend(plan, now=now)
        except CounterStoreUnavailable:
            return self._store_failed(plan, now, request_id)
        self._backoff = 0.0
        return Outcome(spend)

    def read(self, policy: LimitPolicy, *, now: float) -> Outcome | None:
        """The policy's windows as they stand, spending nothing (None: the store cannot say)."""
        try:
            return Outcome(Spend(True, 0, self.store.read(policy, now=now)))
        except CounterStoreUnavailable:
            return None

    def store_failures(self) -> dict[str, int]:
        """Requests that met an unreachable store, by what applied: closed, open or local."""
        with self._lock:
            return dict(self._failures)

    def _store_failed(self, plan: RequestPlan, now: float, request_id: str) -> Outcome:
        if self.on_store_failure == "closed":
            self._count(request_id, "closed", "refused")
            raise CounterStoreUnavailable(
                "Rate limits cannot be checked right now, so the request was not served; "
                "retry shortly."
            )
        if self.on_store_failure == "open":
            self._count(request_id, "open", "admitted without limits")
            return Outcome(None, degraded="open")
        with self._lock:
            self._backoff = min(MAX_BACKOFF_SECONDS, max(1.0, self._backoff * 2))
            self._retry_store_at = now + self._backoff
        return self._fallback(plan, now, request_id, "counted in this process's memory")

    def _fallback(self, plan: RequestPlan, now: float, request_id: str, outcome: str) -> Outcome:
        assert self._local is not None
        self._count(request_id, "local", outcome)
        return Outcome(self._local.spend(plan, now=now), degraded="local")

    def _count(self, request_id: str, mode: str, outcome: str) -> None:
        with self._lock:
            self._failures[mode] += 1
        log.warning(
            "%s: request %s %s (PREDGATE_RATELIMIT_ON_STORE_FAILURE=%s)",
            STORE_FAILURE_LOG,
            request_id,
            outcome,
            mode,
        )
