"""Chart data for the dashboard (`app.py`): DataFrames built from a `Prediction`, a
`HardwareProfile` and `sweep`, plus the "show the math" lines. numpy and pandas only.

Nothing here derives a figure of its own: points on the roofline divide the FLOPs, bytes and
times of `Prediction.operators`; the sweeps are `roofline.sweep` frames (the same `evaluate`
that `predict` runs); `math_lines` substitutes the Prediction's fields into the formulas of
`predict.py` and `roofline.py`. Column names carry their units (`_s`, `_bytes`,
`_flops_per_s`, `_flops_per_byte`); only `fmt` turns them into text.

Roofline, per GPU (the operator table is per GPU under tensor parallelism):

    intensity I = FLOPs / HBM bytes            (bytes = weights + activations + KV, read and written)
    achieved    = FLOPs / time                  (realistic time of the operator)
    ceiling(I)  = min(dense peak of the compute dtype, I · peak HBM bandwidth)

An operator's time is at least max(FLOPs / its FLOP rate, bytes / bandwidth), so achieved never
exceeds its ceiling: `fraction_of_ceiling` lies in (0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import fmt
from .dtypes import get_dtype
from .hardware import HardwareProfile
from .plan import PRECISIONS, plan
from .predict import Prediction
from .serving import frontier as serving_frontier
from .specs import ModelSpec
from .sweep import sweep
from .workload import Deployment, Workload


def compute_key(prediction: Prediction) -> str:
    """The `peak_flops_per_s` key the prediction's compute dtype runs at ('fp8_e4m3' -> 'fp8')."""
    return get_dtype(prediction.compute_dtype).peak_key


# ------------------------------------------------------------------ roofline
def roofline_chart_data(prediction: Prediction, hardware: HardwareProfile, n_points: int = 32) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ceilings, points) for a log-log roofline plot of one prediction on its hardware.

    `ceilings` is long-form, one row per line and intensity on a log grid:
    `line`, `kind` (compute | bandwidth), `level` (peak | realistic), `dtype` (compute
    rows), `fraction` (efficiency fraction; 1 at peak), `is_compute_dtype`,
    `intensity_flops_per_byte`, `flops_per_s`. Compute rows are flat at
    peak_flops_per_s[dtype] (x flops_fraction[dtype] when realistic); bandwidth rows are
    I · memory_bandwidth_bytes_per_s (x memory_bandwidth_fraction when realistic).

    `points` has one row per operator and phase with FLOPs and HBM bytes (all-reduces and
    the embedding gather have none; see `unplotted_operators`).
    """
    ops = prediction.operators
    hbm = ops["hbm_bytes"]
    plotted = (ops["flops"] > 0) & (hbm > 0) & (ops["time_s"] > 0)
    key = compute_key(prediction)
    peak = hardware.peak_flops(key)
    bandwidth = hardware.memory_bandwidth_bytes_per_s

    points = ops.loc[plotted, ["phase", "op", "layers_group", "kind", "bound", "flops", "hbm_bytes", "time_s"]].copy()
    points["intensity_flops_per_byte"] = points["flops"] / points["hbm_bytes"]
    points["achieved_flops_per_s"] = points["flops"] / points["time_s"]
    points["ceiling_flops_per_s"] = np.minimum(peak, points["intensity_flops_per_byte"] * bandwidth)
    points["fraction_of_ceiling"] = points["achieved_flops_per_s"] / points["ceiling_flops_per_s"]
    points = points.reset_index(drop=True)

    ridges = [hardware.ridge_point_flops_per_byte(k) for k in hardware.peak_flops_per_s]
    lo, hi = intensity_range(points["intensity_flops_per_byte"], ridges)
    grid = np.logspace(math.log10(lo), math.log10(hi), n_points)
    eff = hardware.efficiency
    lines = [(f"{dtype} {level}", "compute", level, dtype, frac, dense * frac)  # flat: y = peak x fraction
             for dtype, dense in hardware.peak_flops_per_s.items()
             for level, frac in (("peak", 1.0), ("realistic", eff.flops_fraction[dtype]))]
    lines += [(f"HBM {level}", "bandwidth", level, "", frac, grid * bandwidth * frac)  # slope: y = I x bandwidth x fraction
              for level, frac in (("peak", 1.0), ("realistic", eff.memory_bandwidth_fraction))]
    names, kinds, levels, dtypes, fracs, ys = zip(*lines)

    def per_row(values):  # one value per line -> one per (line, intensity) row
        return np.repeat(np.asarray(values), n_points)

    ceilings = pd.DataFrame({
        "line": per_row(names), "kind": per_row(kinds), "level": per_row(levels), "dtype": per_row(dtypes),
        "fraction": per_row(fracs), "is_compute_dtype": per_row([d == key for d in dtypes]),
        "intensity_flops_per_byte": np.tile(grid, len(lines)),
        "flops_per_s": np.concatenate([np.broadcast_to(y, grid.shape) for y in ys]),
    })
    return ceilings, points


def intensity_range(intensities: Sequence[float], ridges: Sequence[float]) -> tuple[float, float]:
    """Decade-aligned x range holding every operator's intensity and every ridge point."""
    values = [float(x) for x in (*intensities, *ridges) if x > 0]
    lo = min([1.0, *values])
    hi = max([10.0, *values])
    return 10.0 ** math.floor(math.log10(lo) - 0.5), 10.0 ** math.ceil(math.log10(hi) + 0.3)


