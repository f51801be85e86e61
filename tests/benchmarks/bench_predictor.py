"""Speed of the predictor: scenarios per second of `sweep`, and the time of one `predict`.

Run:  python tests/benchmarks/bench_predictor.py        (make bench)
Targets (issue: core simulator): sweep >= 1,000,000 scenarios/s on one core; predict() < 1 ms.
Prints a human summary, then one JSON document as its last line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import roofline as rl  # noqa: E402


def bench_sweep(repeats: int = 3) -> dict:
    grid = dict(
        model="llama-3.1-70b",
        hardware=["h100-sxm", "h200", "a100-sxm-80gb", "mi300x"],
        batch_size=list(range(1, 129)),
        prompt_tokens=[128 * i for i in range(1, 33)],
        output_tokens=[64 * i for i in range(1, 17)],
        tp=[1, 2, 4, 8],
    )
    rl.sweep(**{**grid, "batch_size": [1]})  # warm the spec caches
    times, rows = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = rl.sweep(**grid)
        times.append(time.perf_counter() - t0)
        rows = len(df)
    best = min(times)
    return {"scenarios": rows, "best_s": best, "median_s": statistics.median(times), "scenarios_per_s": rows / best}


def bench_predict(n: int = 2000) -> dict:
    out = {}
    for model_id in ("llama-3.1-70b", "deepseek-v3", "gemma-2-9b"):
        model, hw = rl.load_model(model_id), rl.load_hardware("h100-sxm")
        wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
        rl.predict(model, hw, wl)
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n // 5):
                rl.predict(model, hw, wl)
            samples.append((time.perf_counter() - t0) / (n // 5))
        out[model_id] = {"median_s": statistics.median(samples), "best_s": min(samples)}
    return out


def main() -> int:
    sweep = bench_sweep()
    predict = bench_predict()
    print(f"sweep: {sweep['scenarios']:,} scenarios in {sweep['best_s']:.3f} s (best of 3) = {sweep['scenarios_per_s']:,.0f} scenarios/s"
          f"  [target >= 1,000,000]")
    for model_id, r in predict.items():
        print(f"predict({model_id}): {r['best_s'] * 1e3:.3f} ms best batch, {r['median_s'] * 1e3:.3f} ms median  [target < 1 ms]")
    doc = {"benchmark": "predictor", "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "sweep": sweep, "predict": predict}
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
