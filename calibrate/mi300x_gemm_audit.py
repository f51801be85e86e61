"""Kernel-level audit of the Llama-3.1-70B / 405B FP8 decode GEMMs on 8x MI300X (issue 12, the
rocm-vllm-mi300x-docker rows): our per-layer GEMM times against AMD's MI300X kernel timings at the same shapes.

The shipped MI300X FP8 GEMM table (`calibrate/public/mi300x.json`, `calibrate.public_aiter`) is fitted from aiter's
pre-shuffled CK FP8 GEMM at six DeepSeek weight shapes (N·K 1.8 M - 33 M) and keyed on (M, N·K): every Llama
weight past N·K = 33 M is timed at the last column's fraction, and two weights of equal N·K at the same time
whatever their N. AMD's own tuning of Llama-3.1-70B / 405B on MI300X (ROCm/aiter PR 1092, commit fbb52ddfad,
`aiter/configs/a8w8_tuned_gemm.csv`, its 427 cu_num 304 rows copied verbatim to
`calibrate/public/aiter/mi300x-fp8-gemm-llama.csv`) times aiter's CK a8w8 rowwise GEMM at exactly those models'
tp 1, 4 and 8 weight shapes. Neither is the kernel vLLM ran for these rows (the ROCm fork's per-tensor FP8 linear:
`ops.wvSplitKQ` at one token, `torch._scaled_mm` = hipBLASLt above; the source's .md, "Setup audit"), so this
compares two proxies of the device's FP8 GEMM: the one the table extrapolates and the one measured at the shape.

For each model at tp 8 and a decode batch M, prints per GEMM: our weight shape (N x K, this GPU's slice), our
per-layer time (`roofline.predict(...).operators`, decode rows, engine vllm, FP8 weights and activations, FP8 KV,
the shipped calibration), the CSV's time at that exact (N, K) and the nearest tabulated M, and each at the HBM
bandwidth its weight bytes imply; then the per-layer sums and what the difference makes of a decode step
(x layers). Nothing is fitted or written. Run: `python -m calibrate.mi300x_gemm_audit [--batch 1]`.

Worked number (tp 8, one token): Llama-3.1-70B's qkv weight is N = (64 + 2 · 8) · 128 / 8 = 1,280 by K = 8,192
(10.5 MB of FP8); the CSV row M = 1, N = 1280, K = 8192 took 15.9787 us (0.66 TB/s), where the table times it at
6.72 us; its o_proj (N 8,192 x K 1,024, 8.4 MB, about as many bytes) took 6.1655 us. A layer's four GEMMs take
15.9787 + 6.1655 + 26.3577 + 12.0983 = 60.60 us in the CSV against 46.87 us in the table (+13.7 us, x 80 layers =
+1.10 ms a step); Llama-3.1-405B's take 28.6795 + 12.3237 + 71.7882 + 31.3479 = 144.14 us against 150.87 us
(-6.7 us, x 126 = -0.85 ms a step).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import roofline as rl
from roofline.ops import forward_ops

from . import public_aiter
from .public import PUBLIC_DIR

CSV = PUBLIC_DIR / "aiter" / "mi300x-fp8-gemm-llama.csv"
US = public_aiter.US  # the tuner's time unit (column `us`)
TP = 8
MODELS = ("llama-3.1-70b", "llama-3.1-405b")
GEMMS = ("qkv_proj", "o_proj", "mlp_up", "mlp_down")


def gemm_shapes(model: rl.ModelSpec, tp: int) -> dict[str, tuple[int, int]]:
    """(N, K) of this GPU's slice of each decoder GEMM weight at tensor parallelism tp, as the operator table shards
    it (`ops.forward_ops`' gemm_n, gemm_k: column-parallel qkv and gate-up split N, row-parallel o_proj and down
    split K; gate and up are one merged weight, as vLLM loads them)."""
    rd = rl.Deployment(tp=tp, engine="vllm").resolved(model)
    ops = {o.name: o for o in forward_ops(model, rd, 1, 1, 0, tp)}
    return {name: (int(ops[name].gemm_n), int(ops[name].gemm_k)) for name in GEMMS}


def read_rows(path: Path = CSV) -> pd.DataFrame:
    """The CSV's MI300X (cu_num 304) rows as columns m, n, k, latency_s: the same aiter tuner format the shipped
    table is fitted from, read by the same reader (`public_aiter.read_rows`)."""
    return public_aiter.read_rows(path)


def measured_s(rows: pd.DataFrame, n: int, k: int, m: int) -> tuple[float, int]:
    """(time, tabulated M) of the row at exactly (N, K) and the nearest tabulated M (log distance); NaN if the
    shape is not tabulated."""
    at = rows[(rows.n == n) & (rows.k == k)]
    if at.empty:
        return float("nan"), 0
    ms = at.m.to_numpy(dtype=float)
    near = int(ms[np.argmin(np.abs(np.log(ms / m)))])
    return float(at[at.m == near].latency_s.median()), near


def audit(model_id: str, batch: int, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per decoder GEMM of `model_id` at tp 8 and decode batch `batch`: shape, ours, the CSV's."""
    model, hw = rl.load_model(model_id), rl.load_hardware("mi300x")
    dep = rl.Deployment(tp=TP, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8", engine="vllm")
    ops = rl.predict(model, hw, rl.Workload(batch_size=batch, prompt_tokens=128, output_tokens=2), dep).operators
    dec = ops[ops.phase == "decode"].set_index("op")
    out = []
    for name, (n, k) in gemm_shapes(model, TP).items():
        ours = float(dec.loc[name, "time_s"] / dec.loc[name, "layers"])
        theirs, m_at = measured_s(rows, n, k, batch)
        out.append({"model": model_id, "gemm": name, "n": n, "k": k, "ours_us": ours / US, "aiter_us": theirs / US,
                    "aiter_m": m_at, "ours_tb_per_s": n * k / ours / 1e12, "aiter_tb_per_s": n * k / theirs / 1e12,
                    "layers": int(dec.loc[name, "layers"])})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m calibrate.mi300x_gemm_audit", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1, help="decode batch M (default 1)")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error(f"--batch must be at least 1, got {args.batch}")
    rows = read_rows()
    lines = []
    for model_id in MODELS:
        df = audit(model_id, args.batch, rows)
        lines.append(df.drop(columns="layers").to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        ours, theirs, layers = df.ours_us.sum(), df.aiter_us.sum(), int(df.layers.iloc[0])
        lines.append(f"{model_id} tp {TP}, M = {args.batch}: a layer's GEMMs {ours:.2f} us ours, {theirs:.2f} us aiter CK "
                     f"rowwise at the shape ({theirs - ours:+.2f} us; x {layers} layers = {(theirs - ours) * layers / 1e3:+.2f} ms a step)\n")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
