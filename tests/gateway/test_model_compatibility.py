"""Which estimators predgate serves, and how exactly: each is fitted on numeric data, registered
as an operator would (`register_model`), assigned to a tenant, asked over HTTP, and its answers
compared with scikit-learn's own on the same rows.

An estimator served by ONNX must agree within the registration's parity tolerance (identical
class labels; regression within 1e-3 absolute + 1e-4 relative); one served by scikit-learn (the
fallback, with the reason registration gave) must agree exactly. The printed table is the one in
the README ("Which estimators run on ONNX").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from flask.testing import FlaskClient
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sqlalchemy.orm import Session

from auth.api_keys import issue_key
from auth.tenants import assign_model, create_tenant
from config import Settings
from models.artifacts import ArtifactStore
from models.compilation import PARITY_ABS_TOL, PARITY_REL_TOL
from models.registry import register_model
from models.training import make_house_price_data, make_iris_data
from tests.conftest import bearer

ROWS = 20  # asked over HTTP in one batch
REGRESSORS: dict[str, Callable[[], Any]] = {
    "LinearRegression": LinearRegression,
    "Ridge (behind StandardScaler)": lambda: make_pipeline(StandardScaler(), Ridge()),
    "Lasso": lambda: Lasso(alpha=0.1),
    "ElasticNet": lambda: ElasticNet(alpha=0.1),
    "SVR": lambda: make_pipeline(StandardScaler(), SVR()),
    "KNeighborsRegressor": KNeighborsRegressor,
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
    "RandomForestRegressor": lambda: RandomForestRegressor(
        n_estimators=10, max_depth=6, random_state=0
    ),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(
        n_estimators=10, max_depth=6, random_state=0
    ),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(n_estimators=20, random_state=0),
    "HistGradientBoostingRegressor": lambda: HistGradientBoostingRegressor(
        max_iter=20, random_state=0
    ),
    "MLPRegressor": lambda: make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    ),
}
CLASSIFIERS: dict[str, Callable[[], Any]] = {
    "LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    "SVC": lambda: make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)),
    "KNeighborsClassifier": KNeighborsClassifier,
    "DecisionTreeClassifier": lambda: DecisionTreeClassifier(max_depth=4, random_state=0),
    "RandomForestClassifier": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
    "ExtraTreesClassifier": lambda: ExtraTreesClassifier(n_estimators=10, random_state=0),
    "GradientBoostingClassifier": lambda: GradientBoostingClassifier(
        n_estimators=10, random_state=0
    ),
    "HistGradientBoostingClassifier": lambda: HistGradientBoostingClassifier(
        max_iter=10, random_state=0
    ),
    "MLPClassifier": lambda: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0)
    ),
}
_TABLE: list[str] = []


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    house = make_house_price_data(rows=300, seed=3)
    iris = make_iris_data()
    return {
        "regression": (house.drop(columns=["price"]), house["price"]),
        "classification": (iris.drop(columns=["species"]), iris["species"]),
    }


@pytest.mark.parametrize(
    ("task", "label"),
    [("regression", name) for name in REGRESSORS]
    + [("classification", name) for name in CLASSIFIERS],
)
def test_estimator_registers_serves_and_agrees_with_scikit_learn(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    artifacts: ArtifactStore,
    tmp_path: Path,
    data: dict[str, Any],
    task: str,
    label: str,
) -> None:
    x, y = data[task]
    estimator = (REGRESSORS if task == "regression" else CLASSIFIERS)[label]()
    with warnings.catch_warnings():
        # Convergence warnings of these small fits are expected (the suite makes warnings errors).
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
    path = tmp_path / "model.joblib"
    joblib.dump(estimator, path)
    name = label.split(" ")[0].lower()
    version = register_model(
        session, artifacts, name=name, artifact_path=path, registered_by="test"
    )
    create_tenant(session, name="compat")
    assign_model(session, "compat", model_name=name, version=None)
    key = issue_key(session, settings.secret_key, tenant_name="compat", created_by="test")
    session.commit()

    rows = x.iloc[:: max(1, len(x) // ROWS)].head(ROWS)
    body: dict[str, Any] = {"instances": rows.to_dict(orient="records")}
    if task == "classification":
        body["return_probabilities"] = True
    answer = client.post("/v1/predict", json=body, headers=bearer(key.api_key))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    served = answer.get_json()
    expected = estimator.predict(rows)
    if task == "regression":
        got = np.asarray(served["predictions"], dtype=np.float64)
        difference = np.abs(got - expected)
        relative = float(np.max(difference / np.maximum(np.abs(expected), 1e-12)))
        if version.runtime == "onnx":
            assert np.all(difference <= PARITY_ABS_TOL + PARITY_REL_TOL * np.abs(expected))
        else:
            assert relative == 0.0
    else:
        assert served["predictions"] == list(expected)
        probabilities = np.asarray(
            [[row[c] for c in estimator.classes_] for row in served["probabilities"]]
        )
        reference = estimator.predict_proba(rows)
        relative = float(np.max(np.abs(probabilities - reference)))
        assert np.all((probabilities >= 0) & (probabilities <= 1 + 1e-6))
        if version.runtime == "onnx":
            assert relative <= PARITY_ABS_TOL
        else:
            assert relative == 0.0
    reason = "" if version.runtime == "onnx" else (version.onnx_note or "")
    line = f"| {label} | {task} | {version.runtime} | {relative:.2e} | {reason[:120]} |"
    _TABLE.append(line)
    print(f"\n{line}")
