"""The calibrated hardware profile: measured curves that replace the datasheet's achievable fractions.

`roofline calibrate` (the top-level `calibrate` package) microbenchmarks a device and writes
this file; `load_hardware("h100-sxm", calibration=path)` attaches it to a profile, and from then
on every operator is timed against the measured curves instead of the constant fractions:

* **Memory** (a streaming copy over sizes from inside L2 to many GB): a kernel that moves
  B bytes takes t(B) = t0 + B / R, the latency-bandwidth (Hockney) line fitted to the
  measured medians. Its bandwidth fraction at B bytes is B / t(B) / peak: near 0 for a few KB,
  rising to R / peak for GB. The line is affine in B, so a decode step stays affine in the
  context and `predict`'s exact closed-form sum over decode steps still holds.
  H100 example: t0 = 5 us, R = 2.9e12 B/s: 1 MB moves at 1e6 / (5e-6 + 3.4e-7) = 187 GB/s
  (a fraction of 0.056), 1 GB at 2.88 TB/s (0.86).
* **GEMM** (per compute dtype, over M tokens and N·K weight sizes that include the shipped
  models' projections): the fraction of the dense peak achieved on the tile-padded FLOPs,
  2·pad(M)·M·N·K / t / peak (the same padded FLOPs the roofline divides). A table over
  (M, N·K), interpolated bilinearly in log M and log N·K and held constant past its edges.
  A decode GEMM (M = 8) is memory-bound; its measured fraction then carries the weight-read
  time, so its compute term equals the measured time of that shape.
* **Attention**: prefill (flash / SDPA, causal) as t = t0 + F / R over FLOPs per kernel,
  and decode (one query against a KV cache) as t = t0 + B / R over bytes per kernel. A prefill
  curve with `x_unit = "executed_flops"` counts F as the kernel's causal tiles over its wave
  efficiency (`attention_shapes`: short prompts waste diagonal tiles, few blocks leave SMs idle);
  `attention_decode_kv_head_s`, when present, adds a cost per (sequence, KV head) to the decode
  line: t = t0 + B / R + batch · kv_heads · t_kvh. Without them, F is the useful FLOPs and the
  decode line has two terms. Where the file holds the prefill table's measured / line ratios of the kernel's per-GPU
  shape (optional `attention_prefill_points`, a `MeasuredAttention` of `AttentionPoints` over (batch, isl)), a prefill
  of b sequences of n new tokens (none cached, no window, 16-bit KV) takes the line's time times the ratio,
  bilinear in log b and n and held at the grid's edges (`attention_point_ratio`): the table's time at a measured cell.
* **Overhead**: seconds per kernel launch, eager and replayed from a CUDA graph.
* **Interconnect**: all-reduce bus bandwidth / link rate, when more than one GPU was visible;
  and, per all-reduce group size, the measured time of each message size (`allreduce_points`, a
  `MeasuredAllreduce`), through which a message of S bytes is timed piecewise-linearly
  (`interpolated_message_s`), with the line t(S) = t0 + S / R fitted to them kept as a summary (`allreduce`).
* **Small memory-bound kernels** (optional `elementwise`: a streaming elementwise kernel's table, e.g. the public
  per-tensor FP8 quantization rows): the ops `roofline.ops` marks elementwise or gather take t = k·t0 + B / R over
  their k launches and B HBM bytes, each kernel at least its launch cost (`CalibratedCurves._elementwise_rates`).
  Absent: they keep `memory` or the datasheet fraction, plus the launch overhead.
* **Fused MoE layer** (optional `moe`, per expert-weight format bf16 / fp8 / fp8_block / fp4 and the dtype its grouped
  GEMMs compute at, `moe_key`; a pass takes the curve of its own compute dtype): the five kernels
  `roofline.ops` marks `grouped` (token permute, grouped up GEMM, activation, grouped down GEMM,
  unpermute) take t = t0 + n · t_e + Σ_op max(F_op · pad / (η_c · peak) + V_op / vector, B_op / (η_m · bandwidth)),
  one fixed time t0 per MoE layer, one fixed time t_e per expert the layer touches on this GPU (n), and one compute
  and one bandwidth fraction for the grouped kernels (`MoeCurve`). Absent: those ops are timed like any other GEMM and elementwise kernel.
  Where the file holds the table's measured layer times of the layer's per-GPU shape (optional `moe_points`, a
  `MeasuredMoe` per curve: `MoePoints` of tokens -> seconds), the layer takes the curve's time times the measured /
  curve ratio, linear in its token-expert rows between the measured ones and held outside them (`moe_point_ratio`):
  the table's time at a measured row count, the curve's split over the five ops and its shape past the table.

A file fitted from public kernel tables (`calibrate/public.py`) names them in
`provenance.public_source`; such tables carry no copy benchmark, so `memory` may be absent and
non-attention kernels then keep the datasheet bandwidth fraction (elementwise kernels take `elementwise` where the
tables time one).

Fractions are measured / datasheet peak of the **base profile** the run was compared with
(`provenance.base_profile`); every rate is stored with that peak, so attaching the file to
another profile scales by the ratio of peaks (and warns). A device without a matching profile
yields measurements only, never this file. The curves come from microbenchmarks alone: nothing
here is fitted to the end-to-end validation runs.
"""

import math
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .attention_shapes import wave_efficiency
from .errors import NumbersAreNumbers, SpecError, validation_message
from .files import read_mapping
from .memo import identity_cached_property
from .units import tile_padded

SCHEMA_VERSION = 1
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False,
                     ignored_types=(identity_cached_property,))  # every number finite
MAX_RATE_PER_S = 1e18  # bytes/s or FLOP/s: above any device (see hardware.MAX_FLOPS_PER_S)
MAX_LATENCY_S = 1.0  # per kernel
MAX_POINTS = 100_000
DTYPE_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
GEMV_BITS = {"int4": 4, "int8": 8}  # weight-only formats with a measured small-M line, and their bits per weight
MAX_ATTENTION_RATIO = 100.0  # measured / line of a stored prefill attention cell: far above any table's (0.5-3)
GEMV_MAX_TOKENS = 16  # the largest M of the tables' weight-only rows the line is fitted on (M = 1, 2, 4, 8, 16)


class PublicSource(NumbersAreNumbers):
    """Published kernel tables a calibration was fitted from (e.g. the parquet tables of aiconfigurator-core)."""

    model_config = _FROZEN
    package: str = Field(min_length=1, description="distribution that ships the tables")
    package_version: str = Field(min_length=1)
    license: str = Field(min_length=1)
    system: str = Field(min_length=1, description="the package's name for the device, e.g. h200_sxm")
    framework: str = Field(min_length=1, description="the engine whose kernels were timed, e.g. vllm")
    framework_version: str = Field(min_length=1)
    tables: tuple[str, ...] = Field(min_length=1, description="paths of the tables read, relative to the package's data folder")
    collected_at: str | None = Field(None, description="collection date the tables record, when they do")


class Provenance(NumbersAreNumbers):
    """Where and how the measurements were taken."""

    model_config = _FROZEN
    device_name: str = Field(min_length=1, description="as NVML (or the CPU) names it")
    device_kind: Literal["cuda", "cpu"]
    base_profile: str = Field(min_length=1, description="hardware profile id whose peaks the fractions divide by")
    profile_match: bool = Field(description="the device is the base profile's device (by name and memory)")
    profile_match_note: str = ""
    driver_version: str | None = None
    cuda_version: str | None = None
    torch_version: str
    clocks_hz: dict[str, float] = Field(default_factory=dict, description="sm/memory clocks, current and max")
    throttled: bool | None = Field(None, description="any clock throttle reason other than idle seen during the run; None = unknown")
    date: str = Field(min_length=1, description="ISO 8601 time of the run")
    command: str = Field(min_length=1, description="the exact command line")
    quick: bool = Field(False, description="tiny sizes (CPU/test mode): the curves do not describe large kernels")
    public_source: PublicSource | None = Field(None, description="set when the curves were fitted from published kernel tables")


class AffineCurve(NumbersAreNumbers):
    """t(x) = latency_s + x / rate_per_s, fitted to measured medians (x in bytes or FLOPs per kernel)."""

    model_config = _FROZEN
    x_unit: Literal["bytes", "flops", "executed_flops"] = Field(
        description="what x counts: bytes, the op's FLOPs, or (prefill attention) its causal-tile FLOPs over its wave "
                    "efficiency (`attention_shapes`)")
    latency_s: float = Field(ge=0, le=MAX_LATENCY_S, description="fixed time per kernel (ramp-up, tail), seconds")
    rate_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="asymptotic bytes/s or FLOP/s of large kernels")
    peak_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="the base profile's datasheet peak the fraction divides by")
    points_x: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS, description="bytes or FLOPs of each measured kernel")
    points_s: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS, description="its median time, seconds")

    @model_validator(mode="after")
    def _check(self) -> "AffineCurve":
        if len(self.points_x) != len(self.points_s):
            raise SpecError("points_s", f"has {len(self.points_s)} values for {len(self.points_x)} points_x")
        if self.rate_per_s > self.peak_per_s * (1 + 1e-9):
            raise SpecError("rate_per_s", f"{self.rate_per_s:.4g} exceeds the datasheet peak {self.peak_per_s:.4g}; "
                                          "a measurement above the speed of light means L2 hits or a wrong peak")
        return self

    @property
    def fraction(self) -> float:
        """Asymptotic fraction of peak (large kernels)."""
        return self.rate_per_s / self.peak_per_s

    def time_s(self, x):
        return self.latency_s + np.asarray(x, dtype=float) / self.rate_per_s

    def fraction_at(self, x):
        """Achieved / peak for one kernel of x bytes (FLOPs): x / t(x) / peak."""
        x = np.asarray(x, dtype=float)
        return x / self.time_s(x) / self.peak_per_s


def interpolated_message_s(message_bytes, points_bytes, points_s):
    """Seconds of one all-reduce of `message_bytes` through measured (bytes, seconds) points: piecewise linear.

    Between two neighbouring measured sizes S_i < S < S_i+1 the kernel runs one algorithm (one-shot, two-shot,
    ring: `collectives`), whose time is affine in S (fixed steps plus bytes over a rate), so the straight line
    through the two points is that algorithm's line: t = t_i + (S - S_i) · (t_i+1 - t_i) / (S_i+1 - S_i). Below the
    smallest measured size the kernel is latency-bound: t = t_0. Beyond the largest it is bandwidth-bound at the
    rate of its last segment: t = t_n + (S - S_n) · (t_n - t_n-1) / (S_n - S_n-1). Interpolating in log-log
    space instead (a power law between points) predicts each interior point of the public tables from its two
    neighbours worse (leave-one-out over 672 points of 64 KB-256 MB, H100 / H200 / A100 / B200 / GB200, custom and
    NCCL: median |error| 4.2% against 2.7%, bias +2.8% against -0.1%). Worked number: points (1 MiB, 13.8 us) and
    (2 MiB, 18.2 us); 1.5 MiB takes 13.8 + 0.5 · 4.4 = 16.0 us.
    """
    s = np.asarray(message_bytes, dtype=float)
    x, t = points_bytes, points_s
    inside = np.interp(s, x, t)  # held at t_0 below the first point (and at t_n above the last: replaced next)
    slope_s_per_byte = (t[-1] - t[-2]) / (x[-1] - x[-2])
    return np.where(s > x[-1], t[-1] + (s - x[-1]) * slope_s_per_byte, inside)


class AllreducePoints(NumbersAreNumbers):
    """One group size's measured all-reduce: the median time of each measured message size."""

    model_config = _FROZEN
    message_bytes: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS,
                                             description="message bytes S of each measured size, strictly increasing")
    time_s: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS,
                                      description="median seconds of one all-reduce of that size")
    peak_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="link · p / (p - 1) of the base profile: the most "
                                                                   "message bytes/s any all-reduce of p GPUs delivers")

    @model_validator(mode="after")
    def _check(self) -> "AllreducePoints":
        x, t = self.message_bytes, self.time_s
        if len(t) != len(x):
            raise SpecError("time_s", f"has {len(t)} values for {len(x)} message_bytes")
        if x[0] <= 0 or any(b <= a for a, b in zip(x, x[1:])):
            raise SpecError("message_bytes", "must be positive and strictly increasing (one median per measured size)")
        if any(v <= 0 or v > MAX_LATENCY_S for v in t):
            raise SpecError("time_s", f"every time must be in (0, {MAX_LATENCY_S}] seconds")
        if t[-1] <= t[-2]:
            raise SpecError("time_s", "must rise over the last segment: beyond the largest size the time grows at "
                                      "that segment's rate")
        if (x[-1] - x[-2]) / (t[-1] - t[-2]) > self.peak_per_s * (1 + 1e-9):
            raise SpecError("time_s", "the last segment's rate exceeds peak_per_s; a measurement above the speed of light")
        fast = [i for i, (b, v) in enumerate(zip(x, t)) if b / v > self.peak_per_s * (1 + 1e-9)]
        if fast:  # S / t > peak: the message moved faster than the link can carry it
            i = fast[0]
            raise SpecError("time_s", f"point {i} ({x[i]:.6g} bytes in {t[i]:.6g} s) moves {x[i] / t[i]:.4g} B/s, above "
                                      f"peak_per_s {self.peak_per_s:.4g}: a measurement above the speed of light")
        return self

    def time_at_s(self, message_bytes):
        """Seconds of one all-reduce of `message_bytes` (`interpolated_message_s`)."""
        return interpolated_message_s(message_bytes, np.asarray(self.message_bytes), np.asarray(self.time_s))


