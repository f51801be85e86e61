"""Fit the shape-aware GEMM model's few free parameters to the public GEMM tables; the held-out check.

The model (`roofline.gemm_shapes`, derivation there): a GEMM of M x K by K x N runs in tiles of
tm x tn over the P SMs (CUs) of the device, ceil(tiles / P) waves of tiles each taking
2 · tm · tn · (K + k_fill) / (peak / P · eta_inf): wave quantization, tile padding and a pipeline fill
worth k_fill of K; it cannot beat reading its operands, so t = max(t_compute, bytes / (BW · f_mem)) + t_fixed.
Device parameters (P, tile) come from each hardware profile (sourced there); the free parameters are
eta_inf per dtype (bf16, fp8) or each profile's flops_fraction, k_fill and t_fixed, shared by every device.

Data: `gemm_perf.parquet` of `aiconfigurator-core` (vLLM tables; bfloat16 rows of torch.nn.functional.linear,
per-tensor fp8 rows of the CUTLASS scaled-mm kernel), read as `calibrate.public` reads them. Nothing here is
fitted to end-to-end measurements.

    python -m calibrate.gemm_shapes --eta profile --held-out h200_sxm,l40s --write   # what the library uses
    python -m calibrate.gemm_shapes                                                   # eta fitted per dtype too

With `--eta profile` the asymptote is each profile's measured `flops_fraction` (its MAMF source) and only
k_fill and t_fixed are fitted: `roofline.gemm_shapes.K_FILL` is the k_fill of that run (t_fixed is left to
the roofline's per-launch `kernel_overhead_s`). Each held-out device is refitted without its own tables and
then timed on them. About 3 minutes per fit on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

import roofline as rl
from roofline.gemm_shapes import GemmShapeParams, gemm_time_s

from . import public as P

DEVICES = ("a100_sxm", "h100_sxm", "h200_sxm", "b200_sxm", "gb200", "l40s")
# table dtype -> (peak key, activation bytes, weight bytes, kernels). vLLM's per-tensor fp8 linear quantizes its bf16
# input first (read 2 bytes, write 1) and the GEMM reads the fp8 copy: 4 activation bytes per element, two kernels.
DTYPES = {"bfloat16": ("bf16", 2, 2, 1), "fp8": ("fp8", 4, 1, 2)}
OUT_BYTES = 2  # bf16 output
OUT = Path(__file__).resolve().parent / "gemm_shapes.json"
SAMPLE = 1500
PROFILE_ETA = False  # --eta profile: the asymptote is each profile's measured flops_fraction, not fitted  # rows per (device, dtype) used in the fit (every row in the evaluation)


def load_rows(system: str) -> pd.DataFrame:
    """One device's bf16 and per-tensor fp8 GEMM rows (m, n, k, dtype key, seconds) from its newest vLLM table,
    else TensorRT-LLM's."""
    root = P.data_root()
    framework, version = P.choose_source(root, system)
    df = pd.read_parquet(root / system / "gemm" / framework / version / "gemm_perf.parquet")
    out = []
    for table_dtype, (key, *_) in DTYPES.items():
        rows = P.gemm_rows(df, table_dtype)
        if rows.empty:
            continue
        out.append(pd.DataFrame({"m": rows["m"].astype(float), "n": rows["n"].astype(float), "k": rows["k"].astype(float),
                                 "dtype": key, "t_s": rows["latency"].astype(float) * P.TABLE_TIME_S}))
    frame = pd.concat(out, ignore_index=True)
    frame.attrs["source"] = f"{framework} {version}"
    return frame


def predict(rows: pd.DataFrame, hw, params: GemmShapeParams) -> np.ndarray:
    out = np.empty(len(rows))
    for key, (_, ab, wb, kernels) in ((v[0], v) for v in DTYPES.values()):
        sel = (rows["dtype"] == key).to_numpy()
        if not sel.any():
            continue
        r = rows[sel]
        m, n, k = (r[c].to_numpy() for c in ("m", "n", "k"))
        bytes_ = m * k * ab + n * k * wb + m * n * OUT_BYTES
        eta = hw.efficiency.flops_fraction[key] if PROFILE_ETA else params.eta(key)
        out[sel] = gemm_time_s(m, n, k, hw.peak_flops(key), eta, params.k_fill, hw.sm_count, hw.gemm_tile_m,
                               hw.gemm_tile_n, bytes_, hw.memory_bandwidth_bytes_per_s * hw.efficiency.memory_bandwidth_fraction,
                               hw.gemm_tile_tokens) \
            + kernels * params.fixed_s
    return out


