"""Speed of the predictor: scenarios per second of `sweep`, the time of one `predict`, and the time of
`python -m roofline predict` from a cold start (interpreter, `import roofline`, one prediction, output).

`predict` is timed twice: one scenario repeated (what the memo tables keep for a scenario is found again: a
notebook re-running a cell, a planner re-reading a candidate) and a new scenario on every call (97 batch sizes x 37 prompt
lengths, 3,589 distinct pairs cycled, more than the tables keep: the cost of a scenario never seen).

Run:  python tests/benchmarks/bench_predictor.py        (make bench)
      python tests/benchmarks/bench_predictor.py --src DIR --json-out FILE   (time another checkout's `roofline/`)
Targets (issue 11): predict <= 0.3 ms (Llama-3.1-70B) and <= 0.5 ms (DeepSeek-V3); sweep >= 4 M scenarios/s;
import + `roofline predict` <= 0.35 s; each as a median of repeats, printed with its spread (min..max).

Machines differ, and this project's shared 2-core machine runs slower than when the issue measured
(other jobs share its cores). So the benchmark also times three fixed workloads that do not depend on this code,
printed as a record of the machine's speed at the time:

* `python_loop_s`: a pure-Python loop `s += i` over 2,000,000 integers (median of 5);
* `numpy_small_s`: 20,000 numpy calls on 3-element arrays (the per-call overhead a scalar `predict` pays);
* `numpy_large_s`: 20 elementwise passes over 1,000,000 float64 (the memory-bound work a `sweep` pays).

The honest claim is the speed-up against the commit before the work (af03d2c) on the same machine: the
benchmark prints it beside each figure, from `baseline_af03d2c.json` (that commit measured with this script,
`--src` pointing at a tree of it; the reference workloads are recorded with it, so a change of machine speed
between the two runs shows). Each figure is also printed *normalised to the issue's machine*: the issue's own
figure for the code before the work (`ISSUE_BEFORE`: predict 0.65 ms and 1.0 ms, sweep 1.2 M/s at its low end,
the cold CLI 0.7 s) divided by that speed-up, which is what the same change would give there.
The machine is shared (other jobs take its cores), so the figures compared are the CPU time of the benchmark's
process (of the child, for the cold CLI), which waiting for a core does not inflate; wall-clock medians and
spreads are in the JSON beside them.
Prints a human summary, then one JSON document as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline_af03d2c.json"
# issue 11's figures for the code before the work, on its machine (the normalisation; see the docstring)
ISSUE_BEFORE = {"sweep": 1.2, "llama-3.1-70b": 0.65, "deepseek-v3": 1.0, "cli": 0.7}
LOOP_ITERATIONS = 2_000_000

SWEEP_GRID = dict(
    model="llama-3.1-70b",
    hardware=["h100-sxm", "h200", "a100-sxm-80gb", "mi300x"],
    batch_size=list(range(1, 129)),
    prompt_tokens=[128 * i for i in range(1, 33)],
    output_tokens=[64 * i for i in range(1, 17)],
    tp=[1, 2, 4, 8],
)
# 1,048,576 scenarios exceed `sweep.SWEEP_MEMORY_BUDGET_BYTES` in one call: the grid is swept in chunks of
# SWEEP_CHUNK batch sizes (131,072 scenarios each), and the time of all chunks together is the time of the grid.
SWEEP_CHUNK = 16


def _summary(samples: list[float]) -> dict:
    """Median and spread of timed repeats (seconds)."""
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "repeats": len(samples)}


def bench_machine(repeats: int = 5) -> dict:
    """The fixed reference workloads (see the module docstring)."""
    import numpy as np

    def loop():
        s = 0
        for i in range(LOOP_ITERATIONS):
            s += i
        return s

    a, b = np.arange(3.0), np.arange(3.0) + 1
    big = np.random.default_rng(0).random(1_000_000)

    def small():
        for _ in range(10_000):
            np.add(a, b)
            np.maximum(a, b)

    def large():
        out = big
        for _ in range(20):
            out = np.maximum(out * 1.0000001, big)
        return out

    out = {}
    for name, fn in (("python_loop_s", loop), ("numpy_small_s", small), ("numpy_large_s", large)):
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        out[name] = _summary(samples)
    return out


def bench_sweep(rl, repeats: int = 5) -> dict:
    batches = SWEEP_GRID["batch_size"]
    chunks = [batches[i:i + SWEEP_CHUNK] for i in range(0, len(batches), SWEEP_CHUNK)]
    rl.sweep(**{**SWEEP_GRID, "batch_size": [1]})  # warm the spec caches
    times, cpu, rows = [], [], 0
    for _ in range(repeats):
        rows = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for chunk in chunks:
            rows += len(rl.sweep(**{**SWEEP_GRID, "batch_size": chunk}))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"scenarios": rows, "chunks": len(chunks), **_summary(times), "scenarios_per_s": rows / statistics.median(times),
            "cpu": _summary(cpu), "scenarios_per_cpu_s": rows / statistics.median(cpu)}


def bench_predict(rl, n: int = 2000) -> dict:
    out = {}
    for model_id in ("llama-3.1-70b", "deepseek-v3", "gemma-2-9b"):
        model, hw = rl.load_model(model_id), rl.load_hardware("h100-sxm")
        wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
        rl.predict(model, hw, wl)
        samples, cpu = [], []
        for _ in range(10):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n // 10):
                rl.predict(model, hw, wl)
            samples.append((time.perf_counter() - t0) / (n // 10))
            cpu.append((time.process_time() - c0) / (n // 10))
        # the same model and device, but a scenario not seen before on every call (97 batch sizes x 37 prompt
        # lengths, 3,589 distinct pairs cycled: more batch sizes and pairs than the memo tables keep)
        fresh = [rl.Workload(batch_size=1 + i % 97, prompt_tokens=1024 + 16 * (i % 37), output_tokens=256)
                 for i in range(n)]
        fs, fc = [], []
        for k in range(10):
            part = fresh[k * (n // 10):(k + 1) * (n // 10)]
            t0, c0 = time.perf_counter(), time.process_time()
            for w in part:
                rl.predict(model, hw, w)
            fs.append((time.perf_counter() - t0) / len(part))
            fc.append((time.process_time() - c0) / len(part))
        out[model_id] = {**_summary(samples), "cpu": _summary(cpu), "fresh": {**_summary(fs), "cpu": _summary(fc)}}
    return out


def bench_cli(src: Path | None, repeats: int = 7) -> dict:
    """Wall time of `python -m roofline predict ...` in a fresh interpreter (import included).

    As on an installed package, the modules' bytecode is cached (`__pycache__`, written by the warm-up run even
    where PYTHONDONTWRITEBYTECODE is set, as it is on this project's machine): a cold start that compiled every
    module from source each time would time the compiler, not the import.
    """
    argv = [sys.executable, "-m", "roofline", "predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cwd = None if src is None else src  # `-m` puts the working directory first on the path
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cwd)  # warm the file cache
    samples, cpu = [], []
    for _ in range(repeats):
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cwd)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(time.perf_counter() - t0)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {**_summary(samples), "cpu": _summary(cpu)}


SAME_MACHINE_TOLERANCE = 1.3  # largest ratio of reference-workload times still read as the same machine


def _line(label: str, value: float, unit: str, rate: bool, before: float | None, issue_before: float | None, target: str,
          spread: tuple[float, float] | None = None) -> str:
    """`label: median (spread) | N x faster than af03d2c | on the issue's machine ~value | target`."""
    out = f"{label}: median {value:,.3f} {unit}"
    if spread:
        out += f" (min {spread[0]:,.3f}, max {spread[1]:,.3f})"
    if before is not None:
        speedup = value / before if rate else before / value
        out += f"  | {speedup:.2f}x faster than af03d2c ({before:,.3f} {unit} on this machine)"
        if issue_before is not None:
            norm = issue_before * speedup if rate else issue_before / speedup
            out += f"  | on the issue's machine ~{norm:,.3f} {unit} (its {issue_before} / {speedup:.2f})"
    return out + f"  [target {target}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, help="a checkout whose roofline/ package to time instead of the installed one")
    ap.add_argument("--json-out", type=Path, help="also write the JSON document here (to record a baseline)")
    a = ap.parse_args()
    if a.src is not None:
        sys.path.insert(0, str(a.src.resolve()))
    import roofline as rl

    machine = bench_machine()
    sweep = bench_sweep(rl)
    predict = bench_predict(rl)
    cli = bench_cli(None if a.src is None else a.src.resolve())
    base = json.loads(BASELINE.read_text()) if BASELINE.exists() and a.src is None else None
    m = machine
    print(f"roofline from {Path(rl.__file__).parent}")
    print(f"machine: python loop of {LOOP_ITERATIONS:,} iterations {m['python_loop_s']['median_s']:.3f} s; "
          f"20,000 small numpy calls {m['numpy_small_s']['median_s'] * 1e3:.1f} ms; "
          f"20 passes over 1 M floats {m['numpy_large_s']['median_s'] * 1e3:.1f} ms; load average {os.getloadavg()[0]:.2f}")
    if base is not None:
        bm = base["machine"]
        print(f"baseline: af03d2c measured {base['when']}, same script: python loop {bm['python_loop_s']['median_s']:.3f} s, "
              f"small numpy calls {bm['numpy_small_s']['median_s'] * 1e3:.1f} ms, large {bm['numpy_large_s']['median_s'] * 1e3:.1f} ms, "
              f"load average {base['load_average'][0]:.2f}")
        # a baseline is a same-machine figure only if the reference workloads agree: a speed-up against a baseline
        # timed on a slower or busier machine would credit the code with the machine's speed
        ratio = max(bm[k]["median_s"] / m[k]["median_s"] for k in ("python_loop_s", "numpy_small_s"))
        ratio = max(ratio, max(m[k]["median_s"] / bm[k]["median_s"] for k in ("python_loop_s", "numpy_small_s")))
        if ratio > SAME_MACHINE_TOLERANCE:
            print(f"not compared: the reference workloads differ {ratio:.1f}x from the baseline's (another machine or load); "
                  f"time a checkout of af03d2c here with --src DIR --json-out FILE for a speed-up")
            base = None
        else:
            print("normalised: the issue's figure for the code before the work, divided by the speed-up measured here")
    b = (lambda *keys: _get(base, keys)) if base is not None else (lambda *keys: None)
    print(f"sweep: {sweep['scenarios']:,} scenarios in {sweep['chunks']} chunks, {sweep['repeats']} repeats, "
          f"wall median {sweep['median_s']:.3f} s (min {sweep['min_s']:.3f}, max {sweep['max_s']:.3f}), "
          f"CPU median {sweep['cpu']['median_s']:.3f} s (min {sweep['cpu']['min_s']:.3f}, max {sweep['cpu']['max_s']:.3f})")
    print("Each figure: CPU time of the process (the machine is shared: wall time is mostly waiting for a core); "
          "wall medians in the JSON")
    print(_line("  sweep", sweep["scenarios_per_cpu_s"] / 1e6, "M scenarios/s", True, _div(b("sweep", "scenarios_per_cpu_s"), 1e6),
                ISSUE_BEFORE["sweep"], ">= 4 M/s"))
    targets = {"llama-3.1-70b": "<= 0.3 ms", "deepseek-v3": "<= 0.5 ms", "gemma-2-9b": "none"}
    for model_id, r in predict.items():
        c = r["cpu"]
        print(_line(f"predict({model_id})", c["median_s"] * 1e3, "ms", False, _div(b("predict", model_id, "cpu", "median_s"), 1e-3),
                    ISSUE_BEFORE.get(model_id), targets[model_id], (c["min_s"] * 1e3, c["max_s"] * 1e3)))
        f = r["fresh"]["cpu"]
        print(_line(f"predict({model_id}), a new scenario each call", f["median_s"] * 1e3, "ms", False, None, None,
                    targets[model_id], (f["min_s"] * 1e3, f["max_s"] * 1e3)))
    c = cli["cpu"]
    print(_line("python -m roofline predict", c["median_s"], "s", False, b("cli", "cpu", "median_s"), ISSUE_BEFORE["cli"], "<= 0.35 s",
                (c["min_s"], c["max_s"])))
    doc = {"benchmark": "predictor", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "python": platform.python_version(), "machine_arch": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
           "machine": machine, "sweep": sweep, "predict": predict, "cli": cli}
    if a.json_out is not None:
        a.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc))
    return 0


def _get(d: dict, keys: tuple):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None  # a baseline recorded before this figure existed
        d = d[k]
    return d


def _div(x, y):
    return None if x is None else x / y


if __name__ == "__main__":
    sys.exit(main())
