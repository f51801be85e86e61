"""Public kernel tables -> the calibrated profile (`roofline.calibration.Calibration`).

NVIDIA's `aiconfigurator-core` (Apache-2.0, `pip install roofline[public-data]`) ships kernel
latencies measured on real devices, as parquet files under
`aiconfigurator_core/systems/data/<system>/<op>/<framework>/<version>/`. This module is a reader
of those files and nothing else: it never imports the package (its estimator, models and backends
stay unused); it finds the package folder with `importlib.util.find_spec` and reads the tables
with pandas. The curves it fits are the project's own, into the schema a GPU run writes
(`calibrate/fit.py`), with `provenance.public_source` naming package, version, framework,
framework version, system and tables.

What is read (latency in the tables is milliseconds; `message_size` counts elements):

* `gemm/.../gemm_perf.parquet` (m, n, k, gemm_dtype): per compute dtype (bfloat16 -> bf16,
  fp8 per-tensor -> fp8; not nvfp4, see `GEMM_DTYPES`) the fraction of the dense peak on tile-padded FLOPs,
  2 · ceil(M / tile) · tile · N · K / (t · peak) (`fit.padded_gemm_flops`), the quantity the
  roofline divides; so the calibrated compute term of a measured shape is its measured time.
  Worked number: M = N = K = 4096 in 0.2 ms on an H100 SXM (989.4 TFLOP/s bf16, tile 16):
  2 · 4096³ / (2e-4 · 989.4e12) = 0.695. The (M, N·K) table keeps every measured M and pools
  N·K into half-octave bins (their median), so one file stays small.
* `attention/.../context_attention_perf.parquet`: causal prefill of `isl` tokens with bf16 KV
  and no sliding window, one line t = t0 + X / R over the kernel's executed FLOPs over its wave
  efficiency (`roofline.attention_shapes`, `x_unit: executed_flops`): batch · heads · the causal
  128 x 128 tiles' pairs · (2·d + 2·d), over the busy fraction of the profile's SMs running
  batch · heads · ceil(isl / 128) query-tile blocks; and at the per-GPU shapes the published corpus runs, the
  table's time of every (batch, isl) cell over that line (`attention_prefill_points`: `calibration.AttentionPoints`,
  `calibrate/public_attention.py`), through which a prefill of such a shape is timed; as many shapes as keep the file
  under 100 KB (`FILE_LIMIT_BYTES`).
* `attention/.../generation_attention_perf.parquet`: one new token against a context of
  isl + step tokens, bf16 KV, t = t0 + B / R + batch · kv_heads · t_kvh over the bytes
  `roofline.ops` charges the attention op (KV read batch · context · 2 · kv_heads · d · kv_bytes,
  the new token's KV written, Q read and the output written, heads · d · 2 bytes per sequence
  each) and the kernel's (sequence, KV head) blocks (`attention_decode_kv_head_s` = t_kvh).
* `moe/<framework>/.../moe_perf.parquet`: the engine's fused MoE layer, balanced routing, no
  expert parallelism: per expert-weight width one `MoeCurve` (t0 per layer, t_e per touched expert, grouped-GEMM compute and
  bandwidth fractions), fitted in `calibrate/public_moe.py`; and per curve the table's measured layer times at the
  shipped model specs' per-GPU layer shapes (`moe_points`: `calibration.MoePoints`), through which a layer of such a
  shape is timed (the curve supplying the split over its five ops and the extrapolation).
* `comm/<framework>/.../custom_allreduce_perf.parquet`: the engine's all-reduce (the rows
  replayed from a CUDA graph where the table has both), per group size p the measured points
  (`allreduce_points`: message bytes S = elements · 2 for bf16, the median time of each size), which time a
  message by piecewise-linear interpolation (`calibration.interpolated_message_s`), and the line
  t = t0 + S / R fitted to them, kept as a summary (`allreduce`); `interconnect_fraction` is the
  bus bandwidth 2(p-1)/p · S / t of the largest message of the largest group over the link rate.
* `comm/nccl/<newest>/nccl_perf.parquet`: NCCL's half-precision all-reduce, the same points and line per group
  size (`nccl_allreduce_points`, `nccl_allreduce`): what runs where the engine has no custom all-reduce
  (`engines.nccl_allreduce`).
* `gemm/.../gemm_perf.parquet` rows `int4_wo` / `int8_wo` with M ≤ `GEMV_MAX_TOKENS` (from the newest
  table that has them, this framework's first: `weight_only_rows`): a weight-only decode GEMM,
  t = t0 + W / R over its packed weight bytes W = N · K · bits / 8 (`gemv`).

The tables hold no copy benchmark and no launch-overhead measurement: `memory` stays absent (the
datasheet bandwidth fraction stays for non-attention kernels) and `kernel_overhead_s` is the
profile's. Every figure these curves produce is a kernel time from the tables; nothing is
fitted to end-to-end measurements.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import roofline as rl
from roofline.calibration import (GEMV_BITS, GEMV_MAX_TOKENS, SCHEMA_VERSION, AffineCurve, AllreducePoints, Calibration,
                                  GemmTable, MeasuredAllreduce)
from roofline.errors import SpecError
from roofline.attention_shapes import decode_kv_units, executed_pairs, query_tiles, wave_efficiency
from roofline.ops import attended_keys

from .fit import fit_affine, fit_affine_units
from .public_attention import attention_points, within_budget
from .public_attention import corpus_shapes as corpus_attention_shapes
from .public_moe import fit_moe, moe_points

PACKAGE = "aiconfigurator-core"
MODULE = "aiconfigurator_core"
LICENSE = "Apache-2.0"
INSTALL_HINT = "pip install roofline[public-data]"
PUBLIC_DIR = Path(__file__).resolve().parent / "public"

# the package's system name -> our hardware profile id (systems without a profile are not covered)
SYSTEMS = {
    "a100_sxm": "a100-sxm-80gb", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200",
    "gb200": "gb200", "l40s": "l40s",
}
DEFAULT_FRAMEWORKS = ("vllm", "trtllm")  # the newest vLLM tables where present, else TensorRT-LLM
# table gemm_dtype -> compute dtype key. Not `nvfp4` (Blackwell's FP4 GEMM) yet: TensorRT-LLM 1.3.0rc20's table on
# B200 reaches 3.78 PFLOP/s at M = 16,384, N = K = 8192 (0.42 of the 9 PFLOP/s dense peak) against the profile's
# sourced cuBLASLt 0.76, and at M = 1 takes 22.3 us for a 36 MB weight read (4.7 us at HBM rate); which of the two
# describes the engine's NVFP4 linear (autotuned tactics, the fused activation quantization) is not settled
# (calibrate/public/README.md), so fp4 GEMMs keep the datasheet fraction.
GEMM_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8"}
TABLE_TIME_S = 1e-3  # the tables' latency unit: milliseconds
HALF_BYTES = 2  # bf16 activations, KV and all-reduce elements
WEIGHT_ONLY = {"int4_wo": "int4", "int8_wo": "int8"}  # table gemm_dtype of weight-only GEMMs -> calibration.gemv key
NK_BINS_PER_OCTAVE = 2
CURVE_POINTS = 48  # an affine curve keeps the median time in this many log-spaced bins of x
FILE_LIMIT_BYTES = 99_500  # a committed file stays under 100 KB (test_public_data), with room for its date and notes
SIGNIFICANT = 4  # digits kept of every stored fraction and time
# The small memory-bound kernels' line (`calibration.Calibration.elementwise`): the per-tensor FP8 quantization table
# (`quantize/<framework>/<version>/scale_matrix_perf`: vLLM's static_scaled_fp8_quant, TensorRT-LLM's torch op), one
# streaming kernel that reads M x K bf16 and writes M x K fp8. SGLang's table times another kernel (0.08-0.12 of HBM
# bandwidth at GB sizes, t0 ~7 us), not a streaming elementwise one, so its files take vLLM's table of the device.
ELEMENTWISE_TABLE = ("quantize", "scale_matrix_perf.parquet")
ELEMENTWISE_FRAMEWORK = {"sglang": "vllm"}  # framework -> whose quantize table its file takes (itself where absent)
ELEMENTWISE_BYTES_PER_ELEMENT = HALF_BYTES + 1  # read bf16, write fp8
# Rows fitted: the latency regime (bytes <= L2 / ELEMENTWISE_LATENCY_L2_DIVISOR) and the HBM regime (bytes >=
# ELEMENTWISE_HBM_L2_MULTIPLE x L2). The collector replays the kernel on the same buffers, so rows in between are read
# from L2 after the first replay (H100 at 25 MB: 1.18 x its HBM bandwidth; L40S at 94 MB: 6 x): not an HBM line.
ELEMENTWISE_LATENCY_L2_DIVISOR = 256
ELEMENTWISE_HBM_L2_MULTIPLE = 2


# ------------------------------------------------------------ finding the tables
def data_root() -> Path:
    """The package's `systems/data` folder, found without importing the package."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(PACKAGE, f"is not installed; {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "systems" / "data"
    if not root.is_dir():
        raise SpecError(PACKAGE, f"has no systems/data folder at {root}; reinstall it ({INSTALL_HINT})")
    return root


