"""Tenant isolation: the tenant comes only from the credential, whatever the request says."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import HOUSE, IRIS, World, bearer

# Every way a request could try to name another tenant or model.
STEERING_ATTEMPTS = [
    ({"tenant": "globex"}, {}, ""),
    ({"model": "iris"}, {}, ""),
    ({}, {"X-Tenant": "globex", "X-Tenant-ID": "2", "X-Model": "iris"}, ""),
    ({}, {}, "?tenant=globex&model=iris"),
    ({"tenant_id": 2, "model_name": "iris", "model_version": 1}, {}, ""),
]


@pytest.mark.parametrize(("extra_body", "extra_headers", "query"), STEERING_ATTEMPTS)
def test_acme_key_never_reaches_iris(
    client: FlaskClient, world: World, extra_body, extra_headers, query
) -> None:
    response = client.post(
        f"/v1/predict{query}",
        json={**IRIS, **extra_body},
        headers={**bearer(world.acme_key), **extra_headers},
    )
    # iris features are unknown to house-price: the request is refused, never routed to iris.
    assert response.status_code == 422
    assert "iris" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("extra_headers", "query"), [(h, q) for b, h, q in STEERING_ATTEMPTS if not b]
)
def test_headers_and_query_cannot_steer(
    client: FlaskClient, world: World, extra_headers, query
) -> None:
    response = client.post(
        f"/v1/predict{query}", json=HOUSE, headers={**bearer(world.acme_key), **extra_headers}
    )
    assert response.status_code == 200
    assert response.get_json()["model"]["name"] == "house-price"


@pytest.mark.parametrize("extra_body", [b for b, _h, _q in STEERING_ATTEMPTS if b])
def test_body_fields_cannot_steer(client: FlaskClient, world: World, extra_body) -> None:
    for body in ({**HOUSE, **extra_body}, {"instances": [HOUSE], **extra_body}):
        response = client.post("/v1/predict", json=body, headers=bearer(world.acme_key))
        assert response.status_code == 422
        assert response.get_json()["code"] == "validation_error"


def test_each_tenant_sees_only_its_model(client: FlaskClient, world: World) -> None:
    assert (
        client.get("/v1/model", headers=bearer(world.acme_key)).get_json()["name"] == "house-price"
    )
    assert client.get("/v1/model", headers=bearer(world.globex_key)).get_json()["name"] == "iris"
    globex = client.post("/v1/predict", json=IRIS, headers=bearer(world.globex_key))
    assert globex.get_json()["model"]["name"] == "iris"
    cross = client.post("/v1/predict", json=HOUSE, headers=bearer(world.globex_key))
    assert cross.status_code == 422
