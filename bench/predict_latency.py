"""Single-row latency of house-price through POST /v1/predict (gunicorn, loopback, keep-alive)
next to a plain scikit-learn predict and a direct onnxruntime run of the same model, in one run.

    .venv/bin/python -m bench.predict_latency [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import requests

from bench.harness import demo_environment, running_server, summary, time_calls

ROW = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    count = parser.parse_args().requests

    # More requests than the default rate limit admits per minute; the check itself stays on.
    env, keys = demo_environment({"PREDGATE_DEFAULT_RATE_LIMIT": "1000000/minute"})
    data_dir = Path(env["PREDGATE_DATA_DIR"])
    with sqlite3.connect(data_dir / "predgate.db") as db:
        sha, onnx_sha = db.execute(
            "SELECT artifact_sha256, onnx_sha256 FROM model_versions WHERE name='house-price'"
        ).fetchone()
    estimator = joblib.load(data_dir / "artifacts" / sha[:2] / f"{sha}.joblib")
    frame = pd.DataFrame([ROW])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(data_dir / "artifacts" / onnx_sha[:2] / f"{onnx_sha}.onnx"),
        options,
        providers=["CPUExecutionProvider"],
    )
    matrix = np.array([[120, 2, 1, 1]], dtype=np.float32)

    results = {
        "sklearn_predict": summary(time_calls(lambda: estimator.predict(frame), count)),
        "onnxruntime_run": summary(time_calls(lambda: session.run(None, {"input": matrix}), count)),
    }
    with running_server(env) as base, requests.Session() as http:
        headers = {"Authorization": f"Bearer {keys['acme']}"}

        def call() -> None:
            response = http.post(f"{base}/v1/predict", json=ROW, headers=headers)
            assert response.status_code == 200, response.text

        results["http_v1_predict"] = summary(time_calls(call, count))
        results["http_healthz"] = summary(
            time_calls(lambda: http.get(f"{base}/healthz").raise_for_status(), count)
        )
    base_p50 = results["sklearn_predict"]["p50_ms"]
    for stats in results.values():
        stats["p50_vs_sklearn"] = round(stats["p50_ms"] / base_p50, 3)
    print(json.dumps({"requests": count, "results": results}, indent=2))


if __name__ == "__main__":
    main()