def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def resolve_system(device: str) -> tuple[str, str]:
    """(system, hardware id) for a system name (h200_sxm) or a hardware id (h200)."""
    key = device.strip().lower()
    if key in SYSTEMS:
        return key, SYSTEMS[key]
    for system, hw_id in SYSTEMS.items():
        if key == hw_id:
            return system, hw_id
    choices = ", ".join(f"{s} ({h})" for s, h in SYSTEMS.items())
    raise SpecError("--from-public", f"no public tables mapped to {device!r}; choose from {choices}")


def version_key(version: str) -> tuple:
    """Order versions: 1.3.0rc20 < 1.3.0 < 1.3.0.post2 < 1.3.1."""
    m = re.match(r"^(\d+(?:\.\d+)*)\.?(rc|post)?\.?(\d+)?", version)
    if m is None:
        return ((), 0, 0)
    stage = {"rc": -1, None: 0, "post": 1}[m.group(2)]
    return tuple(int(x) for x in m.group(1).split(".")), stage, int(m.group(3) or 0)


def _versions(root: Path, system: str, op: str, framework: str, table: str) -> list[str]:
    folder = root / system / op / framework
    if not folder.is_dir():
        return []
    return sorted((d.name for d in folder.iterdir() if (d / table).is_file()), key=version_key)


