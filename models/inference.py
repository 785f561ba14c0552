"""Inference: load a verified model version once, predict many times, cache a bounded few."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from numpy.typing import NDArray

from db.changes import cache_metrics
from models.artifacts import ArtifactStore
from models.compilation import label_lookup, map_labels, open_session, run_session
from models.errors import ArtifactIntegrityError, InvalidInput, ProbabilitiesUnsupported
from models.estimators import Label, plain_label, sklearn_input
from models.features import ModelInput
from models.formats import check_trees, load_skops
from models.registry import ModelVersion

# onnxruntime is not fork-safe (a child forked after importing it hangs at exit), so
# it is imported where a session is created: never in the process that forks the workers.
if TYPE_CHECKING:
    import onnxruntime

CacheKey = tuple[str, int, str, str | None]


@dataclass(frozen=True)
class Prediction:
    """Plain JSON-ready predictions and, when asked, probabilities keyed by str(class label)."""

    predictions: list[float | int | str]
    probabilities: list[dict[str, float]] | None


class LoadedModel:
    """A model version ready to serve: an ONNX session or a verified scikit-learn estimator.

    Built once and shared; predict() keeps no per-call state, so threads may call it at once.
    """

    def __init__(
        self,
        meta: ModelVersion,
        *,
        session: onnxruntime.InferenceSession | None = None,
        estimator: Any = None,
    ) -> None:
        if (session is None) == (estimator is None):
            raise ValueError("a loaded model has an ONNX session or an estimator, not both")
        self.meta = meta
        self._session = session
        self._estimator = estimator
        self._has_proba = hasattr(estimator, "predict_proba")
        # Asked of the session once: run() feeds them on every request.
        self._inputs = [i.name for i in session.get_inputs()] if session is not None else []
        self._lookup = label_lookup(meta.classes) if meta.classes is not None else {}

    def predict(self, rows: ModelInput | NDArray[np.float64], *, probabilities: bool) -> Prediction:
        """Predict validated rows (in meta.features order); probabilities only for classifiers.
        A bare matrix is rows of numbers only."""
        if not isinstance(rows, ModelInput):
            rows = ModelInput(numbers=np.asarray(rows, dtype=np.float64), texts={})
        if probabilities and self.meta.classes is None:
            raise ProbabilitiesUnsupported(f"{self.meta.ref} is a regressor")
        if probabilities and self._estimator is not None and not self._has_proba:
            raise ProbabilitiesUnsupported(f"{self.meta.ref} has no predict_proba")
        width = len(self.meta.features)
        if rows.numbers.ndim != 2 or rows.numbers.shape[1] != width:
            raise InvalidInput(f"rows must have shape [n, {width}], not {list(rows.numbers.shape)}")
        if rows.rows == 0:
            return Prediction(predictions=[], probabilities=[] if probabilities else None)
        if self._session is not None:
            return self._predict_onnx(self._session, rows, probabilities)
        return self._predict_sklearn(rows, probabilities)

    def _predict_onnx(
        self, session: onnxruntime.InferenceSession, rows: ModelInput, probabilities: bool
    ) -> Prediction:
        first, second = run_session(session, rows, self._inputs)
        if self.meta.classes is None:
            values: list[float | int | str] = [float(v) for v in first.reshape(-1).tolist()]
            return Prediction(predictions=values, probabilities=None)
        labels: list[float | int | str] = list(map_labels(first, self._lookup))
        if not probabilities:
            return Prediction(predictions=labels, probabilities=None)
        if second is None:
            raise RuntimeError(f"ONNX model {self.meta.ref} returned no probabilities")
        return Prediction(predictions=labels, probabilities=self._keyed(second))

    def _predict_sklearn(self, rows: ModelInput, probabilities: bool) -> Prediction:
        data = sklearn_input(self._estimator, rows)
        raw = np.asarray(self._estimator.predict(data))
        if self.meta.classes is None:
            values: list[float | int | str] = [float(v) for v in raw.reshape(-1).tolist()]
            return Prediction(predictions=values, probabilities=None)
        labels: list[float | int | str] = [self._registered(v) for v in raw.reshape(-1).tolist()]
        if not probabilities:
            return Prediction(predictions=labels, probabilities=None)
        scores = np.asarray(self._estimator.predict_proba(data))
        return Prediction(predictions=labels, probabilities=self._keyed(scores))

    def _registered(self, value: Any) -> Label:
        try:
            return self._lookup[plain_label(value)]
        except KeyError:
            raise RuntimeError(f"{self.meta.ref} predicted a label outside its classes") from None

    def _keyed(self, scores: NDArray[Any]) -> list[dict[str, float]]:
        assert self.meta.classes is not None
        keys = [str(c) for c in self.meta.classes]
        if scores.ndim != 2 or scores.shape[1] != len(keys):
            raise RuntimeError(f"{self.meta.ref} returned probabilities of the wrong shape")
        return [dict(zip(keys, map(float, row), strict=True)) for row in scores.tolist()]


def one_thread(estimator: Any) -> Any:
    """The estimator with every n_jobs set to 1: a request predicts on its own thread (the
    workers are the concurrency), and LightGBM or XGBoost threads would hang a later fork."""
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    single = {name: 1 for name in params if name == "n_jobs" or name.endswith("__n_jobs")}
    return estimator.set_params(**single) if single else estimator


def load_model(store: ArtifactStore, meta: ModelVersion) -> LoadedModel:
    """Read a version's artifact through SHA-256 verification and make it ready to predict."""
    if meta.runtime == "onnx":
        if meta.onnx_sha256 is None:
            raise ArtifactIntegrityError(f"{meta.ref} is recorded as ONNX without an ONNX digest")
        # ONNX is plain data: serving this version never unpickles anything.
        data = store.read_verified(meta.onnx_sha256, "onnx")
        return LoadedModel(meta, session=open_session(data))
    if meta.runtime == "sklearn":
        # A file's suffix follows its content, and its digest fixes the content: an upload is
        # stored as skops, so it is built through the allow-list again and never unpickled.
        if store.holds(meta.artifact_sha256, "skops"):
            data = store.read_verified(meta.artifact_sha256, "skops")
            estimator = load_skops(data)
            check_trees(estimator, len(meta.features))
            return LoadedModel(meta, estimator=one_thread(estimator))
        data = store.read_verified(meta.artifact_sha256, "joblib")
        # Unpickling runs code; these bytes were just proven identical to an operator's file.
        return LoadedModel(meta, estimator=one_thread(joblib.load(io.BytesIO(data))))
    raise ArtifactIntegrityError(f"{meta.ref} has unknown runtime {meta.runtime!r}")