def switched_allreduce_points(custom: AllreducePoints, nccl: AllreducePoints, limit_bytes: float) -> AllreducePoints:
    """One group size's all-reduce as an engine runs it that takes messages below `limit_bytes` to its custom kernel
    and the rest to NCCL (vLLM before symmetric memory: CustomAllreduce.should_custom_ar takes S < max_size, 8 MiB by
    default, and the call falls back to pynccl): the custom points below the limit, then NCCL's from it.

    The two sides meet at the limit L, each side's time there interpolated through its own points
    (`interpolated_message_s`): the custom kernel's at L - 1 byte (the largest message it still takes, S < L) and NCCL's
    at L; then NCCL's measured points above L. A message below L - 1 is timed by the custom points alone, one at or
    above L by NCCL's alone. Where NCCL's table ends at or below L, its time at 2L (its last segment's rate carried on)
    closes the points, so beyond them the time still grows at NCCL's rate. Worked number (hand points): custom
    (4 MiB, 40 us), (16 MiB, 100 us); NCCL (4 MiB, 70 us), (16 MiB, 130 us); L = 8 MiB: custom at L - 1 =
    40 + (4 MiB - 1 B) / 12 MiB · 60 us = 59.99999 us, NCCL at L = 70 + 4 / 12 · 60 = 90 us; 12 MiB is then
    70 + 8 / 12 · 60 = 110 us (NCCL), 6 MiB 40 + 2 / 12 · 60 = 50 us (custom).

    The result is validated as any measured group (`AllreducePoints`); its speed of light is the custom group's."""
    if not limit_bytes > 1:
        raise SpecError("custom_allreduce_max_bytes", f"must be more than 1 byte, got {limit_bytes}")
    cx, ct = np.asarray(custom.message_bytes), np.asarray(custom.time_s)
    nx, nt = np.asarray(nccl.message_bytes), np.asarray(nccl.time_s)
    below = limit_bytes - 1.0
    keep_custom = cx < below
    keep_nccl = nx > limit_bytes
    x = [*cx[keep_custom], below, limit_bytes, *nx[keep_nccl]]
    t = [*ct[keep_custom], float(interpolated_message_s(below, cx, ct)), float(interpolated_message_s(limit_bytes, nx, nt)),
         *nt[keep_nccl]]
    if not keep_nccl.any():
        x.append(2.0 * limit_bytes)
        t.append(float(interpolated_message_s(2.0 * limit_bytes, nx, nt)))
    return AllreducePoints(message_bytes=tuple(float(v) for v in x), time_s=tuple(float(v) for v in t),
                           peak_per_s=custom.peak_per_s)


class MeasuredAllreduce(NumbersAreNumbers):
    """An all-reduce kernel's measured points per group size; a message is timed through them (`interpolated_message_s`).

    One line t = t0 + S / R per group size (`AffineCurve`, kept as `Calibration.allreduce`) cannot follow a kernel that
    changes algorithm with the message size: the public vLLM H200 tp8 table takes 13.8 us at 1 MiB where its line
    gives 9.8 us, and 540 us at 128 MiB where the line gives 576 us. The points are the table's own medians.
    """

    model_config = _FROZEN
    source: str = Field(min_length=1, description="the table the points come from and the rows taken (dtype, backend)")
    groups: dict[str, AllreducePoints] = Field(min_length=1, description="GPUs in the group ('2', '4', '8') -> its points")

    @model_validator(mode="after")
    def _check(self) -> "MeasuredAllreduce":
        for key in self.groups:
            if not key.isdigit() or int(key) < 2:
                raise SpecError(f"groups.{key}", "keys are the GPUs in the group, an integer of at least 2")
        return self

    def time_s(self, message_bytes, gpus):
        """Seconds of one all-reduce of `message_bytes` among `gpus` GPUs as measured; NaN where that group size was
        not measured. Arrays broadcast (a grid of sizes and group sizes)."""
        out = np.full(np.broadcast_shapes(np.shape(message_bytes), np.shape(gpus)), np.nan)
        for key, points in self.groups.items():
            out = np.where(np.asarray(gpus) == int(key), points.time_at_s(message_bytes), out)
        return out