def choose_source(root: Path, system: str, framework: str | None = None, version: str | None = None) -> tuple[str, str]:
    """(framework, version) of the GEMM tables to fit: the newest vLLM, else TensorRT-LLM, unless given."""
    frameworks = (framework.lower(),) if framework else DEFAULT_FRAMEWORKS
    for fw in frameworks:
        have = _versions(root, system, "gemm", fw, "gemm_perf.parquet")
        if version is not None:
            if version in have:
                return fw, version
            raise SpecError("--version", f"{system} has no {fw} {version} GEMM table; it has {', '.join(have) or 'none'}")
        if have:
            return fw, have[-1]
    raise SpecError("--framework", f"{system} has no GEMM table for {' or '.join(frameworks)}")


def read_tables(root: Path, system: str, framework: str, version: str) -> tuple[dict[str, pd.DataFrame], list[str], str | None]:
    """The tables of one (system, framework, version): name -> frame, the paths read, the collection date.

    GEMM and attention come from that version; the all-reduce from the same version of the
    framework's comm tables, else its newest.
    """
    import yaml

    wanted = {"gemm": ("gemm", "gemm_perf.parquet"), "context_attention": ("attention", "context_attention_perf.parquet"),
              "generation_attention": ("attention", "generation_attention_perf.parquet")}
    tables, paths, dates = {}, [], []
    for name, (op, file) in wanted.items():
        path = root / system / op / framework / version / file
        if path.is_file():
            tables[name] = pd.read_parquet(path)
            paths.append(str(path.relative_to(root)))
    gemv, gemv_paths = weight_only_rows(root, system, framework, version, tables.get("gemm"))
    if gemv is not None:
        tables["gemv"] = gemv
        paths.extend(p for p in gemv_paths if p not in paths)
    nccl = _versions(root, system, "comm", "nccl", "nccl_perf.parquet")
    if nccl:
        path = root / system / "comm" / "nccl" / nccl[-1] / "nccl_perf.parquet"
        tables["nccl"] = pd.read_parquet(path)
        tables["nccl"].attrs["source"] = str(path.relative_to(root))
    moe = _versions(root, system, "moe", framework, "moe_perf.parquet")
    if moe:  # the fused MoE layer (`calibrate.public_moe`): the same version, else the framework's newest
        v = version if version in moe else moe[-1]
        path = root / system / "moe" / framework / v / "moe_perf.parquet"
        tables["moe"] = pd.read_parquet(path)
        paths.append(str(path.relative_to(root)))
    ew_fw = ELEMENTWISE_FRAMEWORK.get(framework, framework)
    ew = _versions(root, system, ELEMENTWISE_TABLE[0], ew_fw, ELEMENTWISE_TABLE[1])
    if ew:  # the small-kernel line: the same version, else the framework's newest
        v = version if ew_fw == framework and version in ew else ew[-1]
        path = root / system / ELEMENTWISE_TABLE[0] / ew_fw / v / ELEMENTWISE_TABLE[1]
        tables["elementwise"] = pd.read_parquet(path)
        paths.append(str(path.relative_to(root)))
    comm = _versions(root, system, "comm", framework, "custom_allreduce_perf.parquet")
    if comm:
        v = version if version in comm else comm[-1]
        path = root / system / "comm" / framework / v / "custom_allreduce_perf.parquet"
        tables["allreduce"] = pd.read_parquet(path)
        tables["allreduce"].attrs["source"] = str(path.relative_to(root))
        paths.append(str(path.relative_to(root)))
    for p in paths:
        meta = (root / p).parent / "collection_meta.yaml"
        if meta.is_file():
            entry = ((yaml.safe_load(meta.read_text()) or {}).get("tables") or {}).get(Path(p).stem)  # this table's entry only
            if isinstance(entry, dict) and entry.get("collected_at"):
                dates.append(str(entry["collected_at"]))
    return tables, paths, (max(dates) if dates else None)


