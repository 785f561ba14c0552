"""Feature schemas: what each feature of a model version accepts, and turning validated
records into the model's input, in schema order.

A model version records, per feature: its type (number, integer, boolean or string), the
categories it knows (for encoded columns), whether an unknown category is accepted (the encoder
ignores it) and whether the value may be missing (an imputer, or a model that routes missing
values itself, stands behind it). The schema is read off the fitted estimator at registration
(`infer_feature_specs`) and built once per version for serving (no per-request schema building).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from models.errors import ModelError

# numpy is imported where arrays are built: reading a model's schema (the registry, the CLI)
# must not pay for it.
if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MAX_NAME_SHOWN = 64
MAX_TEXT_LENGTH = 200
FEATURE_TYPES = ("number", "integer", "boolean", "string")
JsonScalar = float | int | str | bool | None


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
class FeatureSpec:
    """What one feature accepts."""

    name: str
    type: str = "number"  # one of FEATURE_TYPES
    nullable: bool = False  # null (or leaving the feature out) is accepted as missing
    categories: tuple[Any, ...] | None = None  # the values the model was fitted with
    unknown_categories: bool = True  # a value outside `categories` is accepted

    def to_json(self) -> dict[str, Any]:
        """The spec as recorded and as partners see it."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.categories is not None:
            out["categories"] = list(self.categories)
            out["unknown_categories"] = self.unknown_categories
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> FeatureSpec:
        """A spec from its recorded form."""
        categories = data.get("categories")
        return FeatureSpec(
            name=str(data["name"]),
            type=str(data.get("type", "number")),
            nullable=bool(data.get("nullable", False)),
            categories=None if categories is None else tuple(categories),
            unknown_categories=bool(data.get("unknown_categories", True)),
        )

    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema for this feature's value in a predict request."""
        schema: dict[str, Any]
        if self.type == "string":
            schema = {"type": "string", "maxLength": MAX_TEXT_LENGTH}
            if self.categories is not None and not self.unknown_categories:
                schema["enum"] = list(self.categories)
            elif self.categories is not None:
                schema["examples"] = list(self.categories[:10])
        elif self.type == "boolean":
            schema = {"type": "boolean"}
        else:
            schema = {"type": self.type}
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema


@dataclass(frozen=True)
class ModelInput:
    """Validated records as the model takes them: one float64 matrix (text columns NaN), and
    the text columns' values (None where missing) by column index."""

    numbers: NDArray[np.float64]
    texts: dict[int, list[str | None]]

    @property
    def rows(self) -> int:
        return int(self.numbers.shape[0])


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered features a model version accepts."""

    specs: tuple[FeatureSpec, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    @property
    def has_text(self) -> bool:
        return any(spec.type == "string" for spec in self.specs)

    def to_input(
        self, records: Sequence[Mapping[str, JsonScalar]], *, max_batch: int, batched: bool
    ) -> ModelInput:
        """Check every record against the schema and shape them as the model's input."""
        import numpy as np

        if not records:
            raise EmptyBatch("The request holds no record.")
        if len(records) > max_batch:
            raise BatchTooLarge(f"At most {max_batch} records are accepted per request.")
        width = len(self.specs)
        numbers = np.empty((len(records), width), dtype=np.float64)
        texts: dict[int, list[str | None]] = {
            j: [None] * len(records) for j, spec in enumerate(self.specs) if spec.type == "string"
        }
        index = _index(self.features)
        for row, record in enumerate(records):
            for name in record:
                if name not in index:
                    raise InvalidFeatures(
                        _field(row, batched, name), "unknown_feature", "unknown feature"
                    )
            for j, spec in enumerate(self.specs):
                value = record.get(spec.name, _ABSENT)
                if spec.type == "string":
                    numbers[row, j] = np.nan
                    texts[j][row] = _text(spec, value, row, batched)
                else:
                    numbers[row, j] = _number(spec, value, row, batched)
        return ModelInput(numbers=numbers, texts=texts)

    def request_schema(self) -> dict[str, Any]:
        """A JSON Schema for one record of a predict request to this model."""
        return {
            "type": "object",
            "properties": {spec.name: spec.json_schema() for spec in self.specs},
            "required": [spec.name for spec in self.specs if not spec.nullable],
            "additionalProperties": False,
        }


_ABSENT: Any = object()


def _number(spec: FeatureSpec, value: Any, row: int, batched: bool) -> float:
    if value is None or value is _ABSENT:
        return _missing(spec, value, row, batched)
    if spec.type == "boolean":
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        raise InvalidFeatures(
            _field(row, batched, spec.name), "not_a_boolean", "must be true or false"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if spec.type == "integer" else "a number"
        raise InvalidFeatures(_field(row, batched, spec.name), "not_a_number", f"must be {kind}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFeatures(_field(row, batched, spec.name), "not_finite", "must be finite")
    if spec.type == "integer" and not number.is_integer():
        raise InvalidFeatures(
            _field(row, batched, spec.name), "not_an_integer", "must be a whole number"
        )
    _check_category(spec, number, row, batched)
    return number


def _text(spec: FeatureSpec, value: Any, row: int, batched: bool) -> str | None:
    if value is None or value is _ABSENT:
        _missing(spec, value, row, batched)
        return None
    field = _field(row, batched, spec.name)
    if not isinstance(value, str):
        raise InvalidFeatures(field, "not_a_string", "must be text")
    if len(value) > MAX_TEXT_LENGTH or not value.isprintable():
        raise InvalidFeatures(
            field,
            "invalid_text",
            f"must be printable text of at most {MAX_TEXT_LENGTH} characters",
        )
    _check_category(spec, value, row, batched)
    return value


def _check_category(spec: FeatureSpec, value: Any, row: int, batched: bool) -> None:
    # The field's name is built only for a refusal: this runs for every value of every row.
    known = spec.categories is None or spec.unknown_categories or value in _categories(spec)
    if not known:
        raise InvalidFeatures(
            _field(row, batched, spec.name),
            "unknown_category",
            "is not one of the categories the model knows",
        )


def _missing(spec: FeatureSpec, value: Any, row: int, batched: bool) -> float:
    if spec.nullable:
        return float("nan")
    field = _field(row, batched, spec.name)
    if value is _ABSENT:
        raise InvalidFeatures(field, "missing_feature", "missing feature")
    raise InvalidFeatures(field, "null_not_allowed", "may not be null: the model needs a value")


@lru_cache(maxsize=1024)
def _categories(spec: FeatureSpec) -> frozenset[Any]:
    return frozenset(spec.categories or ())


@lru_cache(maxsize=256)
def _index(features: tuple[str, ...]) -> dict[str, int]:
    return {name: j for j, name in enumerate(features)}


@lru_cache(maxsize=256)
def feature_schema(specs: tuple[FeatureSpec, ...]) -> FeatureSchema:
    """The schema for a version's feature specs, built once."""
    return FeatureSchema(specs)


def numeric_specs(features: Sequence[str]) -> tuple[FeatureSpec, ...]:
    """Specs of required numbers: what versions registered before typed schemas accept."""
    return tuple(FeatureSpec(name=name) for name in features)


def _field(row: int, batched: bool, name: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in name)[:MAX_NAME_SHOWN]
    return f"instances[{row}].{shown}" if batched else shown


def recorded_categories(values: Sequence[Any]) -> tuple[Any, ...]:
    """Categories as plain JSON scalars, missing markers (NaN, None) dropped."""
    import numpy as np

    plain: list[Any] = []
    for value in values:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value != value:
            continue
        if value is None:
            continue
        plain.append(value)
    return tuple(plain)