class GemmTable(NumbersAreNumbers):
    """Fraction of the dense peak reached on tile-padded FLOPs, over M tokens (rows) and N·K (columns)."""

    model_config = _FROZEN
    dtype: str
    peak_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="the base profile's dense peak for this dtype")
    m_tokens: tuple[int, ...] = Field(min_length=1, max_length=MAX_POINTS)
    nk_elements: tuple[float, ...] = Field(min_length=1, max_length=MAX_POINTS, description="N·K of the weight matrix")
    fraction: tuple[tuple[float, ...], ...] = Field(description="fraction[i][j] at m_tokens[i], nk_elements[j]")

    @model_validator(mode="after")
    def _check(self) -> "GemmTable":
        if self.dtype not in DTYPE_KEYS:
            raise SpecError("dtype", f"unknown dtype key {self.dtype!r}; choose from {', '.join(DTYPE_KEYS)}")
        for name, axis in (("m_tokens", self.m_tokens), ("nk_elements", self.nk_elements)):
            if any(a <= 0 for a in axis) or any(b <= a for a, b in zip(axis, axis[1:])):
                raise SpecError(name, "must be positive and strictly ascending")
        if len(self.fraction) != len(self.m_tokens) or any(len(r) != len(self.nk_elements) for r in self.fraction):
            raise SpecError("fraction", f"must be {len(self.m_tokens)} rows of {len(self.nk_elements)} values (m_tokens x nk_elements)")
        for i, row in enumerate(self.fraction):
            for j, f in enumerate(row):
                if not 0 < f <= 1:
                    raise SpecError(f"fraction[{i}][{j}]", f"must be in (0, 1], got {f}")
        return self

    @identity_cached_property
    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log M axis, log N·K axis, fraction table) as arrays, built once per table (not per lookup)."""
        return (np.log(np.asarray(self.m_tokens, dtype=float)), np.log(np.asarray(self.nk_elements, dtype=float)),
                np.asarray(self.fraction, dtype=float))

    @identity_cached_property
    def rows_tokens(self) -> np.ndarray:
        """`m_tokens` as a float array, built once per table (`between_rows` reads it on every lookup)."""
        return np.asarray(self.m_tokens, dtype=float)

    @identity_cached_property
    def padded_rows(self) -> dict:
        """p(M) of the rows per tile, filled by `between_rows` (one entry per tile a device uses)."""
        return {}

    def at(self, m, nk, tile=None):
        """Bilinear interpolation in (log M, log N·K), constant past the edges of the table. With `tile` (the rows
        of a tensor-core tile the cells' padded FLOPs count), an M between two measured rows is held to a time
        between those rows' times (`between_rows`)."""
        lm = np.log(np.maximum(np.asarray(m, dtype=float), 1e-30))
        lk = np.log(np.maximum(np.asarray(nk, dtype=float), 1e-30))
        xs, ys, table = self.grid
        i, wi = _bracket(xs, lm)
        j, wj = _bracket(ys, lk)
        i1, j1 = np.minimum(i + 1, len(xs) - 1), np.minimum(j + 1, len(ys) - 1)
        if lk.ndim and lk.size < lm.size and len(xs) * lk.size * 4 <= math.prod(np.broadcast_shapes(lm.shape, lk.shape)):
            # over a grid whose N·K values are few (one per op and tp): every table row interpolated at each N·K first
            # (the same products as below), then the two rows around each M picked: two gathers instead of six
            at_nk = (table[:, j] + (table[:, j1] - table[:, j]) * wj).reshape(len(xs), -1)
            where = np.arange(lk.size).reshape(lk.shape)
            top, bottom = at_nk[i, where], at_nk[i1, where]
        else:
            top = table[i, j] + (table[i, j1] - table[i, j]) * wj
            bottom = table[i1, j] + (table[i1, j1] - table[i1, j]) * wj
        f = top + (bottom - top) * wi
        return f if tile is None else between_rows(m, f, self.rows_tokens, i, i1, top, bottom, tile, self.padded_rows)


def between_rows(m, f, m_tokens, i, i1, top, bottom, tile, padded_rows: dict | None = None):
    """The fraction f of a GEMM of m rows (interpolated between the table's rows M_i < m < M_i+1, whose fractions at
    this N·K are `top` and `bottom`), held so that its time lies between those two rows' measured times.

    A cell's fraction is of the tile-padded FLOPs, so a GEMM of m rows takes 2 · p(m) · N·K / (f · peak) with
    p(m) = ceil(m / tile) · tile, and the rows M_i, M_i+1 took 2 · p(M) · N·K / (f(M) · peak). Interpolating f
    while p jumps at every tile edge can leave both: A100 SXM's vLLM 0.14.0 table (tile 16) measures M = 16 and 32
    and no row between, a memory-bound GEMM takes nearly the same time at both (its weight read), and M = 17 took
    p(17) / f(17) = 32 / (f(16) · 2^0.087), 1.84 x either measured time (llama-3.1-8b decode at batch 17: 21.6 ms a
    token against 12.3 at 16 and 13.2 at 32); a fused expert GEMM of 32.0000001 rows (eight touched experts'
    expected rows, in floating point) took 1.5 x the time of 32. A kernel's time does not leave the range its
    measured neighbours span, so the time p(m) / f is clipped to [min, max] of p(M_i) / f(M_i) and
    p(M_i+1) / f(M_i+1); M = 17 then takes the larger of t(16), t(32). Past the table's edges, and at a measured M,
    nothing changes; on the H100 / H200 / B200 / GB200 / L40S tables, which measure both sides of each tile edge (16,
    17, 32, 33 ...) up to M = 4,353, a few % past M = 128 (a Llama-3.1-70B tp-4 projection on H200: -1.3% to +2.5%).

    Speed (bit-identical to evaluating every term everywhere, `tests/test_speed_paths.py`): p(m) is computed once, and
    where no m lies strictly inside the table the held time is u itself and the neighbours' times are not formed; with
    one tile for every op, p(M) of the table's rows is kept in `padded_rows` (a dict per table, keyed by the tile).
    """
    rows = np.asarray(m_tokens, dtype=float)
    m = np.asarray(m, dtype=float)
    tile = np.maximum(np.asarray(tile, dtype=float), 1.0)
    padded = tile_padded(m, tile)  # p(m)
    u = padded / f  # time / (2 · N·K / peak)
    inside = (m > rows[0]) & (m < rows[-1])
    if not inside.any():  # past the table's edges (or at them): nothing is held
        return padded / u
    if padded_rows is not None and tile.size == 1:
        one = float(tile.reshape(-1)[0])
        p_rows = padded_rows.get(one)
        if p_rows is None:
            p_rows = padded_rows[one] = tile_padded(rows, one)  # p(M) of every row
        u_lo, u_hi = p_rows[i] / top, p_rows[i1] / bottom
    else:
        u_lo = tile_padded(rows[i], tile) / top
        u_hi = tile_padded(rows[i1], tile) / bottom
    held = np.where(inside, np.minimum(np.maximum(u, np.minimum(u_lo, u_hi)), np.maximum(u_lo, u_hi)), u)
    return padded / held


def _bracket(axis: np.ndarray, x: np.ndarray):
    """Index of the grid cell holding x and the weight of its upper neighbour (0 past either edge)."""
    if len(axis) == 1:
        return np.zeros(np.shape(x), dtype=int), np.zeros(np.shape(x))
    # np.minimum(np.maximum(...)) is np.clip without its Python dispatch (called for every GEMM lookup)
    i = np.minimum(np.maximum(np.searchsorted(axis, x, side="right") - 1, 0), len(axis) - 2)
    w = np.minimum(np.maximum((x - axis[i]) / (axis[i + 1] - axis[i]), 0.0), 1.0)
    return i, w


# Expert-weight formats a fused-MoE curve may describe (`Calibration.moe` keys): 16-bit, 8-bit float with per-tensor
# (or row, group) scales, 8-bit float with block scales (DeepSeek-V3's 128 x 128), 4-bit. An op of a fused MoE layer
# carries `grouped` = 1 + the index of its format here (`ops.moe_format`).
MOE_FORMATS = ("bf16", "fp8", "fp8_block", "fp4")
# A curve whose grouped GEMMs compute at its format's usual dtype below is keyed by the format's name (so is every
# file written before 4-bit curves were split by compute dtype); one computing at another dtype "<format>-<dtype>"
# (`moe_key`). 4-bit experts come as W4A16 MXFP4 (gpt-oss on Hopper, "fp4"), W4A8 MXFP4 x MXFP8 ("fp4-fp8") and
# NVFP4 W4A4 ("fp4-fp4"): three kernels, which a pass tells apart by its compute dtype (`CalibratedCurves.moe`).
MOE_DEFAULT_COMPUTE = {"bf16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "fp4": "bf16"}


def moe_key(weight_format: str, compute_dtype: str) -> str:
    """The `Calibration.moe` key of a curve: the format alone at its default compute dtype (`MOE_DEFAULT_COMPUTE`),
    else "<format>-<compute dtype>" (e.g. NVFP4 experts computing at fp4: "fp4-fp4")."""
    return weight_format if MOE_DEFAULT_COMPUTE.get(weight_format) == compute_dtype else f"{weight_format}-{compute_dtype}"


# `OpKind` values of the kernels the small-kernel line times (`CalibratedCurves._elementwise_rates`)
ELEMENTWISE_KINDS = ("elementwise", "gather")

MOE_GEMMS_PER_LAYER = 2  # the grouped up and down GEMMs of a fused MoE layer (`ops.fused_moe_ops`) share its fixed time


def moe_touched_experts(t) -> np.ndarray:
    """Per op of a table (`roofline.roofline.OpTable`), the distinct experts one launch of a grouped expert GEMM
    reads: n = F · (1 + s) / (2 · launches · m · N · K); 0 on every other op.

    A grouped GEMM of `ops.fused_moe_ops` computes `routed` token-expert rows through n weights of N x K, one
    launch per layer, with m = routed / n rows per expert (`gemm_m`), so its FLOPs are
    F = 2 · launches · routed · N · K (the executed half on 2:4 sparse tensor cores, s = 1) and n = routed / m.
    That n is the count the op's weight read already holds: E·(1 - (1 - k/E)^T) / ep under uniform routing
    (`ops.expected_experts_touched`), min(E, T·k) / ep for the balanced rows of a kernel table. Worked number:
    Mixtral (E = 8, k = 2) at T = 8 tokens, one GPU: up GEMM [16/7.20, 4096] x [4096, 28672] per expert,
    F = 2 · 16 · 28672 · 4096 per layer, so n = F / (2 · (16 / 7.20) · 28672 · 4096) = 7.20.
    """
    f = t.f
    per_launch = 2 * np.maximum(f["launches"], 1.0) * f["gemm_m"] * f["gemm_n"] * f["gemm_k"]
    grouped_gemm = t.is_gemm & (f["grouped"] > 0) & (per_launch > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(grouped_gemm, f["flops"] * (1 + f["sparse_2_4"]) / np.where(grouped_gemm, per_launch, 1.0), 0.0)


class MoeCurve(NumbersAreNumbers):
    """One fused MoE layer's time: t = t0 + n · t_e + Σ over its grouped ops of max(compute, memory) at the fitted fractions.

    For the ops `roofline.ops` marks `grouped` (one MoE layer: permute, up GEMM, activation, down GEMM,
    unpermute), with F the GEMM FLOPs (tile-padded), V the vector FLOPs, B the HBM bytes of each op and n the
    distinct experts the layer touches on this GPU (`moe_touched_experts`):

        t_layer = latency_s + n · expert_latency_s
                  + Σ_op max(F_op · pad / (compute_fraction · peak) + V_op / vector, B_op / (bandwidth_fraction · bw))

    expert_latency_s is what a grouped kernel spends per expert beyond its bytes and FLOPs (each expert's
    tiles are scheduled, its scales and problem shape set up, and its last wave drains on its own), so many
    narrow experts run slower than one wide GEMM of the same bytes. Worked number (calibrate/public/README.md,
    section (e)): DeepSeek-V3's layer (256 experts of F_e 2048, k 8) at T = 64 tokens touches
    256·(1 - (1 - 8/256)^64) = 222.4 experts; at t_e = 0.4 µs that is 89 µs per layer beside its weight read.
    Files written before the field load with 0 (the layer's time as it was).

    peak is the dense peak of `compute_dtype`, bw the HBM bandwidth. A table fitted at decode sizes (a few
    tokens, every weight of the touched experts read once) fixes bandwidth_fraction and latency_s; at prefill
    sizes compute_fraction. The curve applies only to ops whose expert weights are in `weight_format`
    (`ops.moe_format`) and whose pass computes at `compute_dtype`. Worked number: H200 (4.8e12 B/s), an fp8 layer reading
    1 GB of expert weights at bandwidth_fraction 0.8 with latency_s 20 µs: 20e-6 + 1e9 / (0.8 · 4.8e12) = 280 µs.
    """

    model_config = _FROZEN
    weight_format: Literal[MOE_FORMATS] = Field(description="the expert weights' format this curve times (`MOE_FORMATS`)")
    compute_dtype: str = Field(description="dtype key the grouped GEMMs compute at (the peak compute_fraction divides)")
    latency_s: float = Field(ge=0, le=MAX_LATENCY_S, description="fixed time per MoE layer (routing setup, launches, tails), seconds")
    expert_latency_s: float = Field(0.0, ge=0, le=MAX_LATENCY_S,
                                    description="fixed time per expert the layer touches on this GPU (per-expert tile "
                                                "scheduling, setup, tail), seconds; 0 (files written before it): none")
    compute_fraction: float = Field(gt=0, le=1, description="grouped-GEMM FLOPs / time / dense peak of compute_dtype")
    bandwidth_fraction: float = Field(gt=0, le=1, description="grouped kernels' HBM bytes / time / peak bandwidth")
    peak_flops_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="the base profile's dense peak of compute_dtype")
    peak_bytes_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="the base profile's HBM bandwidth")
    table_dtype: str = Field(min_length=1, description="the table's name of the format, e.g. fp8_block")
    rows: int = Field(ge=1, description="table rows fitted")
    median_abs_error: float = Field(ge=0, description="median |predicted / table - 1| over those rows")
    p90_abs_error: float = Field(ge=0, description="90th percentile of |predicted / table - 1|")

    @model_validator(mode="after")
    def _check(self) -> "MoeCurve":
        if self.compute_dtype not in DTYPE_KEYS:
            raise SpecError("compute_dtype", f"unknown dtype key {self.compute_dtype!r}; choose from {', '.join(DTYPE_KEYS)}")
        return self


def _moe_shape_mask(mine, hidden, width, n_up, experts_held, topk, shape):
    """Where a fused MoE layer (`CalibratedCurves._moe_point_scale`) is the stored per-GPU `shape` (hidden, width, experts,
    top-k): up GEMM K = h and N = 2 · width (gated), down GEMM K = width, experts held and top-k the shape's."""
    h, w, experts, k = shape
    return (mine & (hidden == h) & (np.abs(width - w) <= 1e-9 * w) & (np.abs(n_up - 2 * w) <= 1e-9 * w)
            & (experts_held == experts) & (np.abs(topk - k) <= 1e-9 * k))


def moe_point_ratio(rows, points_rows, points_ratio):
    """The measured / curve ratio ρ of a fused MoE layer of `rows` token-expert rows on one GPU, through one stored
    shape's points (`MoePoints`): piecewise linear in rows between the measured rows, held at the end values outside.

    The layer is then timed as ρ · (the curve's own time of the layer), so at a measured row count whose layer is the
    table's (balanced routing) it takes exactly the measured time, and beyond the last (or below the first) measured
    row count it takes the nearest measured time scaled by the curve's ratio, t_n · c(R) / c(R_n): the curve supplies
    only the shape of the extrapolation. Worked number: points (R, t, c) = (4,096 rows, 0.30 ms, 0.25 ms) and
    (8,192, 0.44 ms, 0.40 ms): ρ = 1.2 and 1.1; a layer of 6,144 rows whose curve time is 0.32 ms takes
    0.32 · 1.15 = 0.368 ms; one of 16,384 rows at 0.80 ms takes 0.80 · 1.1 = 0.88 ms.
    """
    return np.interp(rows, points_rows, points_ratio)


class MoePoints(NumbersAreNumbers):
    """One fused MoE layer shape's measured times (a kernel table's balanced-routing rows) and the curve's time of each.

    The shape is one GPU's: hidden size, expert width (the table's inter_size / moe_tp), experts held (num_experts /
    moe_ep) and top-k; a row of `tokens` T (the layer's tokens over all moe_ep GPUs) computes R = T · k / moe_ep
    token-expert rows on it (`rows`). `time_s` is the table's time of the whole layer, `curve_s` the calibration's
    `MoeCurve` time of the same five ops (`calibrate.public_moe.predicted_s`): their ratio is what
    `moe_point_ratio` interpolates. Worked number (gpt-oss-120b, h 2,880, 128 experts of 2,880, k 4, moe_tp 1, moe_ep
    1): T = 1,024 is R = 4,096 rows.
    """

    model_config = _FROZEN
    hidden: int = Field(gt=0, description="hidden size h")
    width: float = Field(gt=0, description="one GPU's expert width: the table's inter_size / moe_tp")
    experts: int = Field(gt=0, description="experts one GPU holds: the table's num_experts / moe_ep")
    topk: int = Field(gt=0, description="experts per token k")
    moe_tp: int = Field(1, ge=1, description="the table row's moe_tp_size (provenance)")
    moe_ep: int = Field(1, ge=1, description="the table row's moe_ep_size: R = tokens · topk / moe_ep")
    tokens: tuple[int, ...] = Field(min_length=2, max_length=MAX_POINTS,
                                    description="the table's num_tokens of each measured row, strictly increasing")
    time_s: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS, description="the table's layer time of each row")
    curve_s: tuple[float, ...] = Field(min_length=2, max_length=MAX_POINTS,
                                       description="the calibration's MoeCurve time of the same layer at each row")

    @model_validator(mode="after")
    def _check(self) -> "MoePoints":
        x = self.tokens
        if x[0] <= 0 or any(b <= a for a, b in zip(x, x[1:])):
            raise SpecError("tokens", "must be positive and strictly increasing (one time per measured token count)")
        for name in ("time_s", "curve_s"):
            v = getattr(self, name)
            if len(v) != len(x):
                raise SpecError(name, f"has {len(v)} values for {len(x)} tokens; give one per token count")
            if any(t <= 0 or t > MAX_LATENCY_S for t in v):
                raise SpecError(name, f"every time must be in (0, {MAX_LATENCY_S}] seconds")
        return self

    @property
    def rows(self) -> np.ndarray:
        """Token-expert rows one GPU computes at each point: R = T · k / moe_ep."""
        return np.asarray(self.tokens, dtype=float) * self.topk / self.moe_ep

    @property
    def ratio(self) -> np.ndarray:
        """measured / curve at each point."""
        return np.asarray(self.time_s) / np.asarray(self.curve_s)


class MeasuredMoe(NumbersAreNumbers):
    """One MoE curve's measured layer shapes (`MoePoints`): a layer of a stored per-GPU shape is timed through them
    (`moe_point_ratio`), any other by the curve alone. The ratios are measured / `curve`, so they apply only to the
    curve they were taken against: where `Calibration.moe` holds another curve under the key (a file edited, or a
    curve swapped in by `model_copy`), `CalibratedCurves` leaves the points out and the curve times every layer."""

    model_config = _FROZEN
    source: str = Field(min_length=1, description="the table and rows the points come from, and the rule that kept the shapes")
    curve: MoeCurve = Field(description="the curve whose times `curve_s` are: the points apply only while `moe` holds this curve")
    shapes: tuple[MoePoints, ...] = Field(min_length=1, description="one entry per per-GPU layer shape")

    @model_validator(mode="after")
    def _check(self) -> "MeasuredMoe":
        seen = set()
        for i, p in enumerate(self.shapes):
            key = (p.hidden, p.width, p.experts, p.topk)
            if key in seen:
                raise SpecError(f"shapes.{i}", f"a second entry of the per-GPU shape (hidden, width, experts, topk) {key}; keep one")
            seen.add(key)
        return self


def attention_point_ratio(batch, isl, batches, isls, ratio):
    """The measured / line ratio ρ of a causal prefill attention kernel of `batch` sequences of `isl` new tokens each
    (none cached), through one stored shape's grid (`AttentionPoints`): bilinear, in log batch and in isl, between the
    measured (batch, isl) cells, held at the grid's edges (so beyond the last measured batch or length the nearest
    measured ratio scales the line). `ratio` is the full (batch x isl) matrix, each row past its last measured length
    holding that length's value (`AttentionPoints.matrix`). Log batch and linear isl by leave-one-out over the tables'
    interior cells (calibrate/public/README.md, section (j): along batch log 2.7% / 9.5% median / p90 against linear
    2.8 / 11.0; along isl linear 4.4 / 16.1 against log 4.2 / 19.8, medians of the eight files).

    Worked number: cells (b, S) = (4, 512): 1.17, (4, 1,024): 1.35, (8, 512): 1.37, (8, 1,024): 1.44 (H200, 8 heads,
    1 KV head, d 128). b = 4, S = 768 (halfway): ρ = (1.17 + 1.35) / 2 = 1.26; b = 8, S = 768: (1.37 + 1.44) / 2 =
    1.405; b = √32 = 5.66 (halfway in log b): (1.26 + 1.405) / 2 = 1.3325.
    """
    lb = np.log(np.asarray(batch, dtype=float))
    i, wb = _edge_bracket(np.log(np.asarray(batches, dtype=float)), lb)
    j, ws = _edge_bracket(np.asarray(isls, dtype=float), np.asarray(isl, dtype=float))
    r = np.asarray(ratio, dtype=float)
    top = r[i, j] + ws * (r[i, j + 1] - r[i, j])
    bottom = r[i + 1, j] + ws * (r[i + 1, j + 1] - r[i + 1, j])
    return top + wb * (bottom - top)


