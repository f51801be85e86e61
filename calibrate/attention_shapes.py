"""Prefill attention against the public tables: which shape terms, shared by every device, explain the measured kernels.

An exploration (issue 12, item 2.3; calibrate/shapes.md section 3): the per-device calibrated line over executed FLOPs
(`roofline.attention_shapes`, `calibrate/public.py`) is what the roofline uses. This fits t = t0 + b · t_seq + max(F / (peak · eta · eff), bytes / (BW · f_mem))
over the vLLM FlashAttention-3 `context_attention_perf` tables of A100, H100 and B200 (H200 held out), with
F the causal FLOPs `roofline.ops` charges (batch · heads · S(S+1)/2 · 4d) and eff a product of the terms tried:

* causal tiles (`roofline.attention_shapes.executed_pairs`): q = ceil(S / 128) query tiles compute q(q+1)/2 tile
  pairs of 128² for S(S+1)/2 useful pairs: S = 256 wastes a third, S = 8192 1.5%;
* head dimension: d / (d + d0), the fixed work per tile (softmax, rescaling) beside the 2d-long dot products;
* waves of batch · heads · q query tiles over the SMs (`roofline.attention_shapes.wave_efficiency`).

The memory term reads q, k, v and writes the output and the KV cache (vLLM's prefill attention layer
stores K and V). Nothing is fitted to end-to-end measurements. Run: `python -m calibrate.attention_shapes`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

import roofline as rl
from roofline.attention_shapes import executed_pairs, query_tiles, wave_efficiency

from . import public as P

FIT = ("a100_sxm", "h100_sxm", "b200_sxm")
HELD_OUT = ("h200_sxm",)
VARIANTS = {
    "line t0 + F / R (one rate for all devices)": (),
    "+ causal tiles": ("causal",),
    "+ causal tiles + waves": ("causal", "waves"),
    "+ causal tiles + head dim": ("causal", "head_dim"),
    "+ causal tiles + memory term + per-sequence time": ("causal", "memory"),
    "+ causal tiles + head dim + memory term + per-sequence time": ("causal", "head_dim", "memory"),
}


def load(system: str) -> pd.DataFrame:
    root = P.data_root()
    framework, version = P.choose_source(root, system)
    rows = P.attention_rows(pd.read_parquet(root / system / "attention" / framework / version / "context_attention_perf.parquet"))
    rows.attrs["source"] = f"{framework} {version}"
    return rows


def predicted_s(x, rows: pd.DataFrame, hw, terms) -> np.ndarray:
    """t0 (us) = x[0], eta = x[1], d0 = x[2], t_seq (us) = x[3]."""
    b, s, h, kvh, d = (rows[c].to_numpy(float) for c in ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"))
    flops = P.prefill_x(rows)
    eff = np.ones_like(flops)
    if "causal" in terms:
        eff = eff * (s * (s + 1) / 2) / executed_pairs(s, 0.0)
    if "waves" in terms:
        eff = eff * wave_efficiency(b * h * query_tiles(s), hw.sm_count)
    if "head_dim" in terms:
        eff = eff * d / (d + x[2])
    t = flops / (hw.peak_flops("bf16") * x[1] * eff)
    if "memory" in terms:
        moved = b * s * (h + 2 * kvh) * d * 2 + b * s * h * d * 2 + b * s * 2 * kvh * d * 2
        t = np.maximum(t, moved / (hw.memory_bandwidth_bytes_per_s * hw.efficiency.memory_bandwidth_fraction)) + x[3] * 1e-6 * b
    return x[0] * 1e-6 + t


def fit(data, terms):
    def residuals(x):
        return np.concatenate([np.log(predicted_s(x, r, hw, terms) / (r["latency"].to_numpy(float) * P.TABLE_TIME_S))
                               for r, hw in data])
    return least_squares(residuals, x0=[10, 0.6, 32, 0.1], bounds=([0, 0.05, 0, 0], [100, 1, 1000, 50]), loss="soft_l1").x


def main() -> int:
    data = {s: (load(s), rl.load_hardware(P.SYSTEMS[s])) for s in FIT + HELD_OUT}
    names = [f"{P.SYSTEMS[s]}{' (held out)' if s in HELD_OUT else ''}" for s in data]
    print("| terms | t0 us, eta, d0, t_seq us | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for label, terms in VARIANTS.items():
        x = fit([data[s] for s in FIT], terms)
        cells = []
        for r, hw in data.values():
            e = predicted_s(x, r, hw, terms) / (r["latency"].to_numpy(float) * P.TABLE_TIME_S) - 1
            cells.append(f"{100 * np.median(np.abs(e)):.1f}% ({e.size})")
        print(f"| {label} | {', '.join(f'{v:.3g}' for v in x)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