def weight_only_rows(root: Path, system: str, framework: str, version: str, gemm: pd.DataFrame | None):
    """(rows, paths): each weight-only format's GEMM rows (`WEIGHT_ONLY`) from the newest table of `framework` that has
    them, else of another framework (alphabetical): a dequantizing kernel is timed where any engine's tables time one
    (A100: TensorRT-LLM 1.0.0; H100: SGLang 0.5.6.post2). (None, []) where no table has them."""
    folder = root / system / "gemm"
    others = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name != framework) if folder.is_dir() else []
    found, paths = [], []
    for fw in [framework, *others]:
        for v in reversed(_versions(root, system, "gemm", fw, "gemm_perf.parquet")):
            missing = [d for d in WEIGHT_ONLY if not any((f["gemm_dtype"] == d).any() for f in found)]
            if not missing:
                break
            path = root / system / "gemm" / fw / v / "gemm_perf.parquet"
            frame = gemm if (fw, v) == (framework, version) and gemm is not None else pd.read_parquet(path)
            rows = frame[frame["gemm_dtype"].isin(missing)]
            if not rows.empty:
                found.append(rows)
                paths.append(str(path.relative_to(root)))
    return (pd.concat(found) if found else None), paths


# ------------------------------------------------------------ per-kernel amounts (as roofline.ops counts them)
def prefill_attention_flops(batch, isl, heads, head_dim):
    """FLOPs of one causal prefill attention kernel: batch · heads · isl(isl+1)/2 pairs · (2d + 2d)."""
    return np.asarray(batch) * heads * attended_keys(np.asarray(isl, dtype=float), 0.0) * 4 * np.asarray(head_dim)


def prefill_executed_flops(batch, isl, heads, head_dim, sms):
    """The x of an executed-FLOPs prefill line (`roofline.attention_shapes`): batch · heads · the causal tiles' pairs ·
    4d, over the wave efficiency of batch · heads · ceil(isl / 128) query-tile blocks on `sms` SMs."""
    batch, isl = np.asarray(batch, dtype=float), np.asarray(isl, dtype=float)
    executed = batch * heads * executed_pairs(isl, 0.0) * 4 * np.asarray(head_dim)
    return executed / wave_efficiency(batch * heads * query_tiles(isl), sms)


def decode_attention_bytes(batch, context, heads, kv_heads, head_dim, kv_bytes, act_bytes=HALF_BYTES):
    """HBM bytes of one decode attention kernel at `context` visible tokens (the new one included).

    KV read batch · context · (2 · kv_heads · d · kv_bytes), the new token's KV written (one
    token's worth), Q read and output written (batch · heads · d · act_bytes each).
    """
    kv_token = 2 * np.asarray(kv_heads) * head_dim * kv_bytes
    batch = np.asarray(batch, dtype=float)
    return batch * np.asarray(context) * kv_token + batch * kv_token + 2 * batch * heads * head_dim * act_bytes


def gemm_fractions(df: pd.DataFrame, peak: float, tile: int) -> np.ndarray:
    """Per row 2 · pad(M) · N · K / (t · peak): the fraction of the dense peak on tile-padded FLOPs
    (`fit.padded_gemm_flops` over a whole table at once)."""
    m = df["m"].to_numpy(dtype=float)
    padded = 2.0 * np.ceil(m / tile) * tile * df["n"].to_numpy(dtype=float) * df["k"].to_numpy(dtype=float)
    return padded / (df["latency"].to_numpy(dtype=float) * TABLE_TIME_S * peak)


def nk_bin(nk) -> np.ndarray:
    """Half-octave bin centre 2^(round(2·log2 N·K) / 2) of a weight's N·K."""
    return 2.0 ** (np.round(NK_BINS_PER_OCTAVE * np.log2(np.asarray(nk, dtype=float))) / NK_BINS_PER_OCTAVE)


def _sig(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT}g}")


# ------------------------------------------------------------ the fits
def gemm_rows(df: pd.DataFrame, table_dtype: str) -> pd.DataFrame:
    """Rows of one gemm_dtype from its most measured kernel source (the one the engine runs by default)."""
    rows = df[df["gemm_dtype"] == table_dtype]
    if "kernel_source" in rows and rows["kernel_source"].nunique() > 1:
        rows = rows[rows["kernel_source"] == rows["kernel_source"].value_counts().index[0]]
    return rows[(rows["latency"] > 0) & (rows["m"] > 0)]


def fit_gemm(df: pd.DataFrame, dtype: str, peak: float, tile: int, notes: list[str]) -> GemmTable | None:
    """The (M, N·K) fraction table of one dtype; cells pooled by median, gaps from the nearest N·K of the row."""
    if df.empty:
        return None
    frac = gemm_fractions(df, peak, tile)
    over = int(np.sum(frac > 1))
    if over:
        notes.append(f"gemm {dtype}: {over} of {len(frac)} rows above the datasheet peak clamped to 1")
    cells = pd.DataFrame({"m": df["m"].to_numpy(dtype=int), "nk": nk_bin(df["n"].to_numpy(float) * df["k"].to_numpy(float)),
                          "frac": np.clip(frac, 1e-6, 1.0)}).groupby(["m", "nk"])["frac"].median().unstack("nk")
    arr = cells.to_numpy(dtype=float).copy()  # writable: pandas (copy-on-write) may hand out a read-only view
    log_nk = np.log(cells.columns.to_numpy(dtype=float))
    gaps = np.argwhere(np.isnan(arr))
    for i, j in gaps:  # every row has a measured cell: its M came from a row of the table
        have = np.flatnonzero(~np.isnan(cells.iloc[i].to_numpy(dtype=float)))
        arr[i, j] = arr[i, have[np.argmin(np.abs(log_nk[have] - log_nk[j]))]]
    if len(gaps):
        notes.append(f"gemm {dtype}: {len(gaps)} unmeasured (M, N·K) cell(s) filled from the nearest measured N·K")
    table = tuple(tuple(_sig(v) for v in row) for row in arr)
    return GemmTable(dtype=dtype, peak_per_s=peak, m_tokens=tuple(int(m) for m in cells.index),
                     nk_elements=tuple(float(c) for c in cells.columns), fraction=table)


