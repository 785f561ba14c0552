"""The table of registered model versions. A row is written once and never updated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    task: Mapped[str] = mapped_column(String(20))  # "regression" | "classification"
    features: Mapped[list[str]] = mapped_column(JSON)
    # Per feature, in `features` order: type, categories, whether it may be missing
    # (models.features.FeatureSpec); NULL for versions registered before types were recorded.
    feature_schema: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # Class labels as plain JSON scalars, in the estimator's classes_ order.
    classes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    runtime: Mapped[str] = mapped_column(String(20))  # "onnx" | "sklearn"
    onnx_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Why conversion was unsupported, or the parity result when it succeeded.
    onnx_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    parity_max_abs_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    registered_by: Mapped[str] = mapped_column(String(200))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
