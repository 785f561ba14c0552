"""ML model registry, artifacts, compilation to ONNX, and inference. Plain Python: no web here."""

from models.artifacts import ArtifactStore
from models.errors import (
    ArtifactIntegrityError,
    InvalidArtifact,
    InvalidInput,
    InvalidModelRef,
    ModelError,
    ModelNotFound,
    ProbabilitiesUnsupported,
    TrainingError,
    UnsupportedModelFormat,
    UntrustedModelType,
)
from models.inference import LoadedModel, ModelCache, Prediction, load_model
from models.registry import (
    ModelVersion,
    get_model,
    list_models,
    parse_model_ref,
    register_model,
    register_upload,
)
from models.training import TrainingResult, make_house_price_data, make_iris_data, train_model

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactStore",
    "InvalidArtifact",
    "InvalidInput",
    "InvalidModelRef",
    "LoadedModel",
    "ModelCache",
    "ModelError",
    "ModelNotFound",
    "ModelVersion",
    "Prediction",
    "ProbabilitiesUnsupported",
    "TrainingError",
    "TrainingResult",
    "UnsupportedModelFormat",
    "UntrustedModelType",
    "get_model",
    "list_models",
    "load_model",
    "make_house_price_data",
    "make_iris_data",
    "parse_model_ref",
    "register_model",
    "register_upload",
    "train_model",
]