def _compress(curve: AffineCurve | None, x, t) -> AffineCurve | None:
    """The curve with its points replaced by the median time in log-spaced bins of x (the fit used every row)."""
    if curve is None:
        return None
    x, t = np.asarray(x, dtype=float), np.asarray(t, dtype=float)
    edges = np.logspace(np.log10(x.min()), np.log10(x.max()) + 1e-9, CURVE_POINTS + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, CURVE_POINTS - 1)
    frame = pd.DataFrame({"i": idx, "x": x, "t": t}).groupby("i").median()
    if len(frame) < 2:
        frame = pd.DataFrame({"x": x[:2], "t": t[:2]})
    return curve.model_copy(update={"latency_s": _sig(curve.latency_s), "rate_per_s": min(_sig(curve.rate_per_s), curve.peak_per_s),
                                    "points_x": tuple(_sig(v) for v in frame["x"]), "points_s": tuple(_sig(v) for v in frame["t"])})


def attention_rows(df: pd.DataFrame) -> pd.DataFrame:
    """bf16-KV, full-attention rows of the most measured kernel source."""
    rows = df[(df["kv_cache_dtype"].isin(["bfloat16", "float16"])) & (df.get("window_size", 0) == 0) & (df["latency"] > 0)]
    if "kernel_source" in rows and rows["kernel_source"].nunique() > 1:
        rows = rows[rows["kernel_source"] == rows["kernel_source"].value_counts().index[0]]
    return rows


def prefill_x(rows: pd.DataFrame) -> np.ndarray:
    return prefill_attention_flops(rows["batch_size"].to_numpy(float), rows["isl"].to_numpy(float),
                                   rows["num_heads"].to_numpy(float), rows["head_dim"].to_numpy(float))


def prefill_executed_x(rows: pd.DataFrame, sms: int) -> np.ndarray:
    return prefill_executed_flops(rows["batch_size"].to_numpy(float), rows["isl"].to_numpy(float),
                                  rows["num_heads"].to_numpy(float), rows["head_dim"].to_numpy(float), sms)


def decode_units(rows: pd.DataFrame) -> np.ndarray:
    """(sequence, KV head) units of each decode row: batch · kv_heads."""
    return decode_kv_units(rows["batch_size"].to_numpy(float), rows["num_key_value_heads"].to_numpy(float))


def decode_x(rows: pd.DataFrame) -> np.ndarray:
    kv_bytes = rows["kv_cache_dtype"].map({"bfloat16": 2, "float16": 2, "fp8": 1}).to_numpy(float)
    return decode_attention_bytes(rows["batch_size"].to_numpy(float), (rows["isl"] + rows["step"]).to_numpy(float),
                                  rows["num_heads"].to_numpy(float), rows["num_key_value_heads"].to_numpy(float),
                                  rows["head_dim"].to_numpy(float), kv_bytes)


def allreduce_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Half-precision rows; where the table has eager and CUDA-graph rows, the graph ones (how engines replay decode)."""
    rows = df[df["allreduce_dtype"].isin(["bfloat16", "float16", "half"]) & (df["latency"] > 0)]
    if "backend" in rows and rows["backend"].astype(str).str.endswith("graph").any():
        rows = rows[rows["backend"].astype(str).str.endswith("graph")]
    elif "kernel_source" in rows and rows["kernel_source"].nunique() > 1:
        rows = rows[rows["kernel_source"] == rows["kernel_source"].value_counts().index[0]]
    return rows


def allreduce_peak(link_bytes_per_s: float, gpus: int) -> float:
    """The most message bytes/s any all-reduce of p GPUs delivers: each GPU must receive the (p-1)/p of
    the result its peers' data decides, so t >= (p-1)/p · S / link, S / t <= link · p / (p-1)."""
    return link_bytes_per_s * gpus / (gpus - 1)


def fit_allreduce_lines(rows: pd.DataFrame, link: float, notes: list[str], label: str) -> dict[str, AffineCurve]:
    """Per group size p of all-reduce rows, t = t0 + S / R over message bytes S, against the most any all-reduce of
    p GPUs delivers (`allreduce_peak`); `label` names the kernel in the fit's notes."""
    out = {}
    for p, g in rows.groupby("num_gpus"):
        if p < 2:
            continue
        x = g["message_size"].to_numpy(float) * HALF_BYTES
        t = g["latency"].to_numpy(float) * TABLE_TIME_S
        curve = fit_affine(x, t, allreduce_peak(link, int(p)), "bytes", notes, f"{label} tp{p}")
        if curve is not None:
            out[str(int(p))] = _compress(curve, x, t)
    return out


