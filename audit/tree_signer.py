"""The tree thread: after each checkpoint it grows the Merkle tree over the new records and signs
a tree head, so the audit writer (and the requests waiting on it) never wait for the tree.

One per process, started with the writer thread (never forked). A failed attempt is asked again
at the next checkpoint or after RETRY_SECONDS: the tree can always catch up with the records.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import Counter, Histogram
from sqlalchemy import Engine

from audit.signing import CheckpointSigner
from audit.tree import grow_and_sign

log = logging.getLogger("predgate.audit")
RETRY_SECONDS = 1.0


class TreeHeadSigner:
    """Grows the tree and signs heads on a thread of its own, when asked."""

    def __init__(
        self,
        engine: Engine,
        signer: CheckpointSigner,
        *,
        origin: str | None,
        seconds: Histogram,
        failures: Counter,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._origin = origin
        self._seconds = seconds
        self._failures = failures
        self._thread: threading.Thread | None = None
        self._wanted = threading.Event()
        self._asked = 0  # the newest checkpoint seq a head was asked for
        self._stopping = False

    def start(self) -> None:
        """Start the thread (in this process; the state of a parent's is dropped)."""
        self._wanted = threading.Event()
        self._asked = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-tree", daemon=True)
        self._thread.start()

    def ask(self, checkpoint_seq: int) -> None:
        """A head covering this checkpoint is wanted; returns at once."""
        if self._thread is None or checkpoint_seq <= self._asked:
            return
        self._asked = checkpoint_seq
        self._wanted.set()

    def stop(self, timeout: float) -> None:
        """Stop the thread after the attempt it is making, if any."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wanted.set()
        thread.join(timeout=timeout)
        self._thread = None

    def sign_now(self) -> bool:
        """Grow the tree to the chain's head and sign a head, in a transaction of its own on the
        tree's lock (not the chain's); False when it failed."""
        try:
            with self._seconds.time(), self._engine.begin() as connection:
                grow_and_sign(connection, self._signer, origin=self._origin)
        except Exception as exc:
            self._failures.inc()
            log.warning("audit tree head not signed: %s", type(exc).__name__)
            return False
        return True

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping:
                return
            self._wanted.clear()
            asked = self._asked
            if not self.sign_now():
                self._asked = min(self._asked, asked - 1)  # ask again, later
                time.sleep(RETRY_SECONDS)
