"""`roofline serve`: one replica under continuous batching, loaded the way serving benchmarks load it.

Three loads, one per benchmark shape:

* `--requests-per-s X`: Poisson arrivals at X requests/s (`serving.steady_state`; an open loop, as
  `vllm bench serve --request-rate` sends them);
* `--concurrency N[,N2,...]`: a closed loop of N clients, each sending its next request when its last one
  finished (`serving.closed_loop`; `vllm bench serve --max-concurrency`, genai-perf, AIPerf). The
  response-time law N = X·R ties the throughput X to the response time R: past saturation X stays at the
  capacity and every extra client waits, so TTFT grows with N while throughput plateaus. With
  `--synchronized` (fixed lengths) the clients start together and requests come in waves of N
  (`serving.wave`; SGLang's bench_serving with `--random-range-ratio 1`);
* `--offline`: every request queued at once, the largest stable rate (`serving.capacity_requests_per_s`;
  `trtllm-bench throughput`, `vllm bench throughput`).

`--requests N` makes the run finite, as a benchmark's `--num-prompts` / `--num_requests` does:

* with `--requests-per-s X` within the capacity: the steady state plus the run's wall time, (N − 1)/X + e2e,
  and its throughput over that time (`serving.finite_run_duration_s`, as the corpus reads a finite rate run);
  above the capacity the run's transient instead of "unstable": stepped through the scheduler on a tp replica
  (`serving.overload_run`), else the fluid D/D/c queue on the saturated steady state (`serving.finite_overload`);
* with `--offline` and fixed lengths on a tp replica: the N requests in synchronized waves of what the replica
  admits (`serving.offline_run`); otherwise the largest stable rate, with a note saying why.
"""

from __future__ import annotations

import json
import math

from pydantic import ValidationError

from .. import fmt
from ..errors import SpecError, validation_message
from ..registry import load_model
from ..serving import (
    OverloadRun,
    as_length_dist,
    capacity_requests_per_s,
    closed_loop,
    finite_run_duration_s,
    offline_run,
    run_above_capacity,
    steady_state,
)
from ..workload import Deployment
from . import args

HELP = "one replica under continuous batching at a request rate, a fixed concurrency (closed loop) or offline"
DESCRIPTION = ("The steady state of one replica: Poisson arrivals (--requests-per-s), a closed loop of clients as vllm bench "
               "serve --max-concurrency / genai-perf / AIPerf run it (--concurrency, several comma-separated), or offline max "
               "throughput as trtllm-bench throughput runs it (--offline). --requests N makes a --requests-per-s or --offline run finite: its "
               "wall time and throughput, the queue that builds and drains above capacity, the waves of an offline run. Lengths take a distribution: N | fixed:N | "
               "uniform:LOW:HIGH | normal:MEAN:STD | lognormal:MEDIAN:SIGMA | empirical:T1=P1,T2=P2,...")


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model id (see `roofline models`), a spec .yaml path or a Hugging Face config.json path")
    p.add_argument("--hardware", required=True, help="hardware ids or profile paths, comma-separated")
    p.add_argument("--prompt-tokens", required=True, help="prompt length: N or a distribution, e.g. lognormal:2048:0.5")
    p.add_argument("--output-tokens", required=True, help="output length: N or a distribution, e.g. uniform:128:384")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--requests-per-s", help="Poisson arrivals, requests per second to this replica")
    load.add_argument("--concurrency", help="clients in a closed loop (several comma-separated: one column each)")
    load.add_argument("--offline", action="store_true", help="offline max throughput: the largest stable rate")
    p.add_argument("--requests", metavar="N", help="requests in the run (a benchmark's --num-prompts): with --requests-per-s, the run's wall time "
                                      "and throughput, and above capacity its queue building and draining instead of 'unstable'; "
                                      "with --offline and fixed lengths, the run in synchronized waves (default: the steady state alone, no finite run)")
    p.add_argument("--synchronized", action="store_true", help="with --concurrency and fixed lengths: the clients start together, "
                                                               "so requests arrive in waves of N (serving.wave)")
    p.add_argument("--tp", default="1", help="tensor-parallel GPUs (default 1)")
    p.add_argument("--pp", default="1", help="pipeline-parallel stages (default 1)")
    args.add_attention_dp_argument(p)
    p.add_argument("--ep", default="1", help="expert-parallel GPUs for a MoE model (default 1; needs tp 1)")
    p.add_argument("--weight-dtype", help="weight storage format (default: the model's native dtype)")
    p.add_argument("--activation-dtype", help="compute format (default: native)")
    p.add_argument("--kv-dtype", help="KV-cache format (default: native)")
    p.add_argument("--engine", help=args.ENGINE_HELP)
    p.add_argument("--chunk-tokens", help="chunked prefill: prefill tokens per engine step (default: the engine's "
                   "budget when it chunks prefill, else whole prompts)")
    p.add_argument("--max-batch-size", help="engine cap on running sequences (vLLM max_num_seqs; default: the "
                   "engine's own cap, and what memory holds)")
    args.add_calibration_argument(p)
    args.add_price_argument(p)
    p.add_argument("--json", action="store_true", help="print a list of JSON objects, one per (hardware, load); SI units, USD")


