"""Bare Flask baselines for bench.compare, each served by gunicorn as an app factory:

    gunicorn -w 2 -k gthread --threads 8 'bench.apps:floor_app()'

`sklearn_app()` and `onnx_app()` read the models bench.compare trained from BENCH_MODEL_DIR
(`<model>.joblib`, `<model>.onnx`) and answer POST /v1/predict/<model> like predgate does:
{"predictions": [value]}. No auth, no database, no audit: the cost of Flask + the model alone.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

FEATURES = ("area", "rooms", "bathrooms", "location")
MODEL_DIR_VARIABLE = "BENCH_MODEL_DIR"
ONNX_INPUT = "input"


def floor_app() -> Flask:
    """A constant small JSON answer: what gunicorn + Flask cost with no work at all."""
    app = Flask("bench_floor")

    @app.post("/v1/predict")
    def predict() -> ResponseReturnValue:
        return jsonify({"predictions": [0.0]})

    return app


def sklearn_app() -> Flask:
    """Parse the JSON row and call estimator.predict on a 1-row float64 array."""
    model_dir = _model_dir()
    # The factory runs in each worker (no --preload), so every worker loads its own copy.
    estimators = {path.stem: joblib.load(path) for path in sorted(model_dir.glob("*.joblib"))}
    app = Flask("bench_sklearn")

    @app.post("/v1/predict/<name>")
    def predict(name: str) -> ResponseReturnValue:
        estimator = estimators.get(name) or abort(404)
        value = estimator.predict(_row(np.float64))
        return jsonify({"predictions": [float(value[0])]})

    return app


def onnx_app() -> Flask:
    """Parse the JSON row and run the skl2onnx-converted model in onnxruntime."""
    sessions = _LazySessions(_model_dir())
    app = Flask("bench_onnx")

    @app.post("/v1/predict/<name>")
    def predict(name: str) -> ResponseReturnValue:
        session = sessions.get(name)
        outputs = session.run(None, {ONNX_INPUT: _row(np.float32)})
        return jsonify({"predictions": [float(outputs[0].reshape(-1)[0])]})

    return app


class _LazySessions:
    """One InferenceSession per model, created on first use inside the worker process."""

    def __init__(self, model_dir: Path) -> None:
        self._paths = {path.stem: path for path in model_dir.glob("*.onnx")}
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        """The session for `name` (404 when there is no such model)."""
        if name not in self._paths:
            abort(404)
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                session = self._sessions[name] = _open_session(self._paths[name])
            return session


def _open_session(path: Path) -> Any:
    # onnxruntime is not fork-safe: imported and opened in the worker, never in the master.
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # The same session shape predgate uses (models/compilation.py): one thread per request,
    # concurrency comes from gunicorn's threads and workers.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _row(dtype: type[np.floating[Any]]) -> np.ndarray[Any, Any]:
    body = request.get_json()
    try:
        return np.array([[float(body[name]) for name in FEATURES]], dtype=dtype)
    except (KeyError, TypeError, ValueError):
        abort(400)


def _model_dir() -> Path:
    value = os.environ.get(MODEL_DIR_VARIABLE, "")
    if not value:
        raise RuntimeError(f"{MODEL_DIR_VARIABLE} must name the directory of the trained models")
    return Path(value)
