"""Train a model on a CSV file, report test-split metrics, and register the result."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy.orm import Session

from models.artifacts import ArtifactStore
from models.errors import TrainingError
from models.registry import ModelVersion, check_model_name, register_model

Algorithm = Literal["random-forest", "linear", "logistic"]
ALGORITHMS: tuple[str, ...] = ("random-forest", "linear", "logistic")
# A numeric target with at most this many distinct whole values holds class labels; any
# other numeric target is a quantity to regress.
MAX_NUMERIC_CLASSES = 20
MIN_ROWS = 10
GRID_FOLDS = 3
# Modest forests: the demo trains in seconds on two cores, and the ONNX file stays small.
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 60, "max_depth": 12, "min_samples_leaf": 2}
GRIDS: dict[str, dict[str, list[Any]]] = {
    "random-forest": {"n_estimators": [50, 100], "max_depth": [None, 8]},
    "logistic": {"logisticregression__C": [0.1, 1.0, 10.0]},
}


@dataclass(frozen=True)
class TrainingResult:
    """The registered version, its test-split metrics, and how many rows were used."""

    model_version: ModelVersion
    metrics: dict[str, Any]
    rows_used: int
    rows_dropped: int


def train_model(
    session: Session,
    store: ArtifactStore,
    *,
    data_path: Path,
    target: str,
    name: str,
    algorithm: Algorithm = "random-forest",
    test_size: float = 0.2,
    grid: bool = False,
    registered_by: str,
    progress: Callable[[str], None] = lambda _: None,
    random_state: int = 0,
) -> TrainingResult:
    """Fit on a CSV file's numeric columns, measure on a held-out split, register the model.

    Every column other than the target is a feature and must be numeric: a text column is
    refused by name rather than dropped, since dropping it would silently change what the
    model means. Rows with a missing or infinite value in any used column are dropped.
    """
    check_model_name(name)  # before minutes of training, not after
    if algorithm not in ALGORITHMS:
        raise TrainingError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    if not 0.0 < test_size < 1.0:
        raise TrainingError("test_size must lie strictly between 0 and 1")
    progress(f"reading {data_path}")
    frame = _read_csv(Path(data_path))
    features, x, y, dropped = _prepare(frame, target, Path(data_path).name)
    progress(f"{len(x)} complete rows, {dropped} dropped for missing values")
    task = _task(algorithm, y, target)
    y = _labels(y) if task == "classification" else y.astype(np.float64)
    x_train, x_test, y_train, y_test = _split(x, y, task, test_size, random_state, progress)
    estimator = _estimator(algorithm, task, random_state)
    progress(f"fitting {type(estimator).__name__} ({task}) on {len(x_train)} rows")
    fitted, best_params = _fit(estimator, algorithm, task, grid, x_train, y_train, progress)
    metrics = _metrics(task, y_test, fitted.predict(x_test))
    metrics.update(
        algorithm=algorithm, train_rows=len(x_train), test_rows=len(x_test), features=len(features)
    )
    if best_params is not None:
        metrics["best_params"] = best_params
    progress("test metrics: " + ", ".join(f"{k} {_shown(metrics[k])}" for k in _SCORES[task]))
    with tempfile.TemporaryDirectory(prefix="predgate-train-") as folder:
        artifact = Path(folder) / "model.joblib"
        joblib.dump(fitted, artifact)
        progress(f"registering as {name}")
        version = register_model(
            session,
            store,
            name=name,
            artifact_path=artifact,
            registered_by=registered_by,
            metrics=metrics,
        )
    progress(f"registered {version.ref} (runtime {version.runtime})")
    return TrainingResult(
        model_version=version,
        metrics=dict(version.metrics or {}),
        rows_used=len(x),
        rows_dropped=dropped,
    )


def make_house_price_data(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Generated house prices: area (m²), rooms, bathrooms, location code 0-4, price."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(30.0, 300.0, rows).round(1)
    rooms = np.clip(np.rint(area / 40.0 + rng.normal(0.0, 0.8, rows)), 1, 8).astype(np.int64)
    bathrooms = np.clip(np.rint(rooms / 2.5 + rng.normal(0.0, 0.5, rows)), 1, 4).astype(np.int64)
    # 0 = rural ... 4 = city centre, each with its own price per square metre.
    location = rng.integers(0, 5, rows)
    per_m2 = np.array([1800.0, 2500.0, 3200.0, 4200.0, 5500.0])[location]
    base = area * per_m2 + 6000.0 * rooms + 9000.0 * bathrooms
    price = np.round(base * rng.normal(1.0, 0.08, rows), -2).clip(min=10_000.0)
    return pd.DataFrame(
        {"area": area, "rooms": rooms, "bathrooms": bathrooms, "location": location, "price": price}
    )


def make_iris_data() -> pd.DataFrame:
    """The bundled iris data with short column names and a string `species` target."""
    bunch = load_iris(as_frame=True)
    frame = bunch.frame.rename(
        columns={
            "sepal length (cm)": "sepal_length",
            "sepal width (cm)": "sepal_width",
            "petal length (cm)": "petal_length",
            "petal width (cm)": "petal_width",
        }
    )
    names = np.asarray(bunch.target_names, dtype=object)
    frame["species"] = names[frame.pop("target").to_numpy()]
    return frame


_SCORES = {"classification": ("accuracy", "f1_macro"), "regression": ("r2", "mae")}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        # These messages name the file, line and field counts, never cell values.
        raise TrainingError(f"cannot read {path.name}: {exc}") from None
    except Exception as exc:
        raise TrainingError(f"cannot read {path.name} as CSV ({type(exc).__name__})") from None


def _prepare(
    frame: pd.DataFrame, target: str, file_name: str
) -> tuple[list[str], pd.DataFrame, pd.Series, int]:
    if target not in frame.columns:
        raise TrainingError(f"{file_name} has no column {target!r}")
    features = [str(c) for c in frame.columns if c != target]
    if not features:
        raise TrainingError(f"{file_name} has no feature column besides {target!r}")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        shown = ", ".join(repr(c) for c in text[:10])
        raise TrainingError(
            f"feature columns must be numeric; {shown} {'is' if len(text) == 1 else 'are'} not: "
            "drop or encode them before training"
        )
    used = frame[[*features, target]].replace([np.inf, -np.inf], np.nan).dropna()
    if len(used) < MIN_ROWS:
        raise TrainingError(f"{len(used)} complete rows; at least {MIN_ROWS} are needed")
    return features, used[features].astype(np.float64), used[target], len(frame) - len(used)


def _task(algorithm: str, y: pd.Series, target: str) -> str:
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    # Numbers are class labels when they are few and whole (a float column of whole numbers
    # is how pandas reads integers with gaps); text and booleans are always labels.
    labels = not numeric or (
        y.nunique() <= MAX_NUMERIC_CLASSES
        and bool(np.all(np.mod(y.to_numpy(dtype=np.float64), 1.0) == 0.0))
    )
    if algorithm == "linear":
        if not numeric:
            raise TrainingError(f"linear regression needs a numeric target; {target!r} is not")
        return "regression"
    if algorithm == "logistic":
        if not labels:
            raise TrainingError(
                f"logistic regression needs class labels; {target!r} holds fractional numbers "
                f"or more than {MAX_NUMERIC_CLASSES} distinct numbers"
            )
        return "classification"
    return "classification" if labels else "regression"


def _labels(y: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(y) or pd.api.types.is_numeric_dtype(y):
        # Whole numbers (or booleans) become int64 labels, which ONNX can return as they are.
        labels = y.astype(np.int64)
    else:
        labels = y.astype(str).astype(object)
    if labels.nunique() < 2:
        raise TrainingError("classification needs at least two distinct target values")
    return labels


def _split(
    x: pd.DataFrame,
    y: pd.Series,
    task: str,
    test_size: float,
    random_state: int,
    progress: Callable[[str], None],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    n_test = math.ceil(test_size * len(x))
    if n_test < 2 or len(x) - n_test < 2:
        raise TrainingError(f"test_size {test_size} leaves too few rows for training or testing")
    progress(f"splitting {len(x)} rows: {n_test} held out for testing")
    if task == "classification":
        try:
            parts = train_test_split(
                x, y, test_size=test_size, random_state=random_state, stratify=y
            )
            return parts[0], parts[1], parts[2], parts[3]
        except ValueError:
            progress("some classes are too rare to stratify; splitting at random")
    parts = train_test_split(x, y, test_size=test_size, random_state=random_state)
    return parts[0], parts[1], parts[2], parts[3]


def _estimator(algorithm: str, task: str, random_state: int) -> Any:
    if algorithm == "linear":
        return LinearRegression()
    if algorithm == "logistic":
        return make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=1000, random_state=random_state)
        )
    forest = RandomForestClassifier if task == "classification" else RandomForestRegressor
    return forest(**FOREST_PARAMS, random_state=random_state, n_jobs=1)


def _fit(
    estimator: Any,
    algorithm: str,
    task: str,
    grid: bool,
    x: pd.DataFrame,
    y: pd.Series,
    progress: Callable[[str], None],
) -> tuple[Any, dict[str, Any] | None]:
    search_grid = GRIDS.get(algorithm) if grid else None
    if grid and search_grid is None:
        progress(f"no grid search for {algorithm}: it has no hyper-parameters worth searching")
    if search_grid is not None and task == "classification" and y.value_counts().min() < GRID_FOLDS:
        progress(f"no grid search: a class has fewer than {GRID_FOLDS} training rows")
        search_grid = None
    try:
        if search_grid is None:
            return estimator.fit(x, y), None
        progress(f"grid search over {search_grid} with {GRID_FOLDS}-fold cross-validation")
        search = GridSearchCV(estimator, search_grid, cv=GRID_FOLDS, n_jobs=1)
        search.fit(x, y)
    except Exception as exc:
        # The type only: scikit-learn's messages can quote data values.
        raise TrainingError(f"fitting failed ({type(exc).__name__})") from None
    best = {key: _plain(value) for key, value in search.best_params_.items()}
    progress(f"best parameters: {best}")
    return search.best_estimator_, best


def _metrics(task: str, expected: pd.Series, predicted: Any) -> dict[str, Any]:
    if task == "classification":
        scores = {
            "accuracy": accuracy_score(expected, predicted),
            "f1_macro": f1_score(expected, predicted, average="macro", zero_division=0),
        }
    else:
        scores = {
            "r2": r2_score(expected, predicted),
            "mae": mean_absolute_error(expected, predicted),
        }
    # JSON has no NaN: an undefined score is recorded as null.
    return {k: float(v) if np.isfinite(v) else None for k, v in scores.items()}


def _shown(score: float | None) -> str:
    return "undefined" if score is None else f"{score:.4g}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
