"""Registering operator artifacts: validation, feature schema, versions, ONNX compilation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.svm import LinearSVC
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models import compilation, errors
from models.artifacts import ArtifactStore
from models.compilation import PROBABILITY_ABS_TOL
from models.registry import ModelVersion, get_model, list_models, parse_model_ref, register_model
from tests.models.conftest import HOUSE_FEATURES, IRIS_FEATURES
from tests.models.unconvertible import WeightedSumRegressor

Register = Callable[..., ModelVersion]


def test_register_regressor_with_feature_names(
    register: Register, store: ArtifactStore, forest_regressor: RandomForestRegressor
) -> None:
    meta = register(forest_regressor, name="house-price", metrics={"r2": 0.9})
    assert (meta.name, meta.version, meta.ref) == ("house-price", 1, "house-price@1")
    assert meta.task == "regression"
    assert meta.features == HOUSE_FEATURES
    assert meta.classes is None
    assert meta.runtime == "onnx"
    assert meta.onnx_sha256 is not None
    assert meta.onnx_note is not None
    assert "parity ok" in meta.onnx_note
    assert meta.parity_max_abs_error is not None
    assert meta.metrics == {"r2": 0.9}
    assert meta.registered_by == "tester"
    assert meta.registered_at.tzinfo is not None
    assert store.path_for(meta.artifact_sha256, "joblib").stat().st_size == meta.artifact_size
    assert store.path_for(meta.onnx_sha256, "onnx").is_file()


def test_register_classifier_with_string_classes(register: Register, iris_pipeline: Any) -> None:
    meta = register(iris_pipeline, name="iris")
    assert meta.task == "classification"
    assert meta.features == IRIS_FEATURES
    assert meta.classes == ("setosa", "versicolor", "virginica")
    assert meta.runtime == "onnx"
    assert meta.parity_max_abs_error is not None
    assert meta.parity_max_abs_error <= PROBABILITY_ABS_TOL


def test_register_array_model_needs_features(
    register: Register, int_forest_classifier: Any
) -> None:
    with pytest.raises(errors.InvalidArtifact, match="--features"):
        register(int_forest_classifier)
    meta = register(int_forest_classifier, features=list(IRIS_FEATURES))
    assert meta.features == IRIS_FEATURES
    assert meta.classes == (0, 1, 2)
    assert all(type(c) is int for c in meta.classes)
    assert meta.runtime == "onnx"


def test_classes_survive_the_database_as_plain_values(
    register: Register, session: Session, engine: Engine, int_forest_classifier: Any
) -> None:
    register(int_forest_classifier, name="codes", features=list(IRIS_FEATURES))
    session.commit()
    with Session(engine) as other:
        meta = get_model(other, "codes")
    assert meta.classes == (0, 1, 2)
    assert all(type(c) is int for c in meta.classes)
    assert meta.features == IRIS_FEATURES


def test_features_count_must_match(register: Register, int_forest_classifier: Any) -> None:
    with pytest.raises(errors.InvalidArtifact, match="fitted on 4 features"):
        register(int_forest_classifier, features=["a", "b", "c"])


def test_features_must_match_fitted_names(register: Register, forest_regressor: Any) -> None:
    with pytest.raises(errors.InvalidArtifact, match="do not match"):
        register(forest_regressor, features=["rooms", "area", "bathrooms", "location"])
    assert register(forest_regressor, features=list(HOUSE_FEATURES)).features == HOUSE_FEATURES


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        (["a", "a", "b", "c"], "unique"),
        (["a", "", "b", "c"], "non-empty"),
        (["a", " ", "b", "c"], "non-empty"),
    ],
)
def test_feature_names_are_checked(
    register: Register, int_forest_classifier: Any, features: list[str], reason: str
) -> None:
    with pytest.raises(errors.InvalidArtifact, match=reason):
        register(int_forest_classifier, features=features)


def test_unfitted_estimator_is_refused(register: Register, store: ArtifactStore) -> None:
    with pytest.raises(errors.InvalidArtifact, match="not fitted"):
        register(RandomForestRegressor())
    assert not store.root.exists()


@pytest.mark.parametrize("obj", [{"weights": [1, 2]}, np.arange(4), "a string"])
def test_non_estimator_is_refused(register: Register, obj: object) -> None:
    with pytest.raises(errors.InvalidArtifact, match="not a scikit-learn estimator"):
        register(obj)


def test_unloadable_file_is_refused(session: Session, store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "garbage.joblib"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(errors.InvalidArtifact, match="not a loadable joblib file"):
        register_model(session, store, name="m", artifact_path=path, registered_by="t")
    with pytest.raises(errors.InvalidArtifact, match="cannot read"):
        register_model(session, store, name="m", artifact_path=tmp_path / "nope", registered_by="t")
    assert list_models(session) == []


def test_multi_output_regressor_is_refused(register: Register) -> None:
    x = np.random.default_rng(0).normal(size=(30, 2))
    model = LinearRegression().fit(x, np.column_stack([x.sum(axis=1), x[:, 0]]))
    with pytest.raises(errors.InvalidArtifact, match="one output"):
        register(model, features=["a", "b"])


def test_versions_increment_and_stay_immutable(
    register: Register, session: Session, forest_regressor: Any, iris_pipeline: Any
) -> None:
    first = register(forest_regressor, name="shared")
    second = register(iris_pipeline, name="shared")
    register(forest_regressor, name="another")
    assert (first.version, second.version) == (1, 2)
    assert get_model(session, "shared") == second
    assert get_model(session, "shared", 1) == first
    assert [m.ref for m in list_models(session)] == ["another@1", "shared@1", "shared@2"]


@pytest.mark.parametrize(("name", "version"), [("ghost", None), ("shared", 2), ("shared", 0)])
def test_unknown_model_or_version(
    register: Register, session: Session, forest_regressor: Any, name: str, version: int | None
) -> None:
    register(forest_regressor, name="shared")
    with pytest.raises(errors.ModelNotFound) as caught:
        get_model(session, name, version)
    assert (caught.value.code, caught.value.status) == ("model_not_found", 404)


def test_unconvertible_estimator_is_served_with_sklearn(
    register: Register, store: ArtifactStore, house: pd.DataFrame
) -> None:
    model = WeightedSumRegressor().fit(house[list(HOUSE_FEATURES)], house["price"])
    meta = register(model)
    assert meta.runtime == "sklearn"
    assert meta.onnx_sha256 is None
    assert meta.parity_max_abs_error is None
    assert meta.onnx_note is not None
    assert "skl2onnx cannot convert WeightedSumRegressor" in meta.onnx_note
    assert list(store.root.rglob("*.onnx")) == []


def test_classifier_without_predict_proba_is_served_with_sklearn(
    register: Register, iris: pd.DataFrame
) -> None:
    model = LinearSVC().fit(iris[list(IRIS_FEATURES)], iris["species"])
    meta = register(model)
    assert meta.runtime == "sklearn"
    assert meta.onnx_note is not None
    assert "predict_proba" in meta.onnx_note


def test_metrics_must_be_json(register: Register, forest_regressor: Any) -> None:
    with pytest.raises(errors.InvalidArtifact, match="metrics"):
        register(forest_regressor, metrics={"r2": float("nan")})


def test_invalid_name_is_refused(register: Register, forest_regressor: Any) -> None:
    with pytest.raises(errors.InvalidModelRef):
        register(forest_regressor, name="House Price")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("iris", ("iris", None)), ("house-price@3", ("house-price", 3)), ("a.b_c@12", ("a.b_c", 12))],
)
def test_parse_model_ref(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize(
    "text", ["", "Iris", "iris@", "iris@0", "iris@-1", "iris@v2", "@1", "a@1@2", "-x", "x" * 101]
)
def test_parse_model_ref_refuses(text: str) -> None:
    with pytest.raises(errors.InvalidModelRef) as caught:
        parse_model_ref(text)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.code, caught.value.status) == ("invalid_model_ref", 422)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (errors.ModelNotFound, "model_not_found", 404),
        (errors.InvalidArtifact, "invalid_artifact", 422),
        (errors.ArtifactIntegrityError, "model_unavailable", 503),
        (errors.TrainingError, "training_failed", 422),
        (errors.ProbabilitiesUnsupported, "probabilities_unsupported", 422),
    ],
)
def test_error_codes(error: type[errors.ModelError], code: str, status: int) -> None:
    assert (error.code, error.status) == (code, status)
    assert issubclass(error, errors.ModelError)


def test_failed_parity_falls_back_to_sklearn(
    register: Register, monkeypatch: pytest.MonkeyPatch, forest_regressor: Any
) -> None:
    # An ONNX graph that computed in float32 anywhere: its answers, rounded to float32, must
    # fail the parity tolerance (that is what the tolerance is for).
    run_in_double = compilation.run_session

    def run_in_float32(session: Any, rows: Any) -> Any:
        first, second = run_in_double(session, rows)
        return first.astype(np.float32), second

    monkeypatch.setattr(compilation, "run_session", run_in_float32)
    meta = register(forest_regressor)
    assert meta.runtime == "sklearn"
    assert meta.onnx_sha256 is None
    assert meta.parity_max_abs_error is not None
    assert meta.parity_max_abs_error > 0
    assert meta.onnx_note is not None
    assert "parity failed" in meta.onnx_note
