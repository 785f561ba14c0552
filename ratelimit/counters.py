"""Counters: check every window of a request's plan and spend its cost in all of them, or in
none, and report what each window holds afterwards, in one step.

In Redis that step is one Lua script (one round trip per request, atomic across workers and
hosts); in process memory it is one locked update (exact for one process, and no threads).
Two strategies:

- ``moving-window`` (exact): a window keeps the timestamp of every unit it counts and admits a
  request only while it holds room for all its units. The Redis lists are the ones `limits`
  (flask-limiter's engine) keeps for the same window, so existing counters keep their history.
- ``sliding-window-counter`` (constant memory, approximate): two counters per window, the
  previous one weighted by how much of it still overlaps the window.

Refusing is all-or-nothing: a request one window refuses spends nothing in any window.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import redis

from ratelimit.errors import CounterStoreUnavailable
from ratelimit.policy import LimitPolicy, RequestPlan, ScopedLimit, counter_key, window_name
from ratelimit.usage import WindowUsage

STRATEGIES = ("moving-window", "sliding-window-counter")
# `limits` prefixes every Redis key with this; kept so moving-window lists stay where they were.
REDIS_KEY_PREFIX = "LIMITS"
_SWEEP_EVERY = 1000


@dataclass(frozen=True)
class Spend:
    """What one check-and-spend did, and every window as it stands after it."""

    admitted: bool
    cost: int
    windows: tuple[WindowUsage, ...]

    def refusing(self) -> list[WindowUsage]:
        """The windows without room for the cost (none when admitted)."""
        return [] if self.admitted else [w for w in self.windows if w.remaining < self.cost]


class Counters(Protocol):
    """A counter store: spend a plan in one step, or read a policy's windows."""

    def spend(self, plan: RequestPlan, *, now: float) -> Spend: ...

    def read(self, policy: LimitPolicy, *, now: float) -> tuple[WindowUsage, ...]: ...


@dataclass(frozen=True)
class _Window:
    """One window of one scoped limit, with the store key that counts it."""

    scoped: ScopedLimit
    name: str  # e.g. "key-minute"
    key: str
    limit: int
    seconds: int

    def usage(self, count: int, reset_at: float) -> WindowUsage:
        """The window's usage with `count` units inside it."""
        return WindowUsage(
            name=self.name,
            scope=self.scoped.scope,
            policy=self.scoped.policy,
            source=self.scoped.source,
            limit=self.limit,
            window_seconds=self.seconds,
            remaining=max(0, min(self.limit, self.limit - count)),
            reset_at=reset_at,
        )


@lru_cache(maxsize=4096)
def _windows(policy: LimitPolicy, key_prefix: str) -> tuple[_Window, ...]:
    return tuple(
        _Window(
            scoped=scoped,
            name=window_name(scoped.scope, window),
            key=counter_key(key_prefix, scoped, window),
            limit=window.amount,
            seconds=window.get_expiry(),
        )
        for scoped in policy.limits
        for window in scoped.windows
    )


# --- the arithmetic both stores share -------------------------------------------------------


def moving_usage(window: _Window, newest_first: deque[float], now: float) -> WindowUsage:
    """A moving window's usage from its timestamps (newest first), dropping those that have
    left it for good: units still inside it count, and the oldest of them leaving is when a
    unit frees."""
    while newest_first and newest_first[-1] < now - window.seconds:
        newest_first.pop()
    count = min(len(newest_first), window.limit)
    if count == 0:
        return window.usage(0, now)
    return window.usage(count, newest_first[count - 1] + window.seconds)


def sliding_counts(
    seconds: int, now: float, stored: tuple[int, int, int] | None
) -> tuple[int, int]:
    """(current, previous) counts of a sliding window counter at `now`, from its stored
    (bucket, current, previous); buckets are consecutive windows of `seconds`."""
    bucket = math.floor(now / seconds)
    if stored is None:
        return 0, 0
    stored_bucket, current, previous = stored
    if stored_bucket == bucket:
        return current, previous
    if stored_bucket == bucket - 1:
        return 0, current
    return 0, 0