def allreduce_points_from_rows(rows: pd.DataFrame, link: float, source: str) -> MeasuredAllreduce | None:
    """Per group size p of all-reduce rows, the measured points: each message size's bytes S (elements · 2) and the
    median of its latencies (the tables hold one row per size; a repeated size takes the median), sorted by S, with
    the most any all-reduce of p GPUs delivers (`allreduce_peak`). `source` names the table and rows taken."""
    groups = {}
    for p, g in rows.groupby("num_gpus"):
        if p < 2:
            continue
        med = (g["latency"].astype(float) * TABLE_TIME_S).groupby(g["message_size"].astype(float) * HALF_BYTES).median().sort_index()
        if len(med) >= 2:
            groups[str(int(p))] = AllreducePoints(message_bytes=tuple(float(x) for x in med.index),
                                                  time_s=tuple(_sig(float(t)) for t in med.to_numpy()),
                                                  peak_per_s=allreduce_peak(link, int(p)))
    return MeasuredAllreduce(source=source, groups=groups) if groups else None


def allreduce_source(df: pd.DataFrame, rows: pd.DataFrame, default: str) -> str:
    """The table `df` was read from (`read_tables` records it in `df.attrs`) and the rows taken: dtypes and backend."""
    where = df.attrs.get("source", default)
    dtype_col = "allreduce_dtype" if "allreduce_dtype" in rows else "nccl_dtype"
    parts = [f"{PACKAGE} {where}", "dtype " + "/".join(sorted(rows[dtype_col].astype(str).unique()))]
    if "backend" in rows:
        parts.append("backend " + "/".join(sorted(rows["backend"].astype(str).unique())))
    return ", ".join(parts)


def fit_allreduce(df: pd.DataFrame, link: float, notes: list[str]) -> dict[str, AffineCurve]:
    """The engine's custom all-reduce kernel, per group size (`fit_allreduce_lines`)."""
    return fit_allreduce_lines(allreduce_rows(df), link, notes, "allreduce")


def nccl_rows(df: pd.DataFrame) -> pd.DataFrame:
    """NCCL's half-precision all-reduce rows (nccl_perf also holds all-gather, reduce-scatter and all-to-all)."""
    return df[(df["op_name"] == "all_reduce") & df["nccl_dtype"].isin(["half", "bfloat16", "float16"]) & (df["latency"] > 0)]


def fit_nccl_allreduce(df: pd.DataFrame, link: float, notes: list[str]) -> dict[str, AffineCurve]:
    """NCCL's all-reduce, per group size (`fit_allreduce_lines`)."""
    return fit_allreduce_lines(nccl_rows(df), link, notes, "nccl allreduce")


def fit_gemv(df: pd.DataFrame, bandwidth: float, notes: list[str]) -> dict[str, AffineCurve]:
    """Per weight-only format, t = t0 + W / R over the packed weight bytes W = N · K · bits / 8 of its rows of at most
    `GEMV_MAX_TOKENS` tokens (`calibration.CalibratedCurves`: weight-only decode GEMMs), against the HBM bandwidth."""
    out = {}
    for table_dtype, key in WEIGHT_ONLY.items():
        rows = df[(df["gemm_dtype"] == table_dtype) & (df["m"] <= GEMV_MAX_TOKENS) & (df["latency"] > 0)]
        if rows.empty:
            continue
        x = rows["n"].to_numpy(float) * rows["k"].to_numpy(float) * GEMV_BITS[key] / 8
        t = rows["latency"].to_numpy(float) * TABLE_TIME_S
        curve = fit_affine(x, t, bandwidth, "bytes", notes, f"gemv {key}")
        if curve is not None:
            out[key] = _compress(curve, x, t)
    return out


