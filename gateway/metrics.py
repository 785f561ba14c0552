"""Prometheus metrics of the HTTP side: one observation per answered request (route template,
status, tenant name, latency, model version, 429 scope, authentication failure reason, store
failure), the multiprocess setup of `predgate serve`, and the exposition GET /metrics sends.

Label values come only from bounded, public sets: route templates (never a URL), a fixed set of
methods, status codes, tenant and model names chosen by operators, limit scopes and error codes.
Never a key id, a token, an address or a feature value.

Multiprocess mode (prometheus-client's own): `serve` gives each start a fresh, empty directory
and switches prometheus-client to per-process files there before granian forks the workers;
GET /metrics, in whichever worker answers it, adds up the files of every worker, live or dead.
The domain packages build their metrics when their objects are built (create_app, in each
worker), never at import, so none exists yet in the serving process when the switch is made.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from audit.draft import AUTHENTICATION_FAILED
from gateway.context import RequestContext
from ratelimit.limiter import FAILURE_MODES

log = logging.getLogger("predgate.metrics")
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION_KEY = "predgate.metrics"
PREFIX = "predgate_"
# Tenants are created by operators, yet a label per tenant must stay bounded: past this many
# distinct names in one process, further tenants are counted under "other".
MAX_TENANT_LABELS = 500
OTHER = "other"
# Werkzeug accepts any method token; anything else is one label, not one series per token.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LIMIT_SCOPES = ("key", "tenant", "address", "client")  # ratelimit.policy.ScopedLimit.scope
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class _HttpMetrics:
    requests: Counter
    latency: Histogram
    predictions: Counter
    prediction_rows: Counter
    rate_limited: Counter
    auth_failures: Counter
    store_failures: Counter
    workers: Gauge


@functools.cache
def _http_metrics() -> _HttpMetrics:
    # Built once per process, by init_metrics (create_app): after `serve` chose the mode.
    return _HttpMetrics(
        requests=Counter(
            "predgate_requests",
            "Answered requests by route template, method, status and tenant name",
            ["route", "method", "status", "tenant"],
        ),
        latency=Histogram(
            "predgate_request_duration_seconds",
            "Time from the request's first step to its audit commit, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
        ),
        predictions=Counter(
            "predgate_predictions",
            "Answered prediction requests by model name and version",
            ["model", "version"],
        ),
        prediction_rows=Counter(
            "predgate_prediction_rows",
            "Rows predicted by model name and version",
            ["model", "version"],
        ),
        rate_limited=Counter(
            "predgate_rate_limited",
            "Requests answered 429 by the scope of the limit that refused them "
            "(key, tenant, address, client)",
            ["scope"],
        ),
        auth_failures=Counter(
            "predgate_auth_failures",
            "Refused credentials by reason code",
            ["reason"],
        ),
        store_failures=Counter(
            "predgate_ratelimit_store_failures",
            "Requests that met an unreachable rate-limit store, by the mode that applied "
            "(closed: refused 503; open: admitted uncounted; local: counted in the worker)",
            ["mode"],
        ),
        workers=Gauge(
            "predgate_worker_processes",
            "Worker processes serving (live ones only)",
            multiprocess_mode="livesum",
        ),
    )


class _Children:
    """A metric's labelled children by label values: `labels()` validates and locks on every
    call, a dict lookup does not (the predict path observes several per request)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *label_values: str) -> Any:
        child = self._children.get(label_values)
        if child is None:
            child = self._children[label_values] = self._metric.labels(*label_values)
        return child


class RequestMetrics:
    """The HTTP metrics of one app, with their children cached."""

    def __init__(self, allow: Iterable[str]) -> None:
        metrics = _http_metrics()
        self.allow = tuple(ipaddress.ip_network(item, strict=False) for item in allow)
        self.requests = _Children(metrics.requests)
        self.latency = _Children(metrics.latency)
        self.predictions = _Children(metrics.predictions)
        self.prediction_rows = _Children(metrics.prediction_rows)
        self.rate_limited = _Children(metrics.rate_limited)
        self.auth_failures = _Children(metrics.auth_failures)
        self.store_failures = _Children(metrics.store_failures)
        self._tenants: set[str] = set()
        # Known label values are exported from zero, so the first 429 or store failure is an
        # increase that rate() and the alert rules can see.
        for scope in LIMIT_SCOPES:
            self.rate_limited(scope)
        for mode in FAILURE_MODES:
            self.store_failures(mode)

    def tenant_label(self, name: str | None) -> str:
        """The tenant's name, "" without one, "other" past MAX_TENANT_LABELS names."""
        if name is None:
            return ""
        if name not in self._tenants:
            if len(self._tenants) >= MAX_TENANT_LABELS:
                return OTHER
            self._tenants.add(name)
        return name

    def may_scrape(self, address: str | None) -> bool:
        """True when the client address is in PREDGATE_METRICS_ALLOW."""
        try:
            parsed = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(parsed in network for network in self.allow)


