"""Serving with granian: HTTP is parsed and written by its Rust runtime, so Python threads only run
the app (measured against gunicorn's gthread workers on the same machine: bench/results and the
README), and a client that sends its request slowly holds no Python thread. Never Flask's
development server, never debug.

Workers are forked from the serving process after `serve` has recorded the settings, so each
builds its own app (its own database pool, caches, audit writer) from settings validated once.
A worker that exits gracefully commits its queued audit records and signs a final checkpoint;
one that dies is replaced.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from multiprocessing import util as multiprocessing_util

from flask import Flask
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from config import Settings

log = logging.getLogger("predgate.server")
SHUTDOWN_SECONDS = 20
CONNECTIONS_PER_WORKER = 1000
HEADER_READ_TIMEOUT_MS = 10_000
_served: Settings | None = None  # what `serve` validated; inherited by the forked workers


def worker_app() -> Flask:
    """The app of one worker (granian's factory)."""
    from gateway import create_app
    from gateway.runtime import get_runtime

    app = create_app(_served or Settings.from_env())
    runtime = get_runtime(app)
    # Run when the worker process ends normally (granian's graceful stop): multiprocessing
    # runs its finalizers then, where atexit handlers would not run.
    multiprocessing_util.Finalize(None, runtime.close, exitpriority=10)
    return app


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    """Serve until SIGINT or SIGTERM: `workers` processes, each running the app on `threads`
    Python threads."""
    global _served
    _served = replace(settings, server_threads=threads)
    Granian(
        "gateway.server:worker_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=host,
        port=port,
        workers=workers,
        blocking_threads=threads,
        # Requests beyond the app's threads wait in granian's Rust runtime, not in Python.
        # granian's backpressure counts *connections* a worker accepts (keep-alive and slow
        # ones included), so it must stay far above the threads: at `threads` a few idle or
        # slow connections would stop a worker from accepting anyone else.
        backpressure=CONNECTIONS_PER_WORKER,
        backlog=CONNECTIONS_PER_WORKER * max(1, workers),
        # A client gets this long to send its request headers (then the connection is closed,
        # never having touched Python). granian's header buffer (about 400 KB) stays far above
        # the app's own limits, so an over-long token is answered by the app itself (401
        # token_too_large, audited).
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        http=HTTPModes.http1,
        websockets=False,
        respawn_failed_workers=True,
        respawn_interval=0.5,
        # A worker told to stop while it was still starting can miss the signal: after this
        # long it is killed (its queued records and final checkpoint are lost, not the chain).
        workers_kill_timeout=SHUTDOWN_SECONDS,
        # Its one warning is that threads outnumber cores: intended, they mostly wait for the
        # audit commit.
        log_level=LogLevels.error,
        log_access=False,  # predgate writes its own access log, without query strings
    ).serve()
