"""ML model registry, artifacts, compilation to ONNX, and inference. Plain Python: no web here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name is imported from its module on first use: inference, compilation and training pull
# in scikit-learn and ONNX, which most importers of this package (the CLI) never need.
_HOMES = {
    "ArtifactStore": "models.artifacts",
    "LoadedModel": "models.inference",
    "ModelCache": "models.inference",
    "Prediction": "models.inference",
    "load_model": "models.inference",
    "ModelVersion": "models.registry",
    "get_model": "models.registry",
    "list_models": "models.registry",
    "parse_model_ref": "models.registry",
    "register_model": "models.registry",
    "register_upload": "models.registry",
    "TrainingResult": "models.training",
    "make_house_price_data": "models.training",
    "make_iris_data": "models.training",
    "train_model": "models.training",
}


def __getattr__(name: str) -> Any:
    """Import a public name from the module that defines it, the first time it is asked for."""
    home = _HOMES.get(name, "models.errors" if name in __all__ else None)
    if home is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
