"""Model registry and inference errors, each with a stable code and the HTTP status it means.

Messages are for operators' logs: they may name files, digests and shapes, never feature values.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error this package raises."""

    code = "model_error"
    status = 400
    title = "Model error"


class ModelNotFound(ModelError):
    """No model has that name, or it has no such version."""

    code = "model_not_found"
    status = 404
    title = "Model not found"


class InvalidModelRef(ModelError, ValueError):
    """A model name or `name@version` reference is malformed."""

    code = "invalid_model_ref"
    status = 422
    title = "Invalid model reference"
    public_message = True  # every message states the naming rule, never the name sent


class InvalidArtifact(ModelError):
    """The file is not a loadable, fitted scikit-learn estimator matching its feature schema.

    `public_detail` says what is wrong to whoever uploaded it (the problem's detail and the
    audit record): the message itself unless it names something taken from the file (feature
    names, type names outside the allow-list, a library's exception text), then `public`."""

    code = "invalid_artifact"
    status = 422
    title = "Invalid model artifact"

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public_detail = message if public is None else public


class ArtifactAlreadyRegistered(ModelError):
    """The very same file is already a version of this model: registering it again would only
    add a version that changes nothing."""

    code = "artifact_already_registered"
    status = 409
    title = "Artifact already registered"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.public_detail = message  # names only the model and its version


class UnsupportedModelFormat(InvalidArtifact):
    """An uploaded file is not in a format the registry loads without unpickling (skops)."""

    code = "unsupported_model_format"
    status = 415
    title = "Unsupported model format"


class UntrustedModelType(InvalidArtifact):
    """A skops file names a type outside the allow-list in models.formats."""

    code = "untrusted_model_type"
    status = 422
    title = "Untrusted model type"


class ArtifactIntegrityError(ModelError):
    """A stored artifact is missing or its SHA-256 differs from its record."""

    code = "model_unavailable"
    status = 503
    title = "Model unavailable"


class TrainingError(ModelError):
    """Training could not run on the given data or arguments."""

    code = "training_failed"
    status = 422
    title = "Training failed"


class InvalidInput(ModelError):
    """Rows handed to a model do not have its shape or hold non-finite numbers."""

    code = "invalid_input"
    status = 422
    title = "Invalid input rows"


class ProbabilitiesUnsupported(ModelError):
    """Probabilities were asked of a model that does not produce them (a regressor)."""

    code = "probabilities_unsupported"
    status = 422
    title = "Probabilities unsupported"