def _equal(a, b):
    """a == b to a relative 1e-9 (float rounding of the same product), elementwise; NaN is never equal. What
    `np.isclose(a, b, rtol=1e-9, atol=0)` gives, without its generality (a fresh prediction calls it per attention op)."""
    return np.abs(a - b) <= 1e-9 * np.abs(b)


def _edge_bracket(axis: np.ndarray, x: np.ndarray):
    """(lower index, weight in [0, 1]) of x between the axis points, x held at the axis' ends."""
    if len(axis) == 1:  # one point: index 0 and weight 0 (`AttentionPoints.matrix` pads such an axis with itself)
        return np.zeros(np.shape(x), dtype=int), np.zeros(np.shape(x))
    x = np.clip(x, axis[0], axis[-1])
    i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, len(axis) - 2)
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


class AttentionPoints(NumbersAreNumbers):
    """One per-GPU prefill attention shape's measured / line ratios over a kernel table's (batch, isl) grid.

    The shape is one GPU's: query heads (the model's / tp), KV heads (`ModelSpec.kv_heads_per_gpu`) and head dim d,
    16-bit activations and KV cache (the table's bf16 rows). Cell (i, j) is the table's time of `batch[i]` sequences
    of `isl[j]` tokens over the calibration's prefill line at that kernel (t0 + executed FLOPs / wave efficiency / R,
    `calibrate.public.prefill_executed_x`); a row holds the lengths the table measured at that batch, the first ones
    (the tables cap batch · isl), and `attention_point_ratio` holds its last value past them.
    Worked number (vLLM 0.24 H200 table, 8 heads, 1 KV head, d 128, b 8, S 512): 1.37, the kernel 37% slower than the line.
    """

    model_config = _FROZEN
    heads: int = Field(gt=0, description="query heads on one GPU")
    kv_heads: int = Field(gt=0, description="KV heads on one GPU")
    head_dim: int = Field(gt=0, description="head dimension d (queries, keys and values alike)")
    batch: tuple[int, ...] = Field(min_length=1, max_length=MAX_POINTS, description="measured batch sizes, strictly increasing")
    isl: tuple[int, ...] = Field(min_length=1, max_length=MAX_POINTS, description="measured sequence lengths, strictly increasing")
    ratio: tuple[tuple[float, ...], ...] = Field(
        min_length=1, max_length=MAX_POINTS, description="per batch, measured / line at isl[0], isl[1], ... (at least one)")

    @model_validator(mode="after")
    def _check(self) -> "AttentionPoints":
        for name in ("batch", "isl"):
            x = getattr(self, name)
            if x[0] <= 0 or any(b <= a for a, b in zip(x, x[1:])):
                raise SpecError(name, "must be positive and strictly increasing")
        if len(self.ratio) != len(self.batch):
            raise SpecError("ratio", f"has {len(self.ratio)} rows for {len(self.batch)} batch sizes; give one per batch size")
        for i, row in enumerate(self.ratio):
            if not 1 <= len(row) <= len(self.isl):
                raise SpecError(f"ratio.{i}", f"has {len(row)} values; give 1 to {len(self.isl)} (one per isl, from the first)")
            if any(not 0 < v <= MAX_ATTENTION_RATIO for v in row):
                raise SpecError(f"ratio.{i}", f"every ratio must be in (0, {MAX_ATTENTION_RATIO}]")
        return self

    @property
    def key(self) -> tuple[float, float, float]:
        return float(self.heads), float(self.kv_heads), float(self.head_dim)

    @property
    def matrix(self) -> np.ndarray:
        """The ratios as a full (batch x isl) matrix, each row past its last measured length holding that value."""
        m = np.array([tuple(row) + (row[-1],) * (len(self.isl) - len(row)) for row in self.ratio], dtype=float)
        # an axis of one point: the matrix doubled along it, so the bracket's upper neighbour (index 1) exists
        return np.pad(m, ((0, int(len(self.batch) == 1)), (0, int(len(self.isl) == 1))), mode="edge")


class MeasuredAttention(NumbersAreNumbers):
    """The prefill kernel table's shapes (`AttentionPoints`): a prefill attention op of a stored per-GPU shape is timed
    as the line times `attention_point_ratio`, any other by the line alone. The ratios are to the line
    (`line_latency_s`, `line_rate_per_s`, over executed FLOPs / wave efficiency): where `Calibration.attention_prefill`
    holds another line (a file edited, a curve swapped, a line over useful FLOPs), `CalibratedCurves` leaves the points
    out."""

    model_config = _FROZEN
    source: str = Field(min_length=1, description="the table and rows the points come from, and the rule that kept the shapes")
    line_latency_s: float = Field(ge=0, le=MAX_LATENCY_S, description="the attention_prefill line's t0 the ratios were taken against")
    line_rate_per_s: float = Field(gt=0, le=MAX_RATE_PER_S, description="that line's R")
    shapes: tuple[AttentionPoints, ...] = Field(min_length=1, description="one entry per per-GPU attention shape")

    @model_validator(mode="after")
    def _check(self) -> "MeasuredAttention":
        seen = set()
        for i, p in enumerate(self.shapes):
            if p.key in seen:
                raise SpecError(f"shapes.{i}", f"a second entry of the per-GPU shape (heads, kv_heads, head_dim) {p.key}; keep one")
            seen.add(p.key)
        return self


class Calibration(NumbersAreNumbers):
    """A calibrated profile file (JSON or YAML); see the module docstring for each curve."""

    model_config = _FROZEN
    schema_version: Literal[1] = Field(description="bumped when the format changes incompatibly")
    id: str = Field(min_length=1, description="device slug and date, e.g. h100-sxm-2026-05-10T12-00-00")
    provenance: Provenance
    memory: AffineCurve | None = Field(None, description="streaming copy: bytes read + written per kernel; None = not "
                                                         "measured (public tables), the datasheet fraction stays")
    memory_read: AffineCurve | None = None
    memory_write: AffineCurve | None = None
    gemm: dict[str, GemmTable] = Field(description="dtype key -> table; a dtype left out keeps its datasheet fraction")
    attention_prefill: AffineCurve | None = Field(None, description="causal flash/SDPA prefill, FLOPs per kernel")
    attention_decode: AffineCurve | None = Field(None, description="one query per sequence against a KV cache, bytes per kernel")
    attention_decode_kv_head_s: float | None = Field(
        None, ge=0, le=MAX_LATENCY_S, description="decode attention's time per (sequence, KV head) per kernel, fitted with "
                                                  "attention_decode; None: the two-term line alone")
    kernel_overhead_s: float = Field(ge=0, le=MAX_LATENCY_S, description="seconds per eager kernel launch")
    kernel_overhead_graph_s: float | None = Field(None, ge=0, le=MAX_LATENCY_S, description="seconds per kernel replayed from a CUDA graph")
    interconnect_fraction: float | None = Field(None, gt=0, le=1, description="all-reduce bus bandwidth / link rate; None = not measured")
    allreduce: dict[str, AffineCurve] = Field(
        default_factory=dict, description="GPUs in the group ('2', '4', '8') -> t = t0 + S / R over message bytes S; "
                                          "peak_per_s is link · p / (p - 1), the most any all-reduce can deliver")
    nccl_allreduce: dict[str, AffineCurve] = Field(
        default_factory=dict, description="as `allreduce`, for NCCL's all-reduce: what runs where the engine has no custom "
                                          "all-reduce kernel (`engines.nccl_allreduce`)")
    allreduce_points: MeasuredAllreduce | None = Field(
        None, description="the engine's all-reduce as measured, per group size: what times it (`interpolated_message_s`); "
                          "None: the `allreduce` line times it (a file written before the points were stored)")
    nccl_allreduce_points: MeasuredAllreduce | None = Field(None, description="as `allreduce_points`, for NCCL's all-reduce")
    gemv: dict[str, AffineCurve] = Field(
        default_factory=dict, description="weight format ('int4', 'int8') -> a weight-only GEMM of at most GEMV_MAX_TOKENS "
                                          "rows: t = t0 + W / R over its packed weight bytes W (`CalibratedCurves.gemv_line`)")
    elementwise: AffineCurve | None = Field(
        None, description="small memory-bound kernels (norms, activations, residual adds, quantization, routing, gathers): "
                          "t = t0 + B / R per kernel over its HBM bytes B, from a streaming elementwise kernel's table "
                          "(`CalibratedCurves`, elementwise kernels); None: such kernels keep `memory` or the datasheet fraction")
    moe: dict[str, MoeCurve] = Field(
        default_factory=dict, description="expert-weight format (`MOE_FORMATS`), or '<format>-<compute dtype>' off the format's "
                                          "default compute dtype (`moe_key`) -> the fused MoE layer's curve; a format "
                                          "left out times its MoE kernels as plain GEMMs and elementwise ops")
    moe_points: dict[str, MeasuredMoe] = Field(
        default_factory=dict, description="`moe` key -> that curve's measured layer shapes (`MeasuredMoe`): a layer of a "
                                          "stored per-GPU shape is timed through them, the curve supplying the split "
                                          "over its five ops and the extrapolation; empty: the curves alone")
    attention_prefill_points: MeasuredAttention | None = Field(
        None, description="the prefill kernel table's measured / line ratios at the per-GPU attention shapes the corpus "
                          "runs (`MeasuredAttention`): a prefill of a stored shape is timed through them; None: the line alone")
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> "Calibration":
        for name in ("memory", "memory_read", "memory_write", "attention_decode", "elementwise"):
            c = getattr(self, name)
            if c is not None and c.x_unit != "bytes":
                raise SpecError(f"{name}.x_unit", "must be 'bytes'")
        if self.attention_prefill is not None and self.attention_prefill.x_unit == "bytes":
            raise SpecError("attention_prefill.x_unit", "must be 'flops' or 'executed_flops'")
        if self.attention_decode_kv_head_s is not None and self.attention_decode is None:
            raise SpecError("attention_decode_kv_head_s", "needs the attention_decode line it was fitted with")
        if self.attention_prefill_points is not None and self.attention_prefill is None:
            raise SpecError("attention_prefill_points", "needs the attention_prefill line its ratios were taken against")
        for key, table in self.gemm.items():
            if key != table.dtype:
                raise SpecError(f"gemm.{key}.dtype", f"is {table.dtype!r} under key {key!r}")
        for name in ("allreduce", "nccl_allreduce"):
            for key, curve in getattr(self, name).items():
                if not key.isdigit() or int(key) < 2:
                    raise SpecError(f"{name}.{key}", "keys are the GPUs in the group, an integer of at least 2")
                if curve.x_unit != "bytes":
                    raise SpecError(f"{name}.{key}.x_unit", "must be 'bytes' (message bytes)")
        for key, curve in self.gemv.items():
            if key not in GEMV_BITS:
                raise SpecError(f"gemv.{key}", f"unknown weight format; choose from {', '.join(GEMV_BITS)}")
            if curve.x_unit != "bytes":
                raise SpecError(f"gemv.{key}.x_unit", "must be 'bytes' (packed weight bytes)")
        seen: set[tuple[str, str]] = set()
        for key, curve in self.moe.items():
            if key not in (curve.weight_format, moe_key(curve.weight_format, curve.compute_dtype)):
                raise SpecError(f"moe.{key}", f"holds a curve of {curve.weight_format} weights computing at "
                                              f"{curve.compute_dtype} under key {key!r}; key it "
                                              f"{moe_key(curve.weight_format, curve.compute_dtype)!r}")
            pair = (curve.weight_format, curve.compute_dtype)
            if pair in seen:
                raise SpecError(f"moe.{key}", f"a second curve of {pair[0]} weights computing at {pair[1]}; keep one")
            seen.add(pair)
        return self


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file (.json, .yaml or .yml); every error is one line naming the field."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise SpecError("calibration", f"no file {where}; run `roofline calibrate --profile ID` first")
    data = read_mapping(p, field="calibration")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SpecError(f"{where}: schema_version", f"is {version!r}; this roofline reads version {SCHEMA_VERSION} "
                                                    "(re-run `roofline calibrate` to write a current file)")
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, where, Calibration) from None


# ------------------------------------------------------------ the curves a roofline times against
HALF_PRECISION_TWINS = {"fp16": "bf16", "bf16": "fp16"}


