"""Feature schemas: reading types off fitted pipelines, and checking request records against
them (every refusal names the field and the reason, never the value)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from models.feature_types import infer_feature_specs
from models.features import (
    BatchTooLarge,
    EmptyBatch,
    FeatureSpec,
    InvalidFeatures,
    feature_schema,
)

CANARY = "canary-4d1e"
FEATURES = ("area", "rooms", "city", "tier", "pool")


def _frame(n: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "area": rng.normal(100.0, 20.0, n),
            "rooms": rng.integers(1, 5, n).astype(np.float64),
            "city": pd.Series(rng.choice(["Lyon", "Nice"], n), dtype=object),
            "tier": pd.Series(rng.choice(["a", "b"], n), dtype=object),
            "pool": rng.integers(0, 2, n).astype(np.float64),
        }
    )
    frame.loc[::5, "area"] = np.nan
    return frame, frame["rooms"].to_numpy() * 10 + rng.normal(0, 1, n)


def _pipeline() -> Any:
    columns = ColumnTransformer(
        [
            ("area", make_pipeline(SimpleImputer(), StandardScaler()), ["area"]),
            ("numbers", "passthrough", ["rooms", "pool"]),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city"],
            ),
            ("tier", OrdinalEncoder(), ["tier"]),
        ]
    )
    return make_pipeline(columns, Ridge())


def test_types_are_read_off_a_column_transformer() -> None:
    frame, y = _frame()
    fitted = _pipeline().fit(frame, y)
    specs = {
        s.name: s
        for s in infer_feature_specs(fitted, FEATURES, {"rooms": "integer", "pool": "boolean"})
    }
    assert specs["area"] == FeatureSpec("area", "number", nullable=True)
    assert specs["rooms"] == FeatureSpec("rooms", "integer")
    assert specs["pool"] == FeatureSpec("pool", "boolean")
    assert specs["city"] == FeatureSpec(
        "city", "string", nullable=True, categories=("Lyon", "Nice"), unknown_categories=True
    )
    # OrdinalEncoder's default refuses an unknown category, and nothing imputes the tier.
    assert specs["tier"] == FeatureSpec(
        "tier", "string", nullable=False, categories=("a", "b"), unknown_categories=False
    )


def test_hist_gradient_boosting_takes_missing_values_and_categories() -> None:
    frame, y = _frame()
    fitted = HistGradientBoostingRegressor(max_iter=5, categorical_features="from_dtype").fit(
        frame.astype({"city": "category", "tier": "category"}), y
    )
    specs = {s.name: s for s in infer_feature_specs(fitted, FEATURES)}
    assert all(spec.nullable for spec in specs.values())
    assert specs["city"].type == "string"
    assert specs["city"].categories == ("Lyon", "Nice")
    assert specs["area"].type == "number"
    assert specs["area"].categories is None


def test_a_plain_estimator_takes_required_numbers() -> None:
    frame, y = _frame()
    numbers = frame[["rooms", "pool"]]
    fitted = RandomForestRegressor(n_estimators=2).fit(numbers, y)
    assert infer_feature_specs(fitted, ("rooms", "pool")) == (
        FeatureSpec("rooms"),
        FeatureSpec("pool"),
    )


SCHEMA = feature_schema(
    (
        FeatureSpec("area", "number", nullable=True),
        FeatureSpec("rooms", "integer"),
        FeatureSpec("pool", "boolean"),
        FeatureSpec("city", "string", nullable=True, categories=("Lyon", "Nice")),
        FeatureSpec("tier", "string", categories=("a", "b"), unknown_categories=False),
    )
)
GOOD = {"area": 80.5, "rooms": 3, "pool": True, "city": "Lyon", "tier": "a"}


def test_a_record_becomes_numbers_and_texts() -> None:
    rows = SCHEMA.to_input(
        [GOOD, {"rooms": 2.0, "pool": False, "city": None, "tier": "b"}],
        max_batch=10,
        batched=True,
    )
    assert rows.rows == 2
    np.testing.assert_array_equal(rows.numbers[0, :3], [80.5, 3.0, 1.0])
    assert np.isnan(rows.numbers[1, 0])  # area left out: nullable, so missing
    assert rows.texts == {3: ["Lyon", None], 4: ["a", "b"]}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"area": CANARY}, "area", "not_a_number"),
        ({"area": True}, "area", "not_a_number"),
        ({"rooms": 2.5}, "rooms", "not_an_integer"),
        ({"rooms": None}, "rooms", "null_not_allowed"),
        ({"pool": 1}, "pool", "not_a_boolean"),
        ({"city": 3}, "city", "not_a_string"),
        ({"city": "Ly\x1fon"}, "city", "invalid_text"),
        ({"city": "x" * 201}, "city", "invalid_text"),
        ({"tier": CANARY}, "tier", "unknown_category"),
        ({CANARY: 1}, CANARY, "unknown_feature"),
    ],
)
def test_each_refusal_names_the_field_and_never_the_value(
    change: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidFeatures) as caught:
        SCHEMA.to_input([{**GOOD, **change}], max_batch=10, batched=False)
    assert (caught.value.field, caught.value.reason) == (field, reason)
    if field != CANARY:
        assert CANARY not in str(caught.value)


def test_an_absent_required_feature_is_missing() -> None:
    record = {k: v for k, v in GOOD.items() if k != "tier"}
    with pytest.raises(InvalidFeatures) as caught:
        SCHEMA.to_input([GOOD, record], max_batch=10, batched=True)
    assert (caught.value.field, caught.value.reason) == ("instances[1].tier", "missing_feature")


def test_batch_bounds() -> None:
    with pytest.raises(EmptyBatch):
        SCHEMA.to_input([], max_batch=2, batched=True)
    with pytest.raises(BatchTooLarge):
        SCHEMA.to_input([GOOD] * 3, max_batch=2, batched=True)


def test_request_schema_follows_the_specs() -> None:
    schema = SCHEMA.request_schema()
    assert schema["required"] == ["rooms", "pool", "tier"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["tier"] == {"type": "string", "maxLength": 200, "enum": ["a", "b"]}
    assert schema["properties"]["area"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}


def test_specs_round_trip_through_their_recorded_form() -> None:
    for spec in SCHEMA.specs:
        assert FeatureSpec.from_json(spec.to_json()) == spec