def _params(x) -> GemmShapeParams:
    return GemmShapeParams(eta_bf16=float(x[0]), eta_fp8=float(x[1]), k_fill=float(x[2]), fixed_s=float(x[3]) * 1e-6)


def fit(data: dict[str, tuple[pd.DataFrame, object]]) -> GemmShapeParams:
    """Minimise the mean |log(predicted / measured)| over a fixed sample of every device's rows."""
    rng = np.random.default_rng(0)
    samples = []
    for rows, hw in data.values():
        for key in rows["dtype"].unique():
            r = rows[rows["dtype"] == key]
            samples.append((r.iloc[rng.choice(len(r), size=min(SAMPLE, len(r)), replace=False)], hw))

    def loss(x):
        if not (0.05 < x[0] <= 1 and 0.05 < x[1] <= 1 and 0 <= x[2] < 8192 and 0 <= x[3] < 50):
            return 1e9
        p = _params(x)
        return float(np.mean(np.concatenate([np.abs(np.log(predict(r, hw, p) / r["t_s"].to_numpy())) for r, hw in samples])))

    best = minimize(loss, x0=[0.75, 0.65, 256.0, 2.0], method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-5, "maxiter": 600})
    return _params(best.x)


def errors(rows: pd.DataFrame, hw, params: GemmShapeParams) -> pd.DataFrame:
    e = predict(rows, hw, params) / rows["t_s"].to_numpy() - 1
    return rows.assign(error=e, big=(rows["n"] >= 1024) & (rows["k"] >= 1024))


def _cell(e) -> str:
    e = np.asarray(e, dtype=float)
    return f"{100 * np.median(np.abs(e)):.1f}% ({e.size})" if e.size else "-"


def table(data, params_all: GemmShapeParams, held: dict[str, GemmShapeParams]) -> str:
    lines = ["| device (tables) | SMs, tile | fit on all: bf16 | bf16 N,K>=1024 | fp8 | fp8 N,K>=1024 "
             "| held out (fit without it): bf16 | bf16 N,K>=1024 | fp8 | fp8 N,K>=1024 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for system, (rows, hw) in data.items():
        cells = []
        for p in (params_all, held[system]):
            e = errors(rows, hw, p)
            for key in ("bf16", "fp8"):
                d = e[e["dtype"] == key]
                cells += [_cell(d["error"]), _cell(d.loc[d["big"], "error"])]
        lines.append(f"| {P.SYSTEMS[system]} ({rows.attrs['source']}) | {hw.sm_count}, {hw.gemm_tile_m}x{hw.gemm_tile_n} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write the fitted parameters to {OUT.name}")
    ap.add_argument("--held-out", default="all", help="devices to hold out one at a time: 'all', 'none' or a comma list of systems")
    ap.add_argument("--eta", choices=("fit", "profile"), default="fit",
                    help="fit the large-GEMM asymptote per dtype, or take each profile's flops_fraction")
    args = ap.parse_args(argv)
    global PROFILE_ETA
    PROFILE_ETA = args.eta == "profile"
    data = {}
    for system in DEVICES:
        data[system] = (load_rows(system), rl.load_hardware(P.SYSTEMS[system]))
    params = fit(data)
    chosen = list(data) if args.held_out == "all" else [] if args.held_out == "none" else args.held_out.split(",")
    held = {s: (fit({k: v for k, v in data.items() if k != s}) if s in chosen else params) for s in data}
    print(f"fitted on all devices: {params}")
    for s, p in held.items():
        print(f"  without {P.SYSTEMS[s]}: {p}")
    print()
    print(table(data, params, held))
    if args.write:
        def shown(p: GemmShapeParams) -> dict:  # with --eta profile the asymptotes are the profiles', not fitted
            return {k: v for k, v in p.as_dict().items() if not (PROFILE_ETA and k.startswith("eta"))}

        OUT.write_text(json.dumps({"params": shown(params), "eta": args.eta,
                                   "held_out": {P.SYSTEMS[s]: shown(p) for s, p in held.items() if s in chosen},
                                   "source": f"aiconfigurator-core {P.package_version()} gemm_perf tables of "
                                             + ", ".join(f"{s} ({r.attrs['source']})" for s, (r, _) in data.items()),
                                   "command": f"python -m calibrate.gemm_shapes --eta {args.eta} --held-out {args.held_out} --write"},
                                  indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
