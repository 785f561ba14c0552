"""Per-key rate limits over HTTP on each counter store: exact windows, honest headers and
Retry-After under a controlled clock, cost-weighted batches, tenant aggregates, rotation, and
per-address limiting of requests without a valid credential."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from auth.api_keys import issue_key, rotate_key, set_key_limit
from auth.tenants import set_tenant_limit
from config import Settings
from gateway.runtime import get_runtime
from ratelimit.counters import MemoryCounters, RedisCounters
from tests.conftest import HOUSE, IRIS, World, bearer
from tests.gateway.conftest import LimitedApp
from tests.gateway.test_audit_http import record_for
from tests.gateway.test_errors import assert_problem
from tests.ratelimit_support import Clock, rate_headers


def post(client: FlaskClient, key: str, body: object = HOUSE, **kwargs: object):
    return client.post("/v1/predict", json=body, headers=bearer(key), **kwargs)


def batch(rows: int) -> dict[str, object]:
    return {"instances": [HOUSE] * rows}


def remaining(response) -> dict[str, int]:
    """`RateLimit` as {window name: remaining}."""
    windows = {}
    for item in response.headers["RateLimit"].split(", "):
        name, r, _t = item.split(";")
        windows[name.strip('"')] = int(r.removeprefix("r="))
    return windows


def audit_details(session: Session, response) -> dict[str, object]:
    """The `details` of the response's audit record."""
    return dict(json.loads(record_for(session, response)["details"]))


def key_limit(session: Session, key_id: str, policy: str | None) -> None:
    set_key_limit(session, key_id, policy=policy)
    session.commit()


def counters(app: Flask) -> set[str]:
    """The names of every counter the app's store holds."""
    limiter = get_runtime(app).limiter
    assert limiter is not None
    store = limiter.store
    if isinstance(store, MemoryCounters):
        return store.keys()
    assert isinstance(store, RedisCounters)
    pattern = store.store_key(f"LIMITER/{store.key_prefix}/*")
    return {name.decode() for name in store.client.scan_iter(pattern)}


def test_headers_and_retry_after_are_exact(
    limited: LimitedApp, world: World, session: Session, clock: Clock
) -> None:
    key_limit(session, world.acme_key_id, "3/minute;10/hour")
    client = limited()
    start = clock.now
    for elapsed, left in ((0, 2), (10, 1), (20, 0)):
        clock.now = start + elapsed
        response = post(client, world.acme_key)
        assert response.status_code == 200
        assert remaining(response) == {"key-minute": left, "key-hour": 10 - 3 + left}
    headers = rate_headers(response)
    assert headers["RateLimit-Policy"] == '"key-minute";q=3;w=60, "key-hour";q=10;w=3600'
    # The oldest hit (at `start`) leaves the minute window strictly after start + 60.
    assert headers["RateLimit"] == '"key-minute";r=0;t=41, "key-hour";r=7;t=3581'
    assert headers["X-RateLimit-Limit"] == "3"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(int(start) + 61)
    assert "Retry-After" not in headers

    clock.now = start + 30
    refused = post(client, world.acme_key)
    body = assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "31"
    assert remaining(refused) == {"key-minute": 0, "key-hour": 7}  # a refusal spends nothing
    record = record_for(session, refused)
    assert record["event_type"] == "ratelimit.exceeded"
    assert record["reason_code"] == "rate_limited"
    assert audit_details(session, refused) == {
        "policy": "3/minute;10/hour",
        "window": "key-minute",
        "remaining": 0,
        "limit_scope": "key",
    }
    assert "detail" in body

    clock.now = start + 60  # one second short of Retry-After: still inside the window
    assert post(client, world.acme_key).headers["Retry-After"] == "1"
    clock.now = start + 30 + 31
    admitted = post(client, world.acme_key)
    assert admitted.status_code == 200
    assert remaining(admitted) == {"key-minute": 0, "key-hour": 6}


def test_predict_and_model_read_share_one_allowance(
    limited: LimitedApp, world: World, session: Session
) -> None:
    key_limit(session, world.acme_key_id, "2/minute")
    client = limited()
    assert remaining(client.get("/v1/model", headers=bearer(world.acme_key))) == {"key-minute": 1}
    assert remaining(post(client, world.acme_key)) == {"key-minute": 0}
    assert_problem(client.get("/v1/model", headers=bearer(world.acme_key)), 429, "rate_limited")
    # Another tenant's key is counted on its own.
    assert (
        client.post("/v1/predict", json=IRIS, headers=bearer(world.globex_key)).status_code == 200
    )


def test_a_batch_of_n_rows_spends_n(limited: LimitedApp, world: World, session: Session) -> None:
    key_limit(session, world.acme_key_id, "10/minute")
    client = limited()
    assert remaining(post(client, world.acme_key, batch(4))) == {"key-minute": 6}
    too_big = post(client, world.acme_key, batch(7))
    assert_problem(too_big, 429, "rate_limited")
    assert int(too_big.headers["Retry-After"]) > 0
    # A body the view refuses spends one unit.
    assert_problem(post(client, world.acme_key, {"instances": []}), 422, "validation_error")
    assert remaining(post(client, world.acme_key, batch(5))) == {"key-minute": 0}

    # More rows than any window admits can never pass: refused before anything is counted.
    key_limit(session, world.acme_key_id, "20/minute;100/hour")
    never = post(client, world.acme_key, batch(21))
    assert_problem(never, 422, "batch_too_large")
    assert "20 rows per minute" in never.get_json()["detail"]
    assert remaining(never) == {"key-minute": 20, "key-hour": 100}
    # Over PREDGATE_MAX_BATCH (50 here) the view refuses it, for one unit.
    key_limit(session, world.acme_key_id, "100/minute")
    assert_problem(post(client, world.acme_key, batch(51)), 422, "batch_too_large")
    assert remaining(post(client, world.acme_key, batch(3))) == {"key-minute": 96}


