"""Rate-limit policies in the domain: parsing, which limits apply to a key, setting them on keys
and tenants, rotation lineage, and the migration that gives existing keys their lineage."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from auth.api_keys import (
    authenticate_api_key,
    issue_key,
    key_limits,
    load_key_credential,
    rotate_key,
    set_key_limit,
)
from auth.errors import KeyNotFound
from auth.tenants import create_tenant, get_tenant, set_tenant_limit
from config import Settings
from db.base import utcnow
from db.engine import create_db_engine
from db.migrations import alembic_config
from ratelimit.errors import InvalidPolicy
from ratelimit.policy import (
    KeyLimits,
    ScopedLimit,
    address_policy,
    normalize_policy,
    parse_policy,
    resolve_policy,
    window_name,
)


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("100/minute", "100/minute"),
        ("5000/day;100/minute", "100/minute;5000/day"),
        ("10 per 5 minutes, 3/second", "3/second;10/5minute"),
        (" 1/hour | 20/day ", "1/hour;20/day"),
    ],
)
def test_policies_are_normalized(given: str, normalized: str) -> None:
    assert normalize_policy(given) == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "1-200 characters"),
        ("1/minute;" * 30, "1-200 characters"),
        ("lots", "AMOUNT/PERIOD"),
        ("5/fortnight", "AMOUNT/PERIOD"),
        ("-1/minute", "AMOUNT/PERIOD"),
        ("0/minute", "at least 1"),
        ("5/minute;10/60 seconds", "each window length once"),
    ],
)
def test_bad_policies_are_refused_with_a_reason(given: str, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        parse_policy(given)


def test_windows_are_shortest_first_and_named() -> None:
    windows = parse_policy("5000/day;100/minute")
    assert [window.get_expiry() for window in windows] == [60, 86400]
    assert [window_name("tenant", window) for window in windows] == ["tenant-minute", "tenant-day"]
    assert window_name("key", parse_policy("9/10minutes")[0]) == "key-10minute"


@pytest.mark.parametrize(
    ("key_policy", "tenant_policy", "expected"),
    [
        (None, None, [("key", "key:L", "9/second", "default")]),
        ("5/minute", None, [("key", "key:L", "5/minute", "key")]),
        # The tenant's policy caps all its keys; a key without its own is counted there only.
        (None, "50/minute", [("tenant", "tenant:7", "50/minute", "tenant")]),
        (
            "5/minute",
            "50/minute",
            [("key", "key:L", "5/minute", "key"), ("tenant", "tenant:7", "50/minute", "tenant")],
        ),
    ],
)
def test_which_limits_apply_to_a_key(
    key_policy: str | None, tenant_policy: str | None, expected: list[tuple[str, ...]]
) -> None:
    limits = KeyLimits(
        lineage_id="L", tenant_id=7, key_policy=key_policy, tenant_policy=tenant_policy
    )
    policy = resolve_policy(limits, default="9/second")
    assert [ScopedLimit(*fields) for fields in expected] == list(policy.limits)


def test_requests_without_a_credential_are_counted_by_address() -> None:
    policy = address_policy("192.0.2.9", policy="30/minute")
    assert policy.for_scope("address") == ScopedLimit(
        "address", "address:192.0.2.9", "30/minute", "default"
    )
    assert policy.for_scope("key") is None


def test_key_and_tenant_limits_are_stored_normalized(session: Session, settings: Settings) -> None:
    create_tenant(session, name="acme")
    issued = issue_key(
        session,
        settings.secret_key,
        tenant_name="acme",
        created_by="t",
        rate_limit="1000/day,5/second",
    )
    assert issued.key.rate_limit == "5/second;1000/day"
    assert set_tenant_limit(session, "acme", policy="100/minute").rate_limit == "100/minute"
    principal = authenticate_api_key(
        issued.api_key,
        server_secret=settings.secret_key,
        credential_of=lambda key_id: load_key_credential(session, key_id),
        now=utcnow(),
    )
    assert principal.limits == KeyLimits(
        lineage_id=issued.key.key_id,
        tenant_id=get_tenant(session, "acme").id,
        key_policy="5/second;1000/day",
        tenant_policy="100/minute",
    )
    assert set_key_limit(session, issued.key.key_id, policy=None).rate_limit is None
    assert set_tenant_limit(session, "acme", policy=None).rate_limit is None
    assert key_limits(session, issued.key.key_id).tenant_policy is None
    with pytest.raises(InvalidPolicy):
        issue_key(session, settings.secret_key, tenant_name="acme", created_by="t", rate_limit="x")
    with pytest.raises(InvalidPolicy):
        set_tenant_limit(session, "acme", policy="0/day")
    with pytest.raises(KeyNotFound):
        key_limits(session, "0000000000000000")


def test_rotation_keeps_the_lineage_and_a_limit_covers_it(
    session: Session, settings: Settings
) -> None:
    create_tenant(session, name="acme")
    first = issue_key(
        session, settings.secret_key, tenant_name="acme", created_by="t", rate_limit="5/minute"
    )
    second = rotate_key(session, settings.secret_key, first.key.key_id, created_by="t")
    third = rotate_key(
        session, settings.secret_key, second.key.key_id, created_by="t", grace=timedelta(hours=1)
    )
    assert {k.key.lineage_id for k in (first, second, third)} == {first.key.key_id}
    assert third.key.rate_limit == "5/minute"
    set_key_limit(session, second.key.key_id, policy="7/minute")
    assert {key_limits(session, k.key.key_id).key_policy for k in (first, second, third)} == {
        "7/minute"
    }
    other = issue_key(session, settings.secret_key, tenant_name="acme", created_by="t")
    assert key_limits(session, other.key.key_id).lineage_id == other.key.key_id


def test_migration_gives_existing_keys_their_rotation_lineage(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0001")
    now = "2026-01-01 00:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tenants (id, name, status, created_at, updated_at) "
                "VALUES (1, 'acme', 'active', :now, :now)"
            ),
            {"now": now},
        )
        # a -> b -> c rotated in turn; d stands alone.
        for key_id, replaced_by in (("a", "b"), ("b", "c"), ("c", None), ("d", None)):
            connection.execute(
                text(
                    "INSERT INTO api_keys (key_id, tenant_id, label, secret_hmac, created_at, "
                    "created_by, replaced_by) VALUES (:k, 1, '', 'h', :now, 't', :r)"
                ),
                {"k": key_id, "r": replaced_by, "now": now},
            )
    command.upgrade(config, "0002")
    with engine.connect() as connection:
        lineage = dict(connection.execute(text("SELECT key_id, lineage_id FROM api_keys")).all())
    engine.dispose()
    assert lineage == {"a": "a", "b": "a", "c": "a", "d": "d"}
