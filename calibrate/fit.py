"""Measurements -> the calibrated profile (`roofline.calibration.Calibration`).

* Latency-bandwidth lines (copy, read, write, decode attention in bytes; prefill attention in
  FLOPs): t = t0 + x / R fitted by least squares on the **relative** residual
  (t0 + x/R - t)/t, so a 4 KB kernel of 5 us and an 8 GB kernel of 3 ms weigh the same.
  t0 < 0 is refitted with t0 = 0; R above the datasheet peak is clamped to the peak and
  noted (a measurement faster than light means L2 hits or a wrong profile).
* GEMM tables: at each measured (M, N, K) the fraction of the dense peak reached on the
  tile-padded FLOPs, 2 · ceil(M / tile) · tile · N · K / (t · peak), the quantity the roofline
  divides (`roofline.py`: F · pad / (peak · fraction)); so the calibrated compute term of
  that shape is its measured time. Weights of equal N·K share a column (their median);
  a missing cell (out of memory) takes the nearest measured N·K of its row.
* Overhead: the eager per-kernel time of the launch chain; the CUDA-graph one is kept apart.
* Interconnect: the largest all-reduce bus bandwidth / the profile's link rate.

Example (the arithmetic of tests/test_calibrate_fit.py): copies of 1 MB in 5.5 us and 1 GB in
505 us lie on t = 5 us + x / 2e12, so R = 2 TB/s, a fraction of 2 / 3.35 = 0.597 of an H100 SXM.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone

import numpy as np

from roofline.calibration import SCHEMA_VERSION, AffineCurve, Calibration, GemmTable
from roofline.errors import SpecError

MIN_FRACTION = 1e-6


def fit_affine(xs, ts, peak: float, unit: str, notes: list[str], label: str) -> AffineCurve | None:
    """t = t0 + x / R through (x, t) points by relative least squares; None with a note if < 2 points."""
    pts = [(float(x), float(t)) for x, t in zip(xs, ts) if x > 0 and t > 0]
    if len(pts) < 2:
        notes.append(f"{label}: fewer than two measured points; not calibrated")
        return None
    x = np.array([p[0] for p in pts])
    t = np.array([p[1] for p in pts])
    a = np.stack([1 / t, x / t], axis=1)
    (t0, inv_rate), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if t0 < 0:
        t0 = 0.0
        inv_rate = float(np.sum(x / t) / np.sum((x / t) ** 2))
    if inv_rate <= 0:
        notes.append(f"{label}: time does not grow with size; not calibrated")
        return None
    rate = 1 / inv_rate
    if rate > peak:
        notes.append(f"{label}: fitted rate {rate:.4g}/s exceeds the datasheet peak {peak:.4g}/s; clamped to the peak")
        rate = peak
    return AffineCurve(x_unit=unit, latency_s=float(t0), rate_per_s=float(rate), peak_per_s=float(peak),
                       points_x=tuple(float(v) for v in x), points_s=tuple(float(v) for v in t))


def fit_affine_units(xs, units, ts, peak: float, unit: str, notes: list[str], label: str) -> tuple[AffineCurve | None, float | None]:
    """t = t0 + x / R + u · t_u by relative least squares (as `fit_affine`, one more column): the decode attention line
    with its cost per (sequence, KV head) `u`. Returns (line, t_u); a negative t_u is dropped (the two-term line,
    t_u None), a negative t0 refitted at 0."""
    x, u, t = (np.asarray(v, dtype=float) for v in (xs, units, ts))
    keep = (x > 0) & (t > 0) & (u >= 0)
    x, u, t = x[keep], u[keep], t[keep]
    if len(t) < 3:
        return fit_affine(x, t, peak, unit, notes, label), None
    a = np.stack([1 / t, x / t, u / t], axis=1)
    (t0, inv_rate, t_u), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if t0 < 0:
        (inv_rate, t_u), *_ = np.linalg.lstsq(a[:, 1:], np.ones_like(t), rcond=None)
        t0 = 0.0
    if t_u < 0 or inv_rate <= 0:
        notes.append(f"{label}: no positive cost per unit; the two-term line")
        return fit_affine(x, t, peak, unit, notes, label), None
    rate = 1 / inv_rate
    if rate > peak:
        notes.append(f"{label}: fitted rate {rate:.4g}/s exceeds the datasheet peak {peak:.4g}/s; clamped to the peak")
        rate = peak
    curve = AffineCurve(x_unit=unit, latency_s=float(t0), rate_per_s=float(rate), peak_per_s=float(peak),
                        points_x=tuple(float(v) for v in x), points_s=tuple(float(v) for v in t))
    return curve, float(t_u)


def _ok(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def padded_gemm_flops(m: int, n: int, k: int, tile: int) -> float:
    """2 · ceil(M / tile) · tile · N · K: the FLOPs of a GEMM whose M is rounded up to the tile."""
    return 2.0 * math.ceil(m / tile) * tile * n * k


def gemm_table(rows: list[dict], dtype: str, peak: float, tile: int, notes: list[str]) -> GemmTable | None:
    cells: dict[tuple[int, float], list[float]] = {}
    clamped = 0
    for r in _ok(rows):
        frac = padded_gemm_flops(r["m"], r["n"], r["k"], tile) / (r["median_s"] * peak)
        if frac > 1:
            clamped += 1
            frac = 1.0
        cells.setdefault((int(r["m"]), float(r["n"] * r["k"])), []).append(max(frac, MIN_FRACTION))
    if not cells:
        notes.append(f"gemm {dtype}: no measured shape; the datasheet fraction stays")
        return None
    if clamped:
        notes.append(f"gemm {dtype}: {clamped} point(s) above the datasheet peak clamped to 1")
    ms = sorted({m for m, _ in cells})
    nks = sorted({nk for _, nk in cells})
    table, filled = [], 0
    for m in ms:
        have = {nk: statistics.median(v) for (mm, nk), v in cells.items() if mm == m}
        row = []
        for nk in nks:
            if nk not in have:
                nk = min(have, key=lambda h, nk=nk: abs(math.log(h / nk)))
                filled += 1
            row.append(float(have[nk]))
        table.append(tuple(row))
    if filled:
        notes.append(f"gemm {dtype}: {filled} unmeasured cell(s) (out of memory or failed) filled from the nearest N·K")
    return GemmTable(dtype=dtype, peak_per_s=peak, m_tokens=tuple(ms), nk_elements=tuple(nks), fraction=tuple(table))


def build_calibration(bench: dict[str, list[dict]], env: dict, hw, base_profile: str, profile_match: bool,
                      match_note: str, command: str, quick: bool, activation_dtype: str) -> Calibration:
    """The calibrated profile from every benchmark's rows, with fractions of `hw`'s datasheet peaks."""
    notes: list[str] = []
    bw = hw.memory_bandwidth_bytes_per_s

    def line(name, peak, unit, amount_key):
        rows = _ok(bench.get(name, []))
        return fit_affine([r[amount_key] for r in rows], [r["median_s"] for r in rows], peak, unit, notes, name)

    memory = line("bandwidth_copy", bw, "bytes", "bytes")
    if memory is None:
        raise SpecError("bandwidth_copy", "no copy bandwidth was measured, so no calibrated profile can be written")
    gemm = {}
    for name, rows in bench.items():
        if name.startswith("gemm_"):
            dtype = name[len("gemm_"):]
            if dtype not in hw.peak_flops_per_s:
                notes.append(f"gemm {dtype}: {base_profile} lists no {dtype} peak; not calibrated")
                continue
            table = gemm_table(rows, dtype, hw.peak_flops(dtype), hw.gemm_tile_tokens, notes)
            if table is not None:
                gemm[dtype] = table
    launches = _ok(bench.get("launch_overhead", []))
    eager = [r["per_kernel_s"] for r in launches if r.get("mode") == "eager"]
    graph = [r["per_kernel_s"] for r in launches if r.get("mode") == "cuda_graph"]
    if not eager:
        notes.append("launch_overhead: not measured; the datasheet kernel overhead stays")
    ar = [r["bus_bytes_per_s"] for r in _ok(bench.get("allreduce", [])) if r.get("bus_bytes_per_s")]
    link = hw.interconnect.bytes_per_s_per_direction
    inter = min(1.0, max(ar) / link) if ar else None
    if quick:
        notes.append("quick run: tiny sizes; the curves prove the pipeline and do not describe large kernels")
    date = env.get("date") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    slug = env.get("slug", "device")
    return Calibration(
        schema_version=SCHEMA_VERSION,
        id=f"{slug}-{date[:19].replace(':', '-')}",
        provenance={
            "device_name": env["device_name"], "device_kind": env["device_kind"], "base_profile": base_profile,
            "profile_match": profile_match, "profile_match_note": match_note,
            "driver_version": env.get("driver_version"), "cuda_version": env.get("cuda_version"),
            "torch_version": env.get("torch_version") or "unknown", "clocks_hz": env.get("clocks_hz") or {},
            "throttled": env.get("throttled"), "date": date, "command": command, "quick": quick,
        },
        memory=memory,
        memory_read=line("bandwidth_read", bw, "bytes", "bytes"),
        memory_write=line("bandwidth_write", bw, "bytes", "bytes"),
        gemm=gemm,
        attention_prefill=line("attention_prefill", hw.peak_flops(activation_dtype), "flops", "flops"),
        attention_decode=line("attention_decode", bw, "bytes", "bytes"),
        kernel_overhead_s=float(statistics.median(eager)) if eager else hw.efficiency.kernel_overhead_s,
        kernel_overhead_graph_s=float(statistics.median(graph)) if graph else None,
        interconnect_fraction=inter,
        notes=tuple(notes),
    )