def half_precision_twin(hw, compute_key: str) -> str | None:
    """The other 16-bit format of `compute_key` where `hw` gives both the same dense peak, else None.

    FP16 and BF16 run through the same tensor-core instructions (`mma` with .f16 or .bf16 inputs and FP32
    accumulation) at the same rate: the datasheets list one dense peak for both (A100: 312 TFLOP/s, H100 SXM:
    989.4, H200 the same, B200: 2.25 PFLOP/s, GB200: 2.5; AMD MI300X: 1,307.4), and the public kernel tables time one
    of the two (aiconfigurator-core's GEMM and MoE tables are `bfloat16`). A table stores each cell as a fraction of
    that shared peak, so an FP16 kernel of a given shape takes the measured BF16 time. Where a profile lists two
    different peaks the formats are not twins on that device and None is returned.
    """
    twin = HALF_PRECISION_TWINS.get(compute_key)
    peaks = hw.peak_flops_per_s
    if twin is None or compute_key not in peaks or twin not in peaks or peaks[compute_key] != peaks[twin]:
        return None
    return twin


def gemm_table_for(cal: "Calibration", hw, compute_key: str) -> "GemmTable | None":
    """The GEMM table that times `compute_key` GEMMs on `hw`: the calibration's own table of that dtype, else the
    table of its 16-bit twin (`half_precision_twin`: same instructions, same peak), else None (the datasheet fraction).

    Without the twin an FP16 model (Llama-2's checkpoints are float16) fell back to the datasheet fraction on every
    GEMM while the prediction said it was calibrated. Worked number (A100 SXM, vLLM 0.14.0 table): llama-2-7b's fused
    QKV at M = 128 (N = 12,288, K = 4,096) is measured at 87.6 µs in BF16; FP16 now takes the same 87.6 µs per layer,
    where the datasheet fraction (0.82 of 312 TFLOP/s) gave 2 · 128 · 12,288 · 4,096 / (0.82 · 312e12) = 50.4 µs of
    compute, a weight read of 100.7 MB at 0.83 · 2.039 TB/s = 59.5 µs bounding it.
    """
    table = cal.gemm.get(compute_key)
    if table is None:
        twin = half_precision_twin(hw, compute_key)
        table = None if twin is None else cal.gemm.get(twin)
    return table


def moe_curves_for(cal: "Calibration", hw, compute_key: str) -> "list[MoeCurve]":
    """The fused-MoE curves a pass computing at `compute_key` takes on `hw`: those of its own compute dtype, and for a
    16-bit pass those of its twin (`half_precision_twin`) for the expert formats its own dtype has no curve of."""
    mine = [m for m in cal.moe.values() if m.compute_dtype == compute_key]
    twin = half_precision_twin(hw, compute_key)
    if twin is not None:
        have = {m.weight_format for m in mine}
        mine += [m for m in cal.moe.values() if m.compute_dtype == twin and m.weight_format not in have]
    return mine


def allreduce_points(cal: "Calibration", hw) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per group size p (up to the NVLink domain; none on a PCIe host) the (bytes, seconds) points that time a
    calibrated all-reduce on `hw`: the measured points (`Calibration.allreduce_points`) or, in a file without them,
    its line as the two points (0, t0), (1 MB, t0 + 1e6 / R), which `interpolated_message_s` extends into that line.

    On a profile whose link differs from the base profile's (a what-if), the time above the smallest size's, which is
    the bytes crossing the link, scales by the ratio of the two profiles' link · p / (p - 1):
    t'(S) = t(S_0) + (t(S) - t(S_0)) · peak / peak'. On the base profile itself the points are the measured ones.
    """
    ic = hw.interconnect
    if ic.topology == "pcie":
        return {}
    out = {}
    measured = {} if cal.allreduce_points is None else cal.allreduce_points.groups
    for key in sorted({*cal.allreduce, *measured}, key=int):
        p = int(key)
        if p > ic.max_gpus:
            continue
        peak_here = ic.bytes_per_s_per_direction * p / (p - 1)
        if key in measured:
            g = measured[key]
            x, t = np.asarray(g.message_bytes), np.asarray(g.time_s)
            peak = g.peak_per_s
        else:
            a = cal.allreduce[key]
            x, t = np.array([0.0, 1e6]), np.array([a.latency_s, a.latency_s + 1e6 / a.rate_per_s])
            peak = a.peak_per_s
        out[p] = (x, t if peak == peak_here else t[0] + (t - t[0]) * peak / peak_here)
    return out


def allreduce_message_bytes(t) -> np.ndarray:
    """Per op of the table `t`, the bytes of one of its all-reduces: S = comm_bytes / messages (0 for an op that
    does not all-reduce, `ops._allreduce`: messages 0)."""
    f = t.f
    return f["comm_bytes"] / np.maximum(f["messages"], 1.0)


class LaunchFreeRates(NamedTuple):
    """The part of `CalibratedCurves.per_op_ceilings` for one table that does not depend on how its kernels are launched
    (`CalibratedCurves.launch_free_rates`): per op the GEMM FLOP rate and the bytes rate, the attention terms its FLOP
    rate is set from ((busy mask, x of the prefill line, layers, FLOPs)), the mask of the ops a measured curve times, the
    small-kernel line's (mask, time per launch) or None, per fused-MoE curve (mask, per-launch overhead), and per op the
    factor a measured MoE layer scales its five ops' times by (`CalibratedCurves._moe_point_scale`), None where none does,
    and the factor a measured prefill attention kernel's time is scaled by (`CalibratedCurves._attention_point_scale`)."""

    gemm_flops_per_s: Any
    bytes_per_s: Any
    attention: tuple
    measured: Any
    small: tuple | None
    moe: list
    moe_scale: Any = None
    attention_scale: Any = None


