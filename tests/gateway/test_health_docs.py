"""Health, readiness and the generated OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from tests.conftest import World


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_checks_database_and_models(client: FlaskClient, world: World) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks == {
        "database": "ok",
        "audit": "ok",
        "model:house-price@1": "ok",
        "model:iris@1": "ok",
    }


def test_readyz_reports_tampered_model(client: FlaskClient, world: World, artifacts) -> None:
    onnx_path: Path = artifacts.path_for(world.iris.onnx_sha256, "onnx")
    onnx_path.write_bytes(onnx_path.read_bytes() + b"tampered")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["model:iris@1"] == "model_unavailable"


def test_readyz_refuses_unmigrated_database(tmp_path: Path, make_app) -> None:
    import secrets

    from config import Settings

    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        secret_key=secrets.token_hex(32).encode(),
    )
    response = make_app(settings).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] in ("not_migrated", "unreachable")
    # Liveness does not touch the database at all.
    assert make_app(settings).test_client().get("/healthz").status_code == 200


def test_openapi_document_is_generated_from_the_models(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    predict = document["paths"]["/v1/predict"]["post"]
    assert "requestBody" in predict
    assert {"200", "401", "415", "422"} <= set(predict["responses"])
    schemas = document["components"]["schemas"]
    assert any(name.startswith("PredictRequest") for name in schemas)
    assert "/v1/model" in document["paths"]


def test_docs_page_renders(client: FlaskClient) -> None:
    # The page itself: tests/gateway/test_docs_page.py renders it in a browser.
    response = client.get("/docs")
    assert response.status_code == 200
    assert "docs/assets/docs.js" in response.get_data(as_text=True)
