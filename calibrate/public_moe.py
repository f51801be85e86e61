"""The fused MoE layer's curve (`roofline.calibration.MoeCurve`) fitted from `moe_perf.parquet`.

The table (aiconfigurator-core, `moe/<framework>/<version>/moe_perf.parquet`) times one engine's whole
fused MoE layer: the routed experts of `num_tokens` tokens, each sent to `topk` of `num_experts` experts
of width `inter_size` (split over `moe_tp_size` GPUs), hidden size `hidden_size`, weights in `moe_dtype`;
latency in milliseconds. Its router, shared experts and all-to-all are not in it (the roofline times those
as their own ops).

Rows used: `distribution == "balanced"` (each token's k experts spread evenly: T tokens touch
min(E, T·k) distinct experts, each with T·k / touched rows), no expert parallelism (`moe_ep_size == 1`)
and, per format, the most measured gated kernel source (the engine's default path; non-gated sources
are left out). Formats (`TABLE_FORMATS`): bfloat16 -> bf16; fp8 (per-tensor scales) -> fp8; fp8_block
(128 x 128 block scales) -> fp8_block, both computed at fp8 (the two run different kernels: vLLM 0.24's
per-tensor path is FlashInfer's CUTLASS MoE, its block path Triton); the 4-bit formats are one weight
format, fp4, told apart by the dtype they compute at (`calibration.moe_key`): w4a16_mxfp4 -> fp4 weights
computed at bf16 (gpt-oss on Hopper, key "fp4"), w4a8_mxfp4_mxfp8 -> computed at fp8 (gpt-oss on Blackwell,
"fp4-fp8": on Blackwell multiplied as stored, tcgen05.mma kind::mxf8f6f4 at the FP8 peak, no dequantization,
`hardware.BlockScaledMma`), nvfp4 -> computed at fp4 with one scale per 16 weights (`trtllm_bench.NVFP4_BLOCK`, against MXFP4's 32, our fp4 default; the NVFP4 checkpoints of
DeepSeek, Qwen3, Llama on Blackwell, "fp4-fp4"). A pass computing at fp4 then takes the NVFP4 curve and a
W4A16 pass the MXFP4 one, never each other's.

Fit. For every row the five kernels `roofline.ops.fused_moe_ops` lists for that shape are timed by the
roofline's own `time_ops` at unit fractions (the datasheet peak and bandwidth, tile padding, no launch
overhead), giving per op a GEMM compute time C_g (grouped GEMMs), a vector time C_v (activation,
unpermute) and a memory time M, and per row the distinct experts n its grouped GEMMs read
(`calibration.moe_touched_experts`: min(E, T·k) under balanced routing). The layer is then

    t(η_c, η_m, t0, t_e) = t0 + n · t_e + Σ_op max(C_g / η_c + C_v, M / η_m)

exactly the time `CalibratedCurves` gives those ops with the curve attached. (η_c, η_m) are searched on a
log grid (then refined), t0 ≥ 0 and t_e ≥ 0 solved in closed form for each pair (`_best_fixed`, a least-squares
problem in two non-negative unknowns); the objective is the relative squared error Σ (t / table - 1)², so a
30 µs decode row weighs as much as a 30 ms prefill row. The fit's median and 90th-percentile |error| are stored
with the curve.

Why t_e: a grouped GEMM spends time per expert beyond that expert's bytes and FLOPs (its tiles scheduled, its
problem shape and scales set up, its last wave drained), so many narrow experts run slower than a roofline of
their total bytes allows. DeepSeek-V3's layer (h 7168, 256 experts of F_e 2048, k 8) at T = 64 in TensorRT-LLM's
NVFP4 table takes 1.04 ms at moe_tp 1 (0.78 ms of weights at the HBM rate) and 0.39 ms at moe_tp 32, whose 187 MB
read in 24 µs: about 1.2 µs per touched expert that t0 (one per layer) and the fractions (per byte, per FLOP)
cannot hold (calibrate/public/README.md, section (e)).

Points. One set of fractions per format cannot follow a kernel that changes tile or tactic with the token count
(gpt-oss's W4A8 layer on GB200 steps up by 25% between 512 and 1,024 tokens), so `moe_points` also keeps the table's
own layer times at the per-GPU shapes the published corpus runs (`corpus_shapes`), with the curve's time of each row:
the runtime times such a layer as curve x measured / curve (`calibration.MoePoints`, `calibration.moe_point_ratio`),
an interpolation `leave_one_out` picked over time-linear and log-log (calibrate/public/README.md, section (i)).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from roofline.calibration import MeasuredMoe, MoeCurve, MoePoints, moe_key, moe_point_ratio, moe_touched_experts
from roofline.ops import fused_moe_ops
from roofline.roofline import Ceilings, OpTable, time_ops
from roofline.workload import Deployment, ResolvedDeployment

from .trtllm_bench import NVFP4_BLOCK

TABLE = "moe_perf.parquet"
BLOCK = 128  # fp8_block: one scale per 128 x 128 block
TABLE_TIME_S = 1e-3  # milliseconds
# table moe_dtype -> (`calibration.MOE_FORMATS` name, our weight dtype, compute dtype, scale granularity, weight group
# size (None: the dtype's default)); the curve's key is `calibration.moe_key(name, compute dtype)`
TABLE_FORMATS = {"bfloat16": ("bf16", "bf16", "bf16", None, None), "fp8": ("fp8", "fp8", "fp8", None, None),
                 "fp8_block": ("fp8_block", "fp8", "fp8", "block", BLOCK),
                 "w4a16_mxfp4": ("fp4", "fp4", "bf16", None, None),
                 "w4a8_mxfp4_mxfp8": ("fp4", "fp4", "fp8", None, None),
                 "nvfp4": ("fp4", "fp4", "fp4", None, NVFP4_BLOCK)}
GRID_POINTS = 48  # per fraction, log-spaced over [MIN_FRACTION, 1]
MIN_FRACTION = 0.01
REFINE_ROUNDS = 3


def moe_rows(df: pd.DataFrame, table_dtype: str, ep: int = 1) -> pd.DataFrame:
    """Balanced-routing rows of one format at expert parallelism `ep` (the fit: 1), from the format's most measured
    gated kernel source over all ep (the source the ep = 1 fit uses, so ep > 1 rows time the same kernel)."""
    rows = df[(df["moe_dtype"] == table_dtype) & (df["distribution"] == "balanced")
              & (df["latency"] > 0) & (df["num_tokens"] > 0)]
    if "kernel_source" in rows:
        rows = rows[~rows["kernel_source"].astype(str).str.contains("nongated")]
        fit = rows[rows["moe_ep_size"] == 1]
        if fit["kernel_source"].nunique() > 1:
            rows = rows[rows["kernel_source"] == fit["kernel_source"].value_counts().index[0]]
    return rows[rows["moe_ep_size"] == ep]


def unit_terms(rows: pd.DataFrame, hw, weight_dtype: str, compute_dtype: str, granularity: str | None = None,
               group_size: int | None = None, ep: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(C_g, C_v, M) per row and op, shape (5, rows): the fused layer's kernels timed at unit fractions; and n, shape
    (rows,): the experts its grouped GEMMs touch on one GPU, as the runtime counts them (`moe_touched_experts`).

    Each shape (hidden, inter / tp, experts, top-k) is one call of `fused_moe_ops` over its token counts. With
    expert parallelism `ep` (the held-out rows, `ep_errors`) one GPU holds E / ep experts: as in
    `roofline.ops._moe_ops` it computes T·k / ep rows of min(E, T·k) / ep touched experts and permutes its own
    T / ep tokens into them (T the rows' num_tokens, the layer's tokens on all ep GPUs).
    """
    dep = Deployment(weight_dtype=weight_dtype, activation_dtype=compute_dtype, weight_scale_granularity=granularity,
                     weight_group_size=group_size if group_size is not None else BLOCK if granularity == "block" else None)
    rd = ResolvedDeployment.of(dep, "bf16").on(hw)  # MXFP4 x MXFP8 on Blackwell: multiplied as stored, no dequantization
    base = Ceilings.of(hw, compute_dtype)
    c = dataclasses.replace(base, gemm_flops_per_s=hw.peak_flops(compute_dtype), bytes_per_s=hw.memory_bandwidth_bytes_per_s,
                            kernel_overhead_s=0.0, sm_count=0)
    n = len(rows)
    cg, cv, mem, touched_n = np.zeros((5, n)), np.zeros((5, n)), np.zeros((5, n)), np.zeros(n)
    keys = ["hidden_size", "inter_size", "moe_tp_size", "num_experts", "topk"]
    for (h, inter, tp, experts, k), idx in rows.groupby(keys).indices.items():
        tokens = rows["num_tokens"].to_numpy(float)[idx]
        routed = tokens * k / ep
        touched = np.minimum(float(experts), tokens * k) / ep  # balanced routing
        width = inter / tp
        ops = fused_moe_ops(rd, "moe", 1, tokens / ep, routed, touched, float(h), (2 * width, float(h)), (float(h), width), int(k), True)
        table = OpTable.of(ops)
        timing = time_ops(table, c, 1)
        gemm = table.is_gemm.reshape(-1, 1)
        dequant = table.f["vector_flops"] / c.vector_flops_per_s  # a weight-only GEMM's vector work, not at η_c (0 when native)
        cg[:, idx] = np.where(gemm, timing.compute_s - dequant, 0.0)
        cv[:, idx] = np.where(gemm, dequant, timing.compute_s)
        mem[:, idx] = timing.memory_s
        touched_n[idx] = moe_touched_experts(table).max(axis=0)  # the up and down GEMMs read the same experts
    return cg, cv, mem, touched_n


