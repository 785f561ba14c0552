"""What the registry needs to know about a fitted scikit-learn estimator; how to feed it rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from models.errors import InvalidArtifact
from models.feature_types import infer_feature_specs
from models.features import FeatureSpec, ModelInput

Label = int | str | float
SAMPLE_ROWS = 64
MAX_FEATURES = 10_000
MAX_FEATURE_NAME = 200


@dataclass(frozen=True)
class EstimatorInfo:
    """The serving contract read off an estimator: task, ordered feature names, class labels."""

    task: str
    features: tuple[str, ...]
    classes: tuple[Label, ...] | None
    specs: tuple[FeatureSpec, ...]


@dataclass(frozen=True)
class Sample:
    """Synthetic rows and the estimator's own answers for them, the reference for parity."""

    rows: ModelInput
    predictions: list[Label]
    probabilities: NDArray[np.float64] | None


def describe_estimator(
    obj: object, features: Sequence[str] | None, declared: Mapping[str, str] | None = None
) -> EstimatorInfo:
    """Check that obj is a fitted estimator with a usable feature schema, and describe it
    (`declared`: feature types known from the training data, such as integer or boolean)."""
    if not isinstance(obj, BaseEstimator):
        raise InvalidArtifact(
            f"the file holds a {type(obj).__name__}, not a scikit-learn estimator or Pipeline"
        )
    if not callable(getattr(obj, "predict", None)):
        raise InvalidArtifact(f"{type(obj).__name__} has no predict method")
    try:
        check_is_fitted(obj)
    except NotFittedError:
        raise InvalidArtifact(f"{type(obj).__name__} is not fitted") from None
    except TypeError as exc:
        raise InvalidArtifact(
            f"{type(obj).__name__} is not a usable estimator: {exc}",
            public=f"{type(obj).__name__} is not a usable estimator",
        ) from None
    names = _feature_schema(obj, features)
    specs = infer_feature_specs(obj, names, declared)
    if not is_classifier(obj):
        return EstimatorInfo(task="regression", features=names, classes=None, specs=specs)
    return EstimatorInfo(task="classification", features=names, classes=_classes(obj), specs=specs)


def sklearn_input(estimator: Any, rows: ModelInput) -> Any:
    """Rows as the estimator expects them: a DataFrame when it was fitted with column names
    (text columns as objects, NaN where missing), else the number matrix."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None and not rows.texts:
        return rows.numbers
    columns = [str(n) for n in names] if names is not None else None
    frame = pd.DataFrame(rows.numbers, columns=columns)
    for j, values in rows.texts.items():
        # Same columns as at fit time, so scikit-learn neither warns nor reorders.
        frame[frame.columns[j]] = pd.Series(
            [np.nan if v is None else v for v in values], dtype=object
        )
    return frame


def plain_label(value: Any) -> Label:
    """A class label as a plain Python scalar (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float, str)):
        return value
    raise InvalidArtifact(f"class labels must be numbers or strings, not {type(value).__name__}")


def probe_estimator(estimator: Any, info: EstimatorInfo, *, seed: int = 0) -> Sample:
    """Predict synthetic rows with scikit-learn, checking outputs have the shape we serve."""
    rows = sample_rows(estimator, info.specs, seed=seed)
    data = sklearn_input(estimator, rows)
    try:
        raw = np.asarray(estimator.predict(data))
    except Exception as exc:
        # Only the type: the message of an arbitrary estimator could quote its input.
        raise InvalidArtifact(
            f"predict failed on sample rows built from its feature schema "
            f"({type(exc).__name__}): a column the model reads as text must be encoded inside "
            "the model (OneHotEncoder or OrdinalEncoder in a ColumnTransformer), and a column "
            "with gaps needs an imputer or a model that takes missing values"
        ) from None
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw.reshape(-1)
    if raw.ndim != 1 or raw.shape[0] != rows.rows:
        raise InvalidArtifact(f"predict returned shape {list(raw.shape)}; one output is served")
    if info.classes is None:
        predictions: list[Label] = [float(v) for v in raw.astype(np.float64)]
        return Sample(rows=rows, predictions=predictions, probabilities=None)
    known = {str(c) for c in info.classes}
    predictions = [plain_label(v) for v in raw.tolist()]
    if any(str(p) not in known for p in predictions):
        raise InvalidArtifact("predict returned a label that is not among classes_")
    probabilities = None
    if hasattr(estimator, "predict_proba"):
        probabilities = np.asarray(estimator.predict_proba(data), dtype=np.float64)
        if probabilities.shape != (rows.rows, len(info.classes)):
            raise InvalidArtifact(f"predict_proba returned shape {list(probabilities.shape)}")
    return Sample(rows=rows, predictions=predictions, probabilities=probabilities)