def _deployment(a) -> Deployment:
    try:
        return Deployment(tp=args.number(a.tp, "tp", int), pp=args.number(a.pp, "pp", int), ep=args.number(a.ep, "ep", int),
                          weight_dtype=a.weight_dtype, activation_dtype=a.activation_dtype, kv_dtype=a.kv_dtype,
                          engine=args.engine(getattr(a, "engine", None)), attention_dp=a.attention_dp)
    except ValidationError as exc:
        raise validation_message(exc, "") from None  # flags: the field alone


def points(a) -> list[tuple[str, str, dict]]:
    """(hardware id, load label, figures) for every hardware and load of the flags."""
    model = load_model(a.model)
    ids = args.ids(a.hardware, "hardware")
    hws = args.hardware_profiles(ids, a)
    dep = _deployment(a)
    prompt, output = args.length(a.prompt_tokens, "prompt_tokens"), args.length(a.output_tokens, "output_tokens")
    knobs = dict(chunk_tokens=args.number(a.chunk_tokens, "chunk_tokens", int), max_batch_size=args.number(a.max_batch_size, "max_batch_size", int))
    if a.synchronized and a.concurrency is None:
        raise SpecError("synchronized", "waves come from a closed loop: give --concurrency, or leave --synchronized out")
    n = args.number(getattr(a, "requests", None), "requests", int)
    if n is not None and a.concurrency is not None:
        raise SpecError("requests", "a closed loop runs until stopped: give --requests with --requests-per-s or --offline, "
                                    "or leave it out")
    out = []
    for h, hw in zip(ids, hws):
        if a.offline:
            out.append((h, "offline" if n is None else f"offline, {n} requests", _offline(model, hw, n, prompt, output, dep, knobs)))
            continue
        if a.requests_per_s is not None:
            loads = [("rate", args.number(a.requests_per_s, "requests_per_s"))]
        else:
            loads = [("concurrency", n) for n in args.integers(a.concurrency, "concurrency")]
        for kind, x in loads:
            sp = (steady_state(model, hw, x, prompt, output, dep, **knobs) if kind == "rate"
                  else closed_loop(model, hw, x, prompt, output, dep, **knobs, synchronized=a.synchronized))
            label = f"{x:g} req/s" if kind == "rate" else f"N={x:g}"
            doc = {"mode": "open loop" if kind == "rate" else "closed loop", **({"concurrency": x} if kind != "rate" else {}),
                   **sp.model_dump(mode="json")}
            if n is not None:
                label += f", {n} requests"
                doc = _finite_run(model, hw, n, sp, doc, prompt, output, dep, knobs)
            out.append((h, label, doc))
    return out


