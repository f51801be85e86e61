"""From operator times to the figures a capacity planner reads: `predict()` and its `Prediction`.

Phases (`ops.forward_ops` gives both from one derivation):

* TTFT  = time of the prefill pass over batch x prompt tokens (it also yields the first output token).
* Decode step k = 1 .. output-1 runs at context c = prompt + k (the new token attends to c keys).
  Every operator's FLOPs and bytes are affine in m = min(c, window), so its time
  max(compute(m), memory(m)) + overhead is the maximum of two lines; the sum over
  all steps is taken in closed form (`sum_over_steps`), exactly, with no sampling.
* TPOT  = (e2e - TTFT) / (output - 1), the mean decode step (with one output token:
  the step that would follow).
* Throughput = batch · output / e2e (a static batch); per GPU divides by tp.
* MBU = bytes moved / time / peak bandwidth; MFU = FLOPs / time / dense peak of
  the compute dtype; both per GPU, both in [0, 1] because no operator beats its floor.
* Memory per GPU = weights (with quantization scales) + KV cache for
  batch x (prompt + output) + activation workspace (the largest per-layer
  activation footprint of prefill, proportional to batch) + runtime reserve.
  `max_batch_size` solves that for the batch.
* Cost per million output tokens = price/GPU-hour · tp / 3600 / (tokens/s) · 1e6; NaN when the
  scenario does not fit in memory (it cannot be bought), so a sorted sweep never ranks it first.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, PrivateAttr

from . import ops as O
from .errors import SpecError
from .hardware import HardwareProfile
from .registry import as_hardware, as_model
from .roofline import BOUNDS, Ceilings, OpTable, Timing, time_ops
from .specs import ModelSpec
from .units import SECONDS_PER_HOUR
from .workload import Deployment, ResolvedDeployment, Workload


# ------------------------------------------------------------ step sums
def _n_in(lo, hi):
    return np.maximum(hi - lo + 1, 0)


def _sum_line(a0, a1, lo, hi):
    """Σ_{x=lo..hi} (a0 + a1·x) over integers (0 for an empty range)."""
    n = _n_in(lo, hi)
    return n * a0 + a1 * (lo + hi) * n / 2


def _sum_positive(g0, g1, lo, hi):
    """Σ_{x=lo..hi} max(0, g0 + g1·x): the line is positive on one side of its root."""
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(g1 != 0, -g0 / np.where(g1 != 0, g1, 1), 0.0)
    up_lo = np.maximum(lo, np.floor(root) + 1)  # g1 > 0: positive right of the root
    down_hi = np.minimum(hi, np.ceil(root) - 1)  # g1 < 0: positive left of the root
    return np.where(
        g1 > 0, _sum_line(g0, g1, up_lo, hi),
        np.where(g1 < 0, _sum_line(g0, g1, lo, down_hi), _n_in(lo, hi) * np.maximum(g0, 0)),
    )


def sum_over_steps(c0, c1, b0, b1, lo, hi, window):
    """Σ_{c=lo..hi} max(c0 + c1·m, b0 + b1·m) with m = min(c, window).

    Below the window both lines grow with c; past it m stays at the window and
    every step costs the same. Exact for integer steps.
    """
    w = np.minimum(window, hi)
    linear = _sum_line(b0, b1, lo, w) + _sum_positive(c0 - b0, c1 - b1, lo, w)
    capped = _n_in(np.maximum(lo, w + 1), hi) * np.maximum(c0 + c1 * w, b0 + b1 * w)
    return linear + capped


def sum_of_m(lo, hi, window):
    """Σ_{c=lo..hi} min(c, window)."""
    w = np.minimum(window, hi)
    return _sum_line(0.0, 1.0, lo, w) + _n_in(np.maximum(lo, w + 1), hi) * w


# ------------------------------------------------------------ validation
def check(model: ModelSpec, hw: HardwareProfile, wl: Workload, dep: Deployment) -> ResolvedDeployment:
    """Every rule a scenario must meet, each failing with a one-line error naming the field."""
    rd = dep.resolved(model)
    if rd.compute_key not in hw.peak_flops_per_s:
        if dep.on_unsupported_dtype != "fallback":
            try:
                hw.peak_flops(rd.compute_key, "activation_dtype")
            except SpecError as exc:
                raise SpecError("activation_dtype", f"{exc.msg}; or set on_unsupported_dtype='fallback' to run "
                                                    f"{rd.weights.dtype.name} weights with {rd.native.name} compute") from None
        rd = rd.fallen_back(f"{hw.name} has no {rd.compute_key} tensor cores: fell back to {rd.weights.dtype.name} weights "
                            f"with {rd.native.name} compute (weight-only kernel, dequantized on the fly)")
    if dep.sparsity == "2:4" and hw.sparsity_2_4_speedup is None:
        raise SpecError("sparsity", f"{hw.name} has no 2:4 sparse tensor cores; use sparsity='dense'")
    if dep.prefix_tokens and dep.prefix_tokens >= wl.prompt_tokens:
        raise SpecError("prefix_tokens", f"{dep.prefix_tokens} must be less than prompt_tokens={wl.prompt_tokens} "
                                         "(at least one new token is prefilled)")
    tp = dep.tp
    choices = ", ".join(map(str, valid_tps(model, hw)))
    for name, width in tp_widths(model).items():
        if width % tp:
            raise SpecError("tp", f"{tp} does not divide {name}={width} of {model.name}; choose one of {choices}")
    if dep.ep > 1:
        if model.moe is None:
            raise SpecError("ep", f"{model.name} has no experts to spread; use ep=1 (tp or pp for a dense model)")
        if model.moe.num_experts % dep.ep:
            raise SpecError("ep", f"{dep.ep} does not divide the {model.moe.num_experts} experts of {model.name}")
    if dep.pp > model.num_layers:
        raise SpecError("pp", f"{dep.pp} stages exceed the {model.num_layers} layers of {model.name}")
    if dep.num_gpus > hw.interconnect.max_gpus or dep.network is not None:
        from .network import DEFAULT_NETWORK, load_network

        load_network(dep.network or DEFAULT_NETWORK)
    if wl.context_tokens > model.max_context:
        raise SpecError(
            "prompt_tokens",
            f"prompt_tokens + output_tokens = {wl.context_tokens} exceeds max_context={model.max_context} of {model.name}",
        )
    return rd


# ------------------------------------------------------------ evaluation
class DecodeSteps:
    """The decode steps at contexts lo..hi of one operator table, timed against one set of ceilings.

    Every op's FLOPs and bytes, hence each of its time terms, is affine in m = min(c, window):
    term(m) = t1 + (t2 - t1)(m - 1), from probes at contexts 1 and 2. Most ops (weights,
    norms, all-reduces) do not depend on the context at all: they are summed once and
    multiplied by the step count; only the others (attention) go through `sum_over_steps`.
    Communication and overhead never depend on the context, and an op has either
    compute/memory terms or a communication term, never both.
    """

    def __init__(self, d1: OpTable, d2: OpTable, t1: Timing, t2: Timing, lo, hi):
        self.d1, self.d2, self.t1, self.t2, self.lo, self.hi = d1, d2, t1, t2, lo, hi
        axes = tuple(range(1, d1.f["flops"].ndim))
        moves = (d2.hbm_bytes != d1.hbm_bytes) | (d2.f["flops"] != d1.f["flops"])
        self.dep = np.any(moves, axis=axes) if axes else moves  # (n_ops,) context-dependent ops
        self.any_dep = bool(self.dep.any())
        self.win = d1.column(d1.windows[self.dep])
        self.const_step_s = t1.time_s[~self.dep].sum(axis=0)
        self.count = _n_in(lo, hi)
        dep = self.dep
        # intercepts (at m = 1) and slopes of the context-dependent ops' compute and memory terms
        self.c1, self.cs = t1.compute_s[dep], t2.compute_s[dep] - t1.compute_s[dep]
        self.m1, self.ms = t1.memory_s[dep], t2.memory_s[dep] - t1.memory_s[dep]
        self.fixed = t1.comm_s[dep] + t1.overhead_s[dep]
        self._mean_m = None

    def _dep_sums(self):
        """(n_dep, ...) each context-dependent op's time summed over all steps."""
        return sum_over_steps(self.c1 - self.cs, self.cs, self.m1 - self.ms, self.ms, self.lo, self.hi, self.win) + self.count * self.fixed

    def per_op_total_s(self):
        """(n_ops, ...) each op's time summed over all steps."""
        out = self.t1.time_s * self.count
        out = np.array(np.broadcast_to(out, np.broadcast_shapes(out.shape, (len(self.dep),) + np.shape(self.count))))
        if self.any_dep:
            out[self.dep] = self._dep_sums()
        return out

    def total_s(self):
        """Σ over steps and ops: the whole decode phase."""
        total = self.const_step_s * self.count
        return total + self._dep_sums().sum(axis=0) if self.any_dep else total

    def step_s(self, context):
        """Time of the single decode step at `context` tokens."""
        if not self.any_dep:
            return self.const_step_s
        m = np.minimum(context, self.win) - 1
        dep = np.maximum(self.c1 + self.cs * m, self.m1 + self.ms * m) + self.fixed
        return self.const_step_s + dep.sum(axis=0)

    def mean_m(self):
        """Mean of m = min(c, window) over the steps, per context-dependent op."""
        if self._mean_m is None:
            self._mean_m = sum_of_m(self.lo, self.hi, self.win) / self.count
        return self._mean_m

    def mean_per_step(self, a1, a2):
        """Mean over steps of a quantity that is a1 at context 1 and a2 at context 2, summed over ops."""
        const = a1[~self.dep].sum(axis=0)
        if not self.any_dep:
            return const
        x1 = a1[self.dep]
        return const + (x1 + (a2[self.dep] - x1) * (self.mean_m() - 1)).sum(axis=0)