def elementwise_rows(df: pd.DataFrame, l2_bytes: float) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, seconds) of a quantize table's rows in the latency and HBM regimes (`ELEMENTWISE_LATENCY_L2_DIVISOR`):
    bytes = M · K · (2 + 1), a bf16 read and an fp8 write per element."""
    rows = df[df["latency"] > 0]
    x = rows["m"].to_numpy(float) * rows["k"].to_numpy(float) * ELEMENTWISE_BYTES_PER_ELEMENT
    t = rows["latency"].to_numpy(float) * TABLE_TIME_S
    keep = (x <= l2_bytes / ELEMENTWISE_LATENCY_L2_DIVISOR) | (x >= ELEMENTWISE_HBM_L2_MULTIPLE * l2_bytes)
    return x[keep], t[keep]


def fit_elementwise(df: pd.DataFrame, bandwidth: float, l2_bytes: float, notes: list[str]) -> AffineCurve | None:
    """The small memory-bound kernels' line t = t0 + B / R (`calibration.Calibration.elementwise`) by relative least
    squares over `elementwise_rows`, against the HBM bandwidth. H200, vLLM 0.24.0: t0 = 2.0 µs, R = 0.86 of 4.8 TB/s."""
    x, t = elementwise_rows(df, l2_bytes)
    return _compress(fit_affine(x, t, bandwidth, "bytes", notes, "elementwise"), x, t)


def interconnect_fraction(df: pd.DataFrame, link: float) -> float | None:
    """Bus bandwidth 2(p-1)/p · S / t of the largest message of the largest group, over the link rate (at most 1)."""
    rows = allreduce_rows(df)
    if rows.empty:
        return None
    p = int(rows["num_gpus"].max())
    r = rows[rows["num_gpus"] == p].sort_values("message_size").iloc[-1]
    bus = 2 * (p - 1) / p * r["message_size"] * HALF_BYTES / (r["latency"] * TABLE_TIME_S)
    return float(min(1.0, _sig(bus / link)))


def build_public_calibration(tables: dict[str, pd.DataFrame], hw, hw_id: str, system: str, framework: str, version: str,
                             paths: list[str], collected_at: str | None = None, pkg_version: str | None = None,
                             date: str | None = None, command: str | None = None) -> Calibration:
    """Fit the curves of `tables` (frames as the package ships them) against `hw`'s datasheet peaks."""
    notes = [f"fitted from {PACKAGE} {pkg_version or package_version()} tables ({system}, {framework} {version}); "
             "no copy or launch-overhead table: memory and kernel overhead stay the profile's"]
    tile = hw.gemm_tile_tokens
    gemm = {}
    g = tables.get("gemm")
    device = None
    if g is not None and not g.empty:
        device = str(g["device"].iloc[0]) if "device" in g else None
        for table_dtype, key in GEMM_DTYPES.items():
            if key not in hw.peak_flops_per_s:
                continue
            t = fit_gemm(gemm_rows(g, table_dtype), key, hw.peak_flops(key), tile, notes)
            if t is not None:
                gemm[key] = t
    if not gemm:
        raise SpecError("gemm", f"{system} {framework} {version}: no bf16/fp16/fp8 GEMM rows to fit")
    pre = dec = kv_head_s = pre_points = None
    if "context_attention" in tables:
        rows = attention_rows(tables["context_attention"])
        x, t = prefill_executed_x(rows, hw.sm_count or 0), rows["latency"].to_numpy(float) * TABLE_TIME_S
        pre = _compress(fit_affine(x, t, hw.peak_flops("bf16"), "executed_flops", notes, "attention_prefill"), x, t)
        if pre is not None:
            table = next((p for p in paths if p.endswith("context_attention_perf.parquet")), "context_attention_perf.parquet")
            pre_points = attention_points(rows, x, pre, table)
            if pre_points is not None:
                notes.append(f"attention prefill: measured / line ratios of {len(pre_points.shapes)} per-GPU shapes "
                             "(shipped model specs at the corpus's tp), through which those kernels are timed "
                             "(`calibration.AttentionPoints`)")
    if "generation_attention" in tables:
        rows = attention_rows(tables["generation_attention"])
        x, t = decode_x(rows), rows["latency"].to_numpy(float) * TABLE_TIME_S
        line, kv_head_s = fit_affine_units(x, decode_units(rows), t, hw.memory_bandwidth_bytes_per_s, "bytes", notes,
                                           "attention_decode")
        dec = _compress(line, x, t)
        kv_head_s = None if dec is None or kv_head_s is None else _sig(kv_head_s)
    moe = fit_moe(tables["moe"], hw, notes) if "moe" in tables else {}
    moe_table = next((p for p in paths if p.endswith("moe_perf.parquet")), "moe_perf.parquet")
    measured_moe = moe_points(tables["moe"], moe, hw, moe_table) if moe else {}
    for key, m in measured_moe.items():
        notes.append(f"moe {key}: measured layer times of {len(m.shapes)} per-GPU shapes (shipped model specs), "
                     f"through which those layers are timed (`calibration.MoePoints`)")
    link = hw.interconnect.bytes_per_s_per_direction
    ar = tables.get("allreduce")
    allreduce = fit_allreduce(ar, link, notes) if ar is not None else {}
    nccl = fit_nccl_allreduce(tables["nccl"], link, notes) if "nccl" in tables else {}
    ar_rows = allreduce_rows(ar) if ar is not None else None
    ar_points = (allreduce_points_from_rows(ar_rows, link, allreduce_source(ar, ar_rows, "custom_allreduce_perf.parquet"))
                 if ar_rows is not None else None)
    nccl_rows_ = nccl_rows(tables["nccl"]) if "nccl" in tables else None
    nccl_points = (allreduce_points_from_rows(nccl_rows_, link, allreduce_source(tables["nccl"], nccl_rows_, "nccl_perf.parquet"))
                   if nccl_rows_ is not None else None)
    gemv = fit_gemv(tables["gemv"], hw.memory_bandwidth_bytes_per_s, notes) if "gemv" in tables else {}
    elementwise = (fit_elementwise(tables["elementwise"], hw.memory_bandwidth_bytes_per_s, hw.l2_bytes, notes)
                   if "elementwise" in tables else None)
    date = date or datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = command or f"roofline calibrate --from-public {system} --framework {framework} --version {version}"
    cal = Calibration(
        schema_version=SCHEMA_VERSION,
        id=f"public-{system}-{framework}-{version}",
        provenance={
            "device_name": device or system, "device_kind": "cuda", "base_profile": hw_id, "profile_match": True,
            "profile_match_note": f"{PACKAGE} system {system} is mapped to profile {hw_id}",
            "torch_version": "unknown", "date": date, "command": command,
            "public_source": {"package": PACKAGE, "package_version": pkg_version or package_version(), "license": LICENSE,
                              "system": system, "framework": framework, "framework_version": version,
                              "tables": tuple(paths), "collected_at": collected_at},
        },
        gemm=gemm,
        attention_prefill=pre,
        attention_prefill_points=pre_points,
        attention_decode=dec,
        attention_decode_kv_head_s=kv_head_s,
        kernel_overhead_s=hw.efficiency.kernel_overhead_s,
        interconnect_fraction=interconnect_fraction(ar, link) if ar is not None else None,
        allreduce=allreduce,
        nccl_allreduce=nccl,
        allreduce_points=ar_points,
        nccl_allreduce_points=nccl_points,
        gemv=gemv,
        elementwise=elementwise,
        moe=moe,
        moe_points=measured_moe,
        notes=tuple(notes),
    )
    if pre_points is not None:  # the attention points last, as many shapes as the file's size limit leaves room for
        spare = FILE_LIMIT_BYTES - len(_json(cal.model_copy(update={"attention_prefill_points": None})))
        kept = within_budget(pre_points, spare, corpus_attention_shapes())
        if kept is not pre_points:
            said = f"attention prefill: measured / line ratios of {len(pre_points.shapes)} per-GPU shapes"
            now = None if kept is None else f"attention prefill: measured / line ratios of {len(kept.shapes)} per-GPU shapes"
            cal = cal.model_copy(update={"attention_prefill_points": kept, "notes": tuple(
                nt.replace(said, now or said) for nt in cal.notes if now is not None or not nt.startswith(said))})
    return cal