class CalibratedCurves:
    """The calibration resolved against one profile and compute dtype: rates in SI units.

    `scale` converts a fraction of the base profile's peak into a rate on the target
    profile: rate_target = rate_measured · (peak_target / peak_base), exactly the measured
    rate when the two profiles are the same.

    **Weight-only GEMMs** (int4/int8/fp8 weights, 16-bit activations: the op dequantizes, so its
    `vector_flops` > 0) take the table's *compute* efficiency only. A row of the bf16 table at M
    tokens through an N x K weight took t = max(t_c, t_w) (plus its fixed time), with t_c the
    tensor-core time and t_w the time to read 2·N·K bytes of 16-bit weights. Its stored fraction
    f(M) = 2·pad(M)·N·K / (t · peak) is therefore f_c only where the row is compute-bound; where
    it is memory-bound, f(M) = 2·pad(M)·N·K / (t_w · peak) grows with pad(M) and holds the 16-bit
    weight-read time, not a property of the tensor cores. Timing a W4A16 GEMM at f(M) would charge
    it that 16-bit read (four times its own N·K/2 bytes). Since f(M) ≤ f_c at every M, the best
    fraction of the N·K column, f_c(N·K) = max over M of f(M, N·K), is the compute efficiency of
    that weight shape (reached where the row is compute-bound); the weight-only GEMM's compute term
    is 2·pad(M)·N·K / (peak · f_c(N·K)) and its memory term, the real (narrower) weight bytes at the
    bandwidth, bounds it at small M. Worked number (H100 SXM, N = K = 8192, M = 16): 16-bit weights
    are 134 MB, at 0.9 · 3.35 TB/s 44.5 µs, so the table's f(16) = 2·16·8192² / (44.5e-6 · 989.4e12)
    = 0.049; with f_c = 0.70 the W4A16 compute term is 2·16·8192² / (0.70 · 989.4e12) = 3.1 µs
    and its 33.6 MB of int4 weights take 11.1 µs: the GEMM is memory-bound at 11.1 µs, not 44.5 µs.

    **Weight-only decode GEMMs** (`gemv`, per weight format). At a few tokens a weight-only GEMM is a
    read of its packed weights through a dequantizing kernel, and such kernels reach only part of HBM
    bandwidth, after a fixed time of their own. Where the file has the format's line (fitted from the
    tables' int4 / int8 weight-only rows at M ≤ GEMV_MAX_TOKENS, x = packed weight bytes), a
    weight-only GEMM of at most that many rows moves its bytes B in launches · t0 + B / R
    (`gemv_line`), instead of B at the datasheet bandwidth fraction; its compute term is unchanged.
    The format is read off the op: bits per weight = 8 · weight bytes / (launches · N·K), 4 (int4)
    below 6 bits, else 8 (int8), group scales included. Worked number (A100 SXM, TensorRT-LLM 1.0.0
    int4 rows: t0 = 12.84 µs, R = 1.330e12 B/s = 0.652 of 2.039 TB/s): llama-2-7b's fused QKV at
    one token, N = 12,288, K = 4,096, 25.2 MB of int4 weights, takes 12.84 + 18.9 = 31.8 µs, where
    the datasheet fraction (0.83) gave 14.9 µs.

    **Launch overhead.** A table's latency is the kernel's time alone, including its fixed
    ramp-up and tail (the smallest GEMM: 2.45 µs on H100). An op timed by a measured GEMM table or
    attention curve therefore pays no eager launch overhead on top in prefill (`launch = "eager"`:
    eager launches are asynchronous and overlap the GPU's work); the other ops keep the profile's
    `kernel_overhead_s`. Decode steps are replayed from CUDA graphs in every serving engine
    (`replayed()`, used by `engine.decode_ceilings`): there every kernel, measured or not, pays the
    per-kernel cost of a graph replay, `graph_overhead_s` (the calibration's own measurement, else
    the profile's sourced `efficiency.kernel_overhead_graph_s`). The kernels the elementwise line times are the
    exception: each costs max(launch, line), in either mode (`_elementwise_rates`).
    """

    __slots__ = ("mem_latency_s", "mem_rate", "att_pre_latency_s", "att_pre_rate", "att_pre_executed", "att_dec_latency_s",
                 "att_dec_rate", "att_kv_head_s", "sm_count", "gemm", "gemm_peak", "gemm_compute", "calibration", "graph_overhead_s",
                 "launch", "allreduce", "gemv", "moe", "moe_points", "attention_points", "elementwise", "bandwidth")

    def __init__(self, cal: Calibration, hw, compute_key: str):
        self.calibration = cal
        bw = hw.memory_bandwidth_bytes_per_s
        peak = hw.peak_flops(compute_key)
        m = cal.memory
        if m is None:  # not measured (public tables): the datasheet fraction, no latency
            self.mem_latency_s, self.mem_rate = 0.0, bw * hw.efficiency.memory_bandwidth_fraction
        else:
            self.mem_latency_s, self.mem_rate = m.latency_s, m.rate_per_s * (bw / m.peak_per_s)
        a = cal.attention_prefill
        if a is None:  # not measured: the datasheet fraction, no latency
            self.att_pre_latency_s, self.att_pre_rate = 0.0, peak * hw.efficiency.attention_flops_fraction
        else:
            self.att_pre_latency_s, self.att_pre_rate = a.latency_s, a.rate_per_s * (peak / a.peak_per_s)
        self.att_pre_executed = a is not None and a.x_unit == "executed_flops"
        self.sm_count = hw.sm_count or 0
        self.att_kv_head_s = (cal.attention_decode_kv_head_s or 0.0) if cal.attention_decode is not None else 0.0
        d = cal.attention_decode or m
        if d is None:
            self.att_dec_latency_s, self.att_dec_rate = self.mem_latency_s, self.mem_rate
        else:
            self.att_dec_latency_s, self.att_dec_rate = d.latency_s, d.rate_per_s * (bw / d.peak_per_s)
        table = gemm_table_for(cal, hw, compute_key)
        self.gemm = table
        self.gemm_peak = peak
        self.bandwidth = bw  # the datasheet HBM bandwidth: no measured MoE layer's op moves bytes faster (`per_op_ceilings`)
        self.gemm_compute = None if table is None else compute_column(table)
        graph = cal.kernel_overhead_graph_s
        self.graph_overhead_s = graph if graph is not None else hw.efficiency.kernel_overhead_graph_s
        self.launch = "eager"
        # tp -> the measured all-reduce's (bytes, seconds) points on this profile (`allreduce_points`); none from a
        # PCIe host, whose tables measure that host's bus (calibrate/public/README.md, defect 2), nor past the NVLink domain
        self.allreduce = allreduce_points(cal, hw)
        # bits per weight -> (t0, R) of the weight-only small-M line, R rescaled by the ratio of HBM bandwidths
        self.gemv = {GEMV_BITS[key]: (g.latency_s, g.rate_per_s * (bw / g.peak_per_s)) for key, g in cal.gemv.items()}
        # (t0, R) of the small memory-bound kernels' line, R rescaled by the ratio of HBM bandwidths
        ew = cal.elementwise
        self.elementwise = None if ew is None else (ew.latency_s, ew.rate_per_s * (bw / ew.peak_per_s))
        # an op's `grouped` code (1 + index in MOE_FORMATS) -> (t0 per layer, t_e per touched expert, grouped-GEMM
        # FLOP/s, grouped kernels' bytes/s) on this profile, for the curves that compute at this pass's dtype
        self.moe = {1 + MOE_FORMATS.index(m.weight_format): (m.latency_s, m.expert_latency_s, m.compute_fraction * peak,
                                                             m.bandwidth_fraction * bw)
                    for m in moe_curves_for(cal, hw, compute_key)}
        # the same code -> {per-GPU layer shape (hidden, width, experts, top-k): (rows R, measured / curve ratio)}, arrays
        # built once here (`MoePoints`, `_moe_point_scale`)
        self.moe_points = {}
        for m in moe_curves_for(cal, hw, compute_key):
            measured = cal.moe_points.get(moe_key(m.weight_format, m.compute_dtype))
            if measured is not None and measured.curve == m:
                self.moe_points[1 + MOE_FORMATS.index(m.weight_format)] = {
                    (float(p.hidden), float(p.width), float(p.experts), float(p.topk)): (p.rows, p.ratio) for p in measured.shapes}
        # per-GPU prefill attention shape (heads, KV heads, d) -> (batches, lengths, full ratio matrix), only against the
        # line the ratios were taken on (`MeasuredAttention`, `_attention_point_scale`)
        points = cal.attention_prefill_points
        self.attention_points = {} if points is None or a is None or a.x_unit != "executed_flops" or (
            points.line_latency_s, points.line_rate_per_s) != (a.latency_s, a.rate_per_s) else {p.key: (np.asarray(p.batch, dtype=float), np.asarray(p.isl, dtype=float), p.matrix)
                                              for p in points.shapes}

    def allreduce_message_s(self, message_bytes, tp):
        """Seconds of one measured all-reduce of `message_bytes` in a tp-GPU group (`interpolated_message_s` through
        this profile's points), 0 where that group size was not measured (the analytical algorithms time it); None
        when nothing was measured (or a PCIe host). Arrays broadcast: a grid of message sizes and tp."""
        if not self.allreduce:
            return None
        if np.ndim(tp) == 0:
            points = self.allreduce.get(int(tp))
            return 0.0 * np.asarray(message_bytes, dtype=float) if points is None else interpolated_message_s(message_bytes, *points)
        tp = np.asarray(tp)
        out = np.zeros(np.broadcast_shapes(np.shape(message_bytes), tp.shape))
        for p, points in self.allreduce.items():
            here = tp == p
            if np.any(here):
                out = np.where(here, interpolated_message_s(message_bytes, *points), out)
        return out

    def with_allreduce(self, t, c, tp):
        """`c` with `measured_allreduce_message_s` set per op of `t`: the measured time of one all-reduce of the op's
        message, S = comm_bytes / messages, in a tp group (`allreduce_message_s`); the comm term then charges
        messages · t(S) (`collectives.allreduce_s`). Unchanged when nothing was measured or no op all-reduces."""
        import dataclasses

        if not self.allreduce:
            return c
        message_s = self.allreduce_message_s(allreduce_message_bytes(t), tp)
        return dataclasses.replace(c, measured_allreduce_message_s=message_s)

    def prepare(self, c, tp):
        """`c` with what the measurements replace before `per_op_ceilings`: no GEMM shape model where a measured GEMM
        table already holds the shape. (`tp`: the group size, kept for the per-tp memo of `roofline.prepared`.)"""
        import dataclasses

        if self.gemm is not None:
            c = dataclasses.replace(c, sm_count=0)
        return c

    def replayed(self) -> "CalibratedCurves":
        """The same curves for a pass replayed from a CUDA graph: measured ops pay `graph_overhead_s` per launch."""
        out = object.__new__(CalibratedCurves)
        for name in self.__slots__:
            setattr(out, name, getattr(self, name))
        out.launch = "graph"
        return out

    def measured_ops(self, t):
        """Mask of the ops a measured curve times: GEMMs (with a table for this dtype) and attention (with a curve)."""
        cal = self.calibration
        att = cal.attention_prefill is not None or cal.attention_decode is not None
        return (t.is_gemm & (self.gemm is not None)) | (t.is_attention & att)

    def per_op_ceilings(self, t, c, drop_curves: bool = False, shared: "LaunchFreeRates | None" = None):
        """Ceilings with one rate per operator, so that the roofline's own formulas give the measured curves
        (without their curves when `drop_curves`: `roofline.per_op_ceilings`, in the same copy of `c`). `shared`: this
        table's `launch_free_rates` where another set of ceilings has resolved them (`shares_launch_free_rates`).

        For an op of k kernels moving B bytes, the memory term must be k·t0 + B / R: the
        effective rate B / (k·t0 + B / R) does that. Attention kernels (one per layer) use the
        decode-attention line for bytes and the prefill line for FLOPs; every other op the copy
        line; in a replayed pass (a decode step) the attention kernel is the decode kernel, whose fixed time the
        decode line's t0 already holds, so its FLOPs run at the prefill line's asymptotic rate without the prefill
        t0. A prefill line over executed FLOPs times the op's `executed_flops` over its wave efficiency (`attention_shapes`)
        instead of its FLOPs, and a decode line with `attention_decode_kv_head_s` adds kv_units · t_kvh to its fixed time,
        so the rates below give layers · t0 + X / R (+ kv_units · t_kvh on the bytes). A GEMM of M tokens through an N x K weight gets peak · fraction(M, N·K), with
        N·K = F / (2 · launches · M) from its FLOPs (for MoE experts, the touched experts' total; for a
        2:4 sparse GEMM, whose F counts the executed half, from the dense 2F, so the lookup lands on the
        weight's real shape); a weight-only GEMM gets peak · f_c(N·K), the column's compute efficiency
        (class docstring). The per-op `kernel_overhead_s` is 0 (eager) or `graph_overhead_s` (replayed)
        on measured ops and the profile's elsewhere.
        With zero latencies and constant tables this reproduces the analytical rates exactly.
        """
        import dataclasses

        if shared is None:
            shared = self.launch_free_rates(t, c)
        busy, work, layers, flops = shared.attention
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.att_pre_latency_s == 0 or self.launch == "graph":  # a decode step: the decode line holds its fixed time
                att_rate = np.where(busy, flops / (work / self.att_pre_rate), self.att_pre_rate) if self.att_pre_executed \
                    else self.att_pre_rate
            else:
                att_rate = np.where(busy, flops / (layers * self.att_pre_latency_s + work / self.att_pre_rate), self.att_pre_rate)
        measured_s = 0.0 if self.launch == "eager" else (self.graph_overhead_s or 0.0)
        overhead = np.where(shared.measured, measured_s, c.kernel_overhead_s)
        if shared.small is not None:  # the small-kernel line's kernels (`_elementwise_rates`)
            small, line_per_launch_s = shared.small
            overhead = np.where(small, np.maximum(overhead - line_per_launch_s, 0.0), overhead)
        for mine, gemm_overhead_s in shared.moe:  # the fused-MoE curves' layers (`_moe_rates`)
            overhead = np.where(mine, gemm_overhead_s, overhead)
        bytes_rate = shared.bytes_per_s
        if shared.attention_scale is not None:  # measured prefill attention: its time times ρ, no rate past the datasheet's
            scale = shared.attention_scale
            att_rate = np.minimum(att_rate / scale, np.maximum(att_rate, self.gemm_peak))
            bytes_rate = np.minimum(bytes_rate / scale, np.maximum(bytes_rate, self.bandwidth))
        rates = dict(gemm_flops_per_s=shared.gemm_flops_per_s, attention_flops_per_s=att_rate, bytes_per_s=bytes_rate,
                     kernel_overhead_s=overhead)
        if shared.moe_scale is not None:  # measured MoE layers: every term of their five ops times ρ (`_moe_point_scale`)
            scale = shared.moe_scale
            # where ρ < 1 no rate passes the datasheet's (dense peak, HBM bandwidth, vector rate): no op below its floor
            gemm = np.minimum(shared.gemm_flops_per_s / scale, np.maximum(shared.gemm_flops_per_s, self.gemm_peak))
            hbm = np.minimum(bytes_rate / scale, np.maximum(bytes_rate, self.bandwidth))
            rates = dict(gemm_flops_per_s=gemm, attention_flops_per_s=att_rate, bytes_per_s=hbm,
                         kernel_overhead_s=overhead * scale, vector_flops_per_s=c.vector_flops_per_s / np.maximum(scale, 1.0))
        return dataclasses.replace(c, **rates, curves=None) if drop_curves else dataclasses.replace(c, **rates)

    def launch_free_rates(self, t, c) -> "LaunchFreeRates":
        """What `per_op_ceilings` resolves for the ops of `t` that does not depend on how the pass is launched (eager
        or replayed, `launch`; nor on `c.kernel_overhead_s`): the GEMM and bytes rates, the attention terms, and the
        masks and times the launch overhead is set from. One scenario's stacked passes are timed against the eager
        ceilings and the replayed ones (`engine.decode_ceilings`), which differ only there: both take this once
        (`roofline.per_op_ceilings_of_sets`, where `shares_launch_free_rates` holds)."""
        f = t.f
        layers = t.column(t.layers)
        flops, hbm = f["flops"], t.hbm_bytes
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.mem_latency_s == 0 and self.att_dec_latency_s == 0 and self.att_kv_head_s == 0:
                bytes_rate = np.where(t.is_attention, self.att_dec_rate, self.mem_rate)
            else:
                kernels = np.where(t.is_attention, layers, f["launches"])
                lat = np.where(t.is_attention, self.att_dec_latency_s, self.mem_latency_s)
                rate = np.where(t.is_attention, self.att_dec_rate, self.mem_rate)
                fixed = kernels * lat + f["kv_units"] * self.att_kv_head_s  # kv_units: 0 off attention
                bytes_rate = np.where(hbm > 0, hbm / (fixed + hbm / rate), rate)
            busy = t.is_attention & (flops > 0)
            work = self._attention_work(t, layers) if self.att_pre_executed else flops
            if self.gemm is None:
                gemm_rate = c.gemm_flops_per_s
            else:
                gemm_rate, bytes_rate = self._gemm_rates(t, c, bytes_rate)
        small = None
        if self.elementwise is not None:
            bytes_rate, small = self._elementwise_rates(t, bytes_rate)
        moe, moe_scale = (), None
        if self.moe:
            gemm_rate, bytes_rate, moe = self._moe_rates(t, gemm_rate, bytes_rate)
            if moe and self.moe_points:
                moe_scale = self._moe_point_scale(t)
        att_scale = self._attention_point_scale(t) if self.attention_points else None
        return LaunchFreeRates(gemm_rate, bytes_rate, (busy, work, layers, flops), self.measured_ops(t), small, moe, moe_scale,
                               att_scale)

    def shares_launch_free_rates(self, other: "CalibratedCurves") -> bool:
        """Whether `other` resolves the same `launch_free_rates` for a table and ceilings: the same measured curves
        (the very objects), however launched (`replayed` copies every curve and changes `launch` alone)."""
        return all(getattr(self, name) is getattr(other, name) for name in self.__slots__ if name != "launch")

    def _attention_work(self, t, layers):
        """Per op, the x of an executed-FLOPs prefill line: causal-tile FLOPs / wave efficiency of one layer's kernel
        over this device's SMs (`attention_shapes.wave_efficiency`); 0 off attention."""
        f = t.f
        return f["executed_flops"] / wave_efficiency(f["attention_tiles"] / layers, self.sm_count)

    def _elementwise_rates(self, t, bytes_rate):
        """(bytes rate, (mask, line time per launch) or None) per op with the small-kernel line applied
        (`Calibration.elementwise`): `per_op_ceilings` takes the per-launch overhead of the masked ops down by the line's
        time per launch (below), None where no op is such a kernel.

        The ops `roofline.ops` marks elementwise or gather (norms, activations, residual and shared-expert adds,
        activation quantization, top-k routing, embedding and MoE permute: kernels that stream their bytes once) of
        k launches moving B bytes take the line's k · t0 + B / R as their memory term: rate B / (k · t0 + B / R).

        Launch overhead, counted once. The line's tables time each kernel as the mean of a CUDA-graph replay of
        repeated launches (aiconfigurator's collector: graph replay time / runs / repeats), so t0 already holds the
        per-kernel cost of a graph replay, and the GPU time of an eager launch is the line. A kernel costs the
        larger of its launch cost and its GPU time (the stream waits for whichever is slower: the CPU issuing it, or
        the GPU running the one before): per kernel max(t_launch, t0 + B / (k · R)). The roofline adds overhead to
        max(compute, memory), so the op's overhead per launch becomes max(0, t_launch - (k · t0 + B / R) / k).
        In a replayed decode step t_launch is `graph_overhead_s` (0.5 µs), below every fitted t0 (1.3-2.6 µs):
        no overhead on top. In eager prefill t_launch is the profile's `kernel_overhead_s`, the larger one for a
        tiny kernel. Worked number (H200, vLLM line t0 = 2.01 µs, R = 0.859 · 4.8 TB/s = 4.12e12 B/s): DeepSeek-V3's
        act_quant of one q_a_proj input at T = 4 (57,344 B read, 29,568 B written) takes 2.01 + 86,912 / 4.12e12
        = 2.03 µs in a decode step, where the datasheet fraction (0.86) and a 0.5 µs graph launch gave 0.02 + 0.5 µs.
        """
        t0, rate = self.elementwise
        f = t.f
        hbm = t.hbm_bytes
        kind = t.kinds == ELEMENTWISE_KINDS[0]  # the kinds compared one by one: np.isin's set machinery costs more on ~20 ops
        for other in ELEMENTWISE_KINDS[1:]:
            kind = kind | (t.kinds == other)
        if not kind.any():  # no small kernel in the table (nothing below changes)
            return bytes_rate, None
        small = t.column(kind) & (hbm > 0) & (f["launches"] > 0)
        if not small.any():
            return bytes_rate, None
        launches = np.maximum(f["launches"], 1.0)
        line_s = launches * t0 + hbm / rate
        with np.errstate(divide="ignore", invalid="ignore"):
            bytes_rate = np.where(small, hbm / line_s, bytes_rate)
        return bytes_rate, (small, line_s / launches)

    def _moe_rates(self, t, gemm_rate, bytes_rate):
        """(FLOP rate, bytes rate, [(mask, per-launch overhead)] per curve) per op with the fused-MoE curves applied
        (`MoeCurve`): `per_op_ceilings` sets each curve's masked ops' overhead to its value (below).

        The ops of a fused MoE layer whose expert-weight format has a curve (`grouped` = its code) get the
        curve's rates: grouped GEMMs compute at compute_fraction · peak, every grouped op moves its bytes at
        bandwidth_fraction · bandwidth, and the layer's fixed time t0 + n · t_e (n the experts it touches on this
        GPU, `moe_touched_experts`) is paid as the launch overhead of its two grouped GEMMs ((t0 + n · t_e) / 2 per
        launch, one launch per layer each, both reading the same n experts), none on its other three kernels, in
        prefill and in a replayed decode step alike (t0 and t_e were fitted to the whole layer's time, launches
        included). Worked number: t0 = 20 µs, t_e = 0.4 µs, n = 7.20 (Mixtral, T = 8): 11.44 µs per grouped GEMM
        launch, 22.88 µs per layer.
        """
        grouped = t.f["grouped"]
        touched, overhead = None, []
        for code, (t0, t_e, flops_per_s, bytes_per_s) in self.moe.items():
            mine = grouped == code
            if not np.any(mine):
                continue
            if t_e and touched is None:
                touched = moe_touched_experts(t)
            fixed_s = t0 + (touched * t_e if t_e else 0.0)
            gemm_rate = np.where(mine & t.is_gemm, flops_per_s, gemm_rate)
            bytes_rate = np.where(mine, bytes_per_s, bytes_rate)
            overhead.append((mine, np.where(t.is_gemm, fixed_s / MOE_GEMMS_PER_LAYER, 0.0)))
        return gemm_rate, bytes_rate, overhead

    def _moe_point_scale(self, t):
        """Per op of `t`, the factor ρ its time is scaled by (`per_op_ceilings` divides its FLOP, vector and bytes rates
        by ρ and multiplies its launch overhead by ρ, so each of the five ops takes ρ times its curve time and they sum
        to ρ times the curve's layer: the split over the ops, and each op's FLOPs and bytes, stay the curve's); 1 on
        every op outside a measured layer; None where no layer of `t` is a stored shape. Where ρ < 1 no rate is raised
        past the datasheet's (the dense peak, the HBM bandwidth; the vector rate not at all): an op the curve already
        times near its floor (the speed of light `predict` reports) keeps that floor, and the layer sums to a little
        more than ρ times the curve (the files keep no shape whose own rows beat the layer's floor,
        `calibrate.public_moe.moe_points`).

        A fused MoE layer (`ops.fused_moe_ops`: permute, up GEMM, activation, down GEMM, unpermute, in that order) is a
        stored shape of its curve (`MoePoints`) where its up GEMM's K is the hidden size h and N twice the width
        (gated experts, as the tables time), its down GEMM's K the width, its ops' `moe_experts` the experts held, its
        top-k k = permute writes / unpermute writes (T·k·h·b over T·h·b) the shape's, and it runs dense (not 2:4).
        Its token-expert rows on this GPU are R = F_up / (2 · launches · N · K) (the up GEMM's FLOPs); ρ =
        `moe_point_ratio`(R). The table's rows are balanced (each touched expert R / min(E, R) rows); a layer of the
        model's uniform routing touches fewer experts at small R (`ops.expected_experts_touched`): its curve time
        holds that, and ρ, the kernel's measured departure from the curve at the same R, carries over as a ratio.
        """
        f = t.f
        names = t.names
        n_ops = len(names)
        ups = [i for i, name in enumerate(names)
               if name == "experts_up" and 1 <= i and i + 3 < n_ops and names[i + 2] == "experts_down"]
        if not ups:
            return None
        up = np.array(ups)  # every layer of the table at once: arrays of (layers, ...)
        hidden, width, n_up = f["gemm_k"][up], f["gemm_k"][up + 2], f["gemm_n"][up]
        with np.errstate(divide="ignore", invalid="ignore"):
            topk = f["act_write_bytes"][up - 1] / f["act_write_bytes"][up + 3]
            rows = f["flops"][up] / (2 * np.maximum(f["launches"][up], 1.0) * n_up * hidden)
        dense, experts_held, grouped = f["sparse_2_4"][up] == 0, f["moe_experts"][up], f["grouped"][up]
        rho = None
        for code, shapes in self.moe_points.items():
            mine = (grouped == code) & dense
            if not np.any(mine):
                continue
            # a scenario has one layer shape: look up its first element's; every stored shape only where layers or a
            # grid mix shapes
            first = (float(np.ravel(hidden)[0]), float(np.ravel(width)[0]), float(np.ravel(experts_held)[0]),
                     float(np.round(np.ravel(topk)[0])))
            here = _moe_shape_mask(mine, hidden, width, n_up, experts_held, topk, first)
            if np.all(here | ~mine):  # one shape: stored or not
                if first in shapes:
                    rho = np.where(here, moe_point_ratio(rows, *shapes[first]), 1.0 if rho is None else rho)
                continue
            for key, (xs, ys) in shapes.items():
                here = _moe_shape_mask(mine, hidden, width, n_up, experts_held, topk, key)
                if np.any(here):
                    rho = np.where(here, moe_point_ratio(rows, xs, ys), 1.0 if rho is None else rho)
        if rho is None:
            return None
        scale = np.ones(np.broadcast_shapes(f["flops"].shape, (n_ops, *np.shape(rho)[1:])))
        for offset in range(-1, 4):  # permute, up, activation, down, unpermute
            scale[up + offset] = rho
        return scale

    def _attention_point_scale(self, t):
        """Per op of `t`, the factor ρ its time is scaled by (`per_op_ceilings` divides its attention FLOP rate and its
        bytes rate by ρ, no rate past the datasheet's: the dense peak, the HBM bandwidth); 1 on every op but a prefill
        attention kernel of a stored shape; None where `t` has none.

        A flash attention op (`Op.attention_heads` > 0) is a stored shape (`AttentionPoints`) where its query heads, KV
        heads and head dim are the shape's, and it is the table's kernel: a prefill (`attention_tiles` > 0) of
        b = `kv_units` / (layers · KV heads) sequences of n = `attention_new_tokens` > 1 new tokens each with none cached
        and no window (its FLOPs the full causal b · H · n(n + 1)/2 · 4d per layer), 16-bit activations and KV cache
        (its output b · n · H · d · 2 bytes and KV written b · n · 2 · KV heads · d · 2 bytes per layer). ρ =
        `attention_point_ratio`(b, n). A chunk after cached tokens, a sliding window, an FP8 cache: the line alone.
        """
        f = t.f
        att = np.flatnonzero(t.rate_index == 1)
        if not att.size:
            return None
        heads, kv_heads, d, n = (f[k][att] for k in ("attention_heads", "attention_kv_heads", "attention_head_dim",
                                                     "attention_new_tokens"))
        if not np.any(heads > 0):
            return None
        layers = t.column(t.layers[att])
        with np.errstate(divide="ignore", invalid="ignore"):
            batch = f["kv_units"][att] / (layers * kv_heads)
            per_layer = layers * batch * n * heads * d
            table_kernel = ((heads > 0) & (f["attention_tiles"][att] > 0) & (n > 1)
                            & _equal(f["flops"][att], per_layer * (n + 1) * 2)  # b·H·n(n+1)/2·4d
                            & _equal(f["act_write_bytes"][att], per_layer * 2)
                            & _equal(f["kv_write_bytes"][att], per_layer * kv_heads / heads * 4))
        if not np.any(table_kernel):
            return None
        rho = None
        first = (float(np.ravel(heads)[0]), float(np.ravel(kv_heads)[0]), float(np.ravel(d)[0]))
        one_shape = np.all((heads == first[0]) & (kv_heads == first[1]) & (d == first[2]))
        for key, grid in self.attention_points.items():
            if one_shape and key != first:
                continue
            here = table_kernel & (heads == key[0]) & (kv_heads == key[1]) & (d == key[2])
            if np.any(here):
                rho = np.where(here, attention_point_ratio(np.where(here, batch, 1.0), np.where(here, n, 2.0), *grid),
                               1.0 if rho is None else rho)
        if rho is None:
            return None
        scale = np.ones(np.broadcast_shapes(f["flops"].shape, (len(t.names), *np.shape(rho)[1:])))
        scale[att] = rho
        return scale

    def _gemm_rates(self, t, c, bytes_rate):
        """(FLOP rate, bytes rate) per op with the GEMM table applied; see `per_op_ceilings` and the class docstring.

        A 16-bit GEMM's measured time t_m = padded F / (peak · f(M, N·K)) is charged to the term the
        datasheet model says bounds it: to memory when its weight and activation bytes at the bandwidth
        take longer than its FLOPs at the column's compute efficiency f_c (a decode GEMM: the table's time
        is a weight read), else to compute. Either way the op takes max(t_m, B / R) (t_m ≥ its compute time at
        f_c, since f ≤ f_c), so only the compute / memory split, and the op's bound, depend on the choice.
        """
        f = t.f
        flops, hbm = f["flops"], t.hbm_bytes
        m = np.maximum(f["gemm_m"], 1.0)
        nk = flops * (1 + f["sparse_2_4"]) / (2 * np.maximum(f["launches"], 1.0) * m)
        tile = np.asarray(c.tile_tokens, dtype=float)
        tile_safe = np.where(tile > 0, tile, 1.0)
        pad = np.where(tile > 0, tile_padded(m, tile_safe) / m, 1.0)
        work = flops * pad / (1 + f["sparse_2_4"] * (c.sparse_rate_scale - 1))  # padded FLOPs at the dense rate
        compute_fraction, table_fraction = self._gemm_lookups(t, m, nk, tile)
        compute_rate = self.gemm_peak * compute_fraction
        table_rate = self.gemm_peak * table_fraction
        measured_s = work / table_rate
        memory_s = hbm / bytes_rate
        weight_only = f["vector_flops"] > 0
        memory_bound = t.is_gemm & ~weight_only & (memory_s >= work / compute_rate)
        gemm_rate = np.where(t.is_gemm, np.where(weight_only | memory_bound, compute_rate, table_rate), c.gemm_flops_per_s)
        bytes_rate = np.where(memory_bound & (hbm > 0), hbm / np.maximum(memory_s, measured_s), bytes_rate)
        if self.gemv:
            small = t.is_gemm & weight_only & (f["gemm_m"] <= GEMV_MAX_TOKENS) & (hbm > 0)
            bits = weight_bits(f["weight_bytes"], f["launches"], nk)
            for b, line in self.gemv.items():
                here = small & (bits == b)
                bytes_rate = np.where(here, hbm / gemv_line(line, f["launches"], hbm), bytes_rate)
        return gemm_rate, bytes_rate


    def _gemm_lookups(self, t, m, nk, tile):
        """(f_c(N·K), f(M, N·K)) of every op of `t`, f held between its measured rows' times (`between_rows`). Only
        GEMMs take a GEMM rate, so over a large table (a sweep's grid) only the GEMM rows are looked up and the others
        hold 1, a value `_gemm_rates` never uses."""
        if m.size < _GEMM_ROWS_MIN_SIZE or m.shape[0] != len(t.names) or nk.shape[0] != len(t.names):
            return self.gemm_compute.at(nk), self.gemm.at(m, nk, tile)
        rows = np.flatnonzero(t.rate_index == 0)
        if rows.size == len(t.names):
            return self.gemm_compute.at(nk), self.gemm.at(m, nk, tile)
        compute, table = np.ones(nk.shape), np.ones(np.broadcast_shapes(m.shape, nk.shape))
        if rows.size:
            m_rows, nk_rows = _constant_axes_cut(m[rows]), _constant_axes_cut(nk[rows])
            # one tile on every device (or a single device's): one value of it broadcasts as the rows cut would, whose
            # every axis but the op axis is cut to 1 when the tile does not change
            one_tile = tile.size == 1 or bool((tile == tile.reshape(-1)[0]).all())
            tile_rows = tile.reshape(-1)[:1].reshape((1,) * m.ndim) if one_tile and tile.ndim <= m.ndim else \
                _constant_axes_cut(np.broadcast_to(tile, m.shape)[rows])
            compute[rows] = self.gemm_compute.at(nk_rows)
            table[rows] = self.gemm.at(m_rows, nk_rows, tile_rows)
        return compute, table