def sample_rows(
    estimator: Any, specs: Sequence[FeatureSpec], *, count: int = SAMPLE_ROWS, seed: int = 0
) -> ModelInput:
    """Random rows over the inputs the estimator was fitted on: numbers spread around what it
    learnt (not exact in float32, so a float32 cast shows), known and, where accepted, unknown
    categories, and missing values where a feature may be missing."""
    rng = np.random.default_rng(seed)
    n = len(specs)
    loc, scale = _input_spread(estimator, n)
    numbers = rng.normal(loc, scale, size=(count, n))
    texts: dict[int, list[str | None]] = {}
    for j, spec in enumerate(specs):
        if spec.type == "integer":
            numbers[:, j] = np.rint(numbers[:, j])
        elif spec.type == "boolean":
            numbers[:, j] = rng.integers(0, 2, count)
        if spec.categories is not None:
            choices: list[Any] = list(spec.categories)
            if spec.unknown_categories or not choices:
                choices.append("\u2400unseen" if spec.type == "string" else -12345.0)
            picked = [choices[i] for i in rng.integers(0, len(choices), count)]
            if spec.type == "string":
                texts[j] = [str(v) for v in picked]
                numbers[:, j] = np.nan
            else:
                numbers[:, j] = np.asarray(picked, dtype=np.float64)
        if spec.nullable:
            # Every fourth row has this feature missing, the rows differing per feature.
            gaps = (np.arange(count) + j) % 4 == 0
            if j in texts:
                texts[j] = [None if gap else v for gap, v in zip(gaps, texts[j], strict=True)]
            else:
                numbers[gaps, j] = np.nan
    return ModelInput(numbers=numbers, texts=texts)


