"""predgate's float64 ONNX converters (models.onnx_converters) against scikit-learn itself, on
inputs that are not exact in float32, the corners included: single-leaf trees, every boosting
link, numeric categorical features, missing values, string and integer labels."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from models.compilation import open_session
from models.onnx_converters import TARGET_OPSET, finish_model, register_converters

RNG = np.random.default_rng(11)
X = RNG.normal(0.0, 3.0, size=(300, 4))
X[:, 3] = RNG.integers(0, 6, 300)  # a numeric category code
Y = X[:, 0] * 2.0 + np.sin(X[:, 1]) + (X[:, 3] == 2) * 3.0
LABELS = np.where(np.median(Y) < Y, "yes", "no")
THREE = np.digitize(Y, np.quantile(Y, [0.33, 0.66]))  # 0, 1, 2
TEST = RNG.normal(0.0, 3.0, size=(200, 4))
TEST[:, 3] = RNG.integers(0, 8, 200)  # codes 6 and 7 were never seen


def _onnx(estimator: Any, rows: np.ndarray) -> list[np.ndarray]:
    register_converters()
    classifier = hasattr(estimator, "classes_")
    options = {id(estimator): {"zipmap": False}} if classifier else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = to_onnx(
            estimator,
            initial_types=[("input", DoubleTensorType([None, rows.shape[1]]))],
            options=options,
            target_opset=TARGET_OPSET,
        )
    session = open_session(finish_model(model).SerializeToString())
    return [np.asarray(out) for out in session.run(None, {"input": rows})]


REGRESSORS = {
    "single-leaf tree": lambda: DecisionTreeRegressor(max_depth=3).fit(X, np.full(300, 7.25)),
    "extra trees": lambda: ExtraTreesRegressor(n_estimators=5, random_state=0).fit(X, Y),
    "boosting, huber": lambda: GradientBoostingRegressor(
        loss="huber", n_estimators=15, random_state=0
    ).fit(X, Y),
    "hist, poisson (log link)": lambda: HistGradientBoostingRegressor(
        loss="poisson", max_iter=15
    ).fit(X, np.exp(Y / 10.0)),
    "hist, numeric categories": lambda: HistGradientBoostingRegressor(
        max_iter=15, categorical_features=[3]
    ).fit(X, Y),
}


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressors_agree_with_scikit_learn_in_float64(name: str) -> None:
    estimator = REGRESSORS[name]()
    (got,) = _onnx(estimator, TEST)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.reshape(-1), estimator.predict(TEST), rtol=1e-12, atol=1e-12)


CLASSIFIERS = {
    "tree, string labels": lambda: DecisionTreeClassifier(max_depth=5).fit(X, LABELS),
    "forest, three classes": lambda: RandomForestClassifier(n_estimators=5, random_state=0).fit(
        X, THREE
    ),
    "boosting, exponential": lambda: GradientBoostingClassifier(
        loss="exponential", n_estimators=10, random_state=0
    ).fit(X, LABELS),
    "boosting, three classes": lambda: GradientBoostingClassifier(
        n_estimators=10, random_state=0
    ).fit(X, THREE),
    "hist, categories, three classes": lambda: HistGradientBoostingClassifier(
        max_iter=10, categorical_features=[3]
    ).fit(X, THREE),
}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_agree_with_scikit_learn_in_float64(name: str) -> None:
    estimator = CLASSIFIERS[name]()
    labels, probabilities = _onnx(estimator, TEST)
    assert labels.tolist() == estimator.predict(TEST).tolist()
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, estimator.predict_proba(TEST), rtol=0, atol=1e-12)


def test_missing_values_take_the_learnt_direction_or_the_imputed_value() -> None:
    with_gaps = X.copy()
    with_gaps[::4, 0] = np.nan
    test = TEST.copy()
    test[::3, 0] = np.nan
    for estimator in (
        HistGradientBoostingRegressor(max_iter=15).fit(with_gaps, Y),
        make_pipeline(SimpleImputer(strategy="median"), ExtraTreesRegressor(n_estimators=3)).fit(
            with_gaps, Y
        ),
    ):
        (got,) = _onnx(estimator, test)
        np.testing.assert_allclose(got.reshape(-1), estimator.predict(test), rtol=1e-12)


def test_a_float32_input_is_not_converted_by_these_converters() -> None:
    from skl2onnx.common.data_types import FloatTensorType

    register_converters()
    estimator = DecisionTreeRegressor(max_depth=2).fit(X, Y)
    with pytest.raises(NotImplementedError, match="float64"):
        to_onnx(
            estimator,
            initial_types=[("input", FloatTensorType([None, 4]))],
            target_opset=TARGET_OPSET,
        )


def _lightgbm(kind: str) -> Any:
    from lightgbm import LGBMClassifier, LGBMRegressor

    with_gaps = X.copy()
    with_gaps[::5, 1] = np.nan  # LightGBM learns where a missing value goes
    params = {"n_estimators": 25, "n_jobs": 1, "verbose": -1}
    if kind == "regression":
        return LGBMRegressor(**params).fit(with_gaps, Y)
    if kind == "poisson":
        return LGBMRegressor(objective="poisson", **params).fit(X, np.exp(Y / 10.0))
    if kind == "binary":
        return LGBMClassifier(**params).fit(with_gaps, LABELS)
    return LGBMClassifier(**params).fit(X, THREE)


@pytest.mark.parametrize("kind", ["regression", "poisson", "binary", "three classes"])
def test_lightgbm_agrees_with_itself_in_float64(kind: str) -> None:
    estimator = _lightgbm(kind)
    test = TEST.copy()
    test[::4, 1] = np.nan
    test[::7, 2] = np.nan  # a feature that never had a gap: LightGBM reads it as 0.0
    outputs = _onnx(estimator, test)
    if kind in ("regression", "poisson"):
        np.testing.assert_allclose(outputs[0].reshape(-1), estimator.predict(test), rtol=1e-12)
    else:
        assert outputs[0].tolist() == estimator.predict(test).tolist()
        np.testing.assert_allclose(outputs[1], estimator.predict_proba(test), atol=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid"])
def test_svr_agrees_with_libsvm_in_float64(kernel: str) -> None:
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    estimator = make_pipeline(StandardScaler(), SVR(kernel=kernel, C=3.0)).fit(X, Y)
    (got,) = _onnx(estimator, TEST)
    expected = estimator.predict(TEST)
    scale = np.maximum(np.abs(expected), np.mean(np.abs(expected)))
    assert np.max(np.abs(got.reshape(-1) - expected) / scale) <= 1e-12
