"""The capacity planner: the cheapest deployment of a model, per hardware, that serves a traffic within its SLOs.

`plan(model, requests_per_s, prompt_tokens, output_tokens, ttft_slo_s, tpot_slo_s)` enumerates, for every
hardware profile (default: all shipped), every deployment option:

* precision: native; FP8 W8A8 where the device has FP8 tensor cores; INT8 W8A8 where it has INT8;
  INT4 weight-only in groups of 128 (W4A16, computed at the native peak);
* tensor parallelism: every tp `valid_tps` allows on the device (one replica = tp GPUs).

For each option the replica runs continuous batching in steady state (`serving.Curves`: step times from the
operator table, Little's law, the M/G/1 prefill queue). Every latency rises with the per-replica rate λ_r,
so the largest λ* meeting all constraints is found by bisection on λ_r:

    stable (λ_r below the capacity: memory and prefill), mean TPOT ≤ tpot_slo_s,
    P(TTFT > ttft_slo_s) ≤ 1 - ttft_percentile

and the fleet is replicas = ceil(λ / λ*), GPUs = replicas · tp, $/hour = GPUs · price per GPU-hour,
$/million output tokens = $/hour / (λ · E[O] · 3600) · 10⁶ (the offered load, idle headroom included).
The figures of a row are the steady state at λ / replicas. A replica's batch is what the load makes it
(Little's law); `batch_limit` is the most memory holds (set the engine's max_num_seqs at or below it).

An option is infeasible when it does not fit at batch 1 (required vs available bytes), when even an idle
replica misses the TPOT SLO (a decode step at batch 1) or the TTFT SLO (its prefill alone), or when the
device lacks the compute format. `best_only=True` keeps one row per device: its cheapest feasible option
(fewest $/hour, then fewest GPUs, then lowest TTFT), or, when none is feasible, the option closest to
feasible with its reason. Feasible rows come first, ranked 1..k by $/hour; the rest follow, unranked.

Cost of a call: one operator table per (precision, tp) for all devices at once, over a grid of batch sizes,
then vectorized bisections; about 30 tables for a dense 70B model over the 15 shipped devices.
Pipeline and expert parallelism are not enumerated (see the serving module).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from . import ops as O
from .errors import SpecError
from .hardware import HardwareProfile
from .predict import check, valid_tps
from .registry import list_hardware, load_hardware, load_model
from .serving import MEMORY_PERCENTILE, TTFT_PERCENTILES, Curves, _check_inputs, batch_grid
from .specs import ModelSpec
from .units import SECONDS_PER_HOUR
from .workload import Deployment, Workload

PRECISIONS: dict[str, Deployment] = {
    "native": Deployment(),
    "fp8": Deployment(weight_dtype="fp8", activation_dtype="fp8"),
    "int8": Deployment(weight_dtype="int8", activation_dtype="int8"),
    "int4-g128": Deployment(weight_dtype="int4", weight_group_size=128),
}

COLUMNS = [
    "rank", "hardware_id", "hardware", "feasible", "binding_constraint", "reason", "precision", "weight_dtype",
    "activation_dtype", "kv_dtype", "tp", "gpus_per_replica", "replicas", "gpus", "batch_size", "batch_limit",
    "requests_per_s_per_replica", "capacity_requests_per_s_per_replica", "prefill_utilization",
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_at_slo_percentile_s", "tpot_s", "itl_max_s",
    "output_tokens_per_s_per_replica", "output_tokens_per_s_per_gpu", "usd_per_hour", "usd_per_million_output_tokens",
    "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu", "price_usd_per_gpu_hour",
]
MAX_REPLICAS = 1_000_000
_BISECTIONS = 40


def _slo_checks(ttft_slo_s, tpot_slo_s, ttft_percentile):
    for name, v in (("ttft_slo_s", ttft_slo_s), ("tpot_slo_s", tpot_slo_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise SpecError(name, f"must be a positive number of seconds, got {v!r}")
    if isinstance(ttft_percentile, bool) or not isinstance(ttft_percentile, (int, float)) or not 0 < ttft_percentile < 1:
        raise SpecError("ttft_percentile", f"must be in (0, 1), e.g. 0.9 for p90; got {ttft_percentile!r}")


def _max_rate(cv: Curves, meets: Callable[[dict], np.ndarray], cap: np.ndarray) -> np.ndarray:
    """Per device row, the largest rate in [0, cap] at which `meets(state)` holds (0 when it fails even
    as the rate goes to 0), by bisection: every constraint only gets worse as the rate rises."""
    cap = np.asarray(cap, float)
    lo = np.zeros_like(cap)
    tiny = cap * 1e-9
    good0 = meets(cv.state(tiny)) & (cap > 0)
    hi = np.where(good0, cap, 0.0)
    top = meets(cv.state(hi * (1 - 1e-9))) & good0
    lo = np.where(top, hi * (1 - 1e-9), np.where(good0, tiny, 0.0))
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        ok = meets(cv.state(np.where(good0 & ~top, mid, lo)))
        move = good0 & ~top
        lo, hi = np.where(move & ok, mid, lo), np.where(move & ~ok, mid, hi)
    return lo


def _options(model: ModelSpec, hws: list[HardwareProfile], precisions: dict[str, Deployment], tps, p, o, rows: list):
    """Group the valid (precision, tp) options by the devices that accept them: {(label, tp): (dep, rd, [hw])}.
    Devices lacking a precision's compute format get an 'unsupported' row."""
    ctx = p.percentile(MEMORY_PERCENTILE) + o.percentile(MEMORY_PERCENTILE)
    wl = Workload(prompt_tokens=max(1, round(p.mean_tokens)), output_tokens=max(1, round(ctx - p.mean_tokens)))
    groups: dict = {}
    for label, dep in precisions.items():
        try:
            rd0 = dep.resolved(model)
        except SpecError as exc:
            for hw in hws:
                rows.append(_infeasible_row(hw, label, dep, None, 0, "unsupported", str(exc)))
            continue
        for hw in hws:
            if rd0.compute_key not in hw.peak_flops_per_s:
                rows.append(_infeasible_row(hw, label, dep, rd0, 0, "unsupported", f"{hw.name} has no {rd0.compute_key} tensor cores"))
                continue
            for tp in valid_tps(model, hw):
                if tps is not None and tp not in tps:
                    continue
                d = dep.model_copy(update={"tp": tp})
                rd = check(model, hw, wl, d)
                groups.setdefault((label, tp), (d, rd, []))[2].append(hw)
    return groups