def _feature_schema(obj: Any, features: Sequence[str] | None) -> tuple[str, ...]:
    fitted = getattr(obj, "feature_names_in_", None)
    given = None if features is None else tuple(features)
    if fitted is not None:
        names = tuple(str(n) for n in fitted)
        if given is not None and given != names:
            raise InvalidArtifact(
                "--features do not match the feature names the estimator was fitted with "
                f"({_shown(names)}); omit --features or give exactly these, in this order",
                public="the features given do not match the feature names the estimator was "
                "fitted with; omit them or give exactly those, in their order",
            )
    elif given is not None:
        names = given
    else:
        raise InvalidArtifact(
            "the estimator was fitted without column names; pass the feature names in "
            "column order with --features"
        )
    _check_names(names)
    n_in = getattr(obj, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(names):
        raise InvalidArtifact(
            f"{len(names)} feature names given but the estimator was fitted on {int(n_in)} features"
        )
    return names


def _check_names(names: tuple[str, ...]) -> None:
    if not names:
        raise InvalidArtifact("a model needs at least one feature")
    if len(names) > MAX_FEATURES:
        raise InvalidArtifact(f"at most {MAX_FEATURES} features are supported")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArtifact("feature names must be non-empty strings")
        if len(name) > MAX_FEATURE_NAME or not name.isprintable():
            raise InvalidArtifact(
                f"feature names must be printable and at most {MAX_FEATURE_NAME} characters"
            )
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise InvalidArtifact(
            f"feature names must be unique; repeated: {_shown(duplicates)}",
            public=f"feature names must be unique; {len(duplicates)} are repeated",
        )


def _classes(obj: Any) -> tuple[Label, ...]:
    raw = getattr(obj, "classes_", None)
    if raw is None:
        raise InvalidArtifact(f"classifier {type(obj).__name__} has no classes_")
    array = np.asarray(raw, dtype=object) if isinstance(raw, list) else np.asarray(raw)
    if array.ndim != 1:
        raise InvalidArtifact("multi-output classifiers are not supported")
    labels = tuple(plain_label(v) for v in array.tolist())
    if len(labels) < 2:
        raise InvalidArtifact("a classifier needs at least two classes")
    if any(isinstance(c, float) and not np.isfinite(c) for c in labels):
        raise InvalidArtifact("class labels must be finite")
    # Probabilities are keyed by str(label): labels such as 1 and "1" would collide.
    if len({str(c) for c in labels}) != len(labels):
        raise InvalidArtifact("class labels must stay distinct when written as text")
    return labels


def _input_spread(
    estimator: Any, n_features: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    loc = np.zeros(n_features)
    scale = np.ones(n_features)
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(first, ColumnTransformer):
        _column_spread(first, loc, scale)
    elif _has_shape(first, "mean_", n_features) and _has_shape(first, "scale_", n_features):
        loc = np.asarray(first.mean_, dtype=np.float64)
        scale = np.asarray(first.scale_, dtype=np.float64)
    elif _has_shape(first, "data_min_", n_features) and _has_shape(first, "data_max_", n_features):
        low = np.asarray(first.data_min_, dtype=np.float64)
        high = np.asarray(first.data_max_, dtype=np.float64)
        loc, scale = (low + high) / 2, (high - low) / 2
    else:
        low, high = _split_thresholds(first, n_features)
        seen = np.isfinite(low)
        loc[seen] = (low[seen] + high[seen]) / 2
        # Wider than the split range, so rows land on both sides of the outermost splits.
        scale[seen] = np.maximum((high[seen] - low[seen]), np.abs(loc[seen]) * 0.1)
    bad = ~np.isfinite(loc) | ~np.isfinite(scale) | (scale <= 0)
    loc[bad], scale[bad] = 0.0, 1.0
    return loc, scale


def _column_spread(
    transformer: ColumnTransformer, loc: NDArray[np.float64], scale: NDArray[np.float64]
) -> None:
    # Columns scaled inside a ColumnTransformer: sample around what each scaler learnt.
    names = [str(n) for n in getattr(transformer, "feature_names_in_", [])]
    for _, part, columns in transformer.transformers_:
        steps = [s for _, s in part.steps] if isinstance(part, Pipeline) else [part]
        scaler = next((s for s in steps if hasattr(s, "mean_") and hasattr(s, "scale_")), None)
        if scaler is None or scaler.mean_ is None:
            continue
        selected = np.atleast_1d(columns)
        if selected.dtype == bool:
            selected = np.flatnonzero(selected)
        index = [names.index(c) if isinstance(c, str) else int(c) for c in selected.tolist()]
        if len(index) == len(scaler.mean_):
            loc[index] = np.asarray(scaler.mean_, dtype=np.float64)
            scale[index] = np.asarray(scaler.scale_, dtype=np.float64)


def _split_thresholds(
    estimator: Any, n_features: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    low = np.full(n_features, np.inf)
    high = np.full(n_features, -np.inf)
    for member in _members(estimator):
        tree = getattr(member, "tree_", None)
        if tree is None:
            continue
        feature = np.asarray(tree.feature)
        threshold = np.asarray(tree.threshold, dtype=np.float64)
        split = (feature >= 0) & (feature < n_features)
        np.minimum.at(low, feature[split], threshold[split])
        np.maximum.at(high, feature[split], threshold[split])
    return low, high


def _members(estimator: Any) -> list[Any]:
    # Forests keep a list of trees, gradient boosting a 2-D array of them; a Pipeline must not
    # be iterated here (it has __len__), so only lists, tuples and arrays are flattened.
    inner = getattr(estimator, "estimators_", None)
    if isinstance(inner, np.ndarray):
        return list(inner.ravel())
    if isinstance(inner, (list, tuple)):
        return [m for item in inner for m in (item if isinstance(item, list) else [item])]
    return [estimator]


def _has_shape(obj: Any, attribute: str, n_features: int) -> bool:
    value = getattr(obj, attribute, None)
    return value is not None and np.shape(value) == (n_features,)


def _shown(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
