"""Which estimators predgate serves, and how exactly: each is fitted (on numbers, or on business
data with a text column, a yes/no label and gaps), registered as an operator would
(`register_model`), assigned to a tenant, asked over HTTP with raw values, and its answers
compared with scikit-learn's own on the same rows.

An estimator served by ONNX must agree within the registration's parity tolerance, which a
float32 cast would fail (identical class labels, probabilities within 1e-9; regression within
1e-9 relative); one served by scikit-learn (the fallback, with the reason registration gave)
must agree exactly. Probabilities lie in [0, 1] and sum to 1. The printed table is the one in
the README ("Which estimators run on ONNX").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer
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
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sqlalchemy.orm import Session
from xgboost import XGBClassifier, XGBRegressor

from auth.api_keys import issue_key
from auth.tenants import assign_model, create_tenant
from config import Settings
from models.artifacts import ArtifactStore
from models.compilation import PROBABILITY_ABS_TOL, REGRESSION_REL_TOL
from models.registry import register_model
from models.training import make_house_price_data, make_iris_data
from tests.conftest import bearer

# What is compared is the model's arithmetic, which no database changes: one backend suffices.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
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
    "LGBMRegressor (LightGBM)": lambda: LGBMRegressor(n_estimators=30, n_jobs=1, verbose=-1),
    "XGBRegressor (XGBoost)": lambda: XGBRegressor(n_estimators=30, n_jobs=1),
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
    "LGBMClassifier (LightGBM)": lambda: LGBMClassifier(n_estimators=20, n_jobs=1, verbose=-1),
    "XGBClassifier (XGBoost, integer labels)": lambda: XGBClassifier(n_estimators=20, n_jobs=1),
    "MLPClassifier": lambda: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0)
    ),
}


def _business_columns() -> ColumnTransformer:
    # What partner-facing teams ship: a city one-hot encoded (unknown cities ignored), a
    # product tier ordinal-encoded, gaps imputed, numbers scaled.
    return ColumnTransformer(
        [
            ("area", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["area"]),
            ("rooms", MinMaxScaler(), ["rooms"]),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["city"],
            ),
            (
                "tier",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ["tier"],
            ),
        ]
    )


CATEGORICAL: dict[str, tuple[str, Callable[[], Any]]] = {
    "Ridge (ColumnTransformer: OneHot, Ordinal, imputers)": (
        "regression",
        lambda: make_pipeline(_business_columns(), Ridge()),
    ),
    "LogisticRegression, yes/no labels (same columns)": (
        "classification",
        lambda: make_pipeline(_business_columns(), LogisticRegression()),
    ),
    "RandomForestRegressor (same columns)": (
        "regression",
        lambda: make_pipeline(
            _business_columns(), RandomForestRegressor(n_estimators=10, random_state=0)
        ),
    ),
    "LGBMClassifier, yes/no labels (same columns)": (
        "classification",
        lambda: make_pipeline(
            _business_columns(), LGBMClassifier(n_estimators=20, n_jobs=1, verbose=-1)
        ),
    ),
    "HistGradientBoostingRegressor (categorical_features='from_dtype')": (
        "regression",
        lambda: HistGradientBoostingRegressor(
            max_iter=20, categorical_features="from_dtype", random_state=0
        ),
    ),
    "HistGradientBoostingClassifier, yes/no labels (categorical, from_dtype)": (
        "classification",
        lambda: HistGradientBoostingClassifier(
            max_iter=10, categorical_features="from_dtype", random_state=0
        ),
    ),
}
_TABLE: list[str] = []


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    house = make_house_price_data(rows=300, seed=3)
    iris = make_iris_data()
    business = _business_data()
    return {
        "regression": (house.drop(columns=["price"]), house["price"]),
        "classification": (iris.drop(columns=["species"]), iris["species"]),
        "business-regression": (business.drop(columns=["price", "sold"]), business["price"]),
        "business-classification": (business.drop(columns=["price", "sold"]), business["sold"]),
    }


def _business_data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame(
        {
            "area": rng.normal(100.0, 30.0, n),
            "rooms": rng.integers(1, 6, n).astype(np.float64),
            "city": pd.Series(rng.choice(["Lyon", "Paris", "Nice"], n), dtype=object),
            "tier": pd.Series(rng.choice(["basic", "plus", "premium"], n), dtype=object),
        }
    )
    city = frame["city"].map({"Paris": 900.0, "Lyon": 500.0, "Nice": 300.0})
    frame["price"] = frame["area"] * 30.0 + frame["rooms"] * 100.0 + city + rng.normal(0, 50, n)
    frame["sold"] = np.where(frame["price"] > frame["price"].median(), "yes", "no")
    frame.loc[frame.index[::9], "area"] = np.nan
    frame.loc[frame.index[::7], "city"] = np.nan
    return frame


def _fit_input(label: str, x: pd.DataFrame) -> pd.DataFrame:
    # HistGradientBoosting's "from_dtype" reads categorical columns off pandas dtypes.
    if "from_dtype" not in label:
        return x
    return x.astype({"city": "category", "tier": "category"})


@pytest.mark.parametrize(
    ("task", "label"),
    [("regression", name) for name in REGRESSORS]
    + [("classification", name) for name in CLASSIFIERS]
    + [(f"business-{task}", name) for name, (task, _) in CATEGORICAL.items()],
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
    business = task.startswith("business-")
    task = task.removeprefix("business-")
    if business:
        estimator = CATEGORICAL[label][1]()
    else:
        estimator = (REGRESSORS if task == "regression" else CLASSIFIERS)[label]()
    with warnings.catch_warnings():
        # Convergence warnings of these small fits are expected (the suite makes warnings errors).
        warnings.simplefilter("ignore")
        if "integer labels" in label:
            # XGBoost's classifiers take class indices only.
            y = y.astype("category").cat.codes.astype(np.int64)
        estimator.fit(_fit_input(label, x), y)
    path = tmp_path / "model.joblib"
    joblib.dump(estimator, path)
    name = label.split(" ")[0].lower().rstrip(",")
    version = register_model(
        session, artifacts, name=name, artifact_path=path, registered_by="test"
    )
    create_tenant(session, name="compat")
    assign_model(session, "compat", model_name=name, version=None)
    key = issue_key(session, settings.secret_key, tenant_name="compat", created_by="test")
    session.commit()

    rows = x.iloc[:: max(1, len(x) // ROWS)].head(ROWS).copy()
    if business:
        rows.iloc[1, rows.columns.get_loc("city")] = "Marseille"  # a city never seen
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]
    body: dict[str, Any] = {"instances": records}
    if task == "classification":
        body["return_probabilities"] = True
    answer = client.post("/v1/predict", json=body, headers=bearer(key.api_key))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    served = answer.get_json()
    reference_rows = _fit_input(label, rows) if "from_dtype" not in label else rows
    expected = estimator.predict(reference_rows)
    if task == "regression":
        got = np.asarray(served["predictions"], dtype=np.float64)
        difference = np.abs(got - expected)
        relative = float(np.max(difference / np.maximum(np.abs(expected), 1e-12)))
        if version.runtime == "onnx":
            assert relative <= REGRESSION_REL_TOL
        else:
            assert relative == 0.0
    else:
        assert served["predictions"] == list(expected)
        probabilities = np.asarray(
            [[row[str(c)] for c in estimator.classes_] for row in served["probabilities"]]
        )
        reference = estimator.predict_proba(reference_rows)
        relative = float(np.max(np.abs(probabilities - reference)))
        assert np.all((probabilities >= 0) & (probabilities <= 1))
        # XGBoost's own probabilities are float32 (served as it computes them).
        total = 1e-9 if version.runtime == "onnx" or "XGBoost" not in label else 1e-6
        assert np.all(np.abs(probabilities.sum(axis=1) - 1.0) <= total)
        if version.runtime == "onnx":
            assert relative <= PROBABILITY_ABS_TOL
        else:
            assert relative == 0.0
    reason = "" if version.runtime == "onnx" else (version.onnx_note or "")
    line = f"| {label} | {task} | {version.runtime} | {relative:.2e} | {reason[:120]} |"
    _TABLE.append(line)
    print(f"\n{line}")