def sliding_usage(window: _Window, current: int, previous: int, now: float) -> WindowUsage:
    """A sliding window counter's usage: the previous window's count weighted by how much of it
    still overlaps, plus the current one; a unit frees when the weighted count next drops."""
    seconds = window.seconds
    start = math.floor(now / seconds) * seconds
    overlap = (seconds - (now - start)) / seconds
    weighted_previous = math.floor(previous * overlap)
    count = weighted_previous + current
    if weighted_previous > 0:
        # previous * overlap(t) falls below weighted_previous once t passes this instant.
        reset_at = start + seconds * (1 - weighted_previous / previous)
    elif current > 0:
        reset_at = start + seconds + seconds / current
    else:
        reset_at = now
    return window.usage(count, reset_at)


# --- process memory ------------------------------------------------------------------------


class MemoryCounters:
    """Counters in this process's memory: exact for one process; no timer threads."""

    def __init__(self, strategy: str, *, key_prefix: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown rate-limit strategy {strategy!r}")
        self.strategy = strategy
        self.key_prefix = key_prefix
        self._lock = threading.Lock()
        self._moving: dict[str, tuple[deque[float], int]] = {}
        self._sliding: dict[str, tuple[tuple[int, int, int], int]] = {}
        self._spends = 0

    def spend(self, plan: RequestPlan, *, now: float) -> Spend:
        """Check every window and spend the cost in all of them, or in none."""
        windows = _windows(plan.policy, self.key_prefix)
        with self._lock:
            usage = [self._usage(window, now) for window in windows]
            admitted = all(u.remaining >= plan.cost for u in usage)
            if admitted:
                for window in windows:
                    self._add(window, plan.cost, now)
                usage = [self._usage(window, now) for window in windows]
            self._spends += 1
            if self._spends % _SWEEP_EVERY == 0:
                self._sweep(now)
        return Spend(admitted, plan.cost, tuple(usage))

    def read(self, policy: LimitPolicy, *, now: float) -> tuple[WindowUsage, ...]:
        """Every window of a policy as it stands."""
        with self._lock:
            return tuple(self._usage(w, now) for w in _windows(policy, self.key_prefix))

    def keys(self) -> set[str]:
        """The names of the counters held (for tests and diagnostics)."""
        with self._lock:
            return set(self._moving) | set(self._sliding)

    def _usage(self, window: _Window, now: float) -> WindowUsage:
        if self.strategy == "moving-window":
            stamps, _seconds = self._moving.get(window.key, (deque(), window.seconds))
            return moving_usage(window, stamps, now)
        stored = self._sliding.get(window.key)
        current, previous = sliding_counts(window.seconds, now, stored[0] if stored else None)
        return sliding_usage(window, current, previous, now)

    def _add(self, window: _Window, cost: int, now: float) -> None:
        if self.strategy == "moving-window":
            stamps, _seconds = self._moving.setdefault(window.key, (deque(), window.seconds))
            stamps.extendleft([now] * cost)
            while len(stamps) > window.limit:
                stamps.pop()
            return
        stored = self._sliding.get(window.key)
        current, previous = sliding_counts(window.seconds, now, stored[0] if stored else None)
        bucket = math.floor(now / window.seconds)
        self._sliding[window.key] = ((bucket, current + cost, previous), window.seconds)

    def _sweep(self, now: float) -> None:
        # Forget counters whose every unit has left the window, so memory stays bounded.
        for key, (stamps, seconds) in list(self._moving.items()):
            if not stamps or stamps[0] < now - seconds:
                del self._moving[key]
        for key, ((bucket, _current, _previous), seconds) in list(self._sliding.items()):
            if bucket < math.floor(now / seconds) - 1:
                del self._sliding[key]


# --- Redis ----------------------------------------------------------------------------------

# KEYS: one list per window, newest timestamp first. ARGV: the limit and seconds of each window,
# then now, cost, and spend (1) or read (0): what varies per request comes last, so the rest of
# the command is encoded once per policy. Returns: admitted, then per window the number of
# units inside it and the oldest of them (as text, so no precision is lost). Amortised O(1).
_MOVING_SCRIPT = """
local n = #KEYS
local now = tonumber(ARGV[2 * n + 1])
local cost = tonumber(ARGV[2 * n + 2])
local spend = ARGV[2 * n + 3] == '1'
local admitted = 1
local counts = {}
for i = 1, #KEYS do
    local limit = tonumber(ARGV[2 * i - 1])
    local oldest_inside = now - tonumber(ARGV[2 * i])
    -- Units that have left the window are dropped from the old end as they leave, so the
    -- list holds only units inside it: each unit is pushed once and popped once.
    while true do
        local last = redis.call('lindex', KEYS[i], -1)
        if last and tonumber(last) < oldest_inside then
            redis.call('rpop', KEYS[i])
        else
            break
        end
    end
    counts[i] = math.min(redis.call('llen', KEYS[i]), limit)
    if counts[i] + cost > limit then admitted = 0 end
end
if spend and admitted == 1 then
    for i = 1, #KEYS do
        local limit = tonumber(ARGV[2 * i - 1])
        local entries = {}
        for j = 1, cost do entries[j] = ARGV[2 * n + 1] end
        for j = 1, #entries, 5000 do
            redis.call('lpush', KEYS[i], unpack(entries, j, math.min(j + 4999, #entries)))
        end
        redis.call('ltrim', KEYS[i], 0, limit - 1)
        redis.call('expire', KEYS[i], ARGV[2 * i])
        counts[i] = math.min(counts[i] + cost, limit)
    end
end
local result = {admitted}
for i = 1, #KEYS do
    result[#result + 1] = counts[i]
    result[#result + 1] = redis.call('lindex', KEYS[i], counts[i] - 1) or ARGV[2 * n + 1]
end
return result
"""

# KEYS: one hash per window {b: bucket, c: current count, p: previous count}. ARGV as above.
# Returns: admitted, then per window its current and previous counts after the step.
_SLIDING_SCRIPT = """
local n = #KEYS
local now = tonumber(ARGV[2 * n + 1])
local cost = tonumber(ARGV[2 * n + 2])
local spend = ARGV[2 * n + 3] == '1'
local admitted = 1
local counts = {}
for i = 1, #KEYS do
    local limit = tonumber(ARGV[2 * i - 1])
    local seconds = tonumber(ARGV[2 * i])
    local bucket = math.floor(now / seconds)
    local stored = redis.call('hmget', KEYS[i], 'b', 'c', 'p')
    local b = tonumber(stored[1])
    local current, previous = 0, 0
    if b == bucket then
        current, previous = tonumber(stored[2]) or 0, tonumber(stored[3]) or 0
    elseif b == bucket - 1 then
        previous = tonumber(stored[2]) or 0
    end
    local overlap = (seconds - (now - bucket * seconds)) / seconds
    if math.floor(previous * overlap) + current + cost > limit then admitted = 0 end
    counts[i] = {bucket, current, previous}
end
local result = {admitted}
for i = 1, #KEYS do
    local bucket, current, previous = counts[i][1], counts[i][2], counts[i][3]
    if spend and admitted == 1 then
        current = current + cost
        redis.call('hset', KEYS[i], 'b', bucket, 'c', current, 'p', previous)
        redis.call('expire', KEYS[i], 2 * tonumber(ARGV[2 * i]))
    end
    result[#result + 1] = current
    result[#result + 1] = previous
end
return result
"""


class RedisCounters:
    """Counters in Redis: one script call per request, exact across every worker and host."""

    def __init__(self, client: redis.Redis, strategy: str, *, key_prefix: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown rate-limit strategy {strategy!r}")
        self.client = client
        self.strategy = strategy
        self.key_prefix = key_prefix
        self._source = _MOVING_SCRIPT if strategy == "moving-window" else _SLIDING_SCRIPT
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()  # noqa: S324 (Redis' name)
        # Each thread keeps one connection and talks to it directly: the client's pool and
        # retry wrappers cost more CPU than the round trip itself.
        self._local = threading.local()

    def spend(self, plan: RequestPlan, *, now: float) -> Spend:
        """Check every window and spend the cost in all of them, or in none: one round trip."""
        admitted, usage = self._run(_windows(plan.policy, self.key_prefix), plan.cost, now, True)
        return Spend(admitted, plan.cost, usage)

    def read(self, policy: LimitPolicy, *, now: float) -> tuple[WindowUsage, ...]:
        """Every window of a policy as it stands (nothing is spent)."""
        return self._run(_windows(policy, self.key_prefix), 0, now, False)[1]

    def ping(self) -> None:
        """Raise CounterStoreUnavailable unless Redis answers."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise CounterStoreUnavailable("the rate-limit store did not answer") from exc

    def store_key(self, key: str) -> str:
        """The Redis key of a counter (moving-window lists keep `limits`' names)."""
        suffix = "" if self.strategy == "moving-window" else "/sliding"
        return f"{REDIS_KEY_PREFIX}:{key}{suffix}"  # as _command_start names it

    def _run(
        self, windows: tuple[_Window, ...], cost: int, now: float, spend: bool
    ) -> tuple[bool, tuple[WindowUsage, ...]]:
        try:
            reply = self._evalsha(windows, cost, now, spend)
        except redis.RedisError as exc:
            self._local.connection = None
            raise CounterStoreUnavailable(
                f"the rate-limit store did not answer ({type(exc).__name__})"
            ) from exc
        admitted = int(reply[0]) == 1
        pairs = [(reply[1 + 2 * i], reply[2 + 2 * i]) for i in range(len(windows))]
        if self.strategy == "moving-window":
            usage = tuple(
                w.usage(int(count), float(oldest) + w.seconds if int(count) else now)
                for w, (count, oldest) in zip(windows, pairs, strict=True)
            )
        else:
            usage = tuple(
                sliding_usage(w, int(current), int(previous), now)
                for w, (current, previous) in zip(windows, pairs, strict=True)
            )
        return admitted, usage

    def _evalsha(self, windows: tuple[_Window, ...], cost: int, now: float, spend: bool) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.client.connection_pool.get_connection()
        command = _command_start(self._sha, self.strategy, windows) + b"".join(
            _bulk(part) for part in (repr(now).encode(), b"%d" % cost, b"1" if spend else b"0")
        )
        try:
            connection.send_packed_command([command])
            return connection.read_response()
        except redis.exceptions.NoScriptError:
            self.client.script_load(self._source)  # a restarted or flushed Redis
            connection.send_packed_command([command])
            return connection.read_response()
        except redis.RedisError:
            connection.disconnect()
            raise


@lru_cache(maxsize=4096)
def _command_start(sha: str, strategy: str, windows: tuple[_Window, ...]) -> bytes:
    """The EVALSHA command of a policy's windows encoded in RESP up to the three arguments that
    change per request (encoded once per policy: redis-py's encoder costs more than the call)."""
    suffix = "" if strategy == "moving-window" else "/sliding"
    keys = [f"{REDIS_KEY_PREFIX}:{w.key}{suffix}".encode() for w in windows]
    limits = [b"%d" % value for w in windows for value in (w.limit, w.seconds)]
    parts = [b"EVALSHA", sha.encode(), b"%d" % len(keys), *keys, *limits]
    return b"*%d\r\n" % (len(parts) + 3) + b"".join(_bulk(part) for part in parts)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def open_counters(
    redis_url: str | None, strategy: str, *, key_prefix: str, redis_options: dict[str, Any]
) -> MemoryCounters | RedisCounters:
    """The counters of a deployment: Redis when it has one, else this process's memory."""
    if redis_url is None:
        return MemoryCounters(strategy, key_prefix=key_prefix)
    # `limits` spelled a Unix socket redis+unix://; redis-py spells it unix://.
    url = (
        "unix://" + redis_url.removeprefix("redis+unix://")
        if redis_url.startswith("redis+unix://")
        else redis_url
    )
    return RedisCounters(
        redis.Redis.from_url(url, **redis_options), strategy, key_prefix=key_prefix
    )
