"""Speed of the capacity planner: `rl.plan` for one model over every shipped hardware profile and every
precision and tensor-parallel option.

Run:  python tests/benchmarks/bench_plan.py
Target (issue: serving): under 2 s for one model over 15 hardware profiles on this project's 2-core machine.
Prints a human summary, then one JSON document as its last line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import roofline as rl  # noqa: E402

CASES = {
    "llama-3.1-70b fixed lengths": dict(model="llama-3.1-70b", requests_per_s=10, prompt_tokens=2048, output_tokens=256,
                                        ttft_slo_s=1.0, tpot_slo_s=0.05),
    "llama-3.1-70b lognormal prompts, chunked": dict(model="llama-3.1-70b", requests_per_s=10, prompt_tokens="lognormal:2048:0.5",
                                                     output_tokens="uniform:128:384", ttft_slo_s=1.0, tpot_slo_s=0.05, chunk_tokens=512),
}


def bench(kw: dict, repeats: int = 5) -> dict:
    rl.plan(**kw)  # warm the spec caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = rl.plan(**kw, best_only=False)
        times.append(time.perf_counter() - t0)
    return {"options": len(df), "hardware": int(df["hardware_id"].nunique()), "best_s": min(times), "median_s": statistics.median(times)}


def main() -> int:
    out = {name: bench(kw) for name, kw in CASES.items()}
    for name, r in out.items():
        print(f"plan({name}): {r['options']} options on {r['hardware']} devices, {r['best_s']:.3f} s best, "
              f"{r['median_s']:.3f} s median  [target < 2 s]")
    print(json.dumps({"benchmark": "plan", "python": platform.python_version(), "machine": platform.machine(), "plan": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
