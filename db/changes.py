"""The change generation: how every worker of every replica learns, within a bounded time, that
something it caches (credentials, tenants, assignments, model versions, signing keys, the token
denylist) has changed, without reading any of it per request.

Any flush that adds, changes or deletes a row of a cached table also increments the single
``change_generation`` row, in the same transaction: the change and its announcement commit
together, whichever process makes them (the CLI, the admin API, another replica). Each worker
polls that one row a few times a second (``ChangeWatcher.poll``) and drops its caches when the
number moved. Why a polled counter rather than LISTEN/NOTIFY or Redis pub/sub: it works the same
on SQLite and PostgreSQL, needs no extra connection kind or service, and cannot miss a message;
its cost is one indexed single-row read per worker per poll, never per request.

If polls stop succeeding (the database is unreachable), cached answers are trusted for at most
``stale_after`` seconds after the last successful poll; past that, ``ChangeCache.get`` refuses
with ``ChangesUnknown`` instead of serving what might have been revoked.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import BigInteger, Connection, Engine, Integer, event, inspect, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from db.base import Base

log = logging.getLogger("predgate.changes")
GENERATION_ID = 1
# Tables whose rows the gateway caches; a change to any of them moves the generation.
CACHED_TABLES = frozenset(
    {"tenants", "api_keys", "oauth_clients", "signing_keys", "revoked_tokens", "model_versions"}
)
# Columns written on the hot path's behalf that no cache depends on.
UNCACHED_COLUMNS = frozenset({("api_keys", "last_used_at")})
# `Session.info` key set when a flush moved the generation.
CHANGED_CACHED = "predgate.changed_cached"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ChangeGenerationRow(Base):
    """One row: how many committed flushes have changed a cached table."""

    __tablename__ = "change_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)


class ChangesUnknown(RuntimeError):
    """The generation has not been confirmed recently: cached answers may be stale."""

    code = "database_unavailable"


def announce_changes(factory: sessionmaker[Session]) -> None:
    """Make every session of this factory move the generation when it changes a cached table."""
    event.listen(factory, "after_flush", _bump_if_cached_changed)


def _bump_if_cached_changed(session: Session, _flush_context: Any) -> None:
    if any(_changes_cache(instance, session) for instance in _touched(session)):
        # Read by the gateway once the session is done: the process that made a change polls
        # at once, so its own next request already sees it.
        session.info[CHANGED_CACHED] = True
        # The flush's own connection: the bump commits or rolls back with the change.
        session.connection().execute(
            update(ChangeGenerationRow)
            .where(ChangeGenerationRow.id == GENERATION_ID)
            .values(generation=ChangeGenerationRow.generation + 1)
        )


def _touched(session: Session) -> list[Any]:
    return [*session.new, *session.dirty, *session.deleted]


def _changes_cache(instance: Any, session: Session) -> bool:
    table = getattr(instance, "__tablename__", None)
    if table not in CACHED_TABLES:
        return False
    if instance in session.new or instance in session.deleted:
        return True
    state = inspect(instance)
    changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
    return bool(changed - {column for t, column in UNCACHED_COLUMNS if t == table})


_READ_GENERATION = select(ChangeGenerationRow.generation).where(
    ChangeGenerationRow.id == GENERATION_ID
)


def read_generation(engine: Engine) -> int:
    """The committed generation."""
    with engine.connect() as connection:
        value = connection.execute(_READ_GENERATION).scalar_one()
    return int(value)


class ChangeWatcher:
    """This process's view of the generation; the caches it feeds drop everything when it moves.

    `poll` is called by a background thread every `interval` seconds, or, with `interval` 0
    (tests, so a change is seen by the very next request), by `refresh` on every request.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        stale_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.interval = interval
        self.stale_after = stale_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._held: Connection | None = None
        self._listeners: list[Callable[[int], None]] = []
        self.generation: int | None = None
        self.confirmed_at = float("-inf")
        self.failures = 0

    def subscribe(self, listener: Callable[[int], None]) -> None:
        """Call `listener(new generation)` whenever the generation moves."""
        self._listeners.append(listener)

    def poll(self) -> bool:
        """Read the generation; tell the listeners if it moved. False when the read failed."""
        try:
            current = self._read()
        except Exception as exc:  # any failure leaves the caches untrusted once stale
            self.failures += 1
            log.warning("change generation poll failed: %s", type(exc).__name__)
            self._drop_connection()
            return False
        with self._lock:
            moved = current != self.generation
            self.generation = current
            self.confirmed_at = self._monotonic()
        if moved:
            for listener in self._listeners:
                listener(current)
        return True

    def _read(self) -> int:
        # One connection held for polling (polls come from one thread, or from requests one at
        # a time in the synchronous mode): no pool checkout or liveness ping each time.
        with self._poll_lock:
            if self._held is None or self._held.closed or self._held.invalidated:
                self._held = self._engine.connect()
            value = self._held.execute(_READ_GENERATION).scalar_one()
            self._held.rollback()  # end the read transaction: the next read sees new commits
            return int(value)

    def _drop_connection(self) -> None:
        with self._poll_lock:
            held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.invalidate()

    def close(self) -> None:
        """Release the polling connection."""
        self._drop_connection()

    def refresh(self) -> None:
        """Per request: poll now when polling is synchronous (interval 0)."""
        if self.interval <= 0:
            self.poll()

    def trusted(self) -> bool:
        """True while the generation was confirmed within `stale_after` seconds."""
        if self.interval <= 0:
            return self.generation is not None
        return self._monotonic() - self.confirmed_at <= self.stale_after


