"""The model registry: immutable, numbered versions of verified, content-addressed artifacts.

Two ways in: an operator's file on the command line (joblib, unpickled, or skops) and an upload
over HTTP (skops only, never unpickled). Both end in the same checks and the same row."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db.base import utcnow
from models.artifacts import ArtifactStore
from models.errors import (
    ArtifactAlreadyRegistered,
    InvalidArtifact,
    InvalidModelRef,
    ModelNotFound,
    UnsupportedModelFormat,
)
from models.features import FeatureSpec, numeric_specs
from models.tables import ModelVersionRow

if TYPE_CHECKING:
    from models.estimators import EstimatorInfo, Label

# scikit-learn, skops and the ONNX toolchain are imported by the functions that register a
# model, not here: reading the registry (the CLI, tenant assignment) must not pay for them.
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_MODEL_REF = re.compile(r"^([^@]+)@([1-9][0-9]{0,8})$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as recorded; never changes once registered."""

    name: str
    version: int
    task: str  # "regression" | "classification"
    features: tuple[str, ...]
    classes: tuple[Label, ...] | None
    specs: tuple[FeatureSpec, ...]  # per feature: type, categories, may it be missing
    artifact_sha256: str
    artifact_size: int
    runtime: str  # "onnx" | "sklearn"
    onnx_sha256: str | None
    onnx_note: str | None
    parity_max_abs_error: float | None
    metrics: dict[str, Any] | None = field(hash=False)
    registered_by: str
    registered_at: datetime

    @property
    def ref(self) -> str:
        """`name@version`."""
        return f"{self.name}@{self.version}"


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """Split `NAME` or `NAME@VERSION` into (name, version or None)."""
    match = _MODEL_REF.match(text)
    name, version = (match.group(1), int(match.group(2))) if match else (text, None)
    if "@" in name or not MODEL_NAME.match(name):
        raise InvalidModelRef(
            "a model reference is NAME or NAME@VERSION: a name of 1-100 lowercase letters, "
            "digits, '.', '_' or '-' starting alphanumeric, and a version from 1"
        )
    return name, version


