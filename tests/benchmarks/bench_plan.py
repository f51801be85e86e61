"""Speed of the capacity planner: `rl.plan` for one model over every shipped hardware profile and every
precision and parallelism (tp x pp, ep for MoE) option.

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
    "deepseek-v3 (MoE: tp x pp and ep)": dict(model="deepseek-v3", requests_per_s=10, prompt_tokens=2048, output_tokens=256,
                                             ttft_slo_s=1.0, tpot_slo_s=0.05),
}


def bench(kw: dict, repeats: int = 5) -> dict:
    """Every option evaluated (best_only=False), and the default call (best per device, which prunes by a cost bound)."""
    rl.plan(**kw)  # warm the spec caches
    out = {}
    for label, best_only in (("all", False), ("best", True)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            df = rl.plan(**kw, best_only=best_only)
            times.append(time.perf_counter() - t0)
        out[label] = {"rows": len(df), "best_s": min(times), "median_s": statistics.median(times)}
    out["hardware"] = int(df["hardware_id"].nunique())
    return out


def main() -> int:
    out = {name: bench(kw) for name, kw in CASES.items()}
    for name, r in out.items():
        a, b = r["all"], r["best"]
        print(f"plan({name}) on {r['hardware']} devices: every option ({a['rows']} rows) {a['best_s']:.3f} s best, "
              f"{a['median_s']:.3f} s median; best per device {b['best_s']:.3f} s best, {b['median_s']:.3f} s median  [target < 2 s]")
    print(json.dumps({"benchmark": "plan", "python": platform.python_version(), "machine": platform.machine(), "plan": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
