"""Feature schemas: turn validated records into the model's input matrix, in schema order.

A schema is built once per feature list and reused (no per-request schema building); the
values themselves were already checked to be finite numbers by the request model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.errors import ModelError

MAX_NAME_SHOWN = 64


class InvalidFeatures(ModelError):
    """A record does not match the model's feature schema."""

    code = "validation_error"
    status = 422
    title = "Invalid request body"
    public_message = True

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class EmptyBatch(ModelError):
    """No record was sent."""

    code = "validation_error"
    status = 422
    title = "Invalid request body"
    public_message = True


class BatchTooLarge(ModelError):
    """More records than the configured maximum batch."""

    code = "batch_too_large"
    status = 422
    title = "Batch too large"
    public_message = True


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered feature names a model expects."""

    features: tuple[str, ...]

    def to_matrix(
        self, records: Sequence[Mapping[str, float]], *, max_batch: int, batched: bool
    ) -> np.ndarray:
        """Check every record against the schema and stack them as float64 rows."""
        if not records:
            raise EmptyBatch("The request holds no record.")
        if len(records) > max_batch:
            raise BatchTooLarge(f"At most {max_batch} records are accepted per request.")
        width = len(self.features)
        matrix = np.empty((len(records), width), dtype=np.float64)
        for row, record in enumerate(records):
            try:
                matrix[row] = [record[name] for name in self.features]
            except KeyError as missing:
                raise InvalidFeatures(
                    _field(row, batched, str(missing.args[0])),
                    "missing_feature",
                    "missing feature",
                ) from None
            if len(record) != width:
                unknown = next(name for name in record if name not in self.features)
                raise InvalidFeatures(
                    _field(row, batched, unknown), "unknown_feature", "unknown feature"
                )
        return matrix


@lru_cache(maxsize=256)
def feature_schema(features: tuple[str, ...]) -> FeatureSchema:
    """The schema for a feature list, built once."""
    return FeatureSchema(features)


def _field(row: int, batched: bool, name: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in name)[:MAX_NAME_SHOWN]
    return f"instances[{row}].{shown}" if batched else shown
