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
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
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
    "random-forest": {"model__n_estimators": [50, 100], "model__max_depth": [None, 8]},
    "logistic": {"model__C": [0.1, 1.0, 10.0]},
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
    """Fit on a CSV file, measure on a held-out split, register the model.

    Every column other than the target is a feature. The exported model is a Pipeline that
    takes the raw values partners send: text columns are one-hot encoded inside it (an unseen
    category encodes as none of the known ones), and a column with gaps in the data gets an
    imputer (median for numbers, most frequent for text), so the registered schema lets that
    feature be missing. Rows without a target are dropped.
    """
    check_model_name(name)  # before minutes of training, not after
    if algorithm not in ALGORITHMS:
        raise TrainingError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    if not 0.0 < test_size < 1.0:
        raise TrainingError("test_size must lie strictly between 0 and 1")
    progress(f"reading {data_path}")
    frame = _read_csv(Path(data_path))
    columns, x, y, dropped = _prepare(frame, target, Path(data_path).name)
    features = columns.features
    progress(f"{len(x)} rows with a target, {dropped} dropped without one; {columns.describe()}")
    task = _task(algorithm, y, target)
    y = _labels(y) if task == "classification" else y.astype(np.float64)
    x_train, x_test, y_train, y_test = _split(x, y, task, test_size, random_state, progress)
    estimator = _estimator(algorithm, task, random_state, columns)
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
            feature_types=columns.declared_types(),
            progress=progress,
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


@dataclass(frozen=True)
class Columns:
    """The feature columns of a training file, by how the pipeline treats them."""

    features: list[str]
    text: list[str]
    boolean: list[str]
    integer: list[str]
    with_gaps: list[str]

    def numeric(self) -> list[str]:
        return [c for c in self.features if c not in self.text]

    def declared_types(self) -> dict[str, str]:
        """Types the fitted pipeline cannot tell (it sees every number as a float)."""
        types = {c: "integer" for c in self.integer}
        types.update({c: "boolean" for c in self.boolean})
        return types

    def describe(self) -> str:
        return (
            f"{len(self.features)} features: {len(self.text)} text (one-hot encoded), "
            f"{len(self.boolean)} yes/no, {len(self.features) - len(self.text) - len(self.boolean)}"
            f" numeric; {len(self.with_gaps)} with gaps (imputed)"
        )


def _prepare(
    frame: pd.DataFrame, target: str, file_name: str
) -> tuple[Columns, pd.DataFrame, pd.Series, int]:
    if target not in frame.columns:
        raise TrainingError(f"{file_name} has no column {target!r}")
    features = [str(c) for c in frame.columns if c != target]
    if not features:
        raise TrainingError(f"{file_name} has no feature column besides {target!r}")
    target_values = frame[target]
    if pd.api.types.is_numeric_dtype(target_values):
        target_values = target_values.replace([np.inf, -np.inf], np.nan)
    used = frame[target_values.notna()]
    if len(used) < MIN_ROWS:
        raise TrainingError(f"{len(used)} rows with a target; at least {MIN_ROWS} are needed")
    x = pd.DataFrame(index=used.index)
    text: list[str] = []
    boolean: list[str] = []
    integer: list[str] = []
    for name in features:
        column = used[name]
        as_bool = _booleans(column)
        if as_bool is not None:
            x[name] = as_bool
            boolean.append(name)
        elif pd.api.types.is_numeric_dtype(column):
            values = column.astype(np.float64).replace([np.inf, -np.inf], np.nan)
            x[name] = values
            whole = values.dropna()
            if pd.api.types.is_integer_dtype(column) or (
                len(whole) and bool(np.all(np.mod(whole.to_numpy(), 1.0) == 0.0))
            ):
                integer.append(name)
        else:
            x[name] = pd.Series(
                [v if isinstance(v, str) and v.strip() else np.nan for v in column],
                index=used.index,
                dtype=object,
            )
            text.append(name)
        if x[name].isna().all():
            raise TrainingError(f"column {name!r} holds no value in any row with a target")
    gaps = [name for name in features if x[name].isna().any()]
    columns = Columns(features, text, boolean, integer, gaps)
    return columns, x, used[target], len(frame) - len(used)


def _booleans(column: pd.Series) -> pd.Series | None:
    """A yes/no column as 0.0/1.0 (NaN where empty), or None when it is not one."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype(np.float64)
    if pd.api.types.is_numeric_dtype(column):
        return None
    words = {"true": 1.0, "false": 0.0}
    present = column.dropna()
    if len(present) == 0 or not all(
        isinstance(v, str) and v.strip().lower() in words for v in present
    ):
        return None
    return column.map(lambda v: words[v.strip().lower()] if isinstance(v, str) else np.nan)


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


def _estimator(algorithm: str, task: str, random_state: int, columns: Columns) -> Pipeline:
    if algorithm == "linear":
        model: Any = LinearRegression()
    elif algorithm == "logistic":
        model = LogisticRegression(max_iter=1000, random_state=random_state)
    else:
        forest = RandomForestClassifier if task == "classification" else RandomForestRegressor
        model = forest(**FOREST_PARAMS, random_state=random_state, n_jobs=1)
    scaled = algorithm == "logistic"
    parts: list[tuple[str, Any, list[str]]] = []
    numeric = columns.numeric()
    for name, group in (
        ("numbers", [c for c in numeric if c not in columns.with_gaps]),
        ("numbers_with_gaps", [c for c in numeric if c in columns.with_gaps]),
    ):
        steps: list[tuple[str, Any]] = []
        if name == "numbers_with_gaps":
            steps.append(("impute", SimpleImputer(strategy="median")))
        if scaled:
            steps.append(("scale", StandardScaler()))
        if group:
            parts.append((name, Pipeline(steps) if steps else "passthrough", group))
    for name, group in (
        ("text", [c for c in columns.text if c not in columns.with_gaps]),
        ("text_with_gaps", [c for c in columns.text if c in columns.with_gaps]),
    ):
        encode: list[tuple[str, Any]] = [
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False))
        ]
        if name == "text_with_gaps":
            encode.insert(0, ("impute", SimpleImputer(strategy="most_frequent")))
        if group:
            parts.append((name, Pipeline(encode), group))
    return Pipeline([("columns", ColumnTransformer(parts)), ("model", model)])


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
    best = {key.removeprefix("model__"): _plain(v) for key, v in search.best_params_.items()}
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