def _infeasible_row(hw, label, dep, rd, tp, binding, reason, **figures) -> dict:
    row = {c: math.nan for c in COLUMNS}
    row.update(hardware_id=hw.name, hardware=hw.name, feasible=False, binding_constraint=binding, reason=reason,
               precision=label, tp=tp, gpus_per_replica=tp, memory_available_bytes_per_gpu=float(hw.memory_bytes),
               price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour,
               weight_dtype=rd.weights.dtype.name if rd else dep.weight_dtype, activation_dtype=rd.act.name if rd else dep.activation_dtype,
               kv_dtype=rd.kv.dtype.name if rd else dep.kv_dtype)
    row.update(figures)
    return row


def plan(model, requests_per_s: float, prompt_tokens, output_tokens, ttft_slo_s: float, tpot_slo_s: float,
         hardware=None, ttft_percentile: float = 0.9, chunk_tokens: int | None = None, max_batch_size: int | None = None,
         precisions: dict[str, Deployment] | None = None, tps: list[int] | None = None, best_only: bool = True) -> pd.DataFrame:
    """The cheapest deployment per hardware that serves `requests_per_s` within the SLOs (module docstring).

    `prompt_tokens` / `output_tokens`: an int, a `serving.LengthDist` or a string like "lognormal:2048:0.5".
    `ttft_slo_s` applies to the `ttft_percentile` of TTFT, `tpot_slo_s` to the mean TPOT. `hardware`: ids or
    profiles (default: every shipped profile). `chunk_tokens`: chunked prefill budget per step (None: whole
    prompts). `max_batch_size`: the engine's cap on running sequences. `precisions` / `tps` narrow the
    options. Returns a DataFrame with the columns of `COLUMNS` (SI units, USD), best first.
    """
    m = model if isinstance(model, ModelSpec) else load_model(model)
    _slo_checks(ttft_slo_s, tpot_slo_s, ttft_percentile)
    p, o = _check_inputs(m, requests_per_s, prompt_tokens, output_tokens, chunk_tokens)
    if max_batch_size is not None and (isinstance(max_batch_size, bool) or not isinstance(max_batch_size, (int, np.integer)) or max_batch_size < 1):
        raise SpecError("max_batch_size", f"must be a positive integer or None, got {max_batch_size!r}")
    hw_ids = list_hardware() if hardware is None else ([hardware] if isinstance(hardware, (str, HardwareProfile)) else list(hardware))
    if not hw_ids:
        raise SpecError("hardware", "needs at least one hardware id; see `roofline hardware`")
    hws = [h if isinstance(h, HardwareProfile) else load_hardware(h) for h in hw_ids]
    given_ids = {hw.name: (h if isinstance(h, str) else hw.name) for h, hw in zip(hw_ids, hws)}
    lam = float(requests_per_s)
    rows: list[dict] = []
    for (label, tp), (dep, rd, group) in _options(m, hws, precisions or PRECISIONS, tps, p, o, rows).items():
        rows += _group_rows(m, dep, rd, tp, label, group, p, o, lam, ttft_slo_s, tpot_slo_s, ttft_percentile, chunk_tokens, max_batch_size)
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"])
    frame["hardware_id"] = frame["hardware"].map(given_ids)
    df = _rank(frame, best_only)
    for c in ("replicas", "gpus", "batch_limit"):
        df[c] = pd.array([None if pd.isna(x) else int(x) for x in df[c]], dtype="Int64")
    df.attrs.update(model=m.name, requests_per_s=lam, prompt_tokens=p.describe(), output_tokens=o.describe(),
                    ttft_slo_s=ttft_slo_s, ttft_percentile=ttft_percentile, tpot_slo_s=tpot_slo_s, chunk_tokens=chunk_tokens)
    return df