def unplotted_operators(prediction: Prediction) -> pd.DataFrame:
    """The operators a roofline cannot place (no FLOPs or no HBM bytes), with their time and why."""
    ops = prediction.operators
    left = ops[(ops["flops"] <= 0) | (ops["hbm_bytes"] <= 0) | (ops["time_s"] <= 0)].copy()
    left["reason"] = np.where(left["comm_bytes"] > 0, "interconnect traffic only",
                              np.where(left["flops"] <= 0, "no FLOPs", "no HBM bytes"))
    return left[["phase", "op", "kind", "flops", "hbm_bytes", "comm_bytes", "time_s", "bound", "reason"]].reset_index(drop=True)


# ------------------------------------------------------------------ sweeps
def powers_of_two(lo: int, hi: int, also: Sequence[int] = ()) -> list[int]:
    """1, 2, 4, ... within [lo, hi], plus the values in `also` inside the range, sorted and unique."""
    vals = {2**k for k in range(0, max(hi, 1).bit_length() + 1) if lo <= 2**k <= hi}
    vals.update(int(v) for v in also if lo <= v <= hi)
    return sorted(vals)


def _sweep(model: ModelSpec, hardware: HardwareProfile, workload: Workload, deployment: Deployment, **axes) -> pd.DataFrame:
    """`roofline.sweep` of one deployment, every axis at the scenario's value except those given."""
    grid = {"batch_size": workload.batch_size, "prompt_tokens": workload.prompt_tokens,
            "output_tokens": workload.output_tokens, "tp": deployment.tp, **axes}
    return sweep(model, hardware, weight_dtype=deployment.weight_dtype, activation_dtype=deployment.activation_dtype,
                 kv_dtype=deployment.kv_dtype, deployment=deployment, **grid)


