"""GEMM time by shape: wave quantization over the SMs, tile padding, the K-depth pipeline fill, and the weight read.

A GEMM of an M x K activation by a K x N weight is cut into output tiles of tm x tn, one per SM (CU) at a
time: tiles = ceil(M / tm) · ceil(N / tn), run in waves = ceil(tiles / P) over the P SMs. Each tile
streams its K in steps; the first steps fill the pipeline before the tensor cores run flat out, worth
k_fill of K. A wave therefore takes 2 · tm · tn · (K + k_fill) / (peak / P · eta_inf), and

    t_compute = waves · 2 · tm · tn · (K + k_fill) / (peak / P · eta_inf)
              = 2 · M · N · K / (peak · eta),  eta = eta_inf · [tiles / (waves · P)] · [M · N / (tiles · tm · tn)] · [K / (K + k_fill)]

the three brackets being wave quantization, tile padding and the K fill. A GEMM also cannot beat reading
its operands: t = max(t_compute, bytes / (BW · f_mem)) (the roofline's memory term), plus the kernel's
fixed time. Worked number, H100 SXM (132 SMs, 128 x 128 tiles), M = N = K = 4096, bf16, eta_inf = 0.8,
k_fill = 184: tiles = 32 · 32 = 1024, waves = ceil(1024 / 132) = 8, wave efficiency 1024 / 1056 = 0.970,
padding 1, K fill 4096 / 4280 = 0.957: eta = 0.8 · 0.970 · 0.957 = 0.742, t_compute = 2 · 4096³ / (989.4e12 · 0.742) = 187 us.
(The halved tiles and split-K waste the same last wave or more here; for M up to half a tile a small-M kernel
pays only its padding to the profile's `gemm_tile_tokens`, see `gemm_efficiency`.)

eta_inf (per dtype), k_fill and the fixed time are the model's free parameters, fitted across devices to
the public GEMM tables by `calibrate/gemm_shapes.py`; P and the tile come from the hardware profile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .units import tile_padded


@dataclass(frozen=True)
class GemmShapeParams:
    """The fitted constants: large-GEMM efficiency per dtype, the K fill (elements of K), a kernel's fixed seconds."""

    eta_bf16: float
    eta_fp8: float
    k_fill: float
    fixed_s: float

    def eta(self, key: str) -> float:
        """Asymptotic efficiency of a compute dtype key: fp8/int8/fp4/int4 use the 8-bit figure, the rest bf16's."""
        return self.eta_fp8 if key in ("fp8", "int8", "fp4", "int4") else self.eta_bf16

    def as_dict(self) -> dict:
        return {k: float(f"{v:.4g}") for k, v in asdict(self).items()}


# The K fill, in elements of K, fitted with the profiles' flops_fraction as each device's asymptote to the bf16
# and fp8 GEMM tables of A100, H100, H200, B200, GB200 and L40S (aiconfigurator-core 0.12.0, vLLM tables):
# 183.6 from `python -m calibrate.gemm_shapes --eta profile --held-out h200_sxm --write` (calibrate/gemm_shapes.json,
# calibrate/shapes.md section 2; H200 held out: 191.8).
K_FILL = 184.0
SPLIT_K = (1, 2, 4, 8, 16)  # K split across SMs when the output tiles cannot fill them
MIN_SPLIT_K_DEPTH = 256  # a split keeps at least this much of K per tile
_SPLITS = np.array(SPLIT_K, dtype=float)


def gemm_efficiency(m, n, k, eta_inf, k_fill, sms, tile_m, tile_n, tile_tokens=None):
    """eta = eta_inf · wave quantization · tile padding · K fill (see the module docstring), for the best kernel a
    library would pick: tiles of tm in {tile_m, tile_m / 2} rows by tn in {tile_n, tile_n / 2} columns with split-K
    factors (K cut into s slices run on more SMs, each keeping >= 256 of K), or for M <= tile_m / 2 a small-M kernel
    (GEMV, swap-AB) padded to the profile's `gemm_tile_tokens` only. Elementwise."""
    m, n, k = (np.maximum(np.asarray(x, dtype=float), 1.0) for x in (m, n, k))
    shape = np.broadcast_shapes(m.shape, n.shape, k.shape, np.shape(sms), np.shape(tile_m), np.shape(tile_n))
    split = _SPLITS.reshape((-1,) + (1,) * len(shape))
    depth = k / split
    fill = np.where((split == 1) | (depth >= MIN_SPLIT_K_DEPTH), depth + k_fill, np.inf)  # inf: not a candidate
    best = np.zeros(shape)
    for tm in (tile_m, tile_m / 2):
        for tn in (tile_n, tile_n / 2):
            waves = np.ceil(np.ceil(m / tm) * np.ceil(n / tn) * split / sms)
            # the kernel's time in units of one full-rate tile-wave: waves · tm · tn · (depth + fill)
            best = np.maximum(best, (m * n * k / (waves * sms * tm * tn * fill)).max(axis=0))
    if tile_tokens is not None:
        # small-M kernels (GEMV, swap-AB) for M up to half a tile: they stream the weight over every SM with split-K
        # and pay only their token padding (the roofline's `pad`); they never serve large M, whose thin tiles would
        # run below eta_inf
        small = m / tile_padded(m, tile_tokens)
        best = np.maximum(best, np.where(m <= tile_m / 2, small, 0.0))
    return eta_inf * best


def gemm_time_s(m, n, k, peak_flops_per_s, eta_inf, k_fill, sms, tile_m, tile_n, hbm_bytes, bytes_per_s, tile_tokens=None):
    """max(2MNK / (peak · eta), bytes / rate): one GEMM kernel's time without its fixed part."""
    flops = 2.0 * np.asarray(m, dtype=float) * n * k
    compute = flops / (peak_flops_per_s * gemm_efficiency(m, n, k, eta_inf, k_fill, sms, tile_m, tile_n, tile_tokens))
    return np.maximum(compute, np.asarray(hbm_bytes, dtype=float) / bytes_per_s)