def _offline(model, hw, n, prompt, output, dep, knobs) -> dict:
    """--offline: N fixed-length requests in waves on a tp replica (`offline_run`), else the largest stable rate
    (with N given, a note saying why)."""
    o_dist = as_length_dist(output, "output_tokens")
    why = None
    if n is not None:
        if as_length_dist(prompt, "prompt_tokens").kind != "fixed" or o_dist.kind != "fixed":
            why = "requests of distributed lengths finish apart, so the run is not synchronized waves"
        elif not dep.is_tp_replica:
            why = (f"offline waves are modelled for tp replicas only (pp={dep.pp}, ep={dep.ep}"
                   + (", attention_dp" if dep.attention_dp else "") + ")")
    if n is not None and why is None:
        run = offline_run(model, hw, n, prompt, output, dep, **knobs)
        tokens = run.output_tokens_per_s if run.wave_requests else 0.0
        return dict(mode="offline run", hardware=hw.name, model_used="serving.offline_run (synchronized waves)", requests=n,
                    wave_requests=list(run.wave_requests), wave_cycle_s=list(run.wave_cycle_s), run_s=run.wall_s,
                    requests_per_s=run.requests_per_s if run.wave_requests else 0.0, output_tokens_per_s=tokens,
                    output_tokens_per_s_per_gpu=tokens / dep.gpus_per_replica,
                    note=f"{n} requests in {_waves(run.wave_requests)}" if run.wave_requests else "does not fit at batch 1")
    cap = capacity_requests_per_s(model, hw, prompt, output, dep, **knobs)
    tokens = cap * o_dist.mean_tokens
    doc = dict(mode="offline", hardware=hw.name, requests_per_s=cap, output_tokens_per_s=tokens,
               output_tokens_per_s_per_gpu=tokens / dep.gpus_per_replica)
    if why is not None:
        doc.update(model_used="serving.capacity_requests_per_s (largest stable rate)", requests=n,
                   note=f"--requests {n}: {why}; the largest stable rate instead")
    return doc


def _waves(sizes) -> str:
    """(384, 384, 232) -> '3 waves: 2 of 384, 1 of 232'."""
    parts, i = [], 0
    while i < len(sizes):
        j = i
        while j < len(sizes) and sizes[j] == sizes[i]:
            j += 1
        parts.append(f"{j - i} of {sizes[i]}")
        i = j
    return f"{len(sizes)} wave{'s' if len(sizes) != 1 else ''}: {', '.join(parts)}"


def _finite_run(model, hw, n, sp, doc, prompt, output, dep, knobs) -> dict:
    """--requests-per-s X --requests N: a stable rate's run (wall time and throughput, `finite_run_duration_s`), or a rate
    above capacity as the run's transient (`overload_run` on a tp replica, else `finite_overload`)."""
    o = as_length_dist(output, "output_tokens").mean_tokens
    lam = sp.requests_per_s
    if sp.stable:
        e2e = sp.ttft_mean_s + (o - 1) * sp.tpot_s
        run_s = float(finite_run_duration_s(n, lam, e2e))
        return {**doc, "requests": n, "model_used": "serving.finite_run_duration_s (steady state, finite run)", "e2e_mean_s": e2e,
                "run_s": run_s, "run_requests_per_s": n / run_s, "run_output_tokens_per_s": n * o / run_s,
                "note": f"{n} requests at {lam:g}/s within the capacity: (n - 1)/λ + e2e = {fmt.seconds(run_s)}"}
    if not lam > sp.capacity_requests_per_s > 0:
        return doc  # does not fit: the steady state's reason says why
    mode = {"mode": "finite overload", "hardware": sp.hardware, "requests": n, "requests_per_s": lam,
            "capacity_requests_per_s": sp.capacity_requests_per_s, "stable": False,
            "reason": "above capacity; the finite run drains (run rows)"}
    run = run_above_capacity(model, hw, n, lam, prompt, output, dep, **knobs)
    stepped = isinstance(run, OverloadRun)
    figures = {"model_used": "serving.overload_run (stepped through the scheduler)" if stepped else
               "serving.finite_overload (fluid D/D/c queue on the saturated steady state)",
               "ttft_mean_s": run.ttft_mean_s, "ttft_p50_s": run.ttft_p50_s, "ttft_p90_s": run.ttft_p90_s,
               "ttft_p99_s": run.ttft_p99_s, "itl_mean_s": run.itl_mean_s, **({"itl_p50_s": run.itl_p50_s} if stepped else {}),
               "e2e_mean_s": run.e2e_mean_s, "e2e_p50_s": run.e2e_p50_s, "makespan_s": run.makespan_s,
               "run_requests_per_s": run.achieved_requests_per_s, "run_output_tokens_per_s": run.output_tokens_per_s}
    tokens = figures["run_output_tokens_per_s"]
    return {**mode, **figures, "output_tokens_per_s": tokens, "output_tokens_per_s_per_gpu": tokens / dep.gpus_per_replica,
            "note": f"{n} requests at {lam:g}/s above the capacity of {sp.capacity_requests_per_s:.3g}/s: the queue builds and "
                    f"drains, {figures['model_used']}"}


