"""A gunicorn entry point for benchmarks only: `predgate serve`'s app, or the same app with
the null audit sink as the baseline (bench-only switch; the product has no way to skip audit)."""

from __future__ import annotations

import os

from flask import Flask

from audit.writer import NullAuditSink
from config import Settings
from gateway import create_app


def make_app() -> Flask:
    """The app under benchmark, audited unless PREDGATE_BENCH_NULL_AUDIT=1."""
    null_sink = os.environ.get("PREDGATE_BENCH_NULL_AUDIT") == "1"
    return create_app(Settings.from_env(), audit_sink=NullAuditSink() if null_sink else None)
