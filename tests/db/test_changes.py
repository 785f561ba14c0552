"""The change generation: every change to something a worker caches moves it in the same
transaction; nothing else does; caches drop what they hold when it moves, never keep a value
read before a change they have seen, and refuse to answer once it cannot be confirmed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.recorder import admin_event, load_audit_config, record_event
from auth.api_keys import issue_key, record_key_use, revoke_key
from auth.clients import create_client, revoke_client
from auth.signing_keys import ensure_signing_key
from auth.tenants import assign_model, create_tenant, set_tenant_status
from auth.tokens import revoke_token
from config import Settings
from db.base import utcnow
from db.changes import ChangeCache, ChangesUnknown, ChangeWatcher, read_generation
from tests.conftest import World


def moved(engine: Engine, session: Session, change) -> bool:
    before = read_generation(engine)
    change()
    session.commit()
    return read_generation(engine) > before


def test_every_cached_change_moves_the_generation(
    engine: Engine, session: Session, settings: Settings, world: World
) -> None:
    secret = settings.secret_key
    assert moved(engine, session, lambda: create_tenant(session, name="initech"))
    assert moved(engine, session, lambda: set_tenant_status(session, "acme", status="suspended"))
    assert moved(
        engine, session, lambda: assign_model(session, "acme", model_name="iris", version=1)
    )
    assert moved(engine, session, lambda: revoke_key(session, world.acme_key_id))
    assert moved(
        engine,
        session,
        lambda: issue_key(session, secret, tenant_name="globex", created_by="t"),
    )
    issued = create_client(session, secret, role="admin", created_by="t")
    session.commit()
    assert moved(engine, session, lambda: revoke_client(session, issued.client.client_id))
    assert moved(engine, session, lambda: ensure_signing_key(session, secret))
    assert moved(
        engine,
        session,
        lambda: revoke_token(
            session,
            issuer="predgate",
            jti="j1",
            client_id=issued.client.client_id,
            expires_at=utcnow() + timedelta(minutes=5),
        ),
    )


def test_what_no_cache_reads_does_not_move_it(
    engine: Engine, session: Session, settings: Settings, world: World
) -> None:
    # A key's last use is written for every key in use; caches do not depend on it.
    assert not moved(
        engine, session, lambda: record_key_use(session, {world.acme_key_id}, at=utcnow())
    )
    config = load_audit_config(settings.data_dir, signing_key="", instance_id="test")
    event = admin_event(
        config,
        event_type="tenant.create",
        principal_type="operator",
        principal_id="t",
        auth_method="local",
    )
    assert not moved(engine, session, lambda: record_event(session, config, event))


def test_a_rolled_back_change_does_not_move_it(engine: Engine, session: Session) -> None:
    before = read_generation(engine)
    create_tenant(session, name="initech")
    session.rollback()
    assert read_generation(engine) == before


@pytest.fixture
def watcher(engine: Engine) -> Iterator[ChangeWatcher]:
    """A watcher polled by hand (interval 0), its connection released afterwards."""
    polled = ChangeWatcher(engine, interval=0, stale_after=2)
    yield polled
    polled.close()


def test_caches_drop_everything_when_the_generation_moves(
    watcher: ChangeWatcher, session: Session
) -> None:
    cache: ChangeCache[str, str] = ChangeCache(watcher)
    watcher.poll()
    assert cache.get("k", lambda: "old") == "old"
    assert cache.get("k", lambda: "new") == "old"  # cached
    create_tenant(session, name="initech")
    session.commit()
    watcher.poll()
    assert cache.get("k", lambda: "new") == "new"


def test_a_value_read_before_a_seen_change_is_not_kept(
    watcher: ChangeWatcher, session: Session
) -> None:
    cache: ChangeCache[str, str] = ChangeCache(watcher)
    watcher.poll()
    reading, change_seen = threading.Event(), threading.Event()

    def slow_stale_read() -> str:
        reading.set()
        assert change_seen.wait(10)
        return "stale"

    result: list[str | None] = []
    reader = threading.Thread(target=lambda: result.append(cache.get("k", slow_stale_read)))
    reader.start()
    assert reading.wait(10)
    create_tenant(session, name="initech")  # the change commits while the read is under way
    session.commit()
    watcher.poll()
    change_seen.set()
    reader.join(10)
    assert result == ["stale"]  # that request was answered from what it read...
    assert cache.get("k", lambda: "fresh") == "fresh"  # ...but nothing kept it


def test_unconfirmed_caches_refuse_to_answer(engine: Engine) -> None:
    clock = [100.0]
    watcher = ChangeWatcher(engine, interval=0.25, stale_after=2, monotonic=lambda: clock[0])
    cache: ChangeCache[str, str] = ChangeCache(watcher)
    assert watcher.poll()
    assert cache.get("k", lambda: "v") == "v"
    clock[0] += 1.9
    assert cache.get("k", lambda: "other") == "v"
    clock[0] += 0.2  # no poll has succeeded for more than stale_after seconds
    with pytest.raises(ChangesUnknown):
        cache.get("k", lambda: "other")
    watcher.close()
