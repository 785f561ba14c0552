"""The predict path: the model version from the catalog, the records shaped by its feature
schema, the prediction from the cached loaded model. No database read, no model load after the
first request of a version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.catalog import ModelCatalog
from models.features import JsonScalar, feature_schema
from models.inference import ModelCache, Prediction
from models.registry import ModelVersion


@dataclass(frozen=True)
class ServedPrediction:
    """A prediction with the exact model version that produced it."""

    model: ModelVersion
    prediction: Prediction
    rows: int


def predict_records(
    catalog: ModelCatalog,
    cache: ModelCache,
    *,
    model_name: str,
    model_version: int | None,
    records: Sequence[Mapping[str, JsonScalar]],
    batched: bool,
    probabilities: bool,
    max_batch: int,
) -> ServedPrediction:
    """Predict records with a registered model (latest version when `model_version` is None)."""
    meta = catalog.version(model_name, model_version)
    rows = feature_schema(meta.specs).to_input(records, max_batch=max_batch, batched=batched)
    loaded = cache.get(meta)
    return ServedPrediction(
        model=meta,
        prediction=loaded.predict(rows, probabilities=probabilities),
        rows=len(records),
    )