def test_tenant_aggregate_caps_all_its_keys(
    limited: LimitedApp, world: World, session: Session, settings: Settings
) -> None:
    set_tenant_limit(session, "acme", policy="5/minute")
    key_limit(session, world.acme_key_id, "3/minute")
    second = issue_key(session, settings.secret_key, tenant_name="acme", created_by="test")
    session.commit()
    client = limited()
    for _ in range(3):
        first = post(client, world.acme_key)
        assert first.status_code == 200
    assert remaining(first) == {"key-minute": 0, "tenant-minute": 2}
    assert first.headers["X-RateLimit-Remaining"] == "0"
    by_key = post(client, world.acme_key)
    assert_problem(by_key, 429, "rate_limited")
    assert audit_details(session, by_key)["limit_scope"] == "key"

    # A key without a policy of its own is counted in the tenant's windows only.
    for left in (1, 0):
        response = post(client, second.api_key)
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == '"tenant-minute";q=5;w=60'
        assert remaining(response) == {"tenant-minute": left}
    by_tenant = post(client, second.api_key)
    assert_problem(by_tenant, 429, "rate_limited")
    assert audit_details(session, by_tenant) == {
        "policy": "5/minute",
        "window": "tenant-minute",
        "remaining": 0,
        "limit_scope": "tenant",
    }
    assert (
        client.post("/v1/predict", json=IRIS, headers=bearer(world.globex_key)).status_code == 200
    )


def test_policy_changes_apply_on_the_next_request(
    limited: LimitedApp, world: World, session: Session
) -> None:
    client = limited(default_rate_limit="50/minute;1000/day")
    assert remaining(post(client, world.acme_key)) == {"key-minute": 49, "key-day": 999}
    key_limit(session, world.acme_key_id, "1/minute")
    assert remaining(post(client, world.acme_key)) == {"key-minute": 0}
    assert post(client, world.acme_key).status_code == 429
    key_limit(session, world.acme_key_id, None)
    assert remaining(post(client, world.acme_key)) == {"key-minute": 48, "key-day": 998}
    set_tenant_limit(session, "acme", policy="7/hour")
    session.commit()
    assert remaining(post(client, world.acme_key)) == {"tenant-hour": 6}


def test_rotation_shares_the_allowance(
    limited: LimitedApp, world: World, session: Session, settings: Settings
) -> None:
    key_limit(session, world.acme_key_id, "3/minute")
    client = limited()
    assert post(client, world.acme_key).status_code == 200
    assert post(client, world.acme_key).status_code == 200
    successor = rotate_key(
        session, settings.secret_key, world.acme_key_id, created_by="test", grace=timedelta(hours=1)
    )
    session.commit()
    assert successor.key.rate_limit == "3/minute"
    assert remaining(post(client, successor.api_key)) == {"key-minute": 0}
    assert post(client, successor.api_key).status_code == 429
    assert post(client, world.acme_key).status_code == 429


def test_bad_credentials_are_limited_per_address_and_create_no_key_counters(
    limited: LimitedApp, world: World
) -> None:
    client = limited(unauthenticated_rate_limit="3/minute")
    unknown = "pgk_0123456789abcdef_" + "A" * 43
    attempts = [
        (client.post("/v1/predict", json=HOUSE), "missing_credentials"),
        (post(client, "pgk_short"), "malformed_credentials"),
        (post(client, unknown), "invalid_key"),
    ]
    for left, (response, code) in zip((2, 1, 0), attempts, strict=True):
        assert_problem(response, 401, code)  # the view still answers with the real reason
        assert response.headers["RateLimit-Policy"] == '"address-minute";q=3;w=60'
        assert remaining(response) == {"address-minute": left}
    assert_problem(post(client, unknown), 429, "rate_limited")
    names = counters(client.application)
    assert names
    assert all("/address:127.0.0.1/" in name for name in names)

    other_address = post(client, unknown, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert_problem(other_address, 401, "invalid_key")
    # A valid key from the busy address is counted as itself.
    assert post(client, world.acme_key).status_code == 200
    assert any(f"/key:{world.acme_key_id}/" in name for name in counters(client.application))
    assert not any("0123456789abcdef" in name for name in counters(client.application))


def test_the_credential_is_verified_once_per_request(
    limited: LimitedApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.pipeline.caller

    calls = []
    original = gateway.pipeline.caller.authenticate_api_key

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(gateway.pipeline.caller, "authenticate_api_key", counting)
    client = limited()
    assert post(client, world.acme_key).status_code == 200
    assert len(calls) == 1
    wrong_secret = world.acme_key[:-1] + ("A" if world.acme_key[-1] != "A" else "B")
    assert_problem(post(client, wrong_secret), 401, "invalid_key")
    assert len(calls) == 2


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_health_and_docs_are_not_limited(limited: LimitedApp, world: World, path: str) -> None:
    client = limited(unauthenticated_rate_limit="1/minute", default_rate_limit="1/minute")
    for _ in range(3):
        response = client.get(path)
        assert response.status_code in (200, 302)
        assert rate_headers(response) == {}


def test_sliding_window_counter_strategy(
    limited: LimitedApp, world: World, session: Session, clock: Clock
) -> None:
    key_limit(session, world.acme_key_id, "2/minute")
    client = limited(ratelimit_strategy="sliding-window-counter")
    assert remaining(post(client, world.acme_key)) == {"key-minute": 1}
    assert remaining(post(client, world.acme_key)) == {"key-minute": 0}
    refused = post(client, world.acme_key)
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
