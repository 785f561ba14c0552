"""Reading a feature schema off a fitted estimator: which columns are encoded categories (and
which categories they know), which may be missing. Plain scikit-learn introspection, at
registration only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from models.features import FEATURE_TYPES, FeatureSpec, recorded_categories

_HIST = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)


def infer_feature_specs(
    estimator: Any, features: tuple[str, ...], declared: Mapping[str, str] | None = None
) -> tuple[FeatureSpec, ...]:
    """One spec per feature, in order. `declared` types (from training data: integer, boolean)
    refine numeric features; what the estimator itself says about text and missing wins."""
    specs = {name: FeatureSpec(name=name) for name in features}
    steps = list(estimator.steps) if isinstance(estimator, Pipeline) else [("", estimator)]
    first = steps[0][1]
    final = steps[-1][1]
    if isinstance(first, ColumnTransformer):
        _column_transformer(first, features, specs)
    elif isinstance(first, SimpleImputer) and len(steps) > 1:
        specs = {name: _with(spec, nullable=True) for name, spec in specs.items()}
    if isinstance(final, _HIST) and len(steps) == 1:
        _hist(final, features, specs)
    elif _routes_missing_values(final) and len(steps) == 1:
        specs = {name: _with(spec, nullable=True) for name, spec in specs.items()}
    for name, kind in (declared or {}).items():
        spec = specs.get(name)
        if spec is not None and spec.type == "number" and kind in FEATURE_TYPES:
            specs[name] = _with(spec, type=kind)
    return tuple(specs[name] for name in features)


def _routes_missing_values(model: Any) -> bool:
    # LightGBM and XGBoost send a missing value down each split by a rule of their own.
    return type(model).__module__.split(".")[0] in ("lightgbm", "xgboost")


def _column_transformer(
    transformer: ColumnTransformer, features: tuple[str, ...], specs: dict[str, FeatureSpec]
) -> None:
    for _, part, columns in transformer.transformers_:
        names = _column_names(columns, features)
        if part in ("drop", "passthrough") or not names:
            continue
        chain = list(part.steps) if isinstance(part, Pipeline) else [("", part)]
        imputed = False
        for _, step in chain:
            if isinstance(step, SimpleImputer):
                imputed = True
                for name in names:
                    specs[name] = _with(specs[name], nullable=True)
            elif isinstance(step, (OneHotEncoder, OrdinalEncoder)):
                _encoded(step, names, specs, imputed)
                break
            else:
                # Past any other step the columns are no longer the features as sent.
                break


def _encoded(encoder: Any, names: list[str], specs: dict[str, FeatureSpec], imputed: bool) -> None:
    if isinstance(encoder, OneHotEncoder):
        unknown_ok = encoder.handle_unknown in ("ignore", "infrequent_if_exist", "warn")
    else:
        unknown_ok = encoder.handle_unknown == "use_encoded_value"
    for name, categories in zip(names, encoder.categories_, strict=False):
        values = recorded_categories(list(categories))
        text = any(isinstance(v, str) for v in values)
        specs[name] = FeatureSpec(
            name=name,
            type="string" if text else specs[name].type,
            nullable=imputed or _has_missing(categories),
            categories=values,
            unknown_categories=unknown_ok,
        )


def _hist(model: Any, features: tuple[str, ...], specs: dict[str, FeatureSpec]) -> None:
    # HistGradientBoosting routes a missing value down each split by what it learnt, and treats
    # an unknown category as missing.
    for name in features:
        specs[name] = _with(specs[name], nullable=True)
    pre = getattr(model, "_preprocessor", None)
    if pre is None:
        return
    encoder = pre.named_transformers_["encoder"]
    mask = np.asarray(model.is_categorical_, dtype=bool)
    for name, categories in zip(
        np.asarray(features)[mask].tolist(), encoder.categories_, strict=False
    ):
        values = recorded_categories(list(categories))
        text = any(isinstance(v, str) for v in values)
        specs[name] = FeatureSpec(
            name=name,
            type="string" if text else "number",
            nullable=True,
            categories=values,
            unknown_categories=True,
        )


def _column_names(columns: Any, features: tuple[str, ...]) -> list[str]:
    if isinstance(columns, str):
        return [columns] if columns in features else []
    array = np.asarray(columns)
    if array.dtype == bool:
        return [features[j] for j in np.flatnonzero(array)]
    if array.dtype.kind in "iu":
        return [features[int(j)] for j in array.tolist()]
    return [str(c) for c in array.tolist() if str(c) in features]


def _has_missing(categories: Any) -> bool:
    return any(v is None or (isinstance(v, float) and v != v) for v in list(categories))


def _with(spec: FeatureSpec, **changes: Any) -> FeatureSpec:
    return dataclasses.replace(spec, **changes)