def init_metrics(app: Flask, allow: Iterable[str]) -> None:
    """Build this process's HTTP metrics and attach them to the app."""
    app.extensions[EXTENSION_KEY] = RequestMetrics(allow)


def get_metrics(app: Flask | None = None) -> RequestMetrics:
    """The HTTP metrics of the given (or current) app."""
    metrics = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(metrics, RequestMetrics)
    return metrics


def observe_request(ctx: RequestContext, response: Response) -> None:
    """Count one answered request (the pipeline's last step; reads what earlier steps noted)."""
    try:
        _observe(get_metrics(), ctx, response)
    except Exception as exc:
        # The record is committed and says what the client gets: a metric that cannot be
        # written (a full metrics directory) must not turn that answer into a 500.
        log.warning("request %s not counted in the metrics: %s", ctx.request_id, exc)


def _observe(metrics: RequestMetrics, ctx: RequestContext, response: Response) -> None:
    rule = request.url_rule
    route = rule.rule if rule is not None else "unmatched"
    method = request.method if request.method in METHODS else OTHER
    status = response.status_code
    tenant = metrics.tenant_label(ctx.caller.tenant_name if ctx.caller else None)
    metrics.requests(route, method, str(status), tenant).inc()
    metrics.latency(route).observe(ctx.elapsed_ms() / 1000)
    draft = ctx.audit
    if draft.model_name is not None and draft.rows is not None and status < 400:
        version = str(draft.model_version)
        metrics.predictions(draft.model_name, version).inc()
        metrics.prediction_rows(draft.model_name, version).inc(draft.rows or 0)
    if status == 429:
        metrics.rate_limited(str(draft.details.get("limit_scope", "unknown"))).inc()
    if draft.reason_code is not None and (
        draft.refusal_type == AUTHENTICATION_FAILED
        or (ctx.endpoint is not None and ctx.endpoint.client_auth and status == 401)
    ):
        metrics.auth_failures(draft.reason_code).inc()
    degraded = ctx.rate.outcome.degraded if ctx.rate and ctx.rate.outcome else None
    if degraded is not None:
        metrics.store_failures(degraded).inc()
    elif draft.reason_code == "ratelimit_unavailable":
        metrics.store_failures("closed").inc()


def exposition() -> Response:
    """Every metric in Prometheus' text format: in multiprocess mode, summed over the files of
    every worker of this server start (a collector per scrape, as prometheus-client requires)."""
    registry: CollectorRegistry = REGISTRY
    if MULTIPROC_VARIABLE in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# --- `predgate serve`: the serving process and its workers --------------------------------


def enter_multiprocess_mode() -> str:
    """In the serving process, before granian forks: a fresh, empty directory for this start,
    and prometheus-client switched to per-process files there. Returns the directory."""
    if any(family.name.startswith(PREFIX) for family in REGISTRY.collect()):
        # A metric built already holds an in-memory value its workers would inherit.
        raise RuntimeError("a predgate metric was built before the multiprocess switch")
    directory = tempfile.mkdtemp(prefix="predgate-metrics-")
    os.environ[MULTIPROC_VARIABLE] = directory  # the workers inherit it, and GET /metrics reads it
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return directory


def leave_multiprocess_mode(directory: str) -> None:
    """Once the server stopped: the next start begins at zero, so its files go."""
    shutil.rmtree(directory, ignore_errors=True)


def worker_started() -> None:
    """In a worker, once its app is built: count it live, and drop the live-gauge files of
    workers that died without saying so (SIGKILL), so they are not counted live forever."""
    directory = os.environ.get(MULTIPROC_VARIABLE)
    if directory is not None:
        for pid in _pids_with_files(directory):
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    _http_metrics().workers.set(1)


def worker_stopped() -> None:
    """In a worker that stops gracefully: it no longer counts as live."""
    if MULTIPROC_VARIABLE in os.environ:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _pids_with_files(directory: str) -> set[int]:
    pids = set()
    for name in os.listdir(directory):
        stem = name.removesuffix(".db")
        pid = stem.rsplit("_", 1)[-1]
        if stem.startswith("gauge_live") and pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