def _stage(t: OpTable, pp) -> OpTable:
    """One of `pp` balanced pipeline stages: every FLOP, byte, launch and message / pp (token counts unchanged).

    Stages are taken as equal slices of the whole pass; Megatron and vLLM put the embedding on the
    first stage and the LM head on the last, an imbalance of their share / pp that is left out.
    """
    if pp == 1:
        return t
    keep = ("gemm_m", "sparse_2_4")
    t.f = {k: (v if k in keep else v / pp) for k, v in t.f.items()}
    t.hbm_bytes = t.hbm_bytes / pp
    return t


def kv_allocated_tokens(dep: Deployment, context, max_context: int):
    """KV slots one sequence of `context` tokens occupies under the deployment's allocator.

    exact: context. paged: ceil(context / block) · block (1,000 tokens in blocks of 16: 63 · 16 = 1,008).
    contiguous: kv_reserved_tokens (default max_context), whatever the sequence uses.
    """
    if dep.kv_allocation == "paged":
        b = dep.kv_block_tokens
        return np.ceil(np.asarray(context) / b) * b if not isinstance(context, int) else -(-context // b) * b
    if dep.kv_allocation == "contiguous":
        return dep.kv_reserved_tokens or max_context
    return context


def shared_prefix_tokens(dep: Deployment) -> int:
    """Prefix tokens stored once and shared: whole blocks only under paged allocation, none when contiguous."""
    if not dep.prefix_tokens or dep.prefix_hit_rate == 0 or dep.kv_allocation == "contiguous":
        return 0
    if dep.kv_allocation == "paged":
        return dep.prefix_tokens // dep.kv_block_tokens * dep.kv_block_tokens
    return dep.prefix_tokens


def evaluate(model: ModelSpec, rd: ResolvedDeployment, real: Ceilings, floor: Ceilings, batch, prompt, output, tp,
             hop: tuple | None = None) -> dict[str, Any]:
    """Every headline figure for one model and deployment; batch, prompt, output, tp and the
    ceilings may be numpy arrays of one grid. Returns arrays (or scalars) keyed by metric,
    plus the prefill and decode operator tables and timings under '_tables'.

    Pipeline parallelism (pp stages, mb micro-batches of batch/mb sequences): each stage runs 1/pp of
    every operator per micro-batch, and a micro-batch hands its activations to the next stage
    (`hop` = (bytes/s, latency s) of that link, real; default the NVLink of `real`):

        TTFT = (mb + pp - 1) · t_stage_prefill + (pp - 1) · t_hop(tokens of a micro-batch)
        TPOT = max(mb, pp) · t_stage_step + pp · t_hop(one token per sequence)

    With mb = 1 a pipeline only splits memory; with mb >= pp it keeps every stage busy, at the cost
    of reading each stage's weights once per micro-batch. pp = 1 gives the plain pass.
    Prefix caching with hit rate h: TTFT = (1 - h) · TTFT(whole prompt) + h · TTFT(prompt after the cached prefix).
    """
    dep = rd.dep
    pp, ep = dep.pp, dep.ep
    mb = 1 if pp == 1 else (dep.pp_microbatches or np.minimum(batch, pp))
    b_mb = batch if pp == 1 else batch / mb
    grid = np.broadcast_shapes(*(np.shape(x) for x in (batch, prompt, output, tp, real.bytes_per_s)))
    pre = OpTable.of(O.forward_ops(model, rd, b_mb, prompt, 0, tp, ep=ep), grid)
    per_layer_act = (pre.f["act_read_bytes"] + pre.f["act_write_bytes"]) / pre.column(pre.layers)
    workspace = per_layer_act.max(axis=0)
    pre = _stage(pre, pp)
    pre_real, pre_floor = time_ops(pre, real, tp), time_ops(pre, floor, tp)
    ttft = pre_real.time_s.sum(axis=0)
    ttft_floor = pre_floor.time_s.sum(axis=0)
    h = dep.prefix_hit_rate
    if h > 0:
        hit = _stage(OpTable.of(O.forward_ops(model, rd, b_mb, prompt - dep.prefix_tokens, dep.prefix_tokens, tp, ep=ep), grid), pp)
        ttft = (1 - h) * ttft + h * time_ops(hit, real, tp).time_s.sum(axis=0)
        ttft_floor = (1 - h) * ttft_floor + h * time_ops(hit, floor, tp).time_s.sum(axis=0)

    # decode: each op is affine in m = min(context, window); probe at contexts 1 and 2
    d1 = _stage(OpTable.of(O.forward_ops(model, rd, b_mb, 1, 0, tp, ep=ep), grid), pp)
    d2 = _stage(OpTable.of(O.forward_ops(model, rd, b_mb, 1, 1, tp, ep=ep), grid), pp)
    steps = np.maximum(output - 1, 0)
    lo = prompt + 1
    hi = np.where(steps > 0, prompt + steps, lo)  # with no decode step, price the next one
    n = np.maximum(steps, 1)
    dec_real = DecodeSteps(d1, d2, time_ops(d1, real, tp), time_ops(d2, real, tp), lo, hi)
    dec_floor = DecodeSteps(d1, d2, time_ops(d1, floor, tp), time_ops(d2, floor, tp), lo, hi)
    tpot = dec_real.total_s() / n
    tpot_floor = dec_floor.total_s() / n
    first_step, last_step = dec_real.step_s(lo), dec_real.step_s(hi)
    if pp > 1:
        link_bw, link_lat = hop if hop is not None else (real.link_bytes_per_s, real.link_latency_s)
        row = model.hidden_size * rd.act_bytes / tp  # activations of one token, each tp rank sends its slice
        slots = np.maximum(mb, pp)
        pre_hops = (pp - 1) * (link_lat + b_mb * prompt * row / link_bw)
        step_hops = pp * (link_lat + b_mb * row / link_bw)
        ttft = (mb + pp - 1) * ttft + pre_hops
        ttft_floor = (mb + pp - 1) * ttft_floor
        tpot, tpot_floor = slots * tpot + step_hops, slots * tpot_floor
        first_step, last_step = slots * first_step + step_hops, slots * last_step + step_hops
    e2e = ttft + tpot * steps
    e2e_floor = ttft_floor + tpot_floor * steps
    # per-GPU work: a stage runs its slice once per micro-batch
    dec_flops = mb * dec_real.mean_per_step(d1.f["flops"], d2.f["flops"])
    dec_bytes = mb * dec_real.mean_per_step(d1.hbm_bytes, d2.hbm_bytes)
    t1r, t2r = dec_real.t1, dec_real.t2
    mean_terms = [dec_real.mean_per_step(t1r.compute_s, t2r.compute_s), dec_real.mean_per_step(t1r.memory_s, t2r.memory_s), t1r.comm_s.sum(axis=0)]
    pre_terms = [pre_real.compute_s.sum(axis=0), pre_real.memory_s.sum(axis=0), pre_real.comm_s.sum(axis=0)]
    pre_flops = mb * pre.f["flops"].sum(axis=0)
    pre_bytes = mb * pre.hbm_bytes.sum(axis=0)

    # memory per GPU: a stage's share of the weights and KV; offloaded fractions live in host memory
    weights = O.weight_storage_bytes(model, rd, tp, ep) / pp * (1 - dep.weight_offload_fraction)
    kv_scale = (1 - dep.kv_offload_fraction) / (pp * ep)
    kv_seq = O.kv_cache_bytes(model, rd, 1, kv_allocated_tokens(dep, prompt + output, model.max_context), tp) * kv_scale
    shared = shared_prefix_tokens(dep)
    kv_shared = O.kv_cache_bytes(model, rd, 1, shared, tp) * kv_scale if shared else 0.0
    kv_seq = kv_seq - h * kv_shared  # a hit's prefix slots are the shared copy's
    reserve = dep.runtime_reserve_bytes
    kv = batch * kv_seq + kv_shared
    required = weights + kv + workspace + reserve
    return {
        "ttft_s": ttft, "ttft_floor_s": ttft_floor,
        "tpot_s": tpot, "tpot_floor_s": tpot_floor,
        "tpot_first_step_s": first_step, "tpot_last_step_s": last_step,
        "e2e_latency_s": e2e, "e2e_latency_floor_s": e2e_floor,
        "prefill_flops": pre_flops, "prefill_bytes": pre_bytes,
        "decode_flops_per_step": dec_flops, "decode_bytes_per_step": dec_bytes,
        "weight_bytes": weights, "kv_cache_bytes": kv, "activation_workspace_bytes": workspace,
        "runtime_reserve_bytes": reserve, "memory_required_bytes": required,
        "prefill_bound_index": np.argmax(np.stack(np.broadcast_arrays(*pre_terms)), axis=0),
        "decode_bound_index": np.argmax(np.stack(np.broadcast_arrays(*mean_terms)), axis=0),
        "kv_bytes_per_sequence": kv_seq, "workspace_bytes_per_sequence": workspace / batch, "kv_shared_bytes": kv_shared,
        "_tables": (pre, pre_real, pre_floor, dec_real, dec_floor, n),
    }


def derived(r: dict[str, Any], batch, output, gpus, memory_bytes, bandwidth, peak, price) -> dict[str, Any]:
    """Throughput, utilization, fit and cost from the times and bytes of `evaluate`; `gpus` per replica."""
    tokens_per_s = batch * output / r["e2e_latency_s"]
    free = memory_bytes - r["weight_bytes"] - r["runtime_reserve_bytes"] - r["kv_shared_bytes"]
    per_seq = r["kv_bytes_per_sequence"] + r["workspace_bytes_per_sequence"]
    gpu_hour = price * gpus
    fits = r["memory_required_bytes"] <= memory_bytes
    return {
        "output_tokens_per_s": tokens_per_s,
        "output_tokens_per_s_per_gpu": tokens_per_s / gpus,
        "mbu_prefill": r["prefill_bytes"] / r["ttft_s"] / bandwidth,
        "mfu_prefill": r["prefill_flops"] / r["ttft_s"] / peak,
        "mbu_decode": r["decode_bytes_per_step"] / r["tpot_s"] / bandwidth,
        "mfu_decode": r["decode_flops_per_step"] / r["tpot_s"] / peak,
        "memory_available_bytes": memory_bytes,
        "fits": fits,
        "max_batch_size": np.maximum(np.floor(free / per_seq), 0),
        "cost_per_hour_usd": gpu_hour,
        # a deployment that cannot be run has no price per token: NaN, which sorts last
        "cost_per_million_output_tokens_usd": np.where(fits, gpu_hour / SECONDS_PER_HOUR / tokens_per_s * 1e6, np.nan),
    }


# ------------------------------------------------------------ the result
class Prediction(BaseModel):
    """Every headline figure of one scenario. Seconds, bytes, FLOPs, fractions; per GPU where it says so.

    `source_kind` is `analytical` (datasheet peaks x default fractions) or
    `calibrated` (fractions measured on the user's GPU). When `fits` is False,
    `memory_required_bytes` and `memory_available_bytes` say by how much; the latency and
    throughput fields are then what-ifs (as if the memory were there) and
    `cost_per_million_output_tokens_usd` is NaN.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    hardware: str
    workload: Workload
    deployment: Deployment
    source_kind: str
    notes: tuple[str, ...] = ()
    peak_flops_per_s: float = math.nan
    ridge_point_flops_per_byte: float = math.nan
    speculative_tokens_per_step: float | None = None
    tpot_without_speculation_s: float | None = None
    mode: Literal["analytical", "calibrated"] = "analytical"  # calibrated: measured curves timed every operator
    calibration_id: str | None = None  # the calibration file's id (device slug and date) when calibrated
    num_gpus: int
    compute_dtype: str

    ttft_s: float
    ttft_floor_s: float
    tpot_s: float
    tpot_floor_s: float
    tpot_first_step_s: float
    tpot_last_step_s: float
    e2e_latency_s: float
    e2e_latency_floor_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float

    prefill_flops: float
    prefill_bytes: float
    decode_flops_per_step: float
    decode_bytes_per_step: float
    mbu_prefill: float
    mfu_prefill: float
    mbu_decode: float
    mfu_decode: float
    prefill_bound: str
    decode_bound: str

    weight_bytes: float
    kv_cache_bytes: float
    kv_bytes_per_token: float
    activation_workspace_bytes: float
    runtime_reserve_bytes: float
    memory_required_bytes: float
    memory_available_bytes: float
    fits: bool
    max_batch_size: int

    cost_per_hour_usd: float
    cost_per_million_output_tokens_usd: float

    _tables: tuple = PrivateAttr()
    _operators: pd.DataFrame | None = PrivateAttr(None)

    @property
    def operators(self) -> pd.DataFrame:
        """One row per operator and phase: FLOPs, bytes by kind and their HBM total (`hbm_bytes`),
        time terms, realistic and floor time, bound.

        Decode rows are the mean step: FLOPs and bytes at the mean context, times summed
        exactly over every step and divided by the step count. Built on first access.
        """
        if self._operators is None:
            self._operators = _operator_frame(self._tables)
        return self._operators.copy()

    def tpot_at(self, context_tokens: int) -> float:
        """Realistic time of the one decode step whose new token attends to `context_tokens` keys
        (the prompt, the tokens generated so far, and itself)."""
        if context_tokens < 1:
            raise SpecError("context_tokens", f"must be at least 1, got {context_tokens}")
        return float(self._tables[3].step_s(context_tokens))

    @property
    def fit_message(self) -> str:
        need, have = self.memory_required_bytes, self.memory_available_bytes
        verdict = "fits" if self.fits else "does NOT fit"
        return f"{verdict}: needs {need / 1e9:.1f} GB per GPU of {have / 1e9:.1f} GB"


def _operator_frame(tables: tuple) -> pd.DataFrame:
    pre, pre_real, pre_floor, dec, dec_floor, n = tables
    rows = []
    for i in range(len(pre.names)):
        rows.append(_row("prefill", pre.names[i], pre, i, {**{k: v[i] for k, v in pre.f.items()}, "hbm_bytes": pre.hbm_bytes[i]},
                         pre_real.compute_s[i], pre_real.memory_s[i], pre_real.comm_s[i], pre_real.overhead_s[i],
                         pre_real.time_s[i], pre_floor.time_s[i]))
    d1, d2, t1, t2 = dec.d1, dec.d2, dec.t1, dec.t2
    m = np.ones(len(d1.names))
    if dec.dep.any():
        m[dec.dep] = np.ravel(dec.mean_m())
    real_total, floor_total = dec.per_op_total_s(), dec_floor.per_op_total_s()
    for i in range(len(d1.names)):
        at = lambda a1, a2: a1[i] + (a2[i] - a1[i]) * (m[i] - 1)  # noqa: E731  value at the mean context
        rows.append(_row("decode", d1.names[i], d1, i,
                         {**{k: at(d1.f[k], d2.f[k]) for k in d1.f}, "hbm_bytes": at(d1.hbm_bytes, d2.hbm_bytes)},
                         at(t1.compute_s, t2.compute_s), at(t1.memory_s, t2.memory_s), t1.comm_s[i], t1.overhead_s[i],
                         real_total[i] / n, floor_total[i] / n))
    df = pd.DataFrame(rows)
    return df[(df["launches"] > 0) | (df["time_s"] > 0)].reset_index(drop=True)


def _row(phase, name, t: OpTable, i, f, comp, mem, comm, ovh, time, floor):
    terms = [float(comp), float(mem), float(comm)]
    row = {"phase": phase, "op": name, "layers_group": t.groups[i], "kind": str(t.kinds[i]), "layers": int(t.layers[i])}
    row.update({k: float(f[k]) for k in ("launches", "flops", "weight_bytes", "act_read_bytes", "act_write_bytes",
                                          "kv_read_bytes", "kv_write_bytes", "hbm_bytes", "comm_bytes")})
    row.update({"compute_s": terms[0], "memory_s": terms[1], "comm_s": terms[2], "overhead_s": float(ovh),
                "time_s": float(time), "floor_s": float(floor), "bound": BOUNDS[int(np.argmax(terms))].value})
    return row


def _inputs(model, hw, workload, deployment) -> tuple[ModelSpec, HardwareProfile, Deployment]:
    """The arguments of `predict`: ids and paths loaded; a wrong type is a TypeError naming the argument."""
    if not isinstance(workload, Workload):
        raise TypeError(f"workload: expected a roofline.Workload, got {type(workload).__name__}")
    if deployment is not None and not isinstance(deployment, Deployment):
        raise TypeError(f"deployment: expected a roofline.Deployment or None, got {type(deployment).__name__}")
    return as_model(model), as_hardware(hw), deployment or Deployment()


def predict(model: ModelSpec, hw: HardwareProfile, workload: Workload, deployment: Deployment | None = None) -> Prediction:
    """Predict one scenario. Bad combinations raise `SpecError`; a scenario that does not fit
    in memory returns `fits=False` with required and available bytes. `model` and `hw` may be ids or paths."""
    model, hw, dep = _inputs(model, hw, workload, deployment)
    rd = check(model, hw, workload, dep)
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    real, floor, hop, notes = scale_out(hw, dep, real, floor)
    b, s, o, tp = workload.batch_size, workload.prompt_tokens, workload.output_tokens, dep.tp
    r = evaluate(model, rd, real, floor, b, s, o, tp, hop)
    spec = None
    if dep.speculative is not None:
        from .speculative import apply_speculative

        spec = apply_speculative(model, hw, workload, dep, rd, real, floor, hop, r)
        notes = notes + spec.notes
    peak = hw.peak_flops(rd.compute_key)
    r.update(derived(r, b, o, dep.num_gpus, hw.memory_bytes, hw.memory_bandwidth_bytes_per_s, peak, hw.price_usd_per_gpu_hour))
    fields = {k: (bool(v) if k == "fits" else int(v) if k == "max_batch_size" else float(v))
              for k, v in r.items() if not k.startswith("_") and k in Prediction.model_fields}
    p = Prediction(
        model=model.name, hardware=hw.name, workload=workload, deployment=dep,
        notes=tuple(rd.notes) + tuple(notes), peak_flops_per_s=peak,
        ridge_point_flops_per_byte=peak / hw.memory_bandwidth_bytes_per_s,
        speculative_tokens_per_step=None if spec is None else spec.tokens_per_step,
        tpot_without_speculation_s=None if spec is None else spec.tpot_without_s,
        source_kind=hw.efficiency.source_kind, num_gpus=dep.num_gpus, compute_dtype=rd.act.name,
        mode=hw.mode, calibration_id=None if hw.calibration is None else hw.calibration.id,
        prefill_bound=BOUNDS[int(r["prefill_bound_index"])].value,
        decode_bound=BOUNDS[int(r["decode_bound_index"])].value,
        kv_bytes_per_token=float(O.kv_cache_bytes(model, rd, 1, 1, tp)),
        **fields,
    )
    p._tables = r["_tables"]
    return p


def replica_span(hw: HardwareProfile, dep: Deployment) -> tuple[int, str | None]:
    """(nodes, scale-out network id) of one replica: ceil(tp·pp·ep / NVLink domain) nodes, and the
    deployment's network (default `network.DEFAULT_NETWORK`) when that is more than one, else None."""
    from .network import DEFAULT_NETWORK

    nodes = math.ceil(dep.num_gpus / hw.interconnect.max_gpus)
    return nodes, ((dep.network or DEFAULT_NETWORK) if nodes > 1 else None)


def scale_out(hw: HardwareProfile, dep: Deployment, real: Ceilings, floor: Ceilings):
    """Links for a replica larger than one NVLink domain: (real, floor, pipeline hop link, notes).

    A tp (or ep) group wider than the domain runs its collectives at the network's per-GPU
    bandwidth and per-hop latency (the slowest link of the ring). Pipeline stages placed on
    different nodes hand activations over the network; every hop is costed at network speed,
    an upper bound when some stage boundaries stay inside a node.
    """
    domain = hw.interconnect.max_gpus
    nodes, network = replica_span(hw, dep)
    if network is None:
        notes = [f"network {dep.network} unused: the {dep.num_gpus}-GPU replica fits one {domain}-GPU node"] if dep.network else []
        return real, floor, None, notes
    from dataclasses import replace

    from .network import DEFAULT_NETWORK, load_network

    net = load_network(network)
    bw = net.bytes_per_s_per_gpu_per_direction
    notes = [f"the {dep.num_gpus}-GPU replica spans {nodes} nodes of {domain}; scale-out over {net.name}"
             + ("" if dep.network else f" (default '{DEFAULT_NETWORK}'; set network to change it)")]
    if max(dep.tp, dep.ep) > domain:
        real = replace(real, link_bytes_per_s=bw * net.bandwidth_fraction, link_latency_s=net.latency_s)
        floor = replace(floor, link_bytes_per_s=bw)
    hop = (bw * net.bandwidth_fraction, net.latency_s) if dep.pp > 1 else None
    return real, floor, hop, notes


def tp_widths(model: ModelSpec) -> dict[str, int]:
    """The widths tensor parallelism splits, each of which tp must divide: heads, FFN, expert FFN."""
    widths = {"num_attention_heads": model.num_attention_heads, "intermediate_size": model.intermediate_size}
    if model.moe is not None:
        widths["moe.expert_intermediate_size"] = model.moe.expert_intermediate_size
    return widths


def valid_tps(model: ModelSpec, hw: HardwareProfile) -> list[int]:
    """Tensor-parallel degrees `check` accepts for this model on this hardware, ascending."""
    widths = tp_widths(model).values()
    return [t for t in range(1, hw.interconnect.max_gpus + 1) if all(w % t == 0 for w in widths)]


def predict_fitting(model: ModelSpec, hw: HardwareProfile, workload: Workload, deployment: Deployment | None = None) -> Prediction:
    """`predict` at the smallest valid tp whose memory fits (the deployment's tp is ignored).

    When no tp fits, the prediction at the largest valid tp is returned with fits=False,
    so its required and available bytes say by how much.
    """
    model, hw, dep = _inputs(model, hw, workload, deployment)
    p = None
    for tp in valid_tps(model, hw):
        p = predict(model, hw, workload, dep.model_copy(update={"tp": tp}))
        if p.fits:
            return p
    assert p is not None  # tp=1 is always valid
    return p
