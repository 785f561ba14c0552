"""Estimators skl2onnx has no converter for, defined at module level so joblib can pickle them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class WeightedSumRegressor(RegressorMixin, BaseEstimator):
    """Least-squares weights plus a fixed offset: simple, exact, and unknown to skl2onnx."""

    def __init__(self, offset: float = 0.5) -> None:
        self.offset = offset

    def fit(self, x: Any, y: Any) -> WeightedSumRegressor:
        x = validate_data(self, x)
        design = np.column_stack([x, np.ones(len(x))])
        self.coef_ = np.linalg.lstsq(design, np.asarray(y, dtype=float), rcond=None)[0]
        return self

    def predict(self, x: Any) -> Any:
        check_is_fitted(self)
        x = validate_data(self, x, reset=False)
        return x @ self.coef_[:-1] + self.coef_[-1] + self.offset


class NearestMeanClassifier(ClassifierMixin, BaseEstimator):
    """Assigns the class whose mean is nearest; probabilities from a softmax of -distance."""

    def fit(self, x: Any, y: Any) -> NearestMeanClassifier:
        x = validate_data(self, x)
        labels = np.asarray(y)
        self.classes_ = np.unique(labels)
        self.means_ = np.stack([x[labels == c].mean(axis=0) for c in self.classes_])
        return self

    def _distances(self, x: Any) -> Any:
        check_is_fitted(self)
        x = validate_data(self, x, reset=False)
        return np.linalg.norm(x[:, None, :] - self.means_[None, :, :], axis=2)

    def predict(self, x: Any) -> Any:
        return self.classes_[np.argmin(self._distances(x), axis=1)]

    def predict_proba(self, x: Any) -> Any:
        scores = np.exp(-self._distances(x))
        return scores / scores.sum(axis=1, keepdims=True)
