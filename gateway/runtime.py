"""Per-process state, built once by create_app: settings, database, caches, the rate limiter and
the audit writer, behind a typed accessor; and the housekeeping thread that keeps the caches
honest (polls the change generation) and writes which keys were used."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.recorder import AuditConfig, load_audit_config
from audit.writer import AuditSink, GroupCommitWriter
from auth.directory import CredentialDirectory
from auth.key_use import KeyUseLog
from config import Settings
from db.changes import ChangeWatcher
from db.engine import create_db_engine, make_session_factory
from models.artifacts import ArtifactStore
from models.catalog import ModelCatalog
from models.inference import ModelCache
from ratelimit.counters import MemoryCounters, open_counters
from ratelimit.limiter import RateLimiter

EXTENSION_KEY = "predgate.runtime"
KEY_USE_FLUSH_SECONDS = 30.0
log = logging.getLogger("predgate.runtime")


class Housekeeping:
    """One background thread per process: polls the change generation every
    `settings.change_poll_seconds` and writes key use every KEY_USE_FLUSH_SECONDS. Started on
    the first request, so the process that forks the workers never runs it and each worker runs
    its own."""

    def __init__(self, watcher: ChangeWatcher, key_use: KeyUseLog, sessions: sessionmaker[Session]):
        self._watcher = watcher
        self._key_use = key_use
        self._sessions = sessions
        self._lock = threading.Lock()
        self._pid = 0
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        """Start the thread in this process if it is not running (cheap when it is)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            # The first requests wait here for a confirmed generation rather than find the
            # caches untrusted; the pid is set last, so none of them slips past before it.
            self._watcher.poll()
            if self._watcher.interval > 0:
                threading.Thread(target=self._run, name="housekeeping", daemon=True).start()
            self._pid = os.getpid()

    def run_once(self) -> None:
        """Poll and write key use now (tests, shutdown)."""
        self._watcher.poll()
        self.flush_key_use()

    def flush_key_use(self) -> None:
        """Write which keys were used since the last flush."""
        try:
            self._key_use.flush(self._sessions)
        except Exception as exc:  # kept, written at the next flush
            log.warning("writing key use failed: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the thread after its current round."""
        self._stop.set()

    def _run(self) -> None:
        next_flush = time.monotonic() + KEY_USE_FLUSH_SECONDS
        while not self._stop.wait(self._watcher.interval):
            self._watcher.poll()
            if time.monotonic() >= next_flush:
                self.flush_key_use()
                next_flush = time.monotonic() + KEY_USE_FLUSH_SECONDS


@dataclass(frozen=True)
class Runtime:
    """What every request shares within one process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    artifacts: ArtifactStore
    model_cache: ModelCache
    watcher: ChangeWatcher
    directory: CredentialDirectory
    catalog: ModelCatalog
    key_use: KeyUseLog
    limiter: RateLimiter | None  # None only when a benchmark switched limits off
    audit_config: AuditConfig
    audit_sink: AuditSink
    housekeeping: Housekeeping

    def close(self) -> None:
        """Write what is pending (records, a final checkpoint, key use) and release the
        database: a graceful shutdown."""
        self.housekeeping.stop()
        self.housekeeping.flush_key_use()
        self.audit_sink.close()
        self.watcher.close()
        self.engine.dispose()


def build_runtime(settings: Settings, *, audit_sink: AuditSink | None = None) -> Runtime:
    """Everything a process needs to serve; opens no connection and loads no model yet."""
    engine = create_db_engine(settings.database_url)
    sessions = make_session_factory(engine)
    artifacts = ArtifactStore(settings.artifacts_dir)
    watcher = ChangeWatcher(
        engine, interval=settings.change_poll_seconds, stale_after=settings.change_stale_seconds
    )
    audit_config = load_audit_config(
        settings.data_dir,
        signing_key=settings.audit_signing_key,
        instance_id=settings.instance_id,
        checkpoint_records=settings.audit_checkpoint_records,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
    )
    key_use = KeyUseLog()
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        artifacts=artifacts,
        model_cache=ModelCache(artifacts, maxsize=settings.model_cache_size),
        watcher=watcher,
        directory=CredentialDirectory(sessions, watcher),
        catalog=ModelCatalog(sessions, watcher),
        key_use=key_use,
        limiter=_limiter(settings) if settings.rate_limits_enabled else None,
        audit_config=audit_config,
        audit_sink=audit_sink
        or GroupCommitWriter(
            engine,
            audit_config.signer,
            audit_config.policy,
            wait_seconds=settings.audit_wait_seconds,
            max_waiters_per_batch=max(1, settings.server_threads // 2),
            grow_tree=settings.receipts_enabled,
            log_origin=settings.log_origin or None,
        ),
        housekeeping=Housekeeping(watcher, key_use, sessions),
    )


def _limiter(settings: Settings) -> RateLimiter:
    store = open_counters(
        settings.redis_url,
        settings.ratelimit_strategy,
        key_prefix=settings.ratelimit_key_prefix,
        redis_options=settings.redis_options(),
    )
    local = None
    if settings.ratelimit_on_store_failure == "local":
        local = MemoryCounters(
            settings.ratelimit_strategy, key_prefix=settings.ratelimit_key_prefix
        )
    return RateLimiter(store, on_store_failure=settings.ratelimit_on_store_failure, local=local)


def init_runtime(app: Flask, runtime: Runtime) -> None:
    """Attach the runtime to the app."""
    app.extensions[EXTENSION_KEY] = runtime


def get_runtime(app: Flask | None = None) -> Runtime:
    """The runtime of the given (or current) app."""
    runtime = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(runtime, Runtime)
    return runtime
