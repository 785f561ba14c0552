"""The predict path: resolve the model version, shape the records, run the cached model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from models.features import feature_schema
from models.inference import ModelCache, Prediction
from models.registry import ModelVersion, get_model


@dataclass(frozen=True)
class ServedPrediction:
    """A prediction with the exact model version that produced it."""

    model: ModelVersion
    prediction: Prediction
    rows: int


def predict_records(
    session: Session,
    cache: ModelCache,
    *,
    model_name: str,
    model_version: int | None,
    records: Sequence[Mapping[str, float]],
    batched: bool,
    probabilities: bool,
    max_batch: int,
) -> ServedPrediction:
    """Predict records with a registered model (latest version when `model_version` is None)."""
    meta = get_model(session, model_name, model_version)
    matrix = feature_schema(meta.features).to_matrix(records, max_batch=max_batch, batched=batched)
    loaded = cache.get(meta)
    return ServedPrediction(
        model=meta,
        prediction=loaded.predict(matrix, probabilities=probabilities),
        rows=len(records),
    )