def fit_public(device: str, framework: str | None = None, version: str | None = None,
               root: Path | None = None) -> tuple[Calibration, dict[str, pd.DataFrame]]:
    """Read one device's tables from the installed package (or `root`) and fit them; returns the file and the tables."""
    root = data_root() if root is None else Path(root)
    system, hw_id = resolve_system(device)
    framework, version = choose_source(root, system, framework, version)
    tables, paths, collected = read_tables(root, system, framework, version)
    hw = rl.load_hardware(hw_id, analytical=True)  # datasheet peaks, not a calibration
    return build_public_calibration(tables, hw, hw_id, system, framework, version, paths, collected), tables


def _json(cal: Calibration) -> str:
    """The file's text: compact JSON, keys sorted."""
    return json.dumps(cal.model_dump(mode="json", exclude_none=True), separators=(",", ":"), sort_keys=True) + "\n"


def write_calibration(cal: Calibration, path: Path) -> Path:
    """The calibration as compact JSON (one line per top-level field's items is more than needed here)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(_json(cal), encoding="utf-8")
    tmp.replace(path)
    return path


def run_from_public(device: str, framework: str | None, version: str | None, out: str | None) -> str:
    """`roofline calibrate --from-public DEVICE`: fit and write one device's file; returns the summary line."""
    cal, _ = fit_public(device, framework, version)
    hw_id = cal.provenance.base_profile
    target = Path(out) if out else PUBLIC_DIR / f"{hw_id}.json"
    if target.suffix != ".json":
        target = target / f"{hw_id}.json"
    write_calibration(cal, target)
    src = cal.provenance.public_source
    parts = [f"gemm {', '.join(cal.gemm)}", "attention prefill" if cal.attention_prefill else "",
             "attention decode" if cal.attention_decode else "",
             f"all-reduce tp{','.join(cal.allreduce)}" if cal.allreduce else "",
             f"NCCL all-reduce tp{','.join(cal.nccl_allreduce)}" if cal.nccl_allreduce else "",
             f"weight-only GEMV {', '.join(cal.gemv)}" if cal.gemv else "",
             "elementwise kernels" if cal.elementwise else ""]
    return (f"wrote {target} ({src.package} {src.package_version}, {src.system}, {src.framework} {src.framework_version}): "
            + "; ".join(p for p in parts if p) + f"\nuse it: roofline.load_hardware({hw_id!r}, calibration={str(target)!r})")


def rel_error(predicted, measured) -> np.ndarray:
    return np.asarray(predicted, dtype=float) / np.asarray(measured, dtype=float) - 1


def median_abs_pct(e) -> float:
    e = np.asarray(e, dtype=float)
    return float(100 * np.median(np.abs(e))) if e.size else math.nan