def register_model(
    session: Session,
    store: ArtifactStore,
    *,
    name: str,
    artifact_path: Path,
    registered_by: str,
    features: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    feature_types: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ModelVersion:
    """Verify an operator's joblib or skops file, compile it to ONNX when possible, add a version
    (`feature_types`: integer or boolean features, as the training data showed them).

    The row is added and flushed; committing is the caller's job.
    """
    import joblib

    from models.estimators import describe_estimator
    from models.formats import sniff_format

    check_model_name(name)
    recorded_metrics = _json_metrics(metrics)
    try:
        data = Path(artifact_path).read_bytes()
    except OSError as exc:
        raise InvalidArtifact(
            f"cannot read {artifact_path}: {exc.strerror or type(exc).__name__}"
        ) from None
    refuse_registered_again(session, name, data)
    if sniff_format(data) == "skops":
        return _add_skops(
            session,
            store,
            name,
            data,
            registered_by,
            features,
            metrics=recorded_metrics,
            feature_types=feature_types,
            progress=progress,
        )
    # The operator's file is trusted here and only here (never over HTTP: register_upload).
    # Unpickling the very bytes that are stored means what was checked is what will be served.
    try:
        estimator = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise InvalidArtifact(
            f"{Path(artifact_path).name} is not a loadable joblib file ({type(exc).__name__})"
        ) from None
    info = describe_estimator(estimator, features, feature_types)
    return _add_version(
        session,
        store,
        name,
        estimator,
        info,
        (data, "joblib"),
        registered_by,
        recorded_metrics,
        progress,
    )


def register_upload(
    session: Session,
    store: ArtifactStore,
    *,
    name: str,
    data: bytes,
    registered_by: str,
    features: Sequence[str] | None = None,
) -> ModelVersion:
    """Verify a model uploaded over HTTP, a skops file only, and add a version as register_model.

    Nothing uploaded is ever unpickled, here or when it is served: a pickle or joblib file is
    refused by its content (UnsupportedModelFormat), and a skops file is built only from the
    allow-list in models.formats (UntrustedModelType otherwise).
    """
    from models.formats import sniff_format

    check_model_name(name)
    kind = sniff_format(data)
    if kind != "skops":
        raise UnsupportedModelFormat(
            f"an uploaded model must be a skops file, and this one is {kind}: a pickle or joblib "
            "file runs code when loaded, so only an operator registers one, with "
            "`predgate models register`"
        )
    refuse_registered_again(session, name, data)
    return _add_skops(session, store, name, data, registered_by, features, metrics=None)


def refuse_registered_again(session: Session, name: str, data: bytes) -> None:
    """ArtifactAlreadyRegistered when these exact bytes are already a version of `name` (checked
    before anything is loaded or compiled)."""
    sha = hashlib.sha256(data).hexdigest()
    version = session.scalar(
        select(ModelVersionRow.version).where(
            ModelVersionRow.name == name, ModelVersionRow.artifact_sha256 == sha
        )
    )
    if version is not None:
        raise ArtifactAlreadyRegistered(
            f"this file is already registered as {name}@{version}; nothing was registered "
            f"(assign {name}@{version} to serve it)"
        )


def _add_skops(
    session: Session,
    store: ArtifactStore,
    name: str,
    data: bytes,
    registered_by: str,
    features: Sequence[str] | None,
    *,
    metrics: dict[str, Any] | None,
    feature_types: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ModelVersion:
    from models.estimators import describe_estimator
    from models.formats import check_trees, load_skops

    estimator = load_skops(data)
    info = describe_estimator(estimator, features, feature_types)
    # Before anything predicts: scikit-learn trusts a tree's indices (see check_trees).
    check_trees(estimator, len(info.features))
    return _add_version(
        session, store, name, estimator, info, (data, "skops"), registered_by, metrics, progress
    )


def _add_version(
    session: Session,
    store: ArtifactStore,
    name: str,
    estimator: Any,
    info: EstimatorInfo,
    artifact: tuple[bytes, str],
    registered_by: str,
    metrics: dict[str, Any] | None,
    progress: Callable[[str], None] = lambda _: None,
) -> ModelVersion:
    from models.compilation import compile_onnx
    from models.estimators import probe_estimator

    sample = probe_estimator(estimator, info)
    progress(f"compiling to ONNX and checking parity on {len(sample.predictions)} sample rows")
    compiled = compile_onnx(estimator, info, sample)
    progress(compiled.note)

    # The suffix follows the content (joblib or skops): serving picks its loader by it.
    artifact_sha, artifact_size = store.put_bytes(*artifact)
    onnx_sha = None
    if compiled.onnx is not None:
        onnx_sha, _ = store.put_bytes(compiled.onnx, "onnx")

    row = ModelVersionRow(
        name=name,
        version=_next_version(session, name),
        task=info.task,
        features=list(info.features),
        feature_schema=[spec.to_json() for spec in info.specs],
        classes=None if info.classes is None else list(info.classes),
        artifact_sha256=artifact_sha,
        artifact_size=artifact_size,
        runtime="onnx" if onnx_sha is not None else "sklearn",
        onnx_sha256=onnx_sha,
        onnx_note=compiled.note,
        parity_max_abs_error=compiled.max_abs_error,
        metrics=metrics,
        # The column holds 200 characters; an operator name longer than that is cut, not refused.
        registered_by=registered_by[:200],
        registered_at=utcnow(),
    )
    session.add(row)
    # Two registrations racing for the same name fail here on the (name, version) constraint.
    session.flush()
    return _to_version(row)


def list_models(
    session: Session, *, after: tuple[str, int] | None = None, limit: int | None = None
) -> list[ModelVersion]:
    """Registered versions by name then version; `after` a (name, version), at most `limit`."""
    query = select(ModelVersionRow)
    if after is not None:
        name, version = after
        query = query.where(
            or_(
                ModelVersionRow.name > name,
                and_(ModelVersionRow.name == name, ModelVersionRow.version > version),
            )
        )
    rows = session.scalars(
        query.order_by(ModelVersionRow.name, ModelVersionRow.version).limit(limit)
    )
    return [_to_version(row) for row in rows]


def get_model(session: Session, name: str, version: int | None = None) -> ModelVersion:
    """The given version of a model, or its latest version when version is None."""
    query = select(ModelVersionRow).where(ModelVersionRow.name == name)
    if version is None:
        query = query.order_by(ModelVersionRow.version.desc()).limit(1)
    else:
        query = query.where(ModelVersionRow.version == version)
    row = session.scalar(query)
    if row is None:
        which = name if version is None else f"{name}@{version}"
        raise ModelNotFound(f"no registered model {which!r}")
    return _to_version(row)


def check_model_name(name: str) -> None:
    """InvalidModelRef unless `name` is a valid model name (checked before any work is done)."""
    if not MODEL_NAME.match(name):
        raise InvalidModelRef(
            "a model name is 1-100 lowercase letters, digits, '.', '_' or '-', "
            "starting alphanumeric"
        )


def _next_version(session: Session, name: str) -> int:
    latest = session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
    )
    return 1 if latest is None else int(latest) + 1


def _json_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    # Round-trip so the row holds exactly what the JSON column will give back.
    try:
        loaded = json.loads(json.dumps(dict(metrics), allow_nan=False))
    except (TypeError, ValueError):
        raise InvalidArtifact("metrics must be JSON-serialisable with finite numbers") from None
    assert isinstance(loaded, dict)
    return loaded


def _to_version(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        task=row.task,
        features=tuple(row.features),
        classes=None if row.classes is None else tuple(row.classes),
        specs=(
            numeric_specs(row.features)
            if row.feature_schema is None
            else tuple(FeatureSpec.from_json(spec) for spec in row.feature_schema)
        ),
        artifact_sha256=row.artifact_sha256,
        artifact_size=row.artifact_size,
        runtime=row.runtime,
        onnx_sha256=row.onnx_sha256,
        onnx_note=row.onnx_note,
        parity_max_abs_error=row.parity_max_abs_error,
        metrics=None if row.metrics is None else dict(row.metrics),
        registered_by=row.registered_by,
        registered_at=row.registered_at,
    )