def _layer_s(cg, cv, mem, eta_c, eta_m):
    """Σ_op max(C_g / η_c + C_v, M / η_m) per row, without t0."""
    return np.maximum(cg / eta_c + cv, mem / eta_m).sum(axis=0)


def _best_fixed(s: np.ndarray, n: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(error, t0, t_e): argmin over t0 ≥ 0, t_e ≥ 0 of Σ ((t0 + n · t_e + s) / y - 1)², and that minimum.

    With a = 1 / y, b = n / y and r = 1 - s / y the residual is t0 · a + t_e · b - r, a least-squares problem in
    two unknowns: the normal equations [Σa² Σab; Σab Σb²] (t0, t_e) = (Σar, Σbr) where both come out ≥ 0, else the
    better of the two edges, t0 = max(0, Σar / Σa²) with t_e = 0 and t_e = max(0, Σbr / Σb²) with t0 = 0 (the
    objective is a convex quadratic, so its minimum over the quadrant lies on an edge when not inside it).
    Example: rows y = (2, 3) µs, s = 0, n = (1, 2): r = (1, 1), exact at t0 = 1 µs, t_e = 1 µs, error 0.
    """
    a, b, r = 1 / y, n / y, 1 - s / y
    aa, ab, bb, ar, br = a @ a, a @ b, b @ b, a @ r, b @ r
    det = aa * bb - ab * ab
    candidates = [(max(0.0, ar / aa), 0.0), (0.0, max(0.0, br / bb) if bb > 0 else 0.0)]
    if det > 1e-12 * aa * bb:
        t0, te = (ar * bb - br * ab) / det, (br * aa - ar * ab) / det
        if t0 >= 0 and te >= 0:
            candidates.append((t0, te))
    return min((float(np.sum((t0 * a + te * b - r) ** 2)), float(t0), float(te)) for t0, te in candidates)


def fit_terms(cg, cv, mem, n, y) -> tuple[float, float, float, float]:
    """(t0, t_e, η_c, η_m) minimizing Σ (t / y - 1)² (module docstring); grid in log η, refined around the best."""
    lo_c = lo_m = np.log(MIN_FRACTION)
    hi_c = hi_m = 0.0
    best = (np.inf, 0.0, 0.0, 1.0, 1.0)
    for _ in range(REFINE_ROUNDS + 1):
        for ec in np.exp(np.linspace(lo_c, hi_c, GRID_POINTS)):
            for em in np.exp(np.linspace(lo_m, hi_m, GRID_POINTS)):
                err, t0, te = _best_fixed(_layer_s(cg, cv, mem, ec, em), n, y)
                if err < best[0]:
                    best = (err, t0, te, ec, em)
        _, _, _, ec, em = best
        step_c, step_m = (hi_c - lo_c) / GRID_POINTS * 2, (hi_m - lo_m) / GRID_POINTS * 2
        lo_c, hi_c = np.log(ec) - step_c, min(0.0, np.log(ec) + step_c)
        lo_m, hi_m = np.log(em) - step_m, min(0.0, np.log(em) + step_m)
    return best[1], best[2], best[3], best[4]


def predicted_s(curve: MoeCurve, cg, cv, mem, n) -> np.ndarray:
    """The layer time the curve gives each row (the roofline's formula with the curve attached)."""
    return curve.latency_s + n * curve.expert_latency_s + _layer_s(cg, cv, mem, curve.compute_fraction, curve.bandwidth_fraction)


def fit_moe(df: pd.DataFrame, hw, notes: list[str]) -> dict[str, MoeCurve]:
    """One curve per expert-weight format the table holds (`TABLE_FORMATS`), against `hw`'s datasheet peaks."""
    out: dict[str, MoeCurve] = {}
    for table_dtype, (name, weight_dtype, compute_dtype, granularity, group) in TABLE_FORMATS.items():
        if compute_dtype not in hw.peak_flops_per_s:
            continue
        rows = moe_rows(df, table_dtype)
        if len(rows) < 3:
            continue
        y = rows["latency"].to_numpy(float) * TABLE_TIME_S
        terms = unit_terms(rows, hw, weight_dtype, compute_dtype, granularity, group)
        t0, t_e, eta_c, eta_m = fit_terms(*terms, y)
        key = moe_key(name, compute_dtype)
        curve = MoeCurve(weight_format=name, compute_dtype=compute_dtype, latency_s=float(f"{t0:.4g}"),
                         expert_latency_s=float(f"{t_e:.4g}"), compute_fraction=float(f"{eta_c:.4g}"),
                         bandwidth_fraction=float(f"{eta_m:.4g}"), peak_flops_per_s=hw.peak_flops(compute_dtype),
                         peak_bytes_per_s=hw.memory_bandwidth_bytes_per_s, table_dtype=table_dtype, rows=len(rows),
                         median_abs_error=0.0, p90_abs_error=0.0)
        err = np.abs(predicted_s(curve, *terms) / y - 1)  # of the stored (rounded) values
        out[key] = curve.model_copy(update={"median_abs_error": float(f"{np.median(err):.4g}"),
                                            "p90_abs_error": float(f"{np.percentile(err, 90):.4g}")})
        notes.append(f"moe {key}: {table_dtype} rows ({rows['kernel_source'].iloc[0] if 'kernel_source' in rows else 'one source'}), "
                     f"balanced routing, no ep: t0 {t0 * 1e6:.1f} us/layer, {t_e * 1e9:.0f} ns/touched expert, compute {eta_c:.3f}, bandwidth {eta_m:.3f}")
    return out


def ep_errors(df: pd.DataFrame, curves: dict[str, MoeCurve], hw) -> pd.DataFrame:
    """Each curve against its table rows at every expert parallelism the table holds: ep = 1 are the rows it was
    fitted on, ep > 1 rows it never saw (a held-out check of the per-GPU shape `unit_terms` builds).
    One row per (curve key, ep): rows, median |error|, 90th percentile, median error (bias); error = predicted / table - 1."""
    by_dtype = {spec[0]: (table_dtype, spec) for table_dtype, spec in TABLE_FORMATS.items()}
    out = []
    for key, curve in curves.items():
        table_dtype = curve.table_dtype
        name, weight_dtype, compute_dtype, granularity, group = TABLE_FORMATS.get(table_dtype, by_dtype[curve.weight_format][1])
        for ep in sorted(df.loc[df["moe_dtype"] == table_dtype, "moe_ep_size"].unique()):
            rows = moe_rows(df, table_dtype, int(ep))
            if rows.empty:
                continue
            y = rows["latency"].to_numpy(float) * TABLE_TIME_S
            err = predicted_s(curve, *unit_terms(rows, hw, weight_dtype, compute_dtype, granularity, group, int(ep))) / y - 1
            out.append({"curve": key, "ep": int(ep), "rows": len(rows), "median_abs": float(np.median(np.abs(err))),
                        "p90_abs": float(np.percentile(np.abs(err), 90)), "bias": float(np.median(err))})
    return pd.DataFrame(out)


def corpus_shapes() -> set[tuple[int, float, int, int]]:
    """The per-GPU fused MoE layer shapes (hidden, expert width F_e / tp, experts E / ep, top-k) the published corpus
    runs: every row of a shipped MoE model spec at its deployment's tp and ep (`calibrate.corpus.deployment_of`: a
    DEPn row is tp 1, ep n). The files keep points of these shapes only (the 100 KB a file may take holds about 45
    shapes of 27 points; every shipped model at moe_tp 1-8 and moe_ep 2-8 would be about 150). From the corpus at
    this commit: 15 (model, tp, ep): Mixtral-8x7B tp 1, 2, 4, 8; Mixtral-8x22B tp 8; DeepSeek-V3 tp 8, ep 4, 8;
    gpt-oss-120b tp 1, ep 2, 4; gpt-oss-20b tp 1 (the same per-GPU shape as gpt-oss-120b ep 4); Qwen3-235B-A22B ep 4,
    8; Qwen3-30B-A3B tp 1."""
    import roofline as rl

    from . import corpus

    out = set()
    for row in corpus.load_corpus():
        try:
            m = rl.load_model(row.model)
        except Exception:  # a row of a model without a shipped spec: no shape
            continue
        if m.moe is None:
            continue
        dep = corpus.deployment_of(row, m)
        out.add((m.hidden_size, m.moe.expert_intermediate_size / dep.tp, m.moe.num_experts // dep.ep, m.moe.experts_per_token))
    return out


def moe_points(df: pd.DataFrame, curves: dict[str, MoeCurve], hw, table: str,
               shapes: set[tuple[int, float, int, int]] | None = None) -> dict[str, MeasuredMoe]:
    """Per curve, the measured layer times of the table's balanced rows (`moe_rows`: the fit's kernel source) at the
    kept per-GPU shapes (`corpus_shapes`: hidden, width, experts on a GPU, top-k) and the curve's time of each row
    (`predicted_s` over `unit_terms` at the row's ep), as `calibration.MoePoints`. Where two table splits give one
    per-GPU shape (gpt-oss-20b at ep 1 and gpt-oss-120b at ep 4: 32 experts of 2,880 on a GPU, the same R = T · k / ep
    rows), the smaller ep is kept (the fitted rows), then the smaller moe_tp.

    A shape any of whose rows takes less than the layer's HBM bytes at the datasheet bandwidth (the memory term of
    `unit_terms` at η_m = 1, a speed of light) is left out and named in `source`: that row is not what a model's
    layer does (the weights of one repeated layer left in L2 between the collector's runs, or fewer experts allocated
    than listed), and the curve, held to η_m ≤ 1, times it. Worked number: DeepSeek-V3 at tp 8 (7,168, 256 wide x 256
    experts, k 8) in vLLM 0.24's H200 fp8_block table, T = 64: 256 · 3 · 7,168 · 256 B = 1.41 GB of fp8 weights (with
    their block scales) read in 0.271 ms, 5.2 TB/s against the H200's 4.8; 11 of its 27 rows are faster than that."""
    shapes = corpus_shapes() if shapes is None else shapes
    out: dict[str, MeasuredMoe] = {}
    for key, curve in curves.items():
        table_dtype = curve.table_dtype
        _, weight_dtype, compute_dtype, granularity, group = TABLE_FORMATS[table_dtype]
        kept: dict[tuple, MoePoints] = {}
        beyond: set[tuple] = set()
        for ep in sorted(int(e) for e in df.loc[df["moe_dtype"] == table_dtype, "moe_ep_size"].unique()):
            rows = moe_rows(df, table_dtype, ep)
            if rows.empty:
                continue
            keep = np.array([(int(h), i / t, int(e) // ep, int(k)) in shapes for h, i, t, e, k in
                             zip(rows["hidden_size"], rows["inter_size"], rows["moe_tp_size"], rows["num_experts"], rows["topk"])])
            rows = rows[keep]
            if rows.empty:
                continue
            # one time per token count: the median where the table repeats a row
            rows = rows.groupby(["hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size", "num_tokens"],
                                as_index=False)["latency"].median()
            y = rows["latency"].to_numpy(float) * TABLE_TIME_S
            terms = unit_terms(rows, hw, weight_dtype, compute_dtype, granularity, group, ep)
            c = predicted_s(curve, *terms)
            rows = rows.assign(time_s=y, curve_s=c, floor_s=terms[2].sum(axis=0))
            for (h, inter, experts, k, tp_), part in rows.groupby(["hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size"]):  # tp ascending
                gpu_key = (int(h), inter / tp_, experts // ep, int(k))
                if gpu_key in kept or len(part) < 2:
                    continue
                part = part.sort_values("num_tokens")
                if (part["time_s"] < part["floor_s"]).any():  # a row faster than its bytes at the datasheet bandwidth
                    beyond.add(gpu_key)
                    continue
                kept[gpu_key] = MoePoints(hidden=int(h), width=float(inter / tp_), experts=int(experts // ep), topk=int(k),
                                          moe_tp=int(tp_), moe_ep=int(ep), tokens=tuple(int(v) for v in part["num_tokens"]),
                                          time_s=tuple(float(f"{v:.4g}") for v in part["time_s"]),
                                          curve_s=tuple(float(f"{v:.4g}") for v in part["curve_s"]))
        if kept:
            out[key] = MeasuredMoe(curve=curve, source=f"{table}: {table_dtype}, balanced rows of the fit's kernel source, median per "
                                          "token count; the per-GPU layer shapes the published corpus runs (shipped "
                                          "model specs at the corpus rows' tp / ep, `calibrate.public_moe.corpus_shapes`)"
                                          + (f"; left out, a row faster than its HBM bytes at the datasheet bandwidth: "
                                             f"{', '.join(str(b) for b in sorted(beyond - set(kept)))}" if beyond - set(kept) else ""),
                                   shapes=tuple(kept[k] for k in sorted(kept)))
    return out


def leave_one_out(points: dict[str, MeasuredMoe]) -> pd.DataFrame:
    """Each interior point of every stored shape predicted from its two neighbours, three ways: time linear in rows
    (R), time a power law in R (linear in log-log), and the curve's own time at R times the ratio ρ linear in R
    (`moe_point_ratio`, what the runtime does). One row per (curve, rule): points, median |error|, p90, bias."""
    out = []
    for key, measured in points.items():
        errs: dict[str, list] = {"linear": [], "log-log": [], "curve x ratio": []}
        for p in measured.shapes:
            x, t, c = p.rows, np.asarray(p.time_s), np.asarray(p.curve_s)
            for i in range(1, len(x) - 1):
                w = (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1])
                lw = np.log(x[i] / x[i - 1]) / np.log(x[i + 1] / x[i - 1])
                errs["linear"].append((t[i - 1] + w * (t[i + 1] - t[i - 1])) / t[i] - 1)
                errs["log-log"].append(np.exp(np.log(t[i - 1]) + lw * np.log(t[i + 1] / t[i - 1])) / t[i] - 1)
                rho = t[i - 1] / c[i - 1] + w * (t[i + 1] / c[i + 1] - t[i - 1] / c[i - 1])
                errs["curve x ratio"].append(c[i] * rho / t[i] - 1)
        for rule, e in errs.items():
            e = np.asarray(e)
            if e.size:
                out.append({"curve": key, "rule": rule, "points": e.size, "median_abs": float(np.median(np.abs(e))),
                            "p90_abs": float(np.percentile(np.abs(e), 90)), "bias": float(np.median(e))})
    return pd.DataFrame(out)


def points_residual(points: dict[str, MeasuredMoe], curves: dict[str, MoeCurve]) -> pd.DataFrame:
    """Per curve, |curve / table - 1| over its stored points (before) and the points' own time there (after:
    ρ · curve, 0 up to the stored rounding). One row per curve: points, median and p90 before and after."""
    out = []
    for key, measured in points.items():
        before, after = [], []
        for p in measured.shapes:
            t, c = np.asarray(p.time_s), np.asarray(p.curve_s)
            before.append(c / t - 1)
            after.append(c * moe_point_ratio(p.rows, p.rows, p.ratio) / t - 1)
        b, a = np.abs(np.concatenate(before)), np.abs(np.concatenate(after))
        out.append({"curve": key, "points": b.size, "before_median": float(np.median(b)), "before_p90": float(np.percentile(b, 90)),
                    "after_median": float(np.median(a)), "after_p90": float(np.percentile(a, 90))})
    return pd.DataFrame(out)


def stored_shape_errors(cal, hw, df: pd.DataFrame) -> pd.DataFrame:
    """The table rows (`moe_rows`, balanced, at every ep) of every per-GPU shape `cal` stores points of,
    timed on `hw` twice: by the curve alone (family "moe curve") and by the curve times the stored ratio
    (`calibration.moe_point_ratio` at the row's R = T · k / ep; "moe points"), as the runtime times such a layer.
    `hw` the file's own device: the residual of the points (0 up to their rounding); another device: held out."""
    parts = []
    for key, measured in cal.moe_points.items():
        curve = cal.moe.get(key)
        if curve is None or curve.table_dtype not in TABLE_FORMATS or curve.compute_dtype not in hw.peak_flops_per_s:
            continue
        _, weight_dtype, compute_dtype, granularity, group = TABLE_FORMATS[curve.table_dtype]
        stored = {(p.hidden, p.width, p.experts, p.topk): p for p in measured.shapes}
        for ep in sorted(int(e) for e in df.loc[df["moe_dtype"] == curve.table_dtype, "moe_ep_size"].unique()):
            rows = moe_rows(df, curve.table_dtype, ep)
            if rows.empty:
                continue
            gpu = [(int(h), i / t, int(e) // ep, int(k)) for h, i, t, e, k in
                   zip(rows["hidden_size"], rows["inter_size"], rows["moe_tp_size"], rows["num_experts"], rows["topk"])]
            keep = np.array([g in stored for g in gpu])
            if not keep.any():
                continue
            rows = rows[keep]
            points = [stored[g] for g, kept in zip(gpu, keep) if kept]
            y = rows["latency"].to_numpy(float) * TABLE_TIME_S
            c = predicted_s(curve, *unit_terms(rows, hw, weight_dtype, compute_dtype, granularity, group, ep))
            r = rows["num_tokens"].to_numpy(float) * rows["topk"].to_numpy(float) / ep
            rho = np.array([moe_point_ratio(x, p.rows, p.ratio) for x, p in zip(r, points)])
            parts.append(pd.DataFrame({"family": "moe curve", "predicted_s": c, "measured_s": y}))
            parts.append(pd.DataFrame({"family": "moe points", "predicted_s": c * rho, "measured_s": y}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["family", "predicted_s", "measured_s"])


def main(argv: list[str] | None = None) -> None:
    """Print `ep_errors` of a committed file's curves against the tables it names (needs roofline[public-data])."""
    import argparse

    import roofline as rl
    from roofline.calibration import load_calibration

    from . import public

    ap = argparse.ArgumentParser(prog="python -m calibrate.public_moe", description=ep_errors.__doc__.splitlines()[0])
    ap.add_argument("file", help="a calibrate/public/*.json file with a moe section, e.g. calibrate/public/b200-trtllm.json")
    args = ap.parse_args(argv)
    cal = load_calibration(args.file)
    src = cal.provenance.public_source
    table = next(t for t in src.tables if t.endswith(TABLE))
    df = pd.read_parquet(public.data_root() / table)
    hw = rl.load_hardware(cal.provenance.base_profile, analytical=True)
    res = ep_errors(df, cal.moe, hw)
    print(f"{args.file}: {table}; balanced rows; median / p90 |error| / bias (rows); ep 1 fitted, ep > 1 held out")
    print("| curve | " + " | ".join(f"ep {e}" for e in sorted(res["ep"].unique())) + " |")
    print("|---" * (1 + res["ep"].nunique()) + "|")
    for key, part in res.groupby("curve", sort=False):
        cells = {r.ep: f"{r.median_abs * 100:.1f}% / {r.p90_abs * 100:.0f}% / {r.bias * 100:+.1f}% ({r.rows})" for r in part.itertuples()}
        print(f"| {key} | " + " | ".join(cells.get(e, "-") for e in sorted(res["ep"].unique())) + " |")


if __name__ == "__main__":
    main()