def _group_rows(m, dep, rd, tp, label, hws, p, o, lam, ttft_slo, tpot_slo, q, chunk, cap_batch) -> list[dict]:
    """Every device of one (precision, tp) option at once: curves, largest good rate, fleet and figures."""
    w = float(O.weight_storage_bytes(m, rd, tp))
    kv = float(O.kv_cache_bytes(m, rd, 1, p.percentile(MEMORY_PERCENTILE) + o.percentile(MEMORY_PERCENTILE), tp))
    upper = max(1.0, max((h.memory_bytes - w) / kv for h in hws))
    if cap_batch is not None:
        upper = min(upper, cap_batch)
    cv = Curves(m, rd, tp, hws, p, o, chunk, batch_grid(upper), cap_batch)

    def meets(st):
        return st["stable"] & (st["tpot_s"] <= tpot_slo) & (cv.ttft_tail(st, ttft_slo) <= 1 - q)

    best = _max_rate(cv, meets, cv.capacity)
    idle = cv.state(cv.capacity * 1e-9)
    good = cv.fits & (best > 0)
    replicas = np.where(good, np.ceil(lam / np.where(good, best, 1) - 1e-9), 0)
    good &= replicas <= MAX_REPLICAS
    per = np.where(good, lam / np.maximum(replicas, 1), cv.capacity * 1e-9)
    st = cv.state(per)
    pct = {x: cv.ttft_percentile(st, x) for x in (*TTFT_PERCENTILES, q)}
    nxt = cv.state(np.minimum(best * 1.001 + 1e-12, cv.capacity))
    rows = []
    for i, hw in enumerate(hws):
        mem = dict(memory_required_bytes_per_gpu=float(st["memory_required_bytes"][i]))
        if not cv.fits[i]:
            rows.append(_infeasible_row(hw, label, dep, rd, tp, "memory", (
                f"does not fit: needs {cv.memory_required[i, 0] / 1e9:.1f} GB per GPU at tp={tp}, batch 1, of "
                f"{cv.memory_available[i, 0] / 1e9:.1f} GB"), memory_required_bytes_per_gpu=float(cv.memory_required[i, 0])))
            continue
        if not good[i]:
            if idle["tpot_s"][i] > tpot_slo:
                why, reason = "TPOT SLO", f"TPOT {idle['tpot_s'][i] * 1e3:.1f} ms even at batch 1 (SLO {tpot_slo * 1e3:.1f} ms)"
            elif best[i] <= 0:
                t_idle = float(cv.ttft_percentile(idle, q)[i])
                why, reason = "TTFT SLO", f"p{100 * q:g} TTFT {t_idle:.3g} s with no queue (prefill alone; SLO {ttft_slo:g} s)"
            else:
                why, reason = "replicas", f"needs more than {MAX_REPLICAS:,} replicas"
            rows.append(_infeasible_row(hw, label, dep, rd, tp, why, reason, **mem))
            continue
        n = int(replicas[i])
        if best[i] >= cv.capacity[i] * (1 - 1e-6) or not nxt["stable"][i]:
            binding = "capacity"  # memory, the batch cap or the prefill server, not an SLO
        elif nxt["tpot_s"][i] > tpot_slo:
            binding = "TPOT SLO"
        else:
            binding = "TTFT SLO"
        gpus = n * tp
        hour = gpus * hw.price_usd_per_gpu_hour
        tokens = per[i] * o.mean_tokens
        rows.append(dict(
            hardware_id=hw.name, hardware=hw.name, feasible=True, binding_constraint=binding, reason="",
            precision=label, weight_dtype=rd.weights.dtype.name, activation_dtype=rd.act.name, kv_dtype=rd.kv.dtype.name,
            tp=tp, gpus_per_replica=tp, replicas=n, gpus=gpus, batch_size=float(st["batch_size"][i]),
            batch_limit=float(cv.batch_limit(st)[i]), requests_per_s_per_replica=float(per[i]),
            capacity_requests_per_s_per_replica=float(cv.capacity[i]), prefill_utilization=float(st["utilization"][i]),
            ttft_mean_s=float(st["ttft_mean_s"][i]), ttft_p50_s=float(pct[0.5][i]), ttft_p90_s=float(pct[0.9][i]),
            ttft_p99_s=float(pct[0.99][i]), ttft_at_slo_percentile_s=float(pct[q][i]), tpot_s=float(st["tpot_s"][i]),
            itl_max_s=float(st["itl_max_s"][i]), output_tokens_per_s_per_replica=tokens, output_tokens_per_s_per_gpu=tokens / tp,
            usd_per_hour=hour, usd_per_million_output_tokens=hour / (lam * o.mean_tokens * SECONDS_PER_HOUR) * 1e6,
            memory_available_bytes_per_gpu=float(hw.memory_bytes), price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, **mem,
        ))
    return rows


