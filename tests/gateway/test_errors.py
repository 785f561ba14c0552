"""Every bad input: RFC 9457 problem+json, a stable code, no stack trace, no echoed value."""

from __future__ import annotations

import io
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from audit.digests import body_digest, tenant_digest_key
from config import Settings
from tests.conftest import HOUSE, World, bearer
from tests.gateway.admin_support import record_for

# Problem answers do not depend on the database (test_audit_http records refusals on both).
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

CANARY_VALUE = 987654.321987
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert str(CANARY_VALUE) not in text
    return body


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"area": 120, "rooms": 2, "bathrooms": 1}, "validation_error", "location"),
        ({**HOUSE, "pool": CANARY_VALUE}, "validation_error", "pool"),
        ({**HOUSE, "area": "big"}, "validation_error", "area"),
        ({**HOUSE, "area": True}, "validation_error", "area"),
        ({**HOUSE, "area": None}, "validation_error", "area"),
        ({**HOUSE, "area": [CANARY_VALUE]}, "validation_error", "area"),
        ({"instances": []}, "validation_error", None),
        ({}, "validation_error", None),
        ({"instances": {"area": CANARY_VALUE}}, "validation_error", "instances"),
        ({"instances": [HOUSE, {**HOUSE, "rooms": "x"}]}, "validation_error", "instances[1].rooms"),
        ({"instances": [HOUSE, {"area": CANARY_VALUE}]}, "validation_error", "instances[1].rooms"),
        ({"instances": [HOUSE] * 51}, "batch_too_large", None),
        ({**HOUSE, "return_probabilities": "yes"}, "validation_error", "return_probabilities"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: FlaskClient, world: World, body, code, field
) -> None:
    response = client.post("/v1/predict", json=body, headers=bearer(world.acme_key))
    problem = assert_problem(response, 422, code)
    if field is not None:
        assert field in problem["detail"]
        assert problem["errors"][0]["field"] == field


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(client: FlaskClient, world: World, literal: str) -> None:
    raw = f'{{"area": {literal}, "rooms": 2, "bathrooms": 1, "location": 1}}'
    response = client.post(
        "/v1/predict", data=raw, content_type="application/json", headers=bearer(world.acme_key)
    )
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["field"] == "area"


def test_top_level_array_is_422(client: FlaskClient, world: World) -> None:
    response = client.post("/v1/predict", json=[HOUSE], headers=bearer(world.acme_key))
    assert_problem(response, 422, "validation_error")


def test_invalid_json_is_400(client: FlaskClient, world: World) -> None:
    response = client.post(
        "/v1/predict",
        data=f'{{"area": {CANARY_VALUE},',
        content_type="application/json",
        headers=bearer(world.acme_key),
    )
    assert_problem(response, 400, "invalid_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, world: World, content_type) -> None:
    response = client.post(
        "/v1/predict",
        data=json.dumps(HOUSE),
        content_type=content_type,
        headers=bearer(world.acme_key),
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_oversized_body_is_413_before_authentication(client: FlaskClient) -> None:
    huge = json.dumps({"instances": [HOUSE] * 5000})
    response = client.post("/v1/predict", data=huge, content_type="application/json")
    assert_problem(response, 413, "payload_too_large")


def test_unknown_route_is_404(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.get("/v1/predict")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unexpected_error_is_500_without_details(
    client: FlaskClient, world: World, monkeypatch
) -> None:
    import gateway.api.predictions as predictions

    def explode(*_args, **_kwargs):
        raise RuntimeError(f"secret internals {CANARY_VALUE}")

    monkeypatch.setattr(predictions, "predict_records", explode)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    body = assert_problem(response, 500, "internal_error")
    assert "internals" not in json.dumps(body)


def test_every_response_has_a_request_id(client: FlaskClient, world: World) -> None:
    ids = set()
    for response in (
        client.get("/healthz"),
        client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)),
        client.post("/v1/predict", json=HOUSE),
        client.get("/nope"),
    ):
        ids.add(response.headers["X-Request-ID"])
    assert len(ids) == 4


@pytest.mark.parametrize("extra", [1, 200_000])
def test_chunked_body_over_the_limit_is_413_although_its_start_is_valid(
    client: FlaskClient, world: World, settings: Settings, session: Session, extra: int
) -> None:
    # Valid JSON padded to exactly the limit, then more: cut at the limit it would be answered.
    body = json.dumps({"instances": [HOUSE]}).encode()
    body += b" " * (settings.max_body_bytes - len(body) + extra)
    response = client.post(
        "/v1/predict",
        input_stream=io.BytesIO(body),
        headers={**bearer(world.acme_key), "Transfer-Encoding": "chunked"},
        content_type="application/json",
    )
    assert_problem(response, 413, "payload_too_large")
    assert record_for(session, response)["http_status"] == 413


def test_chunked_body_within_the_limit_is_answered_and_digested_whole(
    client: FlaskClient, world: World, settings: Settings, session: Session
) -> None:
    body = json.dumps({"instances": [HOUSE]}).encode()
    body += b" " * (settings.max_body_bytes - len(body))
    response = client.post(
        "/v1/predict",
        input_stream=io.BytesIO(body),
        headers={**bearer(world.acme_key), "Transfer-Encoding": "chunked"},
        content_type="application/json",
    )
    assert response.status_code == 200
    record = record_for(session, response)
    key = tenant_digest_key(settings.secret_key, record["tenant_id"])
    assert record["request_digest"] == body_digest(key, body)
