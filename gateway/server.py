"""Serving under gunicorn: never Flask's development server, never debug."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from config import Settings

log = logging.getLogger("predgate.server")


class GatewayServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """A gunicorn application whose workers each build their own app (own DB pool, own cache)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = replace(settings, server_threads=int(options.get("threads", 1)))
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("worker_exit", _close_worker_app)

    def load(self) -> Flask:
        from gateway import create_app

        return create_app(self.settings)


def _close_worker_app(_server: Any, worker: Any) -> None:
    """A worker's graceful exit: commit what is queued, sign a final checkpoint."""
    from gateway.runtime import get_runtime

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        try:
            get_runtime(app).close()
        except Exception as exc:  # the process is exiting: report, do not raise
            log.warning("closing the worker's runtime failed: %s", type(exc).__name__)


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn settings: threaded workers, our own access log (no query strings).

    `reuse_port`: each worker binds its own socket with SO_REUSEPORT, so the kernel spreads new
    connections over all workers; with one shared socket, keep-alive connections tend to pile
    up on whichever worker woke first.
    """
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "reuse_port": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 60,
        "graceful_timeout": 20,
        "preload_app": False,
        "proc_name": "predgate",
    }
