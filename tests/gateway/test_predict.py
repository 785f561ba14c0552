"""POST /v1/predict and GET /v1/model through the Flask test client."""

from __future__ import annotations

import joblib
import pandas as pd
import pytest
from flask.testing import FlaskClient

from tests.conftest import HOUSE, IRIS, World, bearer


def test_tutorial_request_predicts_house_price(
    client: FlaskClient, world: World, model_files
) -> None:
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.status_code == 200
    body = response.get_json()
    expected = joblib.load(model_files["house-price"]).predict(pd.DataFrame([HOUSE]))[0]
    assert body["predictions"] == pytest.approx([expected], rel=1e-4)
    assert body["model"] == {"name": "house-price", "version": 1}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "probabilities" not in body


def test_x_api_key_header_is_accepted(client: FlaskClient, world: World) -> None:
    response = client.post("/v1/predict", json=HOUSE, headers={"X-API-Key": world.acme_key})
    assert response.status_code == 200


def test_batch_with_probabilities(client: FlaskClient, world: World) -> None:
    other = {**IRIS, "petal_length": 5.5, "petal_width": 2.1}
    response = client.post(
        "/v1/predict",
        json={"instances": [IRIS, other], "return_probabilities": True},
        headers=bearer(world.globex_key),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["predictions"] == ["setosa", "virginica"]
    assert body["model"] == {"name": "iris", "version": 1}
    assert len(body["probabilities"]) == 2
    assert set(body["probabilities"][0]) == {"setosa", "versicolor", "virginica"}
    assert sum(body["probabilities"][0].values()) == pytest.approx(1.0, abs=1e-4)
    assert max(body["probabilities"][0], key=body["probabilities"][0].get) == "setosa"


def test_probabilities_refused_for_regressor(client: FlaskClient, world: World) -> None:
    response = client.post(
        "/v1/predict", json={**HOUSE, "return_probabilities": True}, headers=bearer(world.acme_key)
    )
    assert response.status_code == 422
    assert response.get_json()["code"] == "probabilities_unsupported"


def test_model_endpoint_describes_assigned_model(client: FlaskClient, world: World) -> None:
    response = client.get("/v1/model", headers=bearer(world.globex_key))
    assert response.status_code == 200
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    body = response.get_json()
    assert body == {
        "name": "iris",
        "version": 1,
        "task": "classification",
        "features": names,
        "feature_schema": [{"name": n, "type": "number", "nullable": False} for n in names],
        "request_schema": {
            "type": "object",
            "properties": {n: {"type": "number"} for n in names},
            "required": names,
            "additionalProperties": False,
        },
        "classes": ["setosa", "versicolor", "virginica"],
        "runtime": "onnx",
    }


def test_each_feature_is_checked_against_its_type_without_echoing_values(
    client: FlaskClient, world: World
) -> None:
    canary = "canary-7f3a"
    cases = [
        ({**HOUSE, "area": canary}, "area", "not_a_number"),
        ({**HOUSE, "area": None}, "area", "null_not_allowed"),
        ({**HOUSE, "area": True}, "area", "not_a_number"),
        ({**HOUSE, "pool": True}, "pool", "unknown_feature"),
        ({k: v for k, v in HOUSE.items() if k != "rooms"}, "rooms", "missing_feature"),
    ]
    for body, field, reason in cases:
        response = client.post("/v1/predict", json=body, headers=bearer(world.acme_key))
        assert response.status_code == 422, body
        problem = response.get_json()
        assert problem["errors"] == [{"field": field, "reason": reason}]
        assert canary not in response.get_data(as_text=True)


def test_new_version_is_picked_up_without_restart(
    client: FlaskClient, world: World, session, artifacts, model_files
) -> None:
    from auth.tenants import LATEST, assign_model
    from tests.fixtures_models import register_house_price_v2

    # Only a tenant on NAME@latest is served a new version without an assignment.
    assign_model(session, "acme", model_name="house-price", version=LATEST)
    session.commit()
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code == 200
    register_house_price_v2(session, artifacts, model_files)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.get_json()["model"] == {"name": "house-price", "version": 2}


def test_pinned_version_stays_pinned(
    client: FlaskClient, world: World, session, artifacts, model_files
) -> None:
    from auth.tenants import assign_model
    from models.registry import register_model

    assign_model(session, "acme", model_name="house-price", version=1)
    register_model(
        session,
        artifacts,
        name="house-price",
        artifact_path=model_files["house-price-retrained"],
        registered_by="test",
    )
    session.commit()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.get_json()["model"] == {"name": "house-price", "version": 1}


def test_tenant_without_model_gets_clear_error(client: FlaskClient, session, settings) -> None:
    from auth.api_keys import issue_key
    from auth.tenants import create_tenant

    create_tenant(session, name="initech")
    key = issue_key(session, settings.secret_key, tenant_name="initech", created_by="test")
    session.commit()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(key.api_key))
    assert response.status_code == 409
    assert response.get_json()["code"] == "no_model_assigned"


def test_the_same_file_is_not_registered_twice(
    world: World, session, artifacts, model_files
) -> None:
    from models.errors import ArtifactAlreadyRegistered
    from models.registry import list_models, register_model

    before = [m.ref for m in list_models(session)]
    with pytest.raises(ArtifactAlreadyRegistered, match=r"already registered as house-price@1"):
        register_model(
            session,
            artifacts,
            name="house-price",
            artifact_path=model_files["house-price"],
            registered_by="test",
        )
    assert [m.ref for m in list_models(session)] == before


def test_partner_openapi_describes_the_tenants_own_model(client: FlaskClient, world: World) -> None:
    house = client.get("/v1/openapi.json", headers=bearer(world.acme_key))
    iris = client.get("/v1/openapi.json", headers=bearer(world.globex_key))
    assert house.status_code == iris.status_code == 200
    assert client.get("/v1/openapi.json").status_code == 401
    document = house.get_json()
    assert document["x-model"] == {"name": "house-price", "version": 1}
    assert all(path.startswith("/v1/") for path in document["paths"])
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    single, batch = body["schema"]["oneOf"]
    assert single["required"] == ["area", "rooms", "bathrooms", "location"]
    assert set(single["properties"]) == {
        "area",
        "rooms",
        "bathrooms",
        "location",
        "return_probabilities",
    }
    assert batch["properties"]["instances"]["items"]["required"] == single["required"]
    # Each tenant sees its own model's features, and nothing of another's.
    other = iris.get_json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert other["application/json"]["schema"]["oneOf"][0]["required"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert "sepal_length" not in house.get_data(as_text=True)