class ModelCache:
    """A thread-safe LRU of loaded models, keyed by name, version and artifact digests."""

    def __init__(self, store: ArtifactStore, *, maxsize: int = 8) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.store = store
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, LoadedModel] = OrderedDict()
        self._loading: dict[CacheKey, threading.Event] = {}
        metrics = cache_metrics()
        self._hits = metrics.lookups.labels("models", "hit")
        self._misses = metrics.lookups.labels("models", "miss")
        self._invalidations = metrics.invalidations.labels("models")

    def get(self, meta: ModelVersion) -> LoadedModel:
        """The loaded model for this version, loading it on a miss; failed loads are not kept."""
        key: CacheKey = (meta.name, meta.version, meta.artifact_sha256, meta.onnx_sha256)
        while True:
            with self._lock:
                loaded = self._entries.get(key)
                if loaded is not None:
                    self._entries.move_to_end(key)
                    self._hits.inc()
                    return loaded
                pending = self._loading.get(key)
                if pending is None:
                    pending = self._loading[key] = threading.Event()
                    break
            # Another thread is loading this key: wait for it, then look again (and load
            # ourselves if that load failed).
            pending.wait()
        self._misses.inc()
        # Loading reads and verifies a file: done outside the lock so other models stay served.
        try:
            loaded = load_model(self.store, meta)
        except BaseException:
            with self._lock:
                del self._loading[key]
            pending.set()
            raise
        with self._lock:
            self._entries[key] = loaded
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
            del self._loading[key]
        pending.set()
        return loaded

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._entries.clear()
        self._invalidations.inc()
