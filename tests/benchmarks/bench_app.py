"""Speed of the dashboard: seconds per rerun after a widget change, driven headless with AppTest.

Run:  python tests/benchmarks/bench_app.py [--repeats N]
Target (issue 13): a widget change on the Predict page stays under 0.2 s per rerun.

Cases, each after a warm-up run that fills the caches a first visit fills:
* predict, batch toggled: on the default page (one device), the batch-size input flips between two values already seen (the cached case: what a
  person clicking back and forth pays; the predictions, sweeps and chart templates come from st.cache_resource);
* predict, new batch: a batch size not seen before (one predict per device, one sweep and the roofline frames);
* predict, 4 devices, batch toggled: the same with four devices picked;
* predict, sweep switched: the "Sweep" choice cycles through its four charts;
* plan, checkbox toggled: the Plan page's "every option" box flips (both plans cached after the first flip).
Three times per rerun: the whole AppTest rerun (AppTest's own parsing included: an upper bound), and the
script's own wall and CPU time (what `streamlit run` pays for the rerun, less sending the page to the browser).
Prints a human summary (median and spread per case), then one JSON document as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import streamlit.testing.v1.app_test as _app_test  # noqa: E402
import streamlit.testing.v1.local_script_runner as _local_runner  # noqa: E402
from streamlit.runtime.scriptrunner.script_cache import ScriptCache  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

# AppTest compiles the script afresh on every run (a new ScriptCache each time: about 0.1 s of AST rewriting for
# app.py), which a server does not: its ScriptCache lives as long as the process. One shared cache here, so a
# rerun costs what it costs behind `streamlit run`.
_SHARED_CACHE = ScriptCache()
_app_test.ScriptCache = _local_runner.ScriptCache = lambda: _SHARED_CACHE

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TARGET_S = 0.2


def _timed(at: AppTest, step) -> tuple[float, float, float]:
    """(wall seconds of the whole AppTest rerun, wall and CPU seconds of the script itself) of one rerun.

    The whole rerun includes AppTest's own work (it parses every element the script sent into its tree), which
    a browser session does not pay; the script's time is what app.py spends (its `main` records it). On a shared
    machine the wall times also count other programs' turns on the cores; the CPU time is the script thread's."""
    w0 = time.perf_counter()
    step()
    total = time.perf_counter() - w0
    script_wall, script_cpu = at.session_state["_run_seconds"]
    return total, script_wall, script_cpu


def _stats(samples: list[tuple[float, float, float]]) -> dict:
    out = {"runs": len(samples)}
    for kind, times in (("rerun_wall", [s[0] for s in samples]), ("script_wall", [s[1] for s in samples]),
                        ("script_cpu", [s[2] for s in samples])):
        q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
        out[kind] = {"median_s": statistics.median(times), "min_s": min(times), "p10_s": q[0], "p90_s": q[-1], "max_s": max(times)}
    return out


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def bench(repeats: int) -> dict:
    out = {}
    wide = _app(hw="h100-sxm,h200,a100-sxm-80gb,mi300x")
    for b in (16, 8):
        wide.number_input(key="batch").set_value(b).run()
    out["predict, 4 devices, batch toggled (cached)"] = _stats(
        [_timed(wide, lambda b=b: wide.number_input(key="batch").set_value(b).run()) for b in [16, 8] * (repeats // 2)])
    at = _app()  # the default page: Llama-3.1-70B on one H100 model, tp auto
    batch = at.number_input(key="batch")
    for b in (16, 8):  # warm both values
        batch.set_value(b).run()
    out["predict, batch toggled (cached)"] = _stats(
        [_timed(at, lambda b=b: at.number_input(key="batch").set_value(b).run()) for b in [16, 8] * (repeats // 2)])
    fresh = iter(range(17, 17 + repeats))
    out["predict, new batch (uncached)"] = _stats(
        [_timed(at, lambda: at.number_input(key="batch").set_value(next(fresh)).run()) for _ in range(repeats)])
    at.number_input(key="batch").set_value(8).run()
    sweeps = ["prompt", "frontier", "memory", "batch"]
    for s in sweeps:
        at.radio(key="sweep").set_value(s).run()
    out["predict, sweep switched (cached)"] = _stats(
        [_timed(at, lambda s=s: at.radio(key="sweep").set_value(s).run()) for s in sweeps * max(1, repeats // 4)])
    plan = _app(page="plan")  # the default Plan page: six devices, four precisions
    for v in (True, False):
        plan.checkbox(key="pl_all").set_value(v).run()
    out["plan, checkbox toggled (cached)"] = _stats(
        [_timed(plan, lambda v=v: plan.checkbox(key="pl_all").set_value(v).run()) for v in [True, False] * (repeats // 2)])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    out = bench(max(2, a.repeats))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, r in out.items():
        for kind in ("rerun_wall", "script_wall", "script_cpu"):
            t = r[kind]
            print(f"{name:44s} {kind:11s} median {1e3 * t['median_s']:6.1f} ms  (p10 {1e3 * t['p10_s']:6.1f}, p90 {1e3 * t['p90_s']:6.1f}, "
                  f"min {1e3 * t['min_s']:6.1f}, max {1e3 * t['max_s']:6.1f} ms; {r['runs']} reruns)")
    print(f"target: a widget change under {TARGET_S * 1e3:.0f} ms per rerun")
    print(json.dumps({"benchmark": "app", "python": platform.python_version(), "machine": platform.machine(),
                      "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
                      "target_s": TARGET_S, "cases": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
