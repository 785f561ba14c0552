"""Serving with granian: HTTP is parsed and written by its Rust runtime, and each worker's event
loop reads whole requests (gateway.front) before the app runs them on Python threads, so a client
that sends its request slowly holds no thread. Never Flask's development server, never debug.

Workers are forked from the serving process after `serve` has recorded the settings, so each
builds its own app (its own database pool, caches, audit writer) from settings validated once.
A worker that exits gracefully commits its queued audit records and signs a final checkpoint;
one that dies is replaced.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from multiprocessing import util as multiprocessing_util
from typing import Any

from flask import Flask
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from config import Settings
from gateway.front import BufferingFront
from gateway.logs import configure_logging

log = logging.getLogger("predgate.server")
SHUTDOWN_SECONDS = 20
CONNECTIONS_PER_WORKER = 1000
HEADER_READ_TIMEOUT_MS = 10_000
# A body that pauses this long between two parts is not waited for: the app answers 408.
BODY_SECONDS = 10.0
_served: Settings | None = None  # what `serve` validated; inherited by the forked workers


def granian_logging() -> dict[str, Any]:
    """granian's logging config: its loggers pass their lines to the root logger, whose handler
    (gateway.logs) writes them in PREDGATE_LOG_FORMAT like every other line."""
    return {
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
        }
    }


def worker_app() -> Flask:
    """The app of one worker (granian's factory), run by granian on its threads."""
    from gateway import create_app
    from gateway.metrics import worker_started, worker_stopped
    from gateway.runtime import get_runtime

    app = create_app(_served or Settings.from_env())
    worker_started()
    # Run when the worker process ends normally (granian's graceful stop): multiprocessing
    # runs its finalizers then, where atexit handlers would not run.
    multiprocessing_util.Finalize(None, get_runtime(app).close, exitpriority=10)
    multiprocessing_util.Finalize(None, worker_stopped, exitpriority=5)
    return app


def buffered_worker_app() -> BufferingFront:
    """The app of one worker behind its buffering front (granian's RSGI factory)."""
    settings = _served or Settings.from_env()
    app = worker_app()
    uploads = upload_paths(app)

    def body_limit(method: str, path: str) -> int:
        if method == "POST" and path in uploads:
            return settings.max_model_upload_bytes
        return settings.max_body_bytes

    return BufferingFront(
        app, threads=settings.server_threads, body_limit=body_limit, body_seconds=BODY_SECONDS
    )


def upload_paths(app: Flask) -> frozenset[str]:
    """The paths of routes declared `upload` (their bodies may reach the upload limit)."""
    return frozenset(
        rule.rule
        for rule in app.url_map.iter_rules()
        if getattr(getattr(app.view_functions[rule.endpoint], "endpoint", None), "upload", False)
    )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    behind_proxy: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM: `workers` processes, each running the app on `threads`
    Python threads. Each request is read whole before the app runs it (gateway.front), unless
    `behind_proxy` says a proxy in front already does (the shipped nginx): then granian runs
    the app directly, for about a fifth less CPU per request."""
    from gateway.metrics import enter_multiprocess_mode, leave_multiprocess_mode

    global _served
    _served = replace(settings, server_threads=threads)
    configure_logging(settings.log_level, settings.log_format)
    log.info(
        "serving",
        extra={"url": f"http://{host}:{port}", "workers": workers, "threads": threads},
    )
    if behind_proxy:
        # granian's WSGI: it runs the app on its `threads` blocking threads.
        target, interface, blocking = "worker_app", Interfaces.WSGI, threads
    else:
        # RSGI: the worker's event loop reads bodies, then runs the app on `threads` threads of
        # the front; requests beyond them wait on the loop, not on a thread.
        target, interface, blocking = "buffered_worker_app", Interfaces.RSGI, None
    # Before the fork: every worker counts into its own files in this start's directory.
    metrics_dir = enter_multiprocess_mode()
    try:
        _granian(target, interface, blocking, host=host, port=port, workers=workers)
    finally:
        leave_multiprocess_mode(metrics_dir)


def _granian(
    target: str,
    interface: Interfaces,
    blocking: int | None,
    *,
    host: str,
    port: int,
    workers: int,
) -> None:
    Granian(
        f"gateway.server:{target}",
        factory=True,
        interface=interface,
        blocking_threads=blocking,
        address=host,
        port=port,
        workers=workers,
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
        log_dictconfig=granian_logging(),
        log_access=False,  # predgate writes its own access log, without query strings
    ).serve()
