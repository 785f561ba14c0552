"""Readiness: whether this process can serve now. Each check is bounded in time: the database
is asked only while the change watcher confirms it answers (a hung database would otherwise hang
the probe), and Redis calls time out after one second."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from auth.tenants import list_assignments
from db.migrations import DatabaseNotMigrated, ensure_at_head
from gateway.runtime import Runtime
from models.errors import ModelError
from ratelimit.counters import RedisCounters
from ratelimit.errors import CounterStoreUnavailable

log = logging.getLogger("predgate.health")


def readiness_checks(runtime: Runtime) -> dict[str, str]:
    """Each dependency's state: `ok` or why not."""
    checks = {"database": _database(runtime)}
    checks["audit"] = "ok" if runtime.audit_sink.available() else "unavailable"
    limiter = runtime.limiter
    if limiter is not None and isinstance(limiter.store, RedisCounters):
        checks["redis"] = _redis(limiter.store)
    if checks["database"] == "ok":
        checks.update(_models(runtime))
    return checks


def _database(runtime: Runtime) -> str:
    if not runtime.watcher.trusted():
        return "unreachable"
    try:
        ensure_at_head(runtime.engine)
    except DatabaseNotMigrated:
        return "not_migrated"
    except SQLAlchemyError:
        return "unreachable"
    return "ok"


def _redis(store: RedisCounters) -> str:
    try:
        store.ping()
    except CounterStoreUnavailable:
        return "unreachable"
    return "ok"


def _models(runtime: Runtime) -> dict[str, str]:
    checks = {}
    with runtime.sessions() as session:
        assignments = sorted(list_assignments(session), key=str)
    for name, version in assignments:
        ref = f"{name}@{'latest' if version is None else version}"  # as tenants list it
        try:
            runtime.model_cache.get(runtime.catalog.version(name, version))
            checks[f"model:{ref}"] = "ok"
        except ModelError as exc:
            log.warning("model %s not ready: %s", ref, exc)
            checks[f"model:{ref}"] = exc.code
    return checks
