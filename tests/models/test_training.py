"""Training from CSV files: task choice, metrics, registration, refusals; generated data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from models.artifacts import ArtifactStore
from models.errors import InvalidModelRef, TrainingError
from models.inference import load_model
from models.registry import get_model
from models.training import make_house_price_data, make_iris_data, train_model
from tests.models.conftest import HOUSE_FEATURES, IRIS_FEATURES


@pytest.fixture
def house_csv(tmp_path: Path) -> Path:
    path = tmp_path / "house.csv"
    make_house_price_data(rows=200, seed=3).to_csv(path, index=False)
    return path


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    path = tmp_path / "iris.csv"
    make_iris_data().to_csv(path, index=False)
    return path


def test_random_forest_regression(session: Session, store: ArtifactStore, house_csv: Path) -> None:
    messages: list[str] = []
    result = train_model(
        session,
        store,
        data_path=house_csv,
        target="price",
        name="house-price",
        registered_by="tester",
        progress=messages.append,
    )
    meta = result.model_version
    assert (meta.ref, meta.task, meta.runtime) == ("house-price@1", "regression", "onnx")
    assert meta.features == HOUSE_FEATURES
    assert result.rows_used == 200
    assert result.rows_dropped == 0
    assert set(result.metrics) >= {"r2", "mae", "train_rows", "test_rows", "algorithm"}
    assert result.metrics["r2"] > 0.5
    assert result.metrics["test_rows"] == 40
    assert get_model(session, "house-price").metrics == result.metrics
    assert any(m.startswith("reading") for m in messages)
    assert any(m.startswith("registered house-price@1") for m in messages)


def test_random_forest_classification_with_string_labels(
    session: Session, store: ArtifactStore, iris_csv: Path
) -> None:
    result = train_model(
        session, store, data_path=iris_csv, target="species", name="iris", registered_by="t"
    )
    meta = result.model_version
    assert meta.task == "classification"
    assert meta.classes == ("setosa", "versicolor", "virginica")
    assert meta.features == IRIS_FEATURES
    assert result.metrics["accuracy"] > 0.8
    assert "f1_macro" in result.metrics


def test_logistic_with_grid_search(session: Session, store: ArtifactStore, iris_csv: Path) -> None:
    result = train_model(
        session,
        store,
        data_path=iris_csv,
        target="species",
        name="iris",
        algorithm="logistic",
        grid=True,
        registered_by="t",
    )
    assert result.model_version.runtime == "onnx"
    assert result.metrics["best_params"]["C"] in {0.1, 1.0, 10.0}
    assert result.metrics["accuracy"] > 0.8


def test_linear_regression_has_no_grid(
    session: Session, store: ArtifactStore, house_csv: Path
) -> None:
    messages: list[str] = []
    result = train_model(
        session,
        store,
        data_path=house_csv,
        target="price",
        name="lin",
        algorithm="linear",
        grid=True,
        registered_by="t",
        progress=messages.append,
    )
    assert result.model_version.task == "regression"
    assert "best_params" not in result.metrics
    assert any("no grid search for linear" in m for m in messages)


def test_forest_grid_search(session: Session, store: ArtifactStore, house_csv: Path) -> None:
    result = train_model(
        session,
        store,
        data_path=house_csv,
        target="price",
        name="grid",
        grid=True,
        registered_by="t",
    )
    assert set(result.metrics["best_params"]) == {"n_estimators", "max_depth"}


def test_integer_target_with_few_values_is_classified(
    session: Session, store: ArtifactStore, tmp_path: Path
) -> None:
    frame = make_house_price_data(rows=120, seed=4)
    frame["location"] = frame["location"].astype(float)
    frame.loc[3, "location"] = np.nan  # pandas reads whole numbers with gaps as floats
    path = tmp_path / "rooms.csv"
    frame.to_csv(path, index=False)
    result = train_model(
        session, store, data_path=path, target="location", name="loc", registered_by="t"
    )
    assert result.model_version.task == "classification"
    assert result.model_version.classes == (0, 1, 2, 3, 4)
    assert result.rows_dropped == 1
    assert result.rows_used == 119


def test_gaps_are_imputed_and_rows_without_target_dropped(
    session: Session, store: ArtifactStore, tmp_path: Path
) -> None:
    frame = make_house_price_data(rows=100, seed=5)
    frame.loc[[1, 2], "area"] = np.nan
    frame.loc[7, "price"] = np.inf
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    result = train_model(
        session,
        store,
        data_path=path,
        target="price",
        name="gaps",
        algorithm="linear",
        registered_by="t",
    )
    assert (result.rows_used, result.rows_dropped) == (99, 1)
    specs = {spec.name: spec for spec in result.model_version.specs}
    assert specs["area"].nullable
    assert not specs["rooms"].nullable
    assert (specs["rooms"].type, specs["area"].type) == ("integer", "number")


def test_trained_model_predicts_the_tutorial_request(
    session: Session, store: ArtifactStore, tmp_path: Path
) -> None:
    path = tmp_path / "house.csv"
    make_house_price_data(rows=600).to_csv(path, index=False)
    meta = train_model(
        session, store, data_path=path, target="price", name="house-price", registered_by="t"
    ).model_version
    row = np.array([[120.0, 2.0, 1.0, 1.0]])
    (price,) = load_model(store, meta).predict(row, probabilities=False).predictions
    assert isinstance(price, float)
    assert 150_000 < price < 600_000


def _csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def test_missing_target_column(session: Session, store: ArtifactStore, house_csv: Path) -> None:
    with pytest.raises(TrainingError, match="no column 'cost'") as caught:
        train_model(session, store, data_path=house_csv, target="cost", name="x", registered_by="t")
    assert (caught.value.code, caught.value.status) == ("training_failed", 422)


def test_text_columns_are_encoded_inside_the_model(
    session: Session, store: ArtifactStore, tmp_path: Path
) -> None:
    frame = make_house_price_data(rows=300, seed=7)
    rng = np.random.default_rng(7)
    frame["city"] = rng.choice(["Lyon", "Paris", "Nice"], len(frame))
    frame.loc[frame.index[::10], "city"] = np.nan
    frame["pool"] = rng.choice(["true", "false"], len(frame))
    messages: list[str] = []
    result = train_model(
        session,
        store,
        data_path=_csv(tmp_path, frame),
        target="price",
        name="cities",
        registered_by="t",
        progress=messages.append,
    )
    meta = result.model_version
    specs = {spec.name: spec for spec in meta.specs}
    assert specs["city"].type == "string"
    assert specs["city"].nullable
    assert set(specs["city"].categories or ()) == {"Lyon", "Paris", "Nice"}
    assert specs["city"].unknown_categories
    assert specs["pool"].type == "boolean"
    assert not specs["pool"].nullable
    assert meta.runtime == "onnx", meta.onnx_note
    assert any("1 text (one-hot encoded)" in m for m in messages)
    assert any("ONNX parity ok" in m for m in messages)


@pytest.mark.parametrize(
    ("algorithm", "target", "reason"),
    [("logistic", "price", "class labels"), ("linear", "species", "numeric target")],
)
def test_algorithm_and_target_must_agree(
    session: Session,
    store: ArtifactStore,
    tmp_path: Path,
    algorithm: str,
    target: str,
    reason: str,
) -> None:
    frame = make_house_price_data(rows=60).assign(
        species=lambda f: np.where(f.area > 100, "a", "b")
    )
    frame = frame.drop(columns=["price"] if target == "species" else ["species"])
    with pytest.raises(TrainingError, match=reason):
        train_model(
            session,
            store,
            data_path=_csv(tmp_path, frame),
            target=target,
            name="x",
            algorithm=algorithm,
            registered_by="t",  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"test_size": 0.0}, "test_size"),
        ({"test_size": 1.5}, "test_size"),
        ({"algorithm": "svm"}, "algorithm"),
    ],
)
def test_bad_arguments(
    session: Session, store: ArtifactStore, house_csv: Path, kwargs: dict, reason: str
) -> None:
    with pytest.raises(TrainingError, match=reason):
        train_model(
            session,
            store,
            data_path=house_csv,
            target="price",
            name="x",
            registered_by="t",
            **kwargs,
        )


def test_too_few_rows_and_unreadable_files(
    session: Session, store: ArtifactStore, tmp_path: Path
) -> None:
    small = _csv(tmp_path, make_house_price_data(rows=5))
    with pytest.raises(TrainingError, match="at least"):
        train_model(session, store, data_path=small, target="price", name="x", registered_by="t")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TrainingError, match=r"cannot read empty\.csv"):
        train_model(session, store, data_path=empty, target="price", name="x", registered_by="t")


def test_house_price_data_is_plausible() -> None:
    frame = make_house_price_data(rows=2000, seed=0)
    assert list(frame.columns) == ["area", "rooms", "bathrooms", "location", "price"]
    assert len(frame) == 2000
    assert frame["area"].between(30, 300).all()
    assert frame["rooms"].between(1, 8).all()
    assert frame["bathrooms"].between(1, 4).all()
    assert set(frame["location"]) == {0, 1, 2, 3, 4}
    assert (frame["price"] > 0).all()
    assert frame["price"].corr(frame["area"]) > 0.6
    # Better locations cost more per square metre.
    per_m2 = (frame["price"] / frame["area"]).groupby(frame["location"]).median()
    assert per_m2.is_monotonic_increasing
    pd.testing.assert_frame_equal(frame, make_house_price_data(rows=2000, seed=0))


def test_iris_data_has_string_species() -> None:
    frame = make_iris_data()
    assert list(frame.columns) == [*IRIS_FEATURES, "species"]
    assert len(frame) == 150
    assert sorted(set(frame["species"])) == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("name", ["Bad Name", "UPPER", "-leading", "a" * 101, "x@2"])
def test_a_bad_name_is_refused_before_anything_is_read_or_trained(
    session: Session, store: ArtifactStore, tmp_path: Path, name: str
) -> None:
    steps: list[str] = []
    missing = tmp_path / "never-read.csv"  # reading it would fail with another message
    with pytest.raises(InvalidModelRef, match="a model name is"):
        train_model(
            session,
            store,
            data_path=missing,
            target="price",
            name=name,
            registered_by="t",
            progress=steps.append,
        )
    assert steps == []  # not even "reading ..."
