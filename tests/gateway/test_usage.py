"""Usage per tenant and per key: the rate-limit windows the gateway's counters hold (the
in-process counters through the admin API of the serving app; the CLI only with Redis) and
partner requests per UTC day and status counted from the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from audit.usage import period_start
from auth.tenants import get_tenant, set_tenant_limit
from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


def acme_traffic(client: FlaskClient, session: Session, world: World) -> int:
    """Under a tenant limit of 4/minute: one refused body, then predictions until a 429;
    the number of predictions admitted."""
    set_tenant_limit(session, "acme", policy="4/minute;100/day")
    session.commit()
    key = bearer(world.acme_key)
    assert client.post("/v1/predict", json={"nonsense": 1}, headers=key).status_code == 422
    admitted = 0
    while (answer := client.post("/v1/predict", json=HOUSE, headers=key)).status_code == 200:
        admitted += 1
        assert admitted <= 4
    assert answer.status_code == 429
    return admitted


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_tenant_usage_shows_aggregate_windows_and_daily_counts(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    admitted = acme_traffic(client, session, world)
    answer = client.get("/admin/v1/tenants/acme/usage?days=3", headers=admin)
    assert answer.status_code == 200, answer.json
    usage = answer.json
    assert usage["tenant"] == "acme"
    assert usage["rate_limit"] == "4/minute;100/day"
    windows = {w["window"]: w for w in usage["windows"]}
    assert set(windows) == {"tenant-minute", "tenant-day"}
    assert windows["tenant-minute"]["remaining"] == 0
    assert windows["tenant-minute"]["policy_source"] == "tenant"
    assert usage["windows_unavailable"] is None
    assert [d["day"] for d in usage["daily"]] == [
        (date.fromisoformat(today()) - timedelta(days=n)).isoformat() for n in (2, 1, 0)
    ]
    assert usage["daily"][0]["requests"] == 0
    expected = {
        "requests": admitted + 2,
        "predictions": admitted,
        "rows": admitted,
        "refused": 1,
        "rate_limited": 1,
        "errors": 0,
        "by_status": {"200": admitted, "422": 1, "429": 1},
    }
    assert usage["daily"][-1] == {"day": today(), **expected}
    assert usage["total"] == expected
    assert usage["by_key"] == [{"key_id": world.acme_key_id, **expected}]
    record = record_for(session, answer)
    assert record["event_type"] == "tenant.usage"
    assert record["tenant_id"] == get_tenant(session, "acme").id


def test_a_tenant_without_a_policy_has_no_aggregate_window(
    client: FlaskClient, admin: dict[str, str], world: World
) -> None:
    usage = client.get("/admin/v1/tenants/globex/usage", headers=admin).json
    assert usage["windows"] == []
    assert usage["days"] == 7
    assert usage["total"]["requests"] == 0
    assert usage["by_key"] == []


def test_key_usage_adds_daily_counts(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    admitted = acme_traffic(client, session, world)
    usage = client.get(f"/admin/v1/keys/{world.acme_key_id}/usage?days=1", headers=admin).json
    assert usage["key_id"] == world.acme_key_id
    assert usage["tenant"] == "acme"
    # A key without a policy of its own is counted in its tenant's windows only.
    assert [w["window"] for w in usage["windows"]] == ["tenant-minute", "tenant-day"]
    assert [d["day"] for d in usage["daily"]] == [today()]
    assert usage["total"]["predictions"] == admitted
    assert usage["total"]["rate_limited"] == 1
    assert "by_key" not in usage
    other = client.get(f"/admin/v1/keys/{world.globex_key_id}/usage", headers=admin).json
    assert other["total"]["requests"] == 0


@pytest.mark.parametrize(
    "query", ["days=0", "days=91", "days=seven", "since=2026-01-01", "days=1&days=2"]
)
def test_usage_refuses_bad_queries(
    client: FlaskClient, admin: dict[str, str], world: World, query: str
) -> None:
    for path in ("/admin/v1/tenants/acme/usage", f"/admin/v1/keys/{world.acme_key_id}/usage"):
        answer = client.get(f"{path}?{query}", headers=admin)
        assert answer.status_code == 422, (path, query, answer.json)


def test_usage_of_unknown_subjects_is_404(client: FlaskClient, admin: dict[str, str]) -> None:
    assert client.get("/admin/v1/tenants/nobody/usage", headers=admin).status_code == 404
    assert client.get("/admin/v1/keys/0000000000000000/usage", headers=admin).status_code == 404


def test_usage_without_rate_limits_still_counts(
    settings: Settings, make_app: Callable[..., Flask], session: Session, world: World
) -> None:
    client = make_app(replace(settings, rate_limits_enabled=False)).test_client()
    admin = token_headers(client, session, settings, role="admin")
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code == 200
    usage = client.get("/admin/v1/tenants/acme/usage", headers=admin).json
    assert usage["windows"] is None
    assert usage["windows_unavailable"]["code"] == "rate_limits_disabled"
    assert usage["total"]["predictions"] == 1


def test_period_starts_at_utc_midnight() -> None:
    now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert period_start(1, now) == datetime(2026, 3, 10, tzinfo=UTC)
    assert period_start(7, now) == datetime(2026, 3, 4, tzinfo=UTC)
    with pytest.raises(ValueError, match="days"):
        period_start(0, now)


# --- the CLI -----------------------------------------------------------------------------


def test_cli_usage_without_redis_counts_and_says_where_the_windows_are(
    client: FlaskClient, session: Session, world: World, predgate: Callable[..., Any]
) -> None:
    admitted = acme_traffic(client, session, world)
    tenant = json.loads(predgate("tenants", "usage", "acme", "--days", "2", "--json").stdout)
    assert tenant["windows"] is None
    assert tenant["windows_unavailable"]["code"] == "counters_in_server_memory"
    assert "GET /admin/v1/" in tenant["windows_unavailable"]["detail"]
    assert len(tenant["daily"]) == 2
    assert tenant["total"]["predictions"] == admitted
    assert tenant["by_key"][0]["key_id"] == world.acme_key_id

    key = json.loads(predgate("keys", "usage", world.acme_key_id, "--json").stdout)
    assert key["total"] == tenant["total"]
    assert key["windows_unavailable"]["code"] == "counters_in_server_memory"

    table = predgate("tenants", "usage", "acme").stdout
    assert "PREDGATE_REDIS_URL" in table
    assert today() in table
    assert world.acme_key_id in table
    assert predgate("tenants", "usage", "acme", "--days", "0", ok=False).exit_code == 2
    assert predgate("tenants", "usage", "nobody", ok=False).exit_code == 1


def test_cli_tenant_usage_is_audited(
    session: Session, world: World, predgate: Callable[..., Any]
) -> None:
    from audit.query import AuditFilter, query_records

    predgate("tenants", "usage", "globex")
    session.rollback()
    found = query_records(session, AuditFilter(event_type="tenant.usage"))
    assert [r["tenant_id"] for r in found] == [get_tenant(session, "globex").id]