if TYPE_CHECKING:
    from prometheus_client import Counter


@dataclass(frozen=True)
class CacheMetrics:
    """What the caches of this process count (Prometheus), by cache name."""

    lookups: Counter  # labels: cache, result ("hit" or "miss")
    invalidations: Counter  # labels: cache


@functools.cache
def cache_metrics() -> CacheMetrics:
    """This process's cache metrics, built with its first cache, never at import:
    `predgate serve` switches prometheus-client to per-worker files before it forks."""
    # Imported here too: every `predgate` command imports this module, few build a cache.
    from prometheus_client import Counter

    return CacheMetrics(
        lookups=Counter(
            "predgate_cache_lookups", "Cache lookups by cache and result", ["cache", "result"]
        ),
        invalidations=Counter(
            "predgate_cache_invalidations",
            "Times a cache was emptied because what it holds changed",
            ["cache"],
        ),
    )


class ChangeCache(Generic[K, V]):
    """A per-process memo of values read from cached tables, dropped when the generation moves.

    A value read while a change was committing is stored only if no new generation was seen
    since the read began, so a stale read can never outlive the change that made it stale.
    """

    def __init__(
        self, watcher: ChangeWatcher, *, maxsize: int = 10_000, name: str = "records"
    ) -> None:
        metrics = cache_metrics()
        # Children resolved once: a lookup then costs one increment, no label handling.
        self._hits = metrics.lookups.labels(name, "hit")
        self._misses = metrics.lookups.labels(name, "miss")
        self._invalidations = metrics.invalidations.labels(name)
        self._watcher = watcher
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: dict[K, V] = {}
        self._epoch = 0
        watcher.subscribe(self._drop_all)

    def get(self, key: K, load: Callable[[], V | None]) -> V | None:
        """The cached value, or `load()`'s (cached unless None: what does not exist is read
        again next time); ChangesUnknown when the generation is not confirmed."""
        if not self._watcher.trusted():
            raise ChangesUnknown("the change generation could not be confirmed recently")
        with self._lock:
            hit = key in self._entries
            found = self._entries.get(key)
            epoch = self._epoch
        if hit:
            self._hits.inc()
            return found
        self._misses.inc()
        value = load()
        if value is None:
            return None
        with self._lock:
            if epoch == self._epoch:
                if len(self._entries) >= self._maxsize:
                    self._entries.clear()  # rare: more live keys than the bound
                self._entries[key] = value
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop_all(self, _generation: int) -> None:
        with self._lock:
            self._entries.clear()
            self._epoch += 1
            learned = self._epoch == 1
        if not learned:  # the first poll only learns the generation: nothing was invalidated
            self._invalidations.inc()
