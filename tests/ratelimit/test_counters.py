"""Counters on each store: every window of a plan is checked and spent in one step, all or
nothing; what the headers need comes back from that same step (one Redis round trip); the
memory store starts no thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import redis

from ratelimit.counters import MemoryCounters, RedisCounters
from ratelimit.errors import BatchTooLarge, CounterStoreUnavailable
from ratelimit.headers import rate_limit_headers
from ratelimit.limiter import Outcome, RateLimiter
from ratelimit.policy import LimitPolicy, ScopedLimit, plan_request
from tests.ratelimit_support import (
    REDIS_URL_VARIABLE,
    RedisServer,
    delete_keys_with_prefix,
    storage_variants,
    unique_key_prefix,
)

NOW = 1_900_000_020.0  # 20 s into a minute: no window boundary near the steps below
STRATEGIES = ("moving-window", "sliding-window-counter")


def policy(*limits: tuple[str, str, str]) -> LimitPolicy:
    return LimitPolicy(
        tuple(ScopedLimit(scope, counter, text, scope) for scope, counter, text in limits)
    )


KEY_AND_TENANT = policy(("key", "key:k1", "3/minute;10/hour"), ("tenant", "tenant:7", "4/minute"))


def open_store(store: str, strategy: str) -> Iterator[MemoryCounters | RedisCounters]:
    prefix = unique_key_prefix()
    if store == "memory":
        yield MemoryCounters(strategy, key_prefix=prefix)
        return
    client = redis.Redis.from_url(os.environ[REDIS_URL_VARIABLE])
    yield RedisCounters(client, strategy, key_prefix=prefix)
    delete_keys_with_prefix(client, prefix)
    client.close()


@pytest.fixture(params=[(s, st) for s in storage_variants() for st in STRATEGIES])
def counters(request: pytest.FixtureRequest) -> Iterator[MemoryCounters | RedisCounters]:
    yield from open_store(*request.param)


@pytest.fixture(params=storage_variants())
def moving(request: pytest.FixtureRequest) -> Iterator[MemoryCounters | RedisCounters]:
    yield from open_store(request.param, "moving-window")


def remaining(spend_or_windows) -> dict[str, int]:
    windows = getattr(spend_or_windows, "windows", spend_or_windows)
    return {w.name: w.remaining for w in windows}


def test_every_window_is_spent_or_none_is(counters) -> None:
    first = counters.spend(plan_request(KEY_AND_TENANT, cost=3), now=NOW)
    assert first.admitted
    assert remaining(first) == {"key-minute": 0, "key-hour": 7, "tenant-minute": 1}
    # The tenant window still has room for one, the key's minute window has none: refused,
    # and the tenant window is not charged for it.
    refused = counters.spend(plan_request(KEY_AND_TENANT, cost=1), now=NOW + 1)
    assert not refused.admitted
    assert [w.name for w in refused.refusing()] == ["key-minute"]
    assert remaining(refused) == {"key-minute": 0, "key-hour": 7, "tenant-minute": 1}
    assert remaining(counters.read(KEY_AND_TENANT, now=NOW + 1)) == remaining(refused)


def test_a_moving_window_frees_units_as_they_leave(moving) -> None:
    counters = moving
    only_key = policy(("key", "key:k2", "2/minute"))
    counters.spend(plan_request(only_key, cost=1), now=NOW)
    counters.spend(plan_request(only_key, cost=1), now=NOW + 10)
    full = counters.spend(plan_request(only_key, cost=1), now=NOW + 30)
    assert not full.admitted
    assert full.windows[0].seconds_until_reset(NOW + 30) == 31  # NOW leaves after NOW + 60
    assert not counters.spend(plan_request(only_key, cost=1), now=NOW + 60).admitted
    assert counters.spend(plan_request(only_key, cost=1), now=NOW + 60.5).admitted


def test_a_batch_larger_than_a_window_is_refused_before_counting() -> None:
    with pytest.raises(BatchTooLarge, match="at most 3 rows per minute"):
        plan_request(KEY_AND_TENANT, cost=4)


def test_one_redis_round_trip_per_request(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    store = RedisCounters(client, "moving-window", key_prefix="t")
    plan = plan_request(KEY_AND_TENANT, cost=1)
    store.spend(plan, now=NOW)  # the first call also loads the script
    sent: list[bytes] = []
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, *args, **kwargs):
        sent.append(b"".join(command) if isinstance(command, list) else command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    spend = store.spend(plan, now=NOW + 1)
    headers = rate_limit_headers(plan, Outcome(spend), now=NOW + 1)
    # The spend and everything the headers say: one command sent, one answer read.
    assert len(sent) == 1
    assert b"EVALSHA" in sent[0]
    assert headers["RateLimit"] == (
        '"key-minute";r=1;t=60, "key-hour";r=8;t=3600, "tenant-minute";r=2;t=60'
    )
    client.close()


def test_memory_counters_start_no_thread() -> None:
    store = MemoryCounters("moving-window", key_prefix="t")
    plan = plan_request(policy(("key", "key:k3", "100000/minute")), cost=1)
    before = threading.active_count()
    for step in range(2000):
        store.spend(plan, now=NOW + step / 1000)
    assert threading.active_count() == before


def test_local_mode_counts_in_memory_while_the_store_is_down() -> None:
    server = RedisServer()
    server.start()
    try:
        store = RedisCounters(
            redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1),
            "moving-window",
            key_prefix="t",
        )
        local = MemoryCounters("moving-window", key_prefix="t")
        limiter = RateLimiter(store, on_store_failure="local", local=local)
        plan = plan_request(policy(("key", "key:k4", "2/minute")), cost=1)
        assert limiter.spend(plan, now=NOW, request_id="r1").degraded is None
        server.stop()
        down = limiter.spend(plan, now=NOW + 1, request_id="r2")
        assert down.degraded == "local"
        assert remaining(down.spend) == {"key-minute": 1}  # memory starts empty
        assert limiter.store_failures() == {"local": 1}
        closed = RateLimiter(store, on_store_failure="closed")
        with pytest.raises(CounterStoreUnavailable):
            closed.spend(plan, now=NOW + 2, request_id="r3")
    finally:
        server.stop()
