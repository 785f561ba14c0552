"""A pipeline over business data (a text column one-hot encoded, gaps imputed, a yes/no column)
against the demo's numeric random forest, both served by ONNX from one `predgate serve`, in one
run with interleaved rounds:

    .venv/bin/python -m bench.categorical_latency [--rounds 3] [--seconds 8]

Both models are trained by `predgate models train` on 600 rows (random forest, 60 trees of depth
at most 12), so the difference is what the request path and the graph do with typed, text and
missing values. Reports per model: req/s, p50/p99 latency (wrk -t2 -c16) and the gateway's CPU
per request (its process tree, sampled around each run), and the ratios to the numeric forest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cpu import common_delta, tree_seconds
from bench.load import run_wrk
from bench.provision import demo_environment, predgate
from bench.servers import predgate_server

NUMERIC_ROW = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}
BUSINESS_ROW = {"area": 120.5, "rooms": 3, "city": "Paris", "pool": True}


def business_csv(path: Path, rows: int = 600, seed: int = 1) -> None:
    """House prices with a city (text, some missing), a pool (true/false) and gaps in area."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "area": rng.uniform(30, 300, rows).round(1),
            "rooms": rng.integers(1, 7, rows),
            "city": rng.choice(["Lyon", "Paris", "Nice", "Lille"], rows),
            "pool": rng.choice(["true", "false"], rows),
        }
    )
    per_m2 = frame["city"].map({"Paris": 5000, "Lyon": 3500, "Nice": 4000, "Lille": 2500})
    noise = rng.normal(0, 10000, rows)
    frame["price"] = (frame["area"] * per_m2 + frame["rooms"] * 5000 + noise).round(-2)
    frame.loc[frame.index[::13], "city"] = np.nan
    frame.loc[frame.index[::17], "area"] = np.nan
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    with demo_environment() as (env, keys), tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "business.csv"
        business_csv(csv)
        predgate(env, "models", "train", "--data", str(csv), "--target", "price", "--name", "city")
        predgate(env, "tenants", "create", "cityco")
        predgate(env, "tenants", "assign", "cityco", "city")
        issued = json.loads(predgate(env, "keys", "issue", "--tenant", "cityco", "--json"))
        targets = {
            "numeric forest": (keys["acme"], NUMERIC_ROW),
            "business pipeline": (issued["api_key"], BUSINESS_ROW),
        }
        samples: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in targets}
        with predgate_server(env, Path(folder) / "serve.log", workers=1) as server:
            url = f"{server.base_url}/v1/predict"
            for key, row in targets.values():
                run_wrk(url, f"Bearer {key}", 2, body=json.dumps(row))  # warm-up
            for _ in range(args.rounds):
                for name, (key, row) in targets.items():
                    before = tree_seconds(server.pids())
                    result = run_wrk(url, f"Bearer {key}", args.seconds, body=json.dumps(row))
                    cpu = common_delta(before, tree_seconds(server.pids()))
                    samples[name].append(
                        (
                            result.requests_per_second,
                            result.p50_ms,
                            result.p99_ms,
                            cpu * 1000 / result.requests,
                        )
                    )
    base = {i: statistics.median(s[i] for s in samples["numeric forest"]) for i in range(4)}
    print("| model | req/s | p50 ms | p99 ms | CPU ms/request | CPU vs numeric forest |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in samples.items():
        median = [statistics.median(s[i] for s in runs) for i in range(4)]
        print(
            f"| {name} | {median[0]:.0f} | {median[1]:.2f} | {median[2]:.2f} | {median[3]:.3f} | "
            f"{median[3] / base[3]:.2f}x |"
        )
    print(f"\n({args.rounds} interleaved rounds of {args.seconds} s each; medians)")


if __name__ == "__main__":
    main()
