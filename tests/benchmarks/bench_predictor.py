"""Speed of the predictor: scenarios per second of `sweep`, the time of one `predict`, and the time of
`python -m roofline predict` from a cold start (interpreter, `import roofline`, one prediction, output).

Run:  python tests/benchmarks/bench_predictor.py        (make bench)
Targets (issue 11): predict <= 0.3 ms (Llama-3.1-70B) and <= 0.5 ms (DeepSeek-V3); sweep >= 4 M scenarios/s;
import + `roofline predict` <= 0.35 s; each as a median of repeats, printed with its spread (min..max).
Prints a human summary, then one JSON document as its last line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import roofline as rl  # noqa: E402


def _summary(samples: list[float]) -> dict:
    """Median and spread of timed repeats (seconds)."""
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "repeats": len(samples)}


def bench_sweep(repeats: int = 5) -> dict:
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
    return {"scenarios": rows, **_summary(times), "scenarios_per_s": rows / statistics.median(times)}


def bench_predict(n: int = 2000) -> dict:
    out = {}
    for model_id in ("llama-3.1-70b", "deepseek-v3", "gemma-2-9b"):
        model, hw = rl.load_model(model_id), rl.load_hardware("h100-sxm")
        wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
        rl.predict(model, hw, wl)
        samples = []
        for _ in range(10):
            t0 = time.perf_counter()
            for _ in range(n // 10):
                rl.predict(model, hw, wl)
            samples.append((time.perf_counter() - t0) / (n // 10))
        out[model_id] = _summary(samples)
    return out


def bench_cli(repeats: int = 7) -> dict:
    """Wall time of `python -m roofline predict ...` in a fresh interpreter (import included)."""
    argv = [sys.executable, "-m", "roofline", "predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4"]
    subprocess.run(argv, check=True, capture_output=True)  # warm the file cache
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - t0)
    return _summary(samples)


def main() -> int:
    sweep = bench_sweep()
    predict = bench_predict()
    cli = bench_cli()
    print(f"sweep: {sweep['scenarios']:,} scenarios, median {sweep['median_s']:.3f} s (min {sweep['min_s']:.3f}, max {sweep['max_s']:.3f}, "
          f"{sweep['repeats']} repeats) = {sweep['scenarios_per_s']:,.0f} scenarios/s  [target >= 4,000,000]")
    targets = {"llama-3.1-70b": " [target <= 0.3 ms]", "deepseek-v3": " [target <= 0.5 ms]"}
    for model_id, r in predict.items():
        print(f"predict({model_id}): median {r['median_s'] * 1e3:.3f} ms (min {r['min_s'] * 1e3:.3f}, max {r['max_s'] * 1e3:.3f})"
              + targets.get(model_id, ""))
    print(f"python -m roofline predict: median {cli['median_s']:.3f} s (min {cli['min_s']:.3f}, max {cli['max_s']:.3f})  [target <= 0.35 s]")
    doc = {"benchmark": "predictor", "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
           "sweep": sweep, "predict": predict, "cli": cli}
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
