"""GET /metrics: what it counts (route template, status, tenant, model version, 429 scope,
authentication failure reason), who may read it (PREDGATE_METRICS_ALLOW or the admin scope),
that no credential or feature value reaches it, and that a two-worker `predgate serve` reports
the sum over its workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.query import AuditFilter, query_records
from config import Settings
from db.engine import create_db_engine
from gateway.runtime import get_runtime
from tests.conftest import HOUSE, IRIS, World, bearer
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers
from tests.ratelimit_support import RedisServer
from tests.serving_support import start_serving

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FAR = {"REMOTE_ADDR": "203.0.113.7"}  # outside the allow-list of these tests


def parse(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def scrape(client: FlaskClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return parse(answer.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


def test_requests_are_counted_by_route_status_tenant_and_model(
    client: FlaskClient, world: World
) -> None:
    before = scrape(client)
    for _ in range(2):
        answer = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
        assert answer.status_code == 200
    assert (
        client.post("/v1/predict", json=IRIS, headers=bearer(world.globex_key)).status_code == 200
    )
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/v1/model", headers=bearer("pgk_" + "x" * 40)).status_code == 401
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    predict = {"route": "/v1/predict", "method": "POST", "status": "200"}
    assert grew("predgate_requests_total", **predict, tenant="acme") == 2
    assert grew("predgate_requests_total", **predict, tenant="globex") == 1
    assert grew("predgate_requests_total", route="unmatched", method="GET", status="404", tenant="")
    assert grew("predgate_request_duration_seconds_count", route="/v1/predict") == 3
    house = {"model": "house-price", "version": str(world.house_price.version)}
    assert grew("predgate_predictions_total", **house) == 2
    assert grew("predgate_prediction_rows_total", **house) == 2
    iris = {"model": "iris", "version": str(world.iris.version)}
    assert grew("predgate_predictions_total", **iris) == 1
    assert (
        total(after, "predgate_auth_failures_total") - total(before, "predgate_auth_failures_total")
        == 1
    )
    assert total(after, "predgate_audit_records_total") > total(
        before, "predgate_audit_records_total"
    )
    assert total(after, "predgate_cache_lookups_total") > total(
        before, "predgate_cache_lookups_total"
    )


def test_429s_are_counted_by_the_scope_that_refused(
    make_app: Callable[..., Flask], settings: Settings, world: World
) -> None:
    client = make_app(replace(settings, default_rate_limit="1/minute")).test_client()
    before = scrape(client)
    statuses = [
        client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 429]
    after = scrape(client)
    grew = value(after, "predgate_rate_limited_total", scope="key") - value(
        before, "predgate_rate_limited_total", scope="key"
    )
    assert grew == 1


@pytest.fixture
def guarded(make_app: Callable[..., Flask], settings: Settings) -> FlaskClient:
    """An app that serves metrics without a credential to 10.0.0.0/8 only."""
    return make_app(replace(settings, metrics_allow=("10.0.0.0/8",))).test_client()


def test_an_address_outside_the_allow_list_is_refused(guarded: FlaskClient, world: World) -> None:
    anonymous = guarded.get("/metrics", environ_base=FAR)
    assert anonymous.status_code == 403
    assert anonymous.content_type == "application/problem+json"
    assert anonymous.json is not None
    assert anonymous.json["code"] == "metrics_forbidden"
    partner = guarded.get("/metrics", headers=bearer(world.acme_key), environ_base=FAR)
    assert partner.status_code == 403
    assert partner.json is not None
    assert partner.json["code"] == "insufficient_scope"
    forged = guarded.get("/metrics", headers=bearer("pgk_" + "y" * 40), environ_base=FAR)
    assert forged.status_code == 401
    assert guarded.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_the_admin_scope_may_scrape_from_anywhere(
    guarded: FlaskClient, session: Session, settings: Settings
) -> None:
    admin = token_headers(guarded, session, settings, role="admin")
    answer = guarded.get("/metrics", headers=admin, environ_base=FAR)
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    assert "predgate_requests_total" in answer.get_data(as_text=True)


def test_the_allow_list_judges_the_address_trusted_proxies_forwarded(
    make_app: Callable[..., Flask], settings: Settings
) -> None:
    behind = make_app(replace(settings, trusted_proxies=("127.0.0.1/32",))).test_client()
    assert behind.get("/metrics").status_code == 200  # the proxy's own host: loopback
    forwarded = behind.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403


def test_no_key_token_or_feature_value_reaches_the_metrics(
    client: FlaskClient, world: World, session: Session, settings: Settings
) -> None:
    canary = {**HOUSE, "area": 987654.125}
    assert (
        client.post("/v1/predict", json=canary, headers=bearer(world.acme_key)).status_code == 200
    )
    client.get("/v1/model", headers=bearer(world.acme_key + "tampered"))
    admin = token_headers(client, session, settings, role="admin")
    answer = client.get("/metrics", headers=admin, environ_base=FAR)
    assert answer.status_code == 200
    exposition = answer.get_data(as_text=True)
    token = admin["Authorization"].removeprefix("Bearer ")
    # The feature value is looked for as it would be written (its decimals included): its bare
    # digits can occur by chance inside a latency sum such as 0.0723779299987654.
    feature_value = ("987654.125", "9.87654125e+05")
    for secret in (world.acme_key, world.acme_key_id, token, token.split(".")[1], *feature_value):
        assert secret not in exposition


@pytest.mark.slow
def test_a_two_worker_server_reports_the_sum_over_its_workers(
    settings: Settings, redis_server: RedisServer
) -> None:
    server, base = start_serving(
        settings, "--workers", "2", env={"PREDGATE_REDIS_URL": redis_server.url}
    )
    sent = 0
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            deadline = time.monotonic() + 10
            # Fresh connections in parallel, until the audit log shows both workers answered.
            while _processes_serving(settings.database_url) < 2:
                assert time.monotonic() < deadline, "one worker answered everything"
                statuses = list(pool.map(_get_openapi, [base] * 8))
                assert statuses == [200] * 8
                sent += 8
        scrapes = [parse(requests.get(f"{base}/metrics", timeout=5).text) for _ in range(4)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    openapi = {"route": "/openapi.json", "method": "GET", "status": "200", "tenant": ""}
    for samples in scrapes:  # whichever worker answered the scrape
        assert value(samples, "predgate_requests_total", **openapi) == sent
        assert value(samples, "predgate_worker_processes") == 2
        assert value(samples, "predgate_request_duration_seconds_count", route="/openapi.json") == (
            sent
        )


def _get_openapi(base: str) -> int:
    with requests.Session() as fresh:
        return fresh.get(f"{base}/openapi.json", timeout=10).status_code


def _processes_serving(database_url: str) -> int:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text(
                    "SELECT count(DISTINCT process_id) FROM audit_records "
                    "WHERE route = '/openapi.json'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count)


def test_a_refused_or_credentialed_scrape_is_always_recorded(
    make_app: Callable[..., Flask], settings: Settings, session: Session, world: World
) -> None:
    # Probes are recorded only when configured, but not a scrape from elsewhere that was refused,
    # nor one made with a credential: both are someone reaching for the gateway's internals.
    app = make_app(replace(settings, metrics_allow=("10.0.0.0/8",), audit_health_checks=False))
    guarded = app.test_client()
    refused = guarded.get("/metrics", environ_base=FAR)
    admin = token_headers(guarded, session, settings, role="admin")
    allowed = guarded.get("/metrics", headers=admin, environ_base=FAR)
    routine = guarded.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    get_runtime(app).audit_sink.close()  # probe records are queued: flush them
    assert record_for(session, refused)["http_status"] == 403
    assert record_for(session, allowed)["http_status"] == 200
    assert routine.status_code == 200
    session.rollback()
    found = query_records(session, AuditFilter(request_id=routine.headers["X-Request-ID"]))
    assert found == []
