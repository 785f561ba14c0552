"""A tampered artifact is never loaded: the model answers 503 and the log says why."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
from flask.testing import FlaskClient

from auth.tenants import assign_model
from models.registry import register_model
from models.training import make_house_price_data
from tests.conftest import HOUSE, World, bearer
from tests.gateway.test_errors import assert_problem
from tests.models.unconvertible import WeightedSumRegressor


def build_unconvertible_regressor() -> WeightedSumRegressor:
    """A fitted regressor over the house features that skl2onnx cannot convert."""
    data = make_house_price_data(rows=200, seed=3)
    return WeightedSumRegressor().fit(data.drop(columns=["price"]), data["price"])


def test_tampered_onnx_answers_503_and_logs_why(
    client: FlaskClient, world: World, artifacts, caplog
) -> None:
    path: Path = artifacts.path_for(world.house_price.onnx_sha256, "onnx")
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    caplog.set_level(logging.ERROR)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert_problem(response, 503, "model_unavailable")
    assert "sha" in caplog.text.lower()
    # globex's model is untouched and still served.
    assert client.get("/v1/model", headers=bearer(world.globex_key)).status_code == 200


def test_tampered_joblib_is_never_unpickled(
    client: FlaskClient, world: World, session, artifacts, tmp_path: Path, monkeypatch
) -> None:
    estimator_path = tmp_path / "custom.joblib"
    joblib.dump(build_unconvertible_regressor(), estimator_path)
    meta = register_model(
        session, artifacts, name="custom", artifact_path=estimator_path, registered_by="test"
    )
    assert meta.runtime == "sklearn"
    assign_model(session, "acme", model_name="custom", version=None)
    session.commit()
    path = artifacts.path_for(meta.artifact_sha256, "joblib")
    path.write_bytes(path.read_bytes() + b"evil")

    def forbidden_load(*_args, **_kwargs):
        raise AssertionError("a joblib whose SHA-256 mismatches was unpickled")

    monkeypatch.setattr(joblib, "load", forbidden_load)
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert_problem(response, 503, "model_unavailable")


def test_unconvertible_model_is_served_with_sklearn(
    client: FlaskClient, world: World, session, artifacts, tmp_path: Path
) -> None:
    estimator = build_unconvertible_regressor()
    estimator_path = tmp_path / "custom.joblib"
    joblib.dump(estimator, estimator_path)
    register_model(
        session, artifacts, name="custom", artifact_path=estimator_path, registered_by="test"
    )
    assign_model(session, "acme", model_name="custom", version=None)
    session.commit()
    response = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert response.status_code == 200
    assert response.get_json()["model"]["name"] == "custom"