_GEMM_ROWS_MIN_SIZE = 4096  # a table at least this large looks up its GEMM rows only (one scenario: every row)


def _constant_axes_cut(a: np.ndarray) -> np.ndarray:
    """`a` with each grid axis (after the op axis) along which it does not change cut to length 1: the same values
    once broadcast back. A GEMM's M (tokens) does not depend on tp, nor its N·K on the batch or the prompt, so each
    table lookup runs over the axes its argument spans, and the interpolated table broadcasts over the rest."""
    for axis in range(1, a.ndim):
        if a.shape[axis] > 1:
            first = a[(slice(None),) * axis + (slice(0, 1),)]
            if (a == first).all():
                a = first
    return a


def weight_bits(weight_bytes, launches, nk):
    """The weight-only format of a GEMM read off its bytes: 8 · bytes / (launches · N·K) bits per weight, 4 below 6
    bits (int4 with its group scales), else 8."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per = 8 * np.asarray(weight_bytes, dtype=float) / (np.maximum(launches, 1.0) * np.asarray(nk, dtype=float))
    return np.where(per < 6, 4, 8)


def gemv_line(line: tuple[float, float], kernels, weight_bytes):
    """Seconds of `kernels` weight-only GEMMs at few tokens moving `weight_bytes` in all: kernels · t0 + bytes / R
    (`CalibratedCurves`, weight-only decode GEMMs)."""
    t0, rate = line
    return kernels * t0 + np.asarray(weight_bytes, dtype=float) / rate




class ComputeColumn:
    """f_c(N·K): the best fraction of each N·K column of a GEMM table, interpolated in log N·K (constant past the edges)."""

    __slots__ = ("log_nk", "fraction")

    def __init__(self, log_nk: np.ndarray, fraction: np.ndarray):
        self.log_nk, self.fraction = log_nk, fraction

    def at(self, nk):
        x = np.log(np.maximum(np.asarray(nk, dtype=float), 1e-30))
        return np.interp(x, self.log_nk, self.fraction)


def compute_column(table: GemmTable) -> ComputeColumn:
    """The compute efficiency of each weight shape of `table`: max over M of fraction(M, N·K) (`CalibratedCurves`)."""
    _, log_nk, fraction = table.grid
    return ComputeColumn(log_nk, fraction.max(axis=0))


class StackedCurves:
    """The curves of several devices stacked along a grid's device axis (`roofline.stacked`), so a sweep or
    the planner times every operator of every device as `predict` times it on that device alone.

    `per_device[d]` is device d's `CalibratedCurves`, or None for an analytical device (whose stacked
    scalar ceilings stand); `device` is np.arange(H) placed on the device axis (`index`), so each
    device's per-op rates land where the grid holds that device.
    """

    __slots__ = ("per_device", "device", "graph_overhead_s")

    def __init__(self, per_device: list, index=slice(None)):
        self.per_device = list(per_device)
        self.device = np.arange(len(self.per_device))[index]
        graph = [np.nan if c is None or c.graph_overhead_s is None else c.graph_overhead_s for c in self.per_device]
        self.graph_overhead_s = None if np.isnan(graph).all() else np.array(graph, dtype=float)[index]

    def replayed(self) -> "StackedCurves":
        out = object.__new__(StackedCurves)
        out.per_device = [None if c is None else c.replayed() for c in self.per_device]
        out.device, out.graph_overhead_s = self.device, self.graph_overhead_s
        return out

    def prepare(self, c, tp):
        """`CalibratedCurves.prepare` of each calibrated device, placed where the grid holds that device."""
        import dataclasses

        sm = c.sm_count
        for d, curves in enumerate(self.per_device):
            if curves is not None and curves.gemm is not None:
                sm = np.where(self.device == d, 0, sm)
        return dataclasses.replace(c, sm_count=sm)

    def with_allreduce(self, t, c, tp):
        """`CalibratedCurves.with_allreduce` of each calibrated device, placed where the grid holds that device: one
        measured time per all-reduce of each op's message, over the grid's tp, 0 where a device measured none."""
        import dataclasses

        if not any(curves is not None and curves.allreduce for curves in self.per_device):
            return c
        size = allreduce_message_bytes(t)
        out = c.measured_allreduce_message_s
        for d, curves in enumerate(self.per_device):
            if curves is None or not curves.allreduce:
                continue
            out = np.where(self.device == d, curves.allreduce_message_s(size, tp), out)
        return dataclasses.replace(c, measured_allreduce_message_s=out)

    def per_op_ceilings(self, t, c, drop_curves: bool = False):
        """Each calibrated device's per-op ceilings (from the stacked `c`, whose values at that device are its
        own), placed where the grid holds that device; analytical devices keep the stacked scalars.

        Where the devices lie along one axis of the grid that the operator table does not span (a sweep: the
        ops do not depend on the device), each device's curves time only its own slice of that axis
        (`_device_slices`), and the slices are put side by side: the same elementwise values as timing every
        device's curves over the whole grid and keeping each where it holds that device, at 1 / H of the work.
        """
        import dataclasses

        # every field `CalibratedCurves.per_op_ceilings` sets (the vector rate: a measured MoE layer's, `_moe_point_scale`)
        names = ("gemm_flops_per_s", "attention_flops_per_s", "bytes_per_s", "kernel_overhead_s", "vector_flops_per_s")
        k = self._device_axis(t)
        if k is not None:
            per_device = []
            for curves, c_d in self._device_slices(c, k):
                mine = c_d if curves is None else curves.per_op_ceilings(t, c_d)
                per_device.append([getattr(mine, n) for n in names])
            out = {n: _side_by_side([v[i] for v in per_device], k) for i, n in enumerate(names)}
            return dataclasses.replace(c, **out, curves=None) if drop_curves else dataclasses.replace(c, **out)
        out = {n: getattr(c, n) for n in names}
        for d, curves in enumerate(self.per_device):
            if curves is None:
                continue
            mine = curves.per_op_ceilings(t, c)
            here = self.device == d
            out = {n: np.where(here, getattr(mine, n), out[n]) for n in names}
        return dataclasses.replace(c, **out, curves=None) if drop_curves else dataclasses.replace(c, **out)

    def _device_axis(self, t) -> int | None:
        """The grid axis holding the devices, counted from the last (1 = the last axis), when `device` is
        0..H-1 along exactly one axis and the operator table `t` does not span it; else None."""
        dev = self.device
        if not isinstance(dev, np.ndarray) or dev.ndim == 0:
            return None
        spans = [i for i, size in enumerate(dev.shape) if size > 1]
        if len(spans) != 1 or not np.array_equal(dev.ravel(), np.arange(len(self.per_device))):
            return None
        k = dev.ndim - spans[0]
        if any(a.ndim >= k and a.shape[a.ndim - k] != 1 for a in (*t.f.values(), t.hbm_bytes)):
            return None
        return k

    def _device_slices(self, c, k: int):
        """[(device d's curves or None, `c` at device d)] for d = 0..H-1: each field of `c` that spans the device
        axis (`k`-th from the last) cut to its slice d of it, with the axis kept."""
        import dataclasses

        h = len(self.per_device)
        out = []
        for d in range(h):
            at = {}
            for f in dataclasses.fields(c):
                v = getattr(c, f.name)
                if isinstance(v, np.ndarray) and v.ndim >= k and v.shape[v.ndim - k] == h:
                    at[f.name] = v[(Ellipsis, slice(d, d + 1)) + (slice(None),) * (k - 1)]
            out.append((self.per_device[d], dataclasses.replace(c, **at)))
        return out


def _side_by_side(values: list, k: int) -> np.ndarray:
    """Per-device values (each with one entry, or none, on the device axis, the `k`-th from the last) as one array
    with device d at entry d of that axis (`StackedCurves.per_op_ceilings`)."""
    h = len(values)
    shape = list(np.broadcast_shapes(*(np.shape(v) for v in values), (1,) * k))
    shape[len(shape) - k] = h
    out = np.empty(shape, dtype=np.result_type(*values))
    for d, v in enumerate(values):
        out[(Ellipsis, slice(d, d + 1)) + (slice(None),) * (k - 1)] = v
    return out


def calibrated_efficiency(cal: Calibration, hw):
    """The profile's `Efficiency` with each fraction replaced by the calibration's large-kernel value.

    Only a summary, for display and for the scalar ceilings a calibrated device falls back on where no
    curve applies: `predict`, `sweep` and the planner time every operator against the full curves
    (`CalibratedCurves`, stacked along a grid's device axis by `StackedCurves`). A dtype without a table of its
    own takes its 16-bit twin's (`gemm_table_for`), as its GEMMs do. `source_kind` becomes `calibrated`.
    """
    e = hw.efficiency
    flops = dict(e.flops_fraction)
    sources = dict(e.sources)
    for key in flops:
        t = gemm_table_for(cal, hw, key) if key in hw.peak_flops_per_s else None  # a 16-bit twin's table too
        if t is not None:
            flops[key] = float(min(1.0, t.fraction[-1][-1] * t.peak_per_s / hw.peak_flops(key)))
    where = f"calibration {cal.id} ({cal.provenance.device_name}, {cal.provenance.date})"
    update = {
        "flops_fraction": flops,
        "kernel_overhead_s": cal.kernel_overhead_s,
        "source_kind": "calibrated",
    }
    if cal.memory is not None:
        update["memory_bandwidth_fraction"] = float(min(1.0, cal.memory.rate_per_s / cal.memory.peak_per_s))
    if cal.attention_prefill is not None:
        update["attention_flops_fraction"] = float(min(1.0, cal.attention_prefill.fraction))
    if cal.interconnect_fraction is not None and hw.interconnect.topology != "pcie":  # a PCIe host measures its own bus
        update["interconnect_bandwidth_fraction"] = cal.interconnect_fraction
    sources.update({k: f"{where}: large-kernel value of the measured curve" for k in update if k in e.sources or k == "flops_fraction"})
    return type(e).model_validate({**e.model_dump(), **update, "sources": sources})


def without_host_collectives(cal: Calibration, hw) -> Calibration:
    """`cal` without its all-reduce figures where `hw` has no scale-up fabric (its interconnect is PCIe).

    On a PCIe device the all-reduce runs through the host's PCIe switches and CPU root complexes, so a
    table's all-reduce describes the host it was collected on, not the device: the public L40S tables reach
    1.5-2 GB/s of bus bandwidth at tp8 (`interconnect_fraction` 0.061 of PCIe Gen4 x16), a topology the
    published L40S rows did not run on. Loading a shipped file by default therefore keeps the datasheet
    collective model on such devices; a file attached explicitly (`load_hardware(id, calibration=path)`)
    keeps everything it measured. GEMM and attention curves are properties of the device and stay.
    """
    if not hw.interconnect.name.strip().lower().startswith("pcie") or (
            cal.interconnect_fraction is None and not cal.allreduce and not cal.nccl_allreduce
            and cal.allreduce_points is None and cal.nccl_allreduce_points is None):
        return cal
    note = (f"all-reduce figures dropped on {hw.interconnect.name}: a PCIe all-reduce is the collection host's "
            "topology, not the device's (calibration.without_host_collectives)")
    return cal.model_copy(update={"interconnect_fraction": None, "allreduce": {}, "nccl_allreduce": {}, "allreduce_points": None,
                                  "nccl_allreduce_points": None, "notes": (*cal.notes, note)})


class CalibrationMismatchWarning(UserWarning):
    """A calibration attached to a profile other than the one its device was measured against."""


def attach_calibration(hw, cal: Calibration, profile_id: str | None = None):
    """The profile with `cal` attached: measured curves, and `efficiency` summarised from them.

    Warns (CalibrationMismatchWarning) when the file was measured against another base profile
    (rates are rescaled by the ratio of datasheet peaks: a what-if) or on a device that does not
    match its base profile (a CPU run, or another GPU): the curves then describe that device.
    """
    import warnings

    pv = cal.provenance
    if profile_id is not None and Path(str(profile_id)).suffix == "" and profile_id.lower() != pv.base_profile:
        warnings.warn(f"calibration {cal.id} was measured against profile {pv.base_profile!r}, attached to {profile_id!r}: "
                      "rates are rescaled by the ratio of datasheet peaks", CalibrationMismatchWarning, stacklevel=3)
    if not pv.profile_match:
        warnings.warn(f"calibration {cal.id} was measured on {pv.device_name} ({pv.device_kind}), which is not "
                      f"{pv.base_profile}: {pv.profile_match_note or 'no matching profile'}", CalibrationMismatchWarning, stacklevel=3)
    for key in cal.gemm:
        if key not in hw.peak_flops_per_s:
            raise SpecError(f"calibration.gemm.{key}", f"{hw.name} has no {key} peak to apply the measured fraction to")
    return hw.model_copy(update={"calibration": cal, "efficiency": calibrated_efficiency(cal, hw)})
