"""The roofline itself: operator table -> time, per operator, realistic and floor.

For an operator with F FLOPs, B HBM bytes and C interconnect bytes:

    t_compute = F · pad / (peak_flops · flops_fraction · s) + V / vector_flops + L / l2_read
    t_memory  = B / (peak_bandwidth · bandwidth_fraction)
    t_comm    = allreduce(C, messages, p = tp)                               (the fastest all-reduce algorithm)
              + W / link + wire_messages · link_latency                     (point-to-point: all-to-all, pipeline)
              + H / host_link                                               (offloaded bytes over PCIe/C2C)
    t         = max(t_compute, t_memory, t_comm) + (launches − messages) · kernel_overhead

L is the bytes an op's blocks read from L2 beside its HBM traffic (a generic GQA decode kernel's query-head blocks
re-streaming their KV head: `ops.decode_kv_reads`), at the device's measured L2-hit read rate; it is SM-side work, so it
joins the compute term, which keeps every term affine in the context (`engine.DecodeSteps`). Worked number
(`ops.Op`'s): Llama-2-70B, FP8 KV, one sequence at context 2,048 under TensorRT-LLM 0.5's masked MHA (group 8) on
the analytical H200: L = 8 x 335,544,320 B at 9.8e12 B/s = 274 us of compute, against 335,544,320 B of KV from HBM at
4.8e12 x 0.86 B/s = 81 us: the decode attention is L2-bound. A device without a measured rate (None) leaves it at
infinity: L costs nothing beyond the HBM bytes.
s is (2:4 sparse speed-up) / 2 on GEMMs run on sparse tensor cores, whose F already
counts only the executed half of the multiply-adds (1 elsewhere); V is the vector-unit work of dequantizing weight-only formats
inside the GEMM (see `ops.dequant_vector_flops`); link is the bandwidth of the
slowest link the collective crosses (NVLink inside a node, the cluster's
scale-out network beyond it), times its achievable fraction. `allreduce` (`collectives.allreduce_s`) is the
fastest of one-shot, two-shot, ring and NVLS that the device has, over the bandwidth a tp group has into
its peers (a mesh gives a p-GPU group p−1 pair links): the ring alone is
2(p-1)/p · C / link + 2(p-1) · messages · link_latency; a calibrated profile's measured all-reduce of that
group size (not one measured on a PCIe host) is messages · t0 + C / R instead.

`pad` rounds a GEMM's token count up to the tensor-core tile (`gemm_tile_tokens`):
with 16-token tiles a decode GEMM of 8 tokens computes 16 rows. Where the profile gives its SM count and
large-GEMM tile (`sm_count`, `gemm_tile_m`, `gemm_tile_n`), a GEMM's `pad` is instead
1 / (wave quantization · tile padding · K fill) of its (M, N, K) (`gemm_shapes.gemm_efficiency`, with the
fitted `gemm_shapes.K_FILL`), so `flops_fraction` is the large-GEMM asymptote and the shape costs the rest. The **floor** uses the
datasheet peaks with every fraction 1, no padding, no latency and no overhead:
the speed-of-light time (L2-hit reads keep the measured `l2_read_bytes_per_s`: no datasheet states an L2 rate). The realistic time is never below it.

The sawtooth. Padding (and `ops.dequant_vector_flops`, which dequantizes a weight-only GEMM's weights
once per `dequant_tile_tokens` rows) makes compute time a staircase in the token count, so tokens/s is
not monotone in the batch: one sequence past a multiple of a tile pays a whole extra tile. Worked
number: llama-2-13b, INT4 weights (W4A16) on a B200, 16 + 64 tokens: 64 sequences dequantize every
weight once per decode step, 65 twice, and output tokens/s falls 16% (16,423 -> 13,706). This is the
physics of tiled kernels, kept; what uses a batch steps around it: the static report runs the multiple
of the tile below a batch past a step when that serves more (the static mode of `plan`), and the serving
curve serves a rate with the smallest batch reaching it (`serving.Curves.state`).
For MoE experts the GEMM's rows are the expected tokens per expert, T·k/E, which is fractional (gpt-oss-20b
on an L4 at tp 2, INT4, 114-token prompts: 772 sequences give 11,001 per expert, 773 give 11,015.25): a
step of the 64-row dequantization tile (172 -> 173 tiles) and of the 16-row GEMM tile (688 -> 689) falls
between them and tokens/s drops 0.034%: about 0.026% from the dequantization tile, 0.004% from the GEMM
tile and 0.003% from rounding the fractional mean up to a whole row (measured by switching each off).
Real routing spreads the count over experts, so E[ceil(X / tile)] would smooth that step; applying the
tiles to the mean is the approximation.

**Launch overhead is charged once.** An all-reduce's fixed time is already inside t_comm: the α of
one-shot / two-shot and the t0 of a measured line are the whole kernel timed in a CUDA-graph replay
(the custom all-reduce tables), and NCCL's per-hop latency comes from nccl-tests, which time whole
calls. Its `messages` kernels therefore pay no `kernel_overhead` on top (`overhead_launches`). Worked
number: llama-3-70b decode at tp 8 runs 80 · 2 = 160 all-reduces a step; at 4 µs per eager launch
the double count was 0.64 ms a step, at 0.5 µs per graph-replayed kernel 0.08 ms.

`bound` names the largest of the three terms. Everything here is elementwise
numpy, so one call times every operator of every scenario of a sweep.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, fields, replace
from enum import Enum

import numpy as np

from .collectives import allreduce_s
from .gemm_shapes import K_FILL, gemm_efficiency
from .hardware import HardwareProfile
from .memo import Identity, memoized, plain
from .ops import NUMERIC_FIELDS, Op, OpKind
from .units import tile_padded

_NUMERIC_GETTER = operator.attrgetter(*NUMERIC_FIELDS)
_KIND_VALUE = {k: k.value for k in OpKind}
_RATE_INDEX = {k: {OpKind.GEMM: 0, OpKind.ATTENTION: 1}.get(k, 2) for k in OpKind}


class Bound(str, Enum):
    COMPUTE = "compute"
    MEMORY = "memory"
    COMMUNICATION = "communication"


BOUNDS = (Bound.COMPUTE, Bound.MEMORY, Bound.COMMUNICATION)


def bound_index(compute, memory, comm):
    """Index into BOUNDS of the largest of three terms (arrays broadcast together), the first on a tie: np.argmax
    over the three stacked. Over a grid without NaN, two comparisons against the maximum give it without stacking
    copies of the terms (np.argmax along a stacked first axis is a strided pass)."""
    if any(isinstance(x, np.ndarray) and x.ndim for x in (compute, memory, comm)):
        top = np.maximum(np.maximum(compute, memory), comm)
        if top.size >= _BOUND_COMPARE_MIN_SIZE and not np.isnan(top).any():
            return np.where(compute == top, 0, np.where(memory == top, 1, 2))
        return np.argmax(np.stack(np.broadcast_arrays(compute, memory, comm)), axis=0)
    # one scenario: three numbers, np.argmax's rule (the first largest; the first NaN, which it takes as the largest)
    terms = (float(compute), float(memory), float(comm))
    best = 0
    for i in (1, 2):
        if terms[best] != terms[best]:
            break
        if terms[i] > terms[best] or terms[i] != terms[i]:
            best = i
    return np.intp(best)


_BOUND_COMPARE_MIN_SIZE = 4096  # below, the stacked argmax costs less than the comparisons


@dataclass(frozen=True)
class Ceilings:
    """The rates an operator is timed against (scalars, or arrays aligned with a sweep grid)."""

    gemm_flops_per_s: object
    attention_flops_per_s: object
    vector_flops_per_s: object
    bytes_per_s: object
    link_bytes_per_s: object
    link_latency_s: object
    kernel_overhead_s: object
    tile_tokens: object
    host_bytes_per_s: object = 1.0
    l2_read_bytes_per_s: object = np.inf  # L2-hit reads (`Op.l2_read_bytes`); infinite: not measured, they cost nothing
    sparse_rate_scale: object = 1.0  # 2:4 sparse tensor-core speed-up / 2: executed FLOPs are already halved
    # the all-reduce algorithms (`collectives`): defaults leave the ring alone
    pair_link_bytes_per_s: object = np.inf  # mesh: one GPU-pair link (infinite on a switch)
    allreduce_step_s: object = np.inf  # one step of the engine's one-shot / two-shot all-reduce (infinite: none)
    nvls_bytes_per_s: object = 0.0  # NVLink SHARP message rate (0: none)
    # per op, seconds of one all-reduce of its message as a calibration measured it (`CalibratedCurves.with_allreduce`;
    # 0: none, the algorithms above time it)
    measured_allreduce_message_s: object = 0.0
    # the shape-aware GEMM model (`gemm_shapes`): SMs and the output tile; 0 SMs keeps `pad` alone (the floor)
    sm_count: object = 0
    gemm_tile_m: object = 128
    gemm_tile_n: object = 128
    # measured curves of a calibrated profile (`calibration.CalibratedCurves`, or `StackedCurves` along a grid's
    # device axis), or None: analytical. `time_ops` turns them into per-op rates.
    curves: object = None

    @classmethod
    @memoized(lambda cls, hw, compute_key, floor=False: (cls, Identity(hw), compute_key, floor))
    def of(cls, hw: HardwareProfile, compute_key: str, floor: bool = False) -> "Ceilings":
        """Realistic ceilings (peak x achievable fraction) or, with floor=True, the datasheet peaks.

        A calibrated profile (`hw.calibration`) also carries its measured curves, which
        `time_ops` uses per operator; the floor is always the datasheet.
        """
        if not floor and hw.calibration is not None:
            from .calibration import CalibratedCurves

            c = cls.of(hw.model_copy(update={"calibration": None}), compute_key)
            return replace(c, curves=CalibratedCurves(hw.calibration, hw, compute_key))
        peak = hw.peak_flops(compute_key)
        vector = hw.peak_flops_per_s["fp32"]
        link = hw.interconnect.bytes_per_s_per_direction
        host = hw.host_link_bytes_per_s_per_direction
        sparse = (hw.sparsity_2_4_speedup or 2.0) / 2
        ic = hw.interconnect
        pair = ic.pair_bytes_per_s_per_direction or np.inf
        step = np.inf if ic.custom_allreduce_latency_s is None else ic.custom_allreduce_latency_s
        l2 = np.inf if hw.l2_read_bytes_per_s is None else hw.l2_read_bytes_per_s
        if floor:  # tile 0: no padding; every algorithm the device has (NVLS where the switch can: `nvls_capable`), at the line rate and no latency
            return cls(peak, peak, vector, hw.memory_bandwidth_bytes_per_s, link, 0.0, 0.0, 0, host, sparse_rate_scale=sparse,
                       l2_read_bytes_per_s=l2,
                       pair_link_bytes_per_s=pair, allreduce_step_s=0.0 if np.isfinite(step) or ic.nvls_capable else np.inf,
                       nvls_bytes_per_s=link if ic.nvls_capable or ic.nvls_bandwidth_fraction is not None else 0.0)
        e = hw.efficiency
        return cls(
            sm_count=hw.sm_count or 0,
            gemm_tile_m=hw.gemm_tile_m or 128,
            gemm_tile_n=hw.gemm_tile_n or 128,
            pair_link_bytes_per_s=pair * e.interconnect_bandwidth_fraction,
            allreduce_step_s=step,
            nvls_bytes_per_s=0.0 if ic.nvls_bandwidth_fraction is None else link * ic.nvls_bandwidth_fraction,
            sparse_rate_scale=sparse,
            host_bytes_per_s=host * e.interconnect_bandwidth_fraction,
            l2_read_bytes_per_s=l2,  # a measured rate already: no achievable fraction on top
            gemm_flops_per_s=peak * e.flops_fraction[compute_key],
            attention_flops_per_s=peak * e.attention_flops_fraction,
            vector_flops_per_s=vector * e.flops_fraction["fp32"],
            bytes_per_s=hw.memory_bandwidth_bytes_per_s * e.memory_bandwidth_fraction,
            link_bytes_per_s=link * e.interconnect_bandwidth_fraction,
            link_latency_s=hw.interconnect.latency_s,
            kernel_overhead_s=e.kernel_overhead_s,
            tile_tokens=hw.gemm_tile_tokens,
        )


_STACKED_FIELDS = tuple(f.name for f in fields(Ceilings) if f.name != "curves")


def stacked(per_device: list[Ceilings], index=slice(None)) -> Ceilings:
    """Ceilings of several devices as arrays, one entry per device, then taken at `index` (a sweep's
    device axis, or `[:, None]` for the planner's (H, 1) rows). Calibrated devices keep their measured
    curves (`calibration.StackedCurves`): a grid times every operator of a device as `predict` does."""
    values = np.array([[getattr(c, name) for c in per_device] for name in _STACKED_FIELDS], dtype=float)  # (fields, devices)
    out = Ceilings(**{name: row[index] for name, row in zip(_STACKED_FIELDS, values)})
    if all(c.curves is None for c in per_device):
        return out
    from .calibration import StackedCurves

    return replace(out, curves=StackedCurves([c.curves for c in per_device], index))


def numeric_rows(phases: list[list[Op]]) -> np.ndarray:
    """The numeric fields (`ops.NUMERIC_FIELDS`) of several lists of scalar ops, each list as long as the first, as one
    float64 array of shape (lists, ops, fields): `np.array` of the nested lists, read off one flat iterator
    (`np.fromiter`) instead of numpy walking lists of tuples to find their shape (a quarter fewer instructions for a
    DeepSeek-V3 scenario's three passes). Every value converts to float64 as `np.array(..., dtype=float)` converts it."""
    n_ops = len(phases[0])
    if any(len(ops) != n_ops for ops in phases):
        raise ValueError("numeric_rows: every list must hold as many ops")
    values = itertools.chain.from_iterable(itertools.chain.from_iterable(map(_NUMERIC_GETTER, ops) for ops in phases))
    return np.fromiter(values, dtype=float, count=len(phases) * n_ops * len(NUMERIC_FIELDS)).reshape(
        len(phases), n_ops, len(NUMERIC_FIELDS))


@dataclass(frozen=True)
class OpTable:
    """Operators stacked into arrays: every numeric field has shape (n_ops, *grid). Built by `of`."""

    names: list[str]
    groups: list[str]
    kinds: np.ndarray  # (n_ops,) of OpKind values
    layers: np.ndarray
    windows: np.ndarray
    f: dict[str, np.ndarray]
    hbm_bytes: np.ndarray  # HBM bytes of each op: weights + activations + KV, read and written
    rate_index: np.ndarray  # (n_ops,) which FLOP ceiling times the op: 0 GEMM, 1 attention, 2 vector units
    is_gemm: np.ndarray
    is_attention: np.ndarray
    pad_mask: np.ndarray  # GEMM ops with a token count to round up to the tile
    rows_safe: np.ndarray  # their token counts (1 elsewhere, so division is safe)

    @classmethod
    def of(cls, ops: list[Op], grid_shape: tuple[int, ...] | None = None) -> "OpTable":
        """Stack ops; `grid_shape=()` promises every field is a scalar (one scenario: the fast path)."""
        if grid_shape == ():
            rows = numeric_rows([ops])[0]
            f = dict(zip(NUMERIC_FIELDS, rows.T))
        else:
            # most fields of most ops are scalars: stack those as one column, set the grid-shaped ones row by row.
            # Each field spans only the grid axes some op's value of it spans (weights: tp; a GEMM's M: batch and
            # prompt), with every axis kept (length 1 where it does not vary), and broadcasts over the rest
            values = list(zip(*map(_NUMERIC_GETTER, ops)))  # per field, its value in every op
            ndarray = np.ndarray
            ndim = max((v.ndim for col in values for v in col if v.__class__ is ndarray), default=0)
            column = (len(ops),) + (1,) * ndim
            f = {}
            for name, col in zip(NUMERIC_FIELDS, values):
                arrays = [i for i, v in enumerate(col) if v.__class__ is ndarray and v.ndim]
                if not arrays:
                    f[name] = np.array(col, dtype=float).reshape(column)
                    continue
                scalars = list(col)
                for i in arrays:
                    scalars[i] = 0.0
                out = np.empty((len(ops), *np.broadcast_shapes((1,) * ndim, *(col[i].shape for i in arrays))))
                out[...] = np.array(scalars, dtype=float).reshape(column)
                for i in arrays:
                    out[i] = col[i]
                f[name] = out
        return cls._with_ops(ops, f)

    @classmethod
    def _with_ops(cls, ops: list[Op], f: dict[str, np.ndarray]) -> "OpTable":
        """The table of `ops` whose numeric fields, stacked, are `f` (each (n_ops, ...))."""
        kinds = [op.kind for op in ops]
        rate_index = np.array([_RATE_INDEX[k] for k in kinds])
        per_op = (1,) * (f["flops"].ndim - 1)  # a per-op vector broadcast against (n_ops, *grid)
        is_gemm = (rate_index == 0).reshape(rate_index.shape + per_op)
        pad_mask = is_gemm & (f["gemm_m"] > 0)
        return cls(
            names=[op.name for op in ops],
            groups=[op.group for op in ops],
            kinds=np.array([_KIND_VALUE[k] for k in kinds]),
            layers=np.array([op.layers for op in ops], dtype=float),
            windows=np.array([op.window for op in ops], dtype=float),
            f=f,
            hbm_bytes=f["weight_bytes"] + f["act_read_bytes"] + f["act_write_bytes"] + f["kv_read_bytes"] + f["kv_write_bytes"],
            rate_index=rate_index,
            is_gemm=is_gemm,
            is_attention=(rate_index == 1).reshape(rate_index.shape + per_op),
            pad_mask=pad_mask,
            rows_safe=np.where(pad_mask, f["gemm_m"], 1.0),
        )

    @classmethod
    def of_phases(cls, phases: list[list[Op]]) -> "OpTable":
        """The op lists of several passes of one scenario (prefill, decode probes), each of scalars and with the
        same operators, stacked as one table of shape (n_ops, n_phases, 1): one `time_ops` call times every
        pass, against one set of ceilings or, along the last axis, several (`stacked`). `phase` takes one out."""
        names = [op.name for op in phases[0]]
        if any([op.name for op in ops] != names for ops in phases[1:]):
            raise ValueError("of_phases: every pass must list the same operators")
        rows = numeric_rows(phases)  # (phases, ops, fields)
        return cls._with_ops(phases[0], {name: rows[:, :, j].T[:, :, None] for j, name in enumerate(NUMERIC_FIELDS)})

    def phase(self, i: int) -> "OpTable":
        """Pass `i` of a table built by `of_phases`, as a table of one scenario (shape (n_ops,))."""
        at = (slice(None), i, 0)
        return replace(self, f={k: v[at] for k, v in self.f.items()}, hbm_bytes=self.hbm_bytes[at],
                       is_gemm=self.is_gemm[:, 0, 0], is_attention=self.is_attention[:, 0, 0],
                       pad_mask=self.pad_mask[at], rows_safe=self.rows_safe[at])

    def op_rows(self, rows: slice) -> "OpTable":
        """The ops `rows` of the table as a table of their own (every per-op field cut on the op axis; views)."""
        if rows == slice(None):
            return self
        return replace(self, names=self.names[rows], groups=self.groups[rows], kinds=self.kinds[rows], layers=self.layers[rows],
                       windows=self.windows[rows], f={k: v[rows] for k, v in self.f.items()}, hbm_bytes=self.hbm_bytes[rows],
                       rate_index=self.rate_index[rows], is_gemm=self.is_gemm[rows], is_attention=self.is_attention[rows],
                       pad_mask=self.pad_mask[rows], rows_safe=self.rows_safe[rows])

    @property
    def grid_ndim(self) -> int:
        return self.f["flops"].ndim - 1

    def layer_activation_bytes(self) -> np.ndarray:
        """The largest per-layer activation footprint of the pass (bytes read and written by one op of one layer),
        over the grid: a prefill pass's is the activation workspace an engine keeps free."""
        return ((self.f["act_read_bytes"] + self.f["act_write_bytes"]) / self.column(self.layers)).max(axis=0)

    def column(self, values: np.ndarray) -> np.ndarray:
        """Reshape a per-op vector to broadcast against (n_ops, *grid)."""
        return values.reshape(values.shape + (1,) * self.grid_ndim)


@dataclass
class Timing:
    """Per-operator time terms, each shaped (n_ops, *grid)."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    comm_s: np.ndarray
    overhead_s: np.ndarray

    @property
    def time_s(self) -> np.ndarray:
        return np.maximum(np.maximum(self.compute_s, self.memory_s), self.comm_s) + self.overhead_s

    def kept(self, name: str, compute):
        """`compute()`, kept with this timing under `name` (a quantity of its terms alone, such as `energy.busy_s`): a
        kept one (a scenario's prefill passes, `engine.prefill_passes`) answers again without summing. The terms are
        not changed once timed."""
        kept = self.__dict__.setdefault("_kept", {})
        value = kept.get(name)
        if value is None:
            value = kept[name] = compute()
        return value

    @property
    def bound(self) -> np.ndarray:
        """Index into BOUNDS of the largest term."""
        return np.argmax(np.stack([self.compute_s, self.memory_s, self.comm_s]), axis=0)

    def op_rows(self, rows: slice) -> "Timing":
        """The terms of the ops `rows` (`OpTable.op_rows`)."""
        if rows == slice(None):
            return self
        return Timing(self.compute_s[rows], self.memory_s[rows], self.comm_s[rows], self.overhead_s[rows])

    def at(self, *index) -> "Timing":
        """The terms at `index` after the op axis: one pass and one set of ceilings of a timed `OpTable.of_phases`."""
        at = (slice(None), *index)
        return Timing(self.compute_s[at], self.memory_s[at], self.comm_s[at], self.overhead_s[at])


def _scalar(x) -> bool:
    """One value (a float, or a 0-d array), not a grid: `np.ndim` without its call overhead on the scalar path."""
    return not isinstance(x, np.ndarray) or x.ndim == 0


def _flop_rates(t: OpTable, c: Ceilings):
    """Per-op FLOP ceiling: GEMMs at the tensor-core rate, attention at the attention rate, the rest on vector units."""
    rates = (c.gemm_flops_per_s, c.attention_flops_per_s, c.vector_flops_per_s)
    if all(_scalar(r) for r in rates):  # one device: pick per op
        return t.column(np.array(rates, dtype=float)[t.rate_index])
    return np.where(t.is_gemm, rates[0], np.where(t.is_attention, rates[1], rates[2]))


def _tile_padding(t: OpTable, tile):
    """ceil(m / tile) · tile / m for GEMMs of m tokens; 1 elsewhere, and everywhere when tile is 0 (the floor)."""
    if _scalar(tile):
        if tile == 0:
            return 1.0
        return np.where(t.pad_mask, tile_padded(t.rows_safe, tile) / t.rows_safe, 1.0)
    tile_safe = np.where(tile > 0, tile, 1)
    return np.where(t.pad_mask & (tile > 0), tile_padded(t.rows_safe, tile_safe) / t.rows_safe, 1.0)


def _gemm_slowdown(t: OpTable, c: Ceilings):
    """Per op, realistic FLOPs / FLOPs: the tile padding of `gemm_tile_tokens`, or, where the profile gives its SMs and
    tile (`sm_count`), 1 / (wave quantization · tile padding · K fill) of each GEMM's (M, N, K) (`gemm_shapes`)."""
    pad = _tile_padding(t, c.tile_tokens)
    if (_scalar(c.sm_count) and c.sm_count == 0) or not np.any(c.sm_count):  # no device of the grid has the shape model
        return pad
    f = t.f
    shaped = t.is_gemm & (f["gemm_n"] > 0) & (f["gemm_k"] > 0) & (np.asarray(c.sm_count) > 0)
    if f["flops"].ndim == 1 and _scalar(c.sm_count):  # one scenario: only the GEMM rows
        out = np.array(pad, dtype=float) * np.ones(len(t.names))
        rows = np.flatnonzero(shaped)
        out[rows] = 1.0 / gemm_efficiency(f["gemm_m"][rows], f["gemm_n"][rows], f["gemm_k"][rows], 1.0, K_FILL,
                                          c.sm_count, c.gemm_tile_m, c.gemm_tile_n, np.maximum(c.tile_tokens, 1))
        return out
    # a grid: the shape model only where it applies (GEMMs on devices with SMs given), elementwise as over the whole grid
    *args, shaped = np.broadcast_arrays(f["gemm_m"], np.maximum(f["gemm_n"], 1.0), np.maximum(f["gemm_k"], 1.0),
                                        np.maximum(c.sm_count, 1), c.gemm_tile_m, c.gemm_tile_n, np.maximum(c.tile_tokens, 1), shaped)
    slowdown = np.ones(shaped.shape)
    if shaped.any():
        m, n, k, sms, tile_m, tile_n, tile_tokens = (a[shaped] for a in args)
        slowdown[shaped] = 1.0 / gemm_efficiency(m, n, k, 1.0, K_FILL, sms, tile_m, tile_n, tile_tokens)
    return np.where(shaped, slowdown, pad)


def per_op_ceilings(t: OpTable, c: Ceilings, tp) -> Ceilings:
    """Calibrated ceilings resolved for the ops of `t`: no GEMM shape model where a measured table holds the shape
    (`CalibratedCurves.prepare`), the measured time of each op's all-reduce message in this group size
    (`CalibratedCurves.with_allreduce`), then one rate per op from the measured curves (`per_op_ceilings`);
    analytical ceilings (no curves) as they are. One set of `per_op_ceilings_of_sets`, which holds the steps."""
    return per_op_ceilings_of_sets(t, [c], tp)[0]


def per_op_ceilings_of_sets(t: OpTable, sets: list[Ceilings], tp) -> list[Ceilings]:
    """`per_op_ceilings` of `t` against each of several sets of ceilings (one scenario's stacked passes, `engine`): a
    set whose curves differ from an earlier set's only in how its kernels are launched (the eager ceilings and their
    CUDA-graph replay, `engine.decode_ceilings`), with the same GEMM ceilings, takes that set's
    `CalibratedCurves.launch_free_rates` instead of resolving them again: the same arrays, so the same rates. Every set
    first goes through the steps `per_op_ceilings` names (`prepared`, then `CalibratedCurves.with_allreduce`)."""
    out, resolved = [], []  # resolved: (prepared ceilings, their launch-free rates)
    for c in sets:
        if c.curves is None:
            out.append(c)
            continue
        c = prepared(c, tp)
        c = c.curves.with_allreduce(t, c, tp)
        if getattr(c.curves, "launch_free_rates", None) is None:  # a grid's `StackedCurves`: set by set
            out.append(c.curves.per_op_ceilings(t, c, drop_curves=True))
            continue
        shared = next((rates for other, rates in resolved if _same_launch_free_inputs(c, other)), None)
        if shared is None:
            shared = c.curves.launch_free_rates(t, c)
            resolved.append((c, shared))
        out.append(c.curves.per_op_ceilings(t, c, drop_curves=True, shared=shared))
    return out


def _same_launch_free_inputs(a: Ceilings, b: Ceilings) -> bool:
    """Whether `CalibratedCurves.launch_free_rates` gives the same for prepared ceilings `a` and `b` on one table: the same
    curves however launched, and the same ceilings it reads (the GEMM rate, the tile, the 2:4 sparse speed-up)."""
    return (a.curves.shares_launch_free_rates(b.curves) and _same(a.gemm_flops_per_s, b.gemm_flops_per_s)
            and _same(a.tile_tokens, b.tile_tokens) and _same(a.sparse_rate_scale, b.sparse_rate_scale))


def _same(x, y) -> bool:
    """The same object, or equal plain numbers (an array is the same only as the same object)."""
    return x is y or (type(x) in _PLAIN_NUMBERS and type(y) in _PLAIN_NUMBERS and x == y)


_PLAIN_NUMBERS = (int, float)


@memoized(lambda c, tp: (Identity(c), tp) if plain(tp) else None)
def prepared(c: Ceilings, tp) -> Ceilings:
    """`CalibratedCurves.prepare` of calibrated ceilings for a tp group, kept per (ceilings, tp): it depends on neither
    the ops nor the scenario, and every prefill a device times at one tp asks for it again."""
    return c.curves.prepare(c, tp)


def stacked_per_op(sets: list[Ceilings], shape: tuple[int, ...]) -> Ceilings:
    """Several sets of ceilings without curves (`per_op_ceilings`: a field may be one value per op, of shape
    `shape` = (n_ops, ..., 1)) stacked on the last axis: set j at [..., j]. One `time_ops` call then times a
    table against all of them, as `stacked` does for one value per set (one calibrated scenario, `engine`); a field
    equal in every set stays that one value."""
    out = {}
    ndarray = np.ndarray
    for name in _STACKED_FIELDS:
        values = [getattr(c, name) for c in sets]
        first = values[0]
        per_op = False  # a value per op in some set
        for v in values:
            if isinstance(v, ndarray) and v.ndim:
                per_op = True
                break
        if not per_op:
            # one value shared by every set stays one value (and keeps `time_ops`' scalar paths, e.g. no SMs)
            shared = True
            for v in values:
                if not v == first:
                    shared = False
                    break
            out[name] = first if shared else np.array(values, dtype=float)
        else:
            out[name] = a = np.empty(shape[:-1] + (len(sets),))
            for j, v in enumerate(values):
                a[..., j] = v[..., 0] if isinstance(v, np.ndarray) and v.ndim else v
    return Ceilings(**out)


def overhead_launches(t: OpTable):
    """Kernel launches of each op that pay `kernel_overhead_s`: its launches less its all-reduces (`messages`), whose
    fixed time the collective's time already holds (module docstring)."""
    return np.maximum(t.f["launches"] - t.f["messages"], 0.0)


def time_ops(t: OpTable, c: Ceilings, tp) -> Timing:
    """Time every operator of a table against one set of ceilings (see the module docstring): seconds per op, the
    compute term holding F, V and the L2-hit reads L (`Op.l2_read_bytes` / `Ceilings.l2_read_bytes_per_s`)."""
    if c.curves is not None:  # calibrated: per-op rates from the measured curves, then the same formulas
        return time_ops(t, per_op_ceilings(t, c, tp), tp)
    f = t.f
    compute = f["flops"] * _gemm_slowdown(t, c) / (_flop_rates(t, c) * (1 + f["sparse_2_4"] * (c.sparse_rate_scale - 1))) + f["vector_flops"] / c.vector_flops_per_s
    if np.any(f["l2_read_bytes"]):  # a generic GQA decode kernel's blocks streaming their KV head from L2: SM-side work
        compute = compute + f["l2_read_bytes"] / c.l2_read_bytes_per_s
    memory = t.hbm_bytes / c.bytes_per_s
    overhead = overhead_launches(t) * c.kernel_overhead_s
    return Timing(compute, memory, _comm_s(t, c, tp), overhead)


_COMM_FIELDS = ("comm_bytes", "messages", "wire_bytes", "wire_messages", "host_bytes")
_COMM_ROWS_MIN_SIZE = 4096  # a table at least this large times only its communicating ops (the scalar path: all)


def _comm_s(t: OpTable, c: Ceilings, tp):
    """t_comm of every op (module docstring): the all-reduce, the point-to-point bytes and messages, the host link.

    An op that moves nothing between GPUs or to the host (most ops: only the all-reduces and the all-to-alls
    communicate) has t_comm = 0 exactly: every term is 0 bytes over a positive rate or 0 messages times a
    finite latency. Over a large grid only the ops that communicate are evaluated (an 11-op Llama table: 1 op),
    the others left at 0; a small table (one scenario) is evaluated whole, unless none of its ops communicates (one
    GPU, no offload): then it is all 0 without evaluating the all-reduce algorithms.
    """
    f = t.f
    rows = None
    if f["flops"].size >= _COMM_ROWS_MIN_SIZE:
        n_ops = len(t.names)
        moves = np.zeros(n_ops, bool)
        for name in _COMM_FIELDS:
            moves |= np.any(f[name].reshape(n_ops, -1) != 0, axis=1)
        rows = np.flatnonzero(moves) if not moves.all() else None
    elif not any(f[name].any() for name in _COMM_FIELDS):  # a small table that moves nothing (one GPU): every term 0
        rows = _NO_ROWS
    if rows is None:
        return _comm_terms(f, c, tp)
    shape = np.broadcast_shapes(*(f[k].shape for k in _COMM_FIELDS), *(np.shape(getattr(c, name)) for name in _COMM_CEILINGS),
                                np.shape(tp))
    out = np.zeros(shape)
    if rows.size:
        ndim = f["flops"].ndim
        cut = {name: (v[rows] if isinstance(v, np.ndarray) and v.ndim == ndim and v.shape[0] > 1 else v)
               for name, v in ((name, getattr(c, name)) for name in _COMM_CEILINGS)}
        out[rows] = _comm_terms({k: f[k][rows] for k in _COMM_FIELDS}, replace(c, **cut), tp)
    return out


_NO_ROWS = np.zeros(0, dtype=np.intp)
_COMM_CEILINGS = ("link_bytes_per_s", "pair_link_bytes_per_s", "link_latency_s", "allreduce_step_s", "nvls_bytes_per_s",
                  "measured_allreduce_message_s", "host_bytes_per_s")


def _comm_terms(f: dict, c: Ceilings, tp):
    """allreduce(C, messages, tp) + W / link + wire_messages · link_latency + H / host_link (module docstring)."""
    allreduce = allreduce_s(f["comm_bytes"], f["messages"], tp, c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s,
                            c.allreduce_step_s, c.nvls_bytes_per_s, c.measured_allreduce_message_s)
    return allreduce + f["wire_bytes"] / c.link_bytes_per_s + f["wire_messages"] * c.link_latency_s + f["host_bytes"] / c.host_bytes_per_s