def _pick(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df[columns].copy()
    out["hardware"] = out["hardware"].astype(str)
    return out.reset_index(drop=True)


def _batch_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = _pick(df, ["hardware", "tp", "batch_size", "tpot_s", "tpot_floor_s", "output_tokens_per_s",
                     "output_tokens_per_s_per_gpu", "decode_bound", "fits"])
    out["tokens_per_s_per_user"] = 1.0 / out["tpot_s"]
    out["tokens_per_s_per_gpu"] = out["output_tokens_per_s_per_gpu"]
    return out


def _prompt_frame(df: pd.DataFrame, deployment: Deployment) -> pd.DataFrame:
    out = _pick(df, ["hardware", "tp", "prompt_tokens", "output_tokens", "ttft_s", "ttft_floor_s", "prefill_bound",
                     "mfu_prefill", "weight_bytes", "kv_cache_bytes", "activation_workspace_bytes", "memory_required_bytes_per_gpu",
                     "memory_available_bytes_per_gpu", "fits"])
    out.insert(4, "context_tokens", out["prompt_tokens"] + out["output_tokens"])
    out.insert(out.columns.get_loc("memory_required_bytes_per_gpu"), "runtime_reserve_bytes", float(deployment.runtime_reserve_bytes))
    return out


def _batch_grid(workload: Workload) -> list[int]:
    return powers_of_two(1, 512, [workload.batch_size])


def _prompt_grid(model: ModelSpec, workload: Workload) -> list[int]:
    """Prompt lengths up to the model's max_context less the output tokens."""
    return powers_of_two(min(64, workload.prompt_tokens), model.max_context - workload.output_tokens, [workload.prompt_tokens])


def batch_sweep(model: ModelSpec, hardware: HardwareProfile, workload: Workload, deployment: Deployment,
                batch_sizes: Sequence[int] | None = None) -> pd.DataFrame:
    """TPOT and throughput against batch size (the other axes as in the scenario), with the
    frontier's axes: tokens/s per user = 1 / TPOT and output tokens/s per GPU."""
    return _batch_frame(_sweep(model, hardware, workload, deployment, batch_size=list(batch_sizes or _batch_grid(workload))))


def batch_point(prediction: Prediction) -> pd.DataFrame:
    """The row `batch_sweep` has at the prediction's own batch, from the Prediction's figures (no sweep):
    the dashboard keeps the power-of-two sweep (which does not move with the batch) and adds this point."""
    p = prediction
    df = pd.DataFrame({"hardware": [p.hardware], "tp": [p.deployment.tp], "batch_size": [p.workload.batch_size],
                       "tpot_s": [p.tpot_s], "tpot_floor_s": [p.tpot_floor_s], "output_tokens_per_s": [p.output_tokens_per_s],
                       "output_tokens_per_s_per_gpu": [p.output_tokens_per_s_per_gpu], "decode_bound": [p.decode_bound],
                       "fits": [p.fits]})
    df["tokens_per_s_per_user"] = 1.0 / df["tpot_s"]
    df["tokens_per_s_per_gpu"] = df["output_tokens_per_s_per_gpu"]
    return df


def batch_frontier(model: ModelSpec, hardware: HardwareProfile, workload: Workload, deployment: Deployment,
             batch_sizes: Sequence[int] | None = None) -> pd.DataFrame:
    """Static-batch latency-throughput frontier over batch sizes (`serving.frontier` is the continuous-batching one): tokens/s per user = 1 / TPOT against
    output tokens/s per GPU (the columns of `batch_sweep` it needs)."""
    df = batch_sweep(model, hardware, workload, deployment, batch_sizes)
    return df[["hardware", "tp", "batch_size", "tokens_per_s_per_user", "tokens_per_s_per_gpu", "tpot_s", "fits"]]


def prompt_sweep(model: ModelSpec, hardware: HardwareProfile, workload: Workload, deployment: Deployment,
                 prompt_tokens: Sequence[int] | None = None) -> pd.DataFrame:
    """TTFT and memory per GPU against prompt length (by default up to max_context less the
    output). `context_tokens` = prompt + output; the memory columns are the parts of
    `memory_required_bytes_per_gpu` (`MEMORY_PARTS`; the runtime reserve is the deployment's
    `runtime_reserve_bytes`) and `memory_available_bytes_per_gpu` is the capacity line."""
    lengths = list(prompt_tokens or _prompt_grid(model, workload))
    return _prompt_frame(_sweep(model, hardware, workload, deployment, prompt_tokens=lengths), deployment)


MEMORY_PARTS = ("weight_bytes", "kv_cache_bytes", "activation_workspace_bytes", "runtime_reserve_bytes")


def memory_sweep(model: ModelSpec, hardware: HardwareProfile, workload: Workload, deployment: Deployment,
                 prompt_tokens: Sequence[int] | None = None) -> pd.DataFrame:
    """Memory per GPU against context length by part (`MEMORY_PARTS`), with the capacity
    (the memory columns of `prompt_sweep`)."""
    df = prompt_sweep(model, hardware, workload, deployment, prompt_tokens)
    return df[["hardware", "tp", "prompt_tokens", "output_tokens", "context_tokens", *MEMORY_PARTS,
               "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu", "fits"]]


def scenario_sweeps(model: ModelSpec, hardware: HardwareProfile, workload: Workload,
                    deployment: Deployment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`batch_sweep`, `prompt_sweep`) on their default grids from one `sweep` call over
    batch x prompt (one vectorized pass costs about what one axis does)."""
    df = _sweep(model, hardware, workload, deployment, batch_size=_batch_grid(workload),
                prompt_tokens=_prompt_grid(model, workload))
    return (_batch_frame(df[df["prompt_tokens"] == workload.prompt_tokens]),
            _prompt_frame(df[df["batch_size"] == workload.batch_size], deployment))


# ------------------------------------------------------------------ show the math
def math_lines(prediction: Prediction, model: ModelSpec, hardware: HardwareProfile) -> list[str]:
    """The formulas behind the headline figures, with the prediction's own numbers substituted.

    Every number is a field of the Prediction, the spec or the profile; the arithmetic shown is
    the one `predict.derived` performs (MBU, MFU, throughput, cost) or a bound the realistic
    and floor times cannot beat (bytes / bandwidth, FLOPs / peak).
    """
    p, wl = prediction, prediction.workload
    rd = p.deployment.resolved(model)
    key = compute_key(p)
    peak, bw = hardware.peak_flops(key), hardware.memory_bandwidth_bytes_per_s
    b, s, o, tp = wl.batch_size, wl.prompt_tokens, wl.output_tokens, p.gpus_per_replica
    gb, sec = fmt.gigabytes, fmt.seconds

    def flop(x):
        return fmt.rate(x, "FLOP")

    lines = [
        f"Weights per GPU = {fmt.count(model.param_count)} parameters in {rd.weights.dtype.name}"
        f"{' (with quantization scales)' if rd.weights.dtype.is_quantized else ''}, split over tp = {tp}: {gb(p.weight_bytes)}",
    ]
    kv_seq = p.kv_cache_bytes / b
    if math.isclose(wl.context_tokens * p.kv_bytes_per_token, kv_seq, rel_tol=1e-9):
        lines.append(f"KV cache per GPU = batch x (prompt + output) x KV bytes per token = {b} x ({s} + {o}) x "
                     f"{fmt.count(p.kv_bytes_per_token)} B = {gb(p.kv_cache_bytes)}")
    else:
        lines.append(f"KV cache per GPU = batch x KV bytes per sequence at {wl.context_tokens} tokens = {b} x {gb(kv_seq)} = "
                     f"{gb(p.kv_cache_bytes)} (sliding-window layers keep only their window)")
    verdict = "fits" if p.fits else "does NOT fit"
    eng = rd.engine
    share = ""
    if eng is not None:  # what the engine's share is of (`EngineProfile.memory_fraction_of`)
        f, m = fmt.fraction(eng.memory_fraction(rd.dep.tp)), gb(hardware.memory_bytes)
        loaded = f" (weights, reserve and workspace, then the {eng.name} engine's {f} of"
        share = {"device": f" (the {eng.name} engine's {f} of {m})",
                 "device_for_kv": f"{loaded} all {m} as KV cache, within the device)",
                 "free": f"{loaded} the rest of {m} as KV cache)"}[eng.memory_fraction_of]
    lines.append(
        f"Memory per GPU = weights + KV cache + activation workspace + runtime reserve = {gb(p.weight_bytes)} + "
        f"{gb(p.kv_cache_bytes)} + {gb(p.activation_workspace_bytes)} + {gb(p.runtime_reserve_bytes)} = "
        f"{gb(p.memory_required_bytes_per_gpu)} of {gb(p.memory_available_bytes_per_gpu)} available{share}: {verdict}")
    if eng is None:
        per_seq = (p.kv_cache_bytes + p.activation_workspace_bytes) / b
        lines.append(
            f"Max batch = floor((available - weights - reserve) / (KV + workspace per sequence)) = floor(({gb(p.memory_available_bytes_per_gpu)} - "
            f"{gb(p.weight_bytes)} - {gb(p.runtime_reserve_bytes)}) / {gb(per_seq)}) = {fmt.count(p.max_batch_size_fits)}")
    else:
        seqs, budget = eng.limits(hardware)
        lines.append(
            f"Max batch = min(floor((available - weights - reserve - workspace of one {budget:,}-token step) / KV per sequence), "
            f"{seqs:,} running sequences) = min(floor(({gb(p.memory_available_bytes_per_gpu)} - {gb(p.weight_bytes)} - "
            f"{gb(p.runtime_reserve_bytes)} - {gb(p.activation_workspace_bytes)}) / {gb(kv_seq)}), {seqs:,}) = {fmt.count(p.max_batch_size_fits)}")
    lines.append(
        f"Ridge point ({key}) = dense peak / HBM bandwidth = {fmt.rate(peak, 'FLOP/s')} / {fmt.rate(bw, 'B/s')} = "
        f"{fmt.rate(hardware.ridge_point_flops_per_byte(key), 'FLOP/byte')}")
    lines.append(
        f"Decode intensity = FLOPs per step / bytes per step = {flop(p.decode_flops_per_step)} / {gb(p.decode_bytes_per_step)} = "
        f"{fmt.rate(p.decode_flops_per_step / p.decode_bytes_per_step, 'FLOP/byte')}: decode is {p.decode_bound}-bound")
    lines.append(
        f"TPOT floor >= bytes per step / HBM bandwidth = {gb(p.decode_bytes_per_step)} / {fmt.rate(bw, 'B/s')} = "
        f"{sec(p.decode_bytes_per_step / bw)}; TPOT floor (each operator at max(FLOPs / peak, bytes / bandwidth, "
        f"all-reduce / link), summed) = {sec(p.tpot_floor_s)}")
    if o > 1:
        lines.append(
            f"TPOT = (end-to-end - TTFT) / (output - 1) = ({sec(p.e2e_latency_s)} - {sec(p.ttft_s)}) / {o - 1} = {sec(p.tpot_s)} "
            f"(realistic: peaks x efficiency fractions, tile padding, launch overhead; first step {sec(p.tpot_first_step_s)}, "
            f"last {sec(p.tpot_last_step_s)})")
    else:
        lines.append(f"TPOT = the decode step after the first token = {sec(p.tpot_s)} (one output token: no decode step runs)")
    lines.append(
        f"TTFT floor >= max(prefill FLOPs / dense peak, prefill bytes / bandwidth) = max({flop(p.prefill_flops)} / "
        f"{fmt.rate(peak, 'FLOP/s')}, {gb(p.prefill_bytes)} / {fmt.rate(bw, 'B/s')}) = "
        f"max({sec(p.prefill_flops / peak)}, {sec(p.prefill_bytes / bw)}); TTFT floor = {sec(p.ttft_floor_s)}, "
        f"TTFT = {sec(p.ttft_s)} (prefill is {p.prefill_bound}-bound)")
    lines.append(
        f"MFU prefill = prefill FLOPs / TTFT / dense peak = {flop(p.prefill_flops)} / {sec(p.ttft_s)} / {fmt.rate(peak, 'FLOP/s')} = "
        f"{fmt.fraction(p.mfu_prefill)}")
    lines.append(
        f"MBU decode = bytes per step / TPOT / HBM bandwidth = {gb(p.decode_bytes_per_step)} / {sec(p.tpot_s)} / "
        f"{fmt.rate(bw, 'B/s')} = {fmt.fraction(p.mbu_decode)}")
    lines.append(
        f"Throughput = batch x output tokens / end-to-end latency = {b} x {o} / {sec(p.e2e_latency_s)} = "
        f"{fmt.count(p.output_tokens_per_s)} tokens/s; per GPU / {tp} = {fmt.count(p.output_tokens_per_s_per_gpu)} tokens/s")
    if p.fits:
        lines.append(
            f"Cost per 1M output tokens = $/GPU-hour x GPUs / 3600 / tokens per s x 10^6 = {fmt.usd(hardware.price_usd_per_gpu_hour)} x "
            f"{tp} / 3600 / {fmt.count(p.output_tokens_per_s)} x 10^6 = {fmt.usd(p.usd_per_million_output_tokens)}")
    else:
        lines.append(f"Cost per 1M output tokens: n/a, the scenario {p.fit_message}")
    return lines


# ------------------------------------------------------------------ the Plan page
SLO_STEPS = (1.0, 0.75, 0.5)  # factors one SLO is tightened by, the other held


def plan_frontiers(model: ModelSpec, options: pd.DataFrame, hardware: Sequence[HardwareProfile], prompt_tokens, output_tokens,
                   chunk_tokens: int | None = None, max_batch_size: int | None = None) -> pd.DataFrame:
    """The latency-throughput frontier (`serving.frontier`) of each feasible option of a `plan` frame, at that
    option's precision and replica shape: output tokens/s per user (1 / TPOT) against output tokens/s per GPU,
    one point per decode batch the replica holds. `hardware` are the profiles the plan ran on (prices included),
    matched by name; `hardware_id` and `option` ("fp8, tp2") are added to every row."""
    by_name = {h.name: h for h in hardware}
    frames = []
    for r in options[options["feasible"]].itertuples():
        dep = PRECISIONS[r.precision].model_copy(update={"tp": int(r.tp), "pp": int(r.pp), "ep": int(r.ep),
                                                          "attention_dp": bool(getattr(r, "attention_dp", False)),
                                                          "network": r.network or None})
        f = serving_frontier(model, by_name[r.hardware], prompt_tokens, output_tokens, dep, chunk_tokens, max_batch_size)
        frames.append(f.assign(hardware_id=r.hardware_id, option=f"{r.precision}, {fmt.replica_of(r)}"))
    cols = ["hardware_id", "option", "hardware", "tp", "pp", "ep", "gpus", "batch_size", "requests_per_s", "tpot_s",
            "output_tokens_per_s_per_user", "output_tokens_per_s_per_gpu", "ttft_mean_s", "pareto"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def slo_tightening(plan_kwargs: dict, steps: Sequence[float] = SLO_STEPS, given: pd.DataFrame | None = None) -> pd.DataFrame:
    """What tightening an SLO costs: for each of the TTFT and the TPOT SLO and each factor f in `steps`,
    `plan(**plan_kwargs)` with that SLO x f (the other as given), and its top option. `given`: the plan of the
    SLOs as given (factor 1), when the caller has it already.

    Columns: `slo` (TTFT | TPOT), `factor`, `ttft_slo_s`, `tpot_slo_s`, `feasible` (some option meets both),
    `hardware_id`, `precision`, `gpus`, `usd_per_hour`, `usd_per_million_output_tokens` (NaN where none is
    feasible) and `usd_per_hour_vs_given` = usd_per_hour / that of the SLOs as given. A tighter SLO only removes
    options, so the cost never falls as f does."""
    kwargs = {**plan_kwargs, "best_only": True}
    rows = []
    for slo, key in (("TTFT", "ttft_slo_s"), ("TPOT", "tpot_slo_s")):
        for f in steps:
            kw = {**kwargs, key: kwargs[key] * f}
            df = given if (f == 1 and given is not None) else plan(**kw)
            top = df.iloc[0]
            ok = bool(top["feasible"])
            rows.append({"slo": slo, "factor": float(f), "ttft_slo_s": kw["ttft_slo_s"], "tpot_slo_s": kw["tpot_slo_s"], "feasible": ok,
                         "hardware_id": top["hardware_id"] if ok else "", "precision": top["precision"] if ok else "",
                         "gpus": int(top["gpus"]) if ok else 0,
                         "usd_per_hour": float(top["usd_per_hour"]) if ok else math.nan,
                         "usd_per_million_output_tokens": float(top["usd_per_million_output_tokens"]) if ok else math.nan})
    out = pd.DataFrame(rows)
    base = out.loc[out["factor"] == 1.0, "usd_per_hour"]
    out["usd_per_hour_vs_given"] = out["usd_per_hour"] / (float(base.iloc[0]) if len(base) else math.nan)
    return out


# ------------------------------------------------------------------ the Accuracy page
ACCURACY_POINT_COLUMNS = ("predicted", "measured", "family", "gpu", "model")
ACCURACY_TABLE_COLUMNS = ("family", "n", "median_abs_pct_error", "p90_abs_pct_error", "bias_pct")


def pct_errors(points: pd.DataFrame) -> pd.Series:
    """Signed error of each prediction in percent of the measurement: 100 · (predicted - measured) / measured."""
    return 100.0 * (points["predicted"] - points["measured"]) / points["measured"]


def error_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per family of a predicted-vs-measured frame (`ACCURACY_POINT_COLUMNS`): the number of points, the
    median and the 90th percentile of |error| in percent, and the bias (median signed error, percent;
    positive = the prediction is high). Families sorted by name."""
    missing = [c for c in ACCURACY_POINT_COLUMNS if c not in points]
    if missing:
        raise ValueError(f"predicted-vs-measured frame lacks {', '.join(missing)}")
    err = points.assign(err=pct_errors(points))
    groups = err.groupby("family", sort=True)["err"]
    return pd.DataFrame({
        "family": list(groups.groups),
        "n": groups.size().to_numpy(),
        "median_abs_pct_error": groups.apply(lambda e: float(np.median(np.abs(e)))).to_numpy(),
        "p90_abs_pct_error": groups.apply(lambda e: float(np.percentile(np.abs(e), 90))).to_numpy(),
        "bias_pct": groups.median().to_numpy(),
    })