_CLOSENESS = {"TTFT SLO": 0, "TPOT SLO": 0, "replicas": 0, "memory": 1, "unsupported": 2}


def _rank(df: pd.DataFrame, best_only: bool) -> pd.DataFrame:
    df = df.copy()
    df["_close"] = df["binding_constraint"].map(_CLOSENESS).fillna(0)
    df = df.sort_values(["feasible", "usd_per_hour", "gpus", "ttft_at_slo_percentile_s", "_close", "tp"],
                        ascending=[False, True, True, True, True, False], na_position="last", kind="stable")
    if best_only:
        df = df.drop_duplicates("hardware_id", keep="first")
    df = df.drop(columns="_close").reset_index(drop=True)
    df.insert(0, "rank", pd.array([i + 1 if f else pd.NA for i, f in enumerate(df["feasible"])], dtype="Int64"))
    df["feasible"] = df["feasible"].astype(bool)
    return df


# ------------------------------------------------------------ command line (`roofline plan`)
PLAN_DESCRIPTION = (
    "For each hardware profile, the cheapest deployment (precision, tp, replicas) that serves the traffic under "
    "continuous batching within the SLOs: TTFT at a percentile (M/G/1 prefill queue) and mean TPOT. "
    "Lengths take a distribution: " + "N | fixed:N | uniform:LOW:HIGH | normal:MEAN:STD | lognormal:MEDIAN:SIGMA | "
    "empirical:T1=P1,T2=P2,...")


