"""Fixtures for the model registry: an in-memory database, a temporary artifact store, and
small fitted estimators dumped to joblib files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from db.base import Base
from models.artifacts import ArtifactStore
from models.registry import ModelVersion, register_model
from models.training import make_house_price_data, make_iris_data

HOUSE_FEATURES = ("area", "rooms", "bathrooms", "location")
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An in-memory SQLite database with every table (the app itself uses migrations)."""
    db_engine = create_engine("sqlite://")
    Base.metadata.create_all(db_engine)
    yield db_engine
    db_engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as db_session:
        yield db_session


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def dump(tmp_path: Path) -> Callable[[Any], Path]:
    """Write an object to a fresh joblib file and return its path."""
    counter = iter(range(1_000_000))

    def write(obj: Any) -> Path:
        path = tmp_path / "uploads" / f"model-{next(counter)}.joblib"
        path.parent.mkdir(exist_ok=True)
        joblib.dump(obj, path)
        return path

    return write


@pytest.fixture
def register(
    session: Session, store: ArtifactStore, dump: Callable[[Any], Path]
) -> Callable[..., ModelVersion]:
    """Register a fitted estimator under a name (dumping it first), as the CLI would."""

    def run(estimator: Any, name: str = "m", **kwargs: Any) -> ModelVersion:
        return register_model(
            session,
            store,
            name=name,
            artifact_path=dump(estimator),
            registered_by="tester",
            **kwargs,
        )

    return run


@pytest.fixture(scope="session")
def house() -> pd.DataFrame:
    return make_house_price_data(rows=300, seed=1)


@pytest.fixture(scope="session")
def iris() -> pd.DataFrame:
    return make_iris_data()


@pytest.fixture(scope="session")
def forest_regressor(house: pd.DataFrame) -> RandomForestRegressor:
    model = RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0, n_jobs=1)
    return model.fit(house[list(HOUSE_FEATURES)], house["price"])


@pytest.fixture(scope="session")
def iris_pipeline(iris: pd.DataFrame) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(iris[list(IRIS_FEATURES)], iris["species"])


@pytest.fixture(scope="session")
def int_forest_classifier(iris: pd.DataFrame) -> RandomForestClassifier:
    """Fitted on a bare array with integer classes 0, 1, 2: no feature_names_in_."""
    codes = iris["species"].map({"setosa": 0, "versicolor": 1, "virginica": 2}).to_numpy()
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0, n_jobs=1)
    return model.fit(iris[list(IRIS_FEATURES)].to_numpy(), codes)


@pytest.fixture(scope="session")
def iris_rows(iris: pd.DataFrame) -> np.ndarray:
    return iris[list(IRIS_FEATURES)].to_numpy(dtype=np.float64)[::7]


@pytest.fixture(scope="session")
def house_rows(house: pd.DataFrame) -> np.ndarray:
    return house[list(HOUSE_FEATURES)].to_numpy(dtype=np.float64)[:40]
