"""Loading verified artifacts, predicting with both runtimes, and the bounded model cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

import models.inference
from models.artifacts import ArtifactStore
from models.errors import ArtifactIntegrityError, InvalidInput, ProbabilitiesUnsupported
from models.inference import LoadedModel, ModelCache, Prediction, load_model
from models.registry import ModelVersion
from tests.models.conftest import HOUSE_FEATURES, IRIS_FEATURES
from tests.models.unconvertible import NearestMeanClassifier, WeightedSumRegressor

Register = Callable[..., ModelVersion]


def _no_unpickling(*_args: Any, **_kwargs: Any) -> Any:
    pytest.fail("joblib.load must not be called")


def test_onnx_regressor_matches_sklearn(
    register: Register, store: ArtifactStore, forest_regressor: Any, house_rows: np.ndarray
) -> None:
    meta = register(forest_regressor)
    result = load_model(store, meta).predict(house_rows, probabilities=False)
    expected = forest_regressor.predict(pd.DataFrame(house_rows, columns=list(HOUSE_FEATURES)))
    assert all(type(v) is float for v in result.predictions)
    np.testing.assert_allclose(result.predictions, expected, rtol=1e-4, atol=1e-3)
    assert result.probabilities is None


def test_onnx_classifier_matches_sklearn(
    register: Register, store: ArtifactStore, iris_pipeline: Any, iris_rows: np.ndarray
) -> None:
    meta = register(iris_pipeline)
    result = load_model(store, meta).predict(iris_rows, probabilities=True)
    frame = pd.DataFrame(iris_rows, columns=list(IRIS_FEATURES))
    assert result.predictions == list(iris_pipeline.predict(frame))
    assert all(type(v) is str for v in result.predictions)
    assert result.probabilities is not None
    expected = iris_pipeline.predict_proba(frame)
    for row, probabilities in zip(expected, result.probabilities, strict=True):
        assert list(probabilities) == ["setosa", "versicolor", "virginica"]
        np.testing.assert_allclose(list(probabilities.values()), row, atol=1e-5)


def test_integer_classes_come_back_as_registered(
    register: Register, store: ArtifactStore, int_forest_classifier: Any, iris_rows: np.ndarray
) -> None:
    meta = register(int_forest_classifier, features=list(IRIS_FEATURES))
    result = load_model(store, meta).predict(iris_rows, probabilities=True)
    assert result.predictions == int_forest_classifier.predict(iris_rows).tolist()
    assert all(type(v) is int for v in result.predictions)
    assert result.probabilities is not None
    assert list(result.probabilities[0]) == ["0", "1", "2"]


def test_float_classes_come_back_as_floats(
    register: Register, store: ArtifactStore, iris: pd.DataFrame, iris_rows: np.ndarray
) -> None:
    # skl2onnx returns whole-number float labels as int64; the registry's floats are restored.
    target = (iris["species"] == "setosa").astype(float)
    model = LogisticRegression().fit(iris[list(IRIS_FEATURES)], target)
    meta = register(model)
    assert meta.runtime == "onnx"
    assert meta.classes == (0.0, 1.0)
    result = load_model(store, meta).predict(iris_rows, probabilities=True)
    assert all(type(v) is float for v in result.predictions)
    assert result.probabilities is not None
    assert list(result.probabilities[0]) == ["0.0", "1.0"]


def test_sklearn_runtime_predicts_exactly(
    register: Register,
    store: ArtifactStore,
    house: pd.DataFrame,
    house_rows: np.ndarray,
) -> None:
    model = WeightedSumRegressor().fit(house[list(HOUSE_FEATURES)], house["price"])
    meta = register(model)
    assert meta.runtime == "sklearn"
    loaded = load_model(store, meta)
    expected = model.predict(pd.DataFrame(house_rows, columns=list(HOUSE_FEATURES)))
    assert loaded.predict(house_rows, probabilities=False).predictions == expected.tolist()
    with pytest.raises(ProbabilitiesUnsupported):
        loaded.predict(house_rows, probabilities=True)


def test_sklearn_runtime_classifier_probabilities(
    register: Register, store: ArtifactStore, iris: pd.DataFrame, iris_rows: np.ndarray
) -> None:
    # Fitted on a bare array: predicting must not pass a DataFrame (scikit-learn would warn).
    model = NearestMeanClassifier().fit(iris[list(IRIS_FEATURES)].to_numpy(), iris["species"])
    meta = register(model, features=list(IRIS_FEATURES))
    assert meta.runtime == "sklearn"
    result = load_model(store, meta).predict(iris_rows, probabilities=True)
    assert result.predictions == model.predict(iris_rows).tolist()
    assert result.probabilities is not None
    assert list(result.probabilities[0]) == ["setosa", "versicolor", "virginica"]
    np.testing.assert_allclose(
        [list(p.values()) for p in result.probabilities], model.predict_proba(iris_rows)
    )


def test_probabilities_refused_for_regressors_and_scoreless_classifiers(
    register: Register, store: ArtifactStore, forest_regressor: Any, iris: pd.DataFrame
) -> None:
    regressor = load_model(store, register(forest_regressor, name="reg"))
    with pytest.raises(ProbabilitiesUnsupported) as caught:
        regressor.predict(np.ones((1, 4)), probabilities=True)
    assert (caught.value.code, caught.value.status) == ("probabilities_unsupported", 422)
    svc = LinearSVC().fit(iris[list(IRIS_FEATURES)], iris["species"])
    classifier = load_model(store, register(svc, name="svc"))
    assert classifier.predict(np.ones((2, 4)), probabilities=False).probabilities is None
    with pytest.raises(ProbabilitiesUnsupported):
        classifier.predict(np.ones((2, 4)), probabilities=True)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (np.ones((2, 3)), "shape"),
        (np.ones(4), "shape"),
    ],
)
def test_bad_rows_are_refused_without_values(
    register: Register, store: ArtifactStore, forest_regressor: Any, rows: np.ndarray, reason: str
) -> None:
    loaded = load_model(store, register(forest_regressor))
    with pytest.raises(InvalidInput, match=reason) as caught:
        loaded.predict(rows, probabilities=False)
    assert "1e+300" not in str(caught.value)


def test_empty_batch_predicts_nothing(
    register: Register, store: ArtifactStore, iris_pipeline: Any
) -> None:
    loaded = load_model(store, register(iris_pipeline))
    assert loaded.predict(np.empty((0, 4)), probabilities=True) == Prediction([], [])


def test_tampered_onnx_is_refused_and_not_cached(
    register: Register,
    store: ArtifactStore,
    forest_regressor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meta = register(forest_regressor)
    assert meta.onnx_sha256 is not None
    path = store.path_for(meta.onnx_sha256, "onnx")
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    monkeypatch.setattr(joblib, "load", _no_unpickling)
    with pytest.raises(ArtifactIntegrityError, match="altered"):
        load_model(store, meta)
    cache = ModelCache(store, maxsize=2)
    with pytest.raises(ArtifactIntegrityError):
        cache.get(meta)
    assert len(cache) == 0
    path.write_bytes(original)
    assert cache.get(meta).meta == meta
    assert len(cache) == 1


def test_tampered_joblib_is_never_unpickled(
    register: Register, store: ArtifactStore, house: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = register(WeightedSumRegressor().fit(house[list(HOUSE_FEATURES)], house["price"]))
    path = store.path_for(meta.artifact_sha256, "joblib")
    path.write_bytes(path.read_bytes() + b"\x00")
    monkeypatch.setattr(joblib, "load", _no_unpickling)
    with pytest.raises(ArtifactIntegrityError, match=meta.artifact_sha256):
        load_model(store, meta)
    path.unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        load_model(store, meta)


def test_onnx_runtime_never_unpickles(
    register: Register, store: ArtifactStore, iris_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = register(iris_pipeline)
    monkeypatch.setattr(joblib, "load", _no_unpickling)
    # Even with the joblib file gone, the ONNX version still loads.
    store.path_for(meta.artifact_sha256, "joblib").unlink()
    assert load_model(store, meta).predict(np.ones((1, 4)), probabilities=False).predictions


def test_cache_reuses_and_evicts_least_recently_used(
    register: Register, store: ArtifactStore, forest_regressor: Any
) -> None:
    a, b, c = (register(forest_regressor, name=name) for name in ("a", "b", "c"))
    cache = ModelCache(store, maxsize=2)
    first_a = cache.get(a)
    assert cache.get(a) is first_a
    first_b = cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)  # evicts b
    assert len(cache) == 2
    assert cache.get(a) is first_a
    assert cache.get(b) is not first_b


def test_cache_loads_a_key_once_under_concurrency(
    register: Register, store: ArtifactStore, iris_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = register(iris_pipeline)
    calls = []
    real_load = models.inference.load_model

    def slow_load(store_: ArtifactStore, meta_: ModelVersion) -> LoadedModel:
        calls.append(meta_.ref)
        time.sleep(0.05)
        return real_load(store_, meta_)

    monkeypatch.setattr(models.inference, "load_model", slow_load)
    cache = ModelCache(store, maxsize=2)
    start = threading.Barrier(8)

    def get() -> LoadedModel:
        start.wait()
        return cache.get(meta)

    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(lambda _: get(), range(8)))
    assert calls == [meta.ref]
    assert all(item is loaded[0] for item in loaded)


def test_concurrent_predictions_agree(
    register: Register, store: ArtifactStore, iris_pipeline: Any, iris_rows: np.ndarray
) -> None:
    loaded = load_model(store, register(iris_pipeline))
    expected = loaded.predict(iris_rows, probabilities=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: loaded.predict(iris_rows, probabilities=True), range(16)))
    assert all(result == expected for result in results)


def test_cache_size_must_be_positive(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        ModelCache(store, maxsize=0)