def add_plan_arguments(pp) -> None:
    """The `roofline plan` flags. Values are parsed in `run_plan`, so a bad one is one line naming the field."""
    pp.add_argument("--model", required=True, help="model id (see `roofline models`) or a spec .yaml path")
    pp.add_argument("--requests-per-s", required=True, help="arriving requests per second, whole fleet")
    pp.add_argument("--prompt-tokens", required=True, help="prompt length: N or a distribution, e.g. lognormal:2048:0.5")
    pp.add_argument("--output-tokens", required=True, help="output length: N or a distribution, e.g. uniform:128:384")
    pp.add_argument("--ttft-slo-s", required=True, help="time-to-first-token limit at --ttft-percentile, seconds")
    pp.add_argument("--tpot-slo-s", required=True, help="mean time-per-output-token limit, seconds")
    pp.add_argument("--ttft-percentile", default="0.9", help="percentile the TTFT SLO applies to (default 0.9)")
    pp.add_argument("--hardware", default="all", help="hardware ids or profile paths, comma-separated; 'all' (default)")
    pp.add_argument("--chunk-tokens", help="chunked prefill: prefill tokens per engine step (default: whole-prompt prefill)")
    pp.add_argument("--max-batch-size", help="engine cap on running sequences per replica (vLLM max_num_seqs)")
    pp.add_argument("--all-options", action="store_true", help="every (hardware, precision, tp) option, not only the best per hardware")
    pp.add_argument("--top", help="print only the first N rows")
    pp.add_argument("--json", action="store_true", help="print the rows as JSON (SI units, USD)")


def _number(text, field: str, kind=float, positive: bool = True):
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise SpecError(field, f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if positive and not value > 0:
        raise SpecError(field, f"must be positive, got {text}")
    return value


def run_plan(a) -> str:
    """Parse the flags, call `plan`, format the table (or JSON)."""
    import json

    from . import fmt

    hardware = None if a.hardware.strip() == "all" else [h.strip() for h in a.hardware.split(",") if h.strip()]
    if hardware == []:
        raise SpecError("hardware", "needs at least one hardware id; see `roofline hardware`")
    lengths = {f: (_number(v, f, int) if v.strip().lstrip("-").isdigit() else v)
               for f, v in (("prompt_tokens", a.prompt_tokens), ("output_tokens", a.output_tokens))}
    top = _number(a.top, "top", int)
    df = plan(a.model, _number(a.requests_per_s, "requests_per_s"), lengths["prompt_tokens"], lengths["output_tokens"],
              _number(a.ttft_slo_s, "ttft_slo_s"), _number(a.tpot_slo_s, "tpot_slo_s"), hardware=hardware,
              ttft_percentile=_number(a.ttft_percentile, "ttft_percentile"), chunk_tokens=_number(a.chunk_tokens, "chunk_tokens", int),
              max_batch_size=_number(a.max_batch_size, "max_batch_size", int), best_only=not a.all_options)
    if top is not None:
        df = df.head(top)
    if a.json:
        records = [{k: (None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v.item() if hasattr(v, "item") else v)
                    for k, v in r.items()} for r in df.to_dict(orient="records")]
        return json.dumps({"inputs": df.attrs, "rows": records}, indent=2)
    s = df.attrs
    q = f"p{100 * s['ttft_percentile']:g}"
    title = (f"{s['model']}: {s['requests_per_s']:g} requests/s, prompt {s['prompt_tokens']}, output {s['output_tokens']} tokens; "
             f"SLOs: {q} TTFT <= {fmt.seconds(s['ttft_slo_s'])}, mean TPOT <= {fmt.seconds(s['tpot_slo_s'])}; "
             f"{'chunked prefill ' + str(s['chunk_tokens']) + ' tokens/step' if s['chunk_tokens'] else 'whole-prompt prefill'}")
    rows = []
    for r in df.itertuples():
        if r.feasible:
            rows.append([str(r.rank), r.hardware_id, r.precision, str(r.tp), str(r.replicas), str(r.gpus), f"{r.batch_size:.1f}",
                         fmt.seconds(r.ttft_at_slo_percentile_s), fmt.seconds(r.tpot_s), fmt.usd(r.usd_per_hour),
                         fmt.usd(r.usd_per_million_output_tokens), r.binding_constraint])
        else:
            rows.append(["-", r.hardware_id, r.precision, str(r.tp) if r.tp else "-", "-", "-", "-", "-", "-", "-", "-",
                         f"infeasible: {r.reason}"])
    header = ["rank", "hardware", "precision", "tp", "replicas", "GPUs", "batch", f"TTFT {q}", "TPOT", "$/hour", "$/M out tok", "bound by"]
    return title + "\n\n" + fmt.table(header, rows)