def table(pts: list[tuple[str, str, dict]]) -> str:
    """Figures as rows, one column per (hardware, load)."""
    rows_of = [
        ("requests/s", lambda d: f"{d['requests_per_s']:.3g}"),
        ("output tokens/s", lambda d: fmt.count(d["output_tokens_per_s"])),
        ("  per GPU", lambda d: fmt.count(d["output_tokens_per_s_per_gpu"])),
        ("mean decode batch", lambda d: f"{d['batch_size']:.1f}" if "batch_size" in d else "-"),
        ("TTFT mean", lambda d: fmt.seconds(d["ttft_mean_s"]) if "ttft_mean_s" in d else "-"),
        ("TTFT p50 / p90 / p99", lambda d: " / ".join(fmt.seconds(d[f"ttft_p{q}_s"]) for q in (50, 90, 99)) if "ttft_p50_s" in d else "-"),
        ("TPOT", lambda d: fmt.seconds(d["tpot_s"]) if "tpot_s" in d else "-"),
        ("capacity requests/s", lambda d: f"{d['capacity_requests_per_s']:.3g}" if "capacity_requests_per_s" in d else "-"),
        ("stable", lambda d: ("yes" if d["stable"] else f"NO: {d['reason']}") if "stable" in d else "-"),
    ]
    if any("requests" in d for _, _, d in pts):  # a finite run (--requests): its own figures
        rows_of += [
            ("run: requests", lambda d: str(d["requests"]) if "requests" in d else "-"),
            ("run: waves", lambda d: _waves(d["wave_requests"]) if d.get("wave_requests") else "-"),
            ("run: ITL mean / p50", lambda d: " / ".join(fmt.seconds(d[k]) if k in d else "-" for k in ("itl_mean_s", "itl_p50_s"))
             if "itl_mean_s" in d else "-"),
            ("run: e2e mean / p50", lambda d: " / ".join(fmt.seconds(d[k]) if k in d else "-" for k in ("e2e_mean_s", "e2e_p50_s"))
             if "e2e_mean_s" in d else "-"),
            ("run: wall time", lambda d: fmt.seconds(d.get("makespan_s", d.get("run_s"))) if "makespan_s" in d or "run_s" in d else "-"),
            ("run: requests/s", lambda d: f"{d.get('run_requests_per_s', d['requests_per_s']):.3g}" if "run_s" in d or "makespan_s" in d else "-"),
            ("run: output tokens/s", lambda d: fmt.count(d.get("run_output_tokens_per_s", d["output_tokens_per_s"]))
             if "run_s" in d or "makespan_s" in d else "-"),
        ]
        rows_of = [(name, f) for name, f in rows_of  # a run row none of the columns has is left out
                   if name not in ("run: waves", "run: ITL mean / p50") or any(
                       d.get("wave_requests" if name == "run: waves" else "itl_mean_s") for _, _, d in pts)]

    def cell(d, f):
        try:
            return f(d)
        except (TypeError, ValueError):  # an infinite or missing figure of an unstable point
            return "n/a"

    header = ["", *(f"{h} {label}" for h, label, _ in pts)]
    body = [[name, *(cell(d, f) for _, _, d in pts)] for name, f in rows_of]
    return fmt.table(header, body)


def run(a) -> str:
    pts = points(a)
    if a.json:
        return json.dumps([_finite({"hardware_id": h, **d}) for h, _, d in pts], indent=2)
    if a.synchronized:  # whether each column ran in waves, or why not
        return table(pts) + "".join(f"\n{h} {label}: {d['notes'][-1]}" for h, label, d in pts if d.get("notes"))
    return table(pts) + "".join(f"\n{h} {label}: {d['note']}" for h, label, d in pts if d.get("note"))


def _finite(x):
    """JSON has no infinity: an unstable point's infinite figures become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x
