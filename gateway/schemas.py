"""Request and response bodies: the pydantic models views validate with and OpenAPI documents."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from models.serving import ServedPrediction


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError("a feature value is a number, text, true/false or null")


# Any JSON scalar: the model's feature schema (models.features) says which type each feature
# takes, so a wrong type is refused naming the feature, and an unknown feature as unknown.
FeatureValue = Annotated[
    Any,
    AfterValidator(_json_scalar),
    WithJsonSchema({"type": ["number", "string", "boolean", "null"]}),
]


class PredictRequest(BaseModel):
    """One record as top-level fields, or several under `instances`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1},
                {
                    "instances": [{"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}],
                    "return_probabilities": False,
                },
            ]
        },
    )
    # Top-level feature values of a single record (the tutorial request), typed for validation.
    __pydantic_extra__: dict[str, FeatureValue] = Field(init=False)

    instances: list[dict[str, FeatureValue]] | None = Field(
        default=None,
        description="A batch of records, each mapping feature name to its value (GET /v1/model "
        "gives each feature's type).",
    )
    return_probabilities: StrictBool = Field(
        default=False, description="Also return class probabilities (classifiers only)."
    )

    def records(self) -> list[dict[str, FeatureValue]]:
        """The records to predict, whichever form the body used."""
        single = dict(self.model_extra or {})
        if self.instances is not None:
            return self.instances if not single else [*self.instances, single]
        return [single] if single else []

    def cost(self, max_batch: int) -> int:
        """Rate-limit units: one per row. A body with no row, or more than `max_batch` rows
        (refused by the view), spends one."""
        rows = len(self.records())
        return rows if 1 <= rows <= max_batch else 1


class ModelRef(BaseModel):
    name: str
    version: int


class PredictResponse(BaseModel):
    predictions: list[float | int | str]
    probabilities: list[dict[str, float]] | None = Field(
        default=None, description="Per record, probability by class label (when asked)."
    )
    model: ModelRef
    request_id: str

    @staticmethod
    def of(served: ServedPrediction, *, request_id: str) -> dict[str, Any]:
        """The answer to a served prediction (probabilities only when asked)."""
        answer: dict[str, Any] = {
            "predictions": served.prediction.predictions,
            "model": {"name": served.model.name, "version": served.model.version},
            "request_id": request_id,
        }
        if served.prediction.probabilities is not None:
            answer["probabilities"] = served.prediction.probabilities
        return answer


class FeatureSpecOut(BaseModel):
    """One feature of the model: its type, whether it may be null or left out, its categories."""

    name: str
    type: str = Field(description="number, integer, boolean or string")
    nullable: bool
    categories: list[Any] | None = None
    unknown_categories: bool | None = Field(
        default=None, description="Whether a value outside `categories` is accepted."
    )


class ModelInfo(BaseModel):
    name: str
    version: int
    task: str
    features: list[str]
    feature_schema: list[FeatureSpecOut]
    request_schema: dict[str, Any] = Field(
        description="JSON Schema of one record of a predict request to this model."
    )
    classes: list[Any] | None
    runtime: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str


class HealthStatus(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
