"""The engine: an operator table timed against a device's ceilings, summed into the phases of a request.

Phases (`ops.forward_ops` gives both from one derivation):

* TTFT  = time of the prefill pass over batch x prompt tokens (it also yields the first output token).
* Decode step k = 1 .. output-1 runs at context c = prompt + k (the new token attends to c keys).
  Every operator's FLOPs and bytes are affine in m = min(c, window), so its time
  max(compute(m), memory(m)) + overhead is the maximum of two lines; the sum over
  all steps is taken in closed form (`sum_over_steps`), exactly, with no sampling.
* TPOT  = (e2e - TTFT) / (output - 1), the mean decode step (with one output token:
  the step that would follow).
* Memory per GPU = weights (with quantization scales) + KV cache for
  batch x (prompt + output) + activation workspace (the largest per-layer
  activation footprint of prefill, proportional to batch) + runtime reserve.

`evaluate` returns those times, FLOPs, bytes and memory parts as an `Evaluation` (numpy arrays over a grid
for `sweep`, 0-d for one scenario), with the prefill and decode tables it timed; `derived` turns them into
throughput, utilization, fit and cost. `predict` (one scenario) and `sweep` (a grid) both call these two.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from . import ops as O
from .memo import PLAIN_TYPES, Identity, Memo, memoized, plain
from .parallelism import (
    engine_step_tokens,
    kv_allocated_tokens,
    kv_bytes_per_gpu,
    pipeline_hop_s,
    shared_prefix_tokens,
    step_workspace_bytes,
    weight_bytes_per_gpu,
)
from .roofline import BOUNDS, Ceilings, OpTable, Timing, bound_index, per_op_ceilings_of_sets, stacked, stacked_per_op, time_ops
from .specs import ModelSpec
from .units import SECONDS_PER_HOUR
from .workload import ResolvedDeployment


# ------------------------------------------------------------ step sums
# The step sums below take numpy arrays (a grid, or one scenario's ops at once) or single numbers (one scenario's ops
# one by one, `DecodeSteps` in plain floats): the same expressions, the element-wise primitives below taking numpy's
# function on an array and its scalar rule on two numbers (the same IEEE float64 operation and choice, hence the same
# bits; tests/test_speed_paths.py), without numpy's set-up per call.
def _maximum(a, b):
    """np.maximum; on two numbers (no array), its scalar rule: a NaN wins; on a tie, b (np.maximum(0.0, -0.0) is -0.0)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a > b or a != a else b


def _minimum(a, b):
    """np.minimum; on two numbers, its scalar rule: a NaN wins; on a tie, b."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a < b or a != a else b


def _rounded(x, to_int, np_round):
    """np_round (np.floor or np.ceil); on a finite float, to_int's (math.floor's or math.ceil's) integer back as a float
    (exact; a zero with the sign of x, as numpy's: floor(-0.0) and ceil(-0.5) are -0.0); inf and NaN as they are."""
    if isinstance(x, float):
        if not -math.inf < x < math.inf:
            return x
        r = float(to_int(x))
        return r if r else math.copysign(0.0, x)
    return np_round(x)


def _floor(x):
    """np.floor, bit for bit (`_rounded`)."""
    return _rounded(x, math.floor, np.floor)


def _ceil(x):
    """np.ceil, bit for bit (`_rounded`)."""
    return _rounded(x, math.ceil, np.ceil)


def _where(cond, a, b):
    """np.where; on a single condition (a bool, not an array) and two numbers, the one it picks."""
    if isinstance(cond, (bool, np.bool_)) and not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
        return a if cond else b
    return np.where(cond, a, b)


def _n_in(lo, hi):
    return _maximum(hi - lo + 1, 0)


def _sum_line(a0, a1, lo, hi):
    """Σ_{x=lo..hi} (a0 + a1·x) over integers (0 for an empty range)."""
    n = _n_in(lo, hi)
    return n * a0 + a1 * ((lo + hi) * n / 2)  # Σ x first: lo and hi span fewer grid axes than the line's coefficients


_SPLIT_MIN_RANGES = 64  # ranges (lo, hi) a grid must hold for the one-sign split to pay: one scenario has one


def _sum_positive(g0, g1, lo, hi):
    """Σ_{x=lo..hi} max(0, g0 + g1·x): the line is positive on one side of its root.

    Over a grid (lo, hi arrays) a line's coefficients span fewer axes than the ranges, and most lines keep one
    sign over every range of the grid (decode attention memory-bound at every context swept): such a line adds
    0, or its whole line sum (`_sum_line`, separable in the ranges); the root is cut to each range only where
    some range holds it. The split uses the same root and rounding as the general formula, so the numbers are
    the same. One line in plain floats (`DecodeSteps` of one scenario) takes its slope's branch of the general
    formula, as every line of the mixed formula does.
    """
    if type(g1) is float:
        root = -g0 / g1 if g1 != 0 else 0.0
        if g1 > 0:
            return _sum_line(g0, g1, _maximum(lo, _floor(root) + 1), hi)
        if g1 < 0:
            return _sum_line(g0, g1, lo, _minimum(hi, _ceil(root) - 1))
        return _n_in(lo, hi) * _maximum(g0, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(g1 != 0, -g0 / np.where(g1 != 0, g1, 1), 0.0)
    first, last = np.floor(root) + 1, np.ceil(root) - 1  # g1 > 0: positive from `first` on; g1 < 0: up to `last`
    if max(getattr(lo, "size", 1), getattr(hi, "size", 1)) >= _SPLIT_MIN_RANGES and np.all(np.isfinite(g0)) and np.all(np.isfinite(g1)):
        x_lo, x_hi = np.min(lo), np.max(hi)
        none = np.where(g1 > 0, first > x_hi, np.where(g1 < 0, last < x_lo, g0 <= 0))  # no x of any range counted
        every = np.where(g1 > 0, first <= x_lo, np.where(g1 < 0, last >= x_hi, g0 > 0))  # every x of every range
        if np.all(none | every):
            if not np.any(every):
                return np.broadcast_to(0.0, np.broadcast_shapes(np.shape(g0), np.shape(g1), np.shape(lo), np.shape(hi)))
            return np.where(every, _sum_line(g0, g1, lo, hi), 0.0)
    # every line of one sign of slope (one scenario's few context-dependent ops, most often): its branch alone
    if np.all(g1 > 0):
        return _sum_line(g0, g1, np.maximum(lo, first), hi)
    if np.all(g1 < 0):
        return _sum_line(g0, g1, lo, np.minimum(hi, last))
    up_lo = np.maximum(lo, first)
    down_hi = np.minimum(hi, last)
    return np.where(
        g1 > 0, _sum_line(g0, g1, up_lo, hi),
        np.where(g1 < 0, _sum_line(g0, g1, lo, down_hi), _n_in(lo, hi) * np.maximum(g0, 0)),
    )


def sum_over_steps(c0, c1, b0, b1, lo, hi, window, past_window: bool | None = None):
    """Σ_{c=lo..hi} max(c0 + c1·m, b0 + b1·m) with m = min(c, window).

    Below the window both lines grow with c; past it m stays at the window and
    every step costs the same. Exact for integer steps. `past_window`: whether to add the steps past the window (default:
    unless no window is finite); one op of a set taken in plain floats is given its set's answer, as the set's array is.
    """
    w = _minimum(window, hi)
    linear = _sum_line(b0, b1, lo, w) + _sum_positive(c0 - b0, c1 - b1, lo, w)
    if not (np.any(window != np.inf) if past_window is None else past_window):  # no sliding window: no step is past it, the capped sum is 0
        return linear
    capped = _n_in(_maximum(lo, w + 1), hi) * _maximum(c0 + c1 * w, b0 + b1 * w)
    return linear + capped


def sum_of_m(lo, hi, window):
    """Σ_{c=lo..hi} min(c, window)."""
    w = _minimum(window, hi)
    return _sum_line(0.0, 1.0, lo, w) + _n_in(_maximum(lo, w + 1), hi) * w


def plain_sum(values) -> float:
    """Σ of a few plain floats as numpy sums fewer than eight along an axis: in order, from 0.0 (`ndarray.sum`; from
    eight on numpy sums pairwise, and `DecodeSteps` keeps such a set in arrays)."""
    total = 0.0
    for v in values:
        total += v
    return total


class DecodeSteps:
    """The decode steps at contexts lo..hi of one operator table, timed against one set of ceilings.

    Every op's FLOPs and bytes, hence each of its time terms, is affine in m = min(c, window):
    term(m) = t1 + (t2 - t1)(m - 1), from probes at contexts 1 and 2. Most ops (weights,
    norms, all-reduces) do not depend on the context at all: they are summed once and
    multiplied by the step count; only the others (attention) go through `sum_over_steps`.
    Communication and overhead never depend on the context, and an op has either
    compute/memory terms or a communication term, never both.

    One scenario's steps (probes of one set, a plain-number range: `over`) are summed in plain floats, op by op through
    the same step sums (`sum_over_steps`, `sum_of_m`) and in numpy's order over the few context-dependent ops
    (`plain_sum`): the same float64 operations as the arrays', without numpy's set-up per call on a handful of numbers.
    """

    def __init__(self, d1: OpTable, d2: OpTable, t1: Timing, t2: Timing, lo=None, hi=None):
        self.d1, self.d2, self.t1, self.t2, self.lo, self.hi = d1, d2, t1, t2, lo, hi
        axes = tuple(range(1, d1.f["flops"].ndim))
        moves = (d2.hbm_bytes != d1.hbm_bytes) | (d2.f["flops"] != d1.f["flops"])
        self.dep = np.any(moves, axis=axes) if axes else moves  # (n_ops,) context-dependent ops
        self.any_dep = bool(self.dep.any())
        self.win = d1.windows[self.dep].reshape((-1,) + (1,) * (t1.compute_s.ndim - 1))  # broadcast against the terms
        self.const_step_s = t1.time_s[~self.dep].sum(axis=0)
        self.count = None if lo is None else _n_in(lo, hi)
        dep = self.dep
        # intercepts (at m = 1) and slopes of the context-dependent ops' compute and memory terms
        self.c1, self.cs = t1.compute_s[dep], t2.compute_s[dep] - t1.compute_s[dep]
        self.m1, self.ms = t1.memory_s[dep], t2.memory_s[dep] - t1.memory_s[dep]
        self.fixed = t1.comm_s[dep] + t1.overhead_s[dep]
        self._mean_m = self._busy = None
        self._plain = None  # (lo, hi) as floats where this range is summed in plain floats (`over`)
        self._kept = {}  # what depends on the probes alone (`_split`), shared by every range `over` gives

    def over(self, lo, hi, busy=None, count=None) -> "DecodeSteps":
        """The same probes over the steps at contexts lo..hi: nothing above depends on the range, so probes timed once
        (without a range, lo = hi = None) serve every prompt and output length (`evaluate`, one scenario). `busy`: the
        steps' `dep_busy_s` where already summed (one set of a stacked pair's, `DecodeProbes.over`); `count`: the
        number of steps in lo..hi where already counted. Plain-number bounds of one scenario's probes: summed in plain
        floats (`plain_terms`)."""
        out = object.__new__(DecodeSteps)
        out.__dict__.update(self.__dict__)
        out._mean_m, out._busy, out._plain = None, busy, None
        if busy is None and count is None and type(lo) is int and type(hi) is int and self.plain_terms() is not None:
            out._plain = lo_f, hi_f = float(lo), float(hi)
            out.lo, out.hi, out.count = lo, hi, _n_in(lo_f, hi_f)
            return out
        out.lo, out.hi, out.count = lo, hi, _n_in(lo, hi) if count is None else count
        return out

    def at(self, j: int) -> "DecodeSteps":
        """The steps timed against set `j` of several sets of ceilings stacked on the last axis of the timings
        (one scenario, realistic and floor at once: `evaluate`)."""
        out = object.__new__(DecodeSteps)
        out.__dict__.update(self.__dict__)
        out.t1, out.t2 = self.t1.at(j), self.t2.at(j)
        out.win = self.win[:, 0]
        out.const_step_s = self.const_step_s[j]
        out.c1, out.cs, out.m1, out.ms, out.fixed = (x[:, j] for x in (self.c1, self.cs, self.m1, self.ms, self.fixed))
        out._mean_m = out._busy = out._plain = None
        out._kept = {}
        return out

    def kept(self, name: str, compute):
        """`compute()`, kept with the probes under `name`: every range of them (`over`) finds it (a quantity of the
        probes alone, such as `energy.decode_busy_s`'s context-independent part)."""
        value = self._kept.get(name)
        if value is None:
            value = self._kept[name] = compute()
        return value

    def plain_terms(self) -> tuple | None:
        """The context-dependent ops' terms as plain floats, kept: (c1, cs, m1, ms, fixed, win, past_window,
        const_step_s): per op the compute and memory intercepts at m = 1 and slopes, communication plus overhead, the
        window; whether any window is finite (`sum_over_steps`); the other ops' step time. None where the probes are
        not one scenario's single set (a grid, or a stacked pair), or hold eight or more such ops (numpy sums those
        pairwise, `plain_sum`)."""
        if "plain" not in self._kept:
            one = self.t1.compute_s.ndim == 1 and np.ndim(self.const_step_s) == 0 and int(self.dep.sum()) < 8
            self._kept["plain"] = None if not one else (
                self.c1.tolist(), self.cs.tolist(), self.m1.tolist(), self.ms.tolist(), self.fixed.tolist(), self.win.tolist(),
                bool(np.any(self.win != np.inf)), float(self.const_step_s))
        return self._kept["plain"]

    def _busy_plain(self) -> list:
        """`dep_busy_s` of a range summed in plain floats, op by op (`sum_over_steps`), kept."""
        if self._busy is None:
            c1, cs, m1, ms, _, win, past, _ = self.plain_terms()
            lo, hi = self._plain
            self._busy = [sum_over_steps(c1[i] - cs[i], cs[i], m1[i] - ms[i], ms[i], lo, hi, win[i], past) for i in range(len(c1))]
        return self._busy

    def dep_busy_s(self):
        """(n_dep, ...) each context-dependent op's max(compute, memory) summed over all steps (`sum_over_steps`), kept:
        the decode time adds the op's communication and overhead to it (`total_s`), the energy of steps timed against
        the floor takes it as their busy time (`energy.decode_busy_s`)."""
        if self._plain is not None:
            return np.array(self._busy_plain())
        if self._busy is None:
            self._busy = sum_over_steps(self.c1 - self.cs, self.cs, self.m1 - self.ms, self.ms, self.lo, self.hi, self.win)
        return self._busy

    def dep_busy_total_s(self):
        """Σ over the context-dependent ops of `dep_busy_s`."""
        if self._plain is not None:
            return plain_sum(self._busy_plain())
        return self.dep_busy_s().sum(axis=0)

    def _dep_sums(self):
        """(n_dep, ...) each context-dependent op's time summed over all steps."""
        return self.dep_busy_s() + self.count * self.fixed

    def per_op_total_s(self):
        """(n_ops, ...) each op's time summed over all steps."""
        out = self.t1.time_s * self.count
        out = np.array(np.broadcast_to(out, np.broadcast_shapes(out.shape, (len(self.dep),) + np.shape(self.count))))
        if self.any_dep:
            out[self.dep] = self._dep_sums()
        return out

    def total_s(self):
        """Σ over steps and ops: the whole decode phase."""
        if self._plain is not None:
            fixed, const, n = self.plain_terms()[4], self.plain_terms()[7], self.count
            return const * n + plain_sum([b + n * f for b, f in zip(self._busy_plain(), fixed)])
        total = self.const_step_s * self.count
        return total + self._dep_sums().sum(axis=0) if self.any_dep else total

    def step_s(self, context):
        """Time of the single decode step at `context` tokens."""
        if not self.any_dep:
            return self.const_step_s
        if self._plain is not None and type(context) is int:
            c1, cs, m1, ms, fixed, win, _, const = self.plain_terms()
            c = float(context)
            ms_ = [_minimum(c, w) - 1 for w in win]
            return const + plain_sum([_maximum(c1[i] + cs[i] * m, m1[i] + ms[i] * m) + fixed[i] for i, m in enumerate(ms_)])
        m = np.minimum(context, self.win) - 1
        dep = np.maximum(self.c1 + self.cs * m, self.m1 + self.ms * m) + self.fixed
        return self.const_step_s + dep.sum(axis=0)

    def _mean_m_plain(self) -> list:
        """`mean_m` of a range summed in plain floats, kept."""
        if self._mean_m is None:
            lo, hi = self._plain
            self._mean_m = [sum_of_m(lo, hi, w) / self.count for w in self.plain_terms()[5]]
        return self._mean_m

    def mean_m(self):
        """Mean of m = min(c, window) over the steps, per context-dependent op."""
        if self._plain is not None:
            return np.array(self._mean_m_plain())
        if self._mean_m is None:
            self._mean_m = sum_of_m(self.lo, self.hi, self.win) / self.count
        return self._mean_m

    def mean_per_step(self, a1, a2):
        """Mean over steps of a quantity that is a1 at context 1 and a2 at context 2, summed over ops."""
        return self._mean(self._split(a1, a2))

    def _split(self, a1, a2) -> tuple:
        """(the context-independent ops' sum, the others' values at context 1, their slopes) of a quantity that is
        a1 at context 1 and a2 at context 2."""
        const = a1[~self.dep].sum(axis=0)
        if not self.any_dep:
            return const, None, None
        x1 = a1[self.dep]
        return const, x1, a2[self.dep] - x1

    def _mean(self, split: tuple):
        const, x1, slope = split
        if not self.any_dep:
            return const
        if self._plain is not None and type(x1) is list:
            return const + plain_sum([x + s * (m - 1) for x, s, m in zip(x1, slope, self._mean_m_plain())])
        return const + (x1 + slope * (self.mean_m() - 1)).sum(axis=0)

    def _kept_split(self, name: str, a1, a2) -> tuple:
        """`_split` of the probes' own quantity `name` (a1, a2 its arrays at contexts 1 and 2), kept with the probes:
        every range of them (`over`) finds it; for a range summed in plain floats, as plain floats."""
        split = self._kept.get(name)
        if split is None:
            split = self._kept[name] = self._split(a1, a2)
            if self.any_dep and self.plain_terms() is not None:
                const, x1, slope = split
                self._kept[name + ".plain"] = (float(const), x1.tolist(), slope.tolist())
        return self._kept[name + ".plain"] if self._plain is not None and self.any_dep else split

    def mean_flops_per_step(self):
        """FLOPs of the mean step, summed over ops (`mean_per_step` of the probes' FLOPs)."""
        return self._mean(self._kept_split("flops", self.d1.f["flops"], self.d2.f["flops"]))

    def mean_hbm_bytes_per_step(self):
        """HBM bytes of the mean step, summed over ops."""
        return self._mean(self._kept_split("hbm_bytes", self.d1.hbm_bytes, self.d2.hbm_bytes))

    def mean_terms_s(self) -> list:
        """[compute, memory, communication] seconds of the mean step, each summed over ops (communication does not
        depend on the context)."""
        comm = self._kept.get("comm_s")
        if comm is None:
            comm = self._kept["comm_s"] = self.t1.comm_s.sum(axis=0)
        return [self._mean(self._kept_split("compute_s", self.t1.compute_s, self.t2.compute_s)),
                self._mean(self._kept_split("memory_s", self.t1.memory_s, self.t2.memory_s)), comm]


def stage(t: OpTable, pp) -> OpTable:
    """One of `pp` balanced pipeline stages of `t`: every FLOP, byte, launch and message / pp (token counts
    unchanged), as a new table.

    Stages are taken as equal slices of the whole pass; Megatron and vLLM put the embedding on the
    first stage and the LM head on the last, an imbalance of their share / pp that is left out.
    """
    if pp == 1:
        return t
    keep = ("gemm_m", "gemm_n", "gemm_k", "sparse_2_4")  # shapes of one kernel, not amounts
    return replace(t, f={k: (v if k in keep else v / pp) for k, v in t.f.items()}, hbm_bytes=t.hbm_bytes / pp)


# ------------------------------------------------------------ the record
@dataclass(frozen=True)
class PrefillTables:
    """The prefill pass's operator table (one pipeline stage) and its realistic and floor timings."""

    table: OpTable
    real: Timing
    floor: Timing


@dataclass(frozen=True)
class DecodeTables:
    """The decode steps timed realistic and floor, and the step count the mean TPOT divides by."""

    real: "DecodeSteps"
    floor: "DecodeSteps"
    steps: Any


@dataclass(frozen=True)
class Evaluation:
    """Every time, FLOP count, byte count and memory part of one scenario (or of a grid of them, as arrays).

    Seconds, FLOPs, bytes; per GPU: `weight_bytes`, `kv_cache_bytes` (the batch's KV on one GPU),
    `activation_workspace_bytes`, `memory_required_bytes_per_gpu`. Decode FLOPs and bytes are per mean step.
    `*_bound_index` index `roofline.BOUNDS` (0 compute, 1 memory, 2 communication).
    """

    ttft_s: Any
    ttft_floor_s: Any
    tpot_s: Any
    tpot_floor_s: Any
    tpot_first_step_s: Any
    tpot_last_step_s: Any
    e2e_latency_s: Any
    e2e_latency_floor_s: Any
    prefill_flops: Any
    prefill_bytes: Any
    decode_flops_per_step: Any
    decode_bytes_per_step: Any
    weight_bytes: Any
    kv_cache_bytes: Any
    activation_workspace_bytes: Any
    runtime_reserve_bytes: Any
    memory_required_bytes_per_gpu: Any
    prefill_bound_index: Any
    decode_bound_index: Any
    kv_bytes_per_sequence: Any
    workspace_bytes_per_sequence: Any  # a static batch prefilled at once (no engine): its workspace grows with the batch
    workspace_fixed_bytes: Any  # an engine's: the workspace of its largest step, whatever the batch (0 without)
    max_sequences: Any  # the engine's cap on running sequences (inf without)
    engine_step_s: Any  # h(B), the engine's CPU time added to every step (0 without)
    kv_shared_bytes: Any
    prefill: PrefillTables
    decode: DecodeTables

    def figures(self) -> dict[str, Any]:
        """The numeric fields by name (the tables left out)."""
        return {name: getattr(self, name) for name in _EVALUATION_FIGURES}


@dataclass(frozen=True)
class Derived:
    """What `derived` adds to an `Evaluation`: throughput, utilization, fit and cost (per replica of `gpus` GPUs)."""

    output_tokens_per_s: Any
    output_tokens_per_s_per_gpu: Any
    mbu_prefill: Any
    mfu_prefill: Any
    mbu_decode: Any
    mfu_decode: Any
    memory_available_bytes_per_gpu: Any
    fits: Any
    max_batch_size_fits: Any
    usd_per_hour: Any
    usd_per_million_output_tokens: Any

    def figures(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _DERIVED_FIGURES}


_EVALUATION_FIGURES = tuple(f.name for f in fields(Evaluation) if f.name not in ("prefill", "decode"))
_DERIVED_FIGURES = tuple(f.name for f in fields(Derived))


def usd_per_million_tokens(usd_per_hour, tokens_per_s):
    """$ per million tokens of a fleet costing `usd_per_hour` that produces `tokens_per_s`:
    usd_per_hour / 3600 / tokens_per_s · 1e6 (8 H100s at $3.00/hour making 2,000 tokens/s: $3.33)."""
    return usd_per_hour / SECONDS_PER_HOUR / tokens_per_s * 1e6


def microbatches(dep, batch):
    """Micro-batches a static batch is split into across a pipeline: 1 without one, else
    `pp_microbatches` or min(batch, pp)."""
    return 1 if dep.pp == 1 else (dep.pp_microbatches or np.minimum(batch, dep.pp))


@memoized(lambda real: (Identity(real),) if np.ndim(real.bytes_per_s) == 0 else None)  # one device's: kept, so `decode_probes` finds it again
def decode_ceilings(real: Ceilings) -> Ceilings:
    """The ceilings decode steps are timed against: a calibrated profile charges each decode launch the per-kernel
    cost of a CUDA-graph replay (`CalibratedCurves.graph_overhead_s`: the calibration's measurement, else the
    profile's sourced `efficiency.kernel_overhead_graph_s`), not the eager cost.

    Engines (vLLM, SGLang, TensorRT-LLM, and calibrate's reference) replay decode steps from CUDA graphs and
    launch prefill eagerly, so a decode step of K launches costs K · t_graph of overhead. Analytical ceilings,
    or a calibration without any graph figure, are returned unchanged; along a grid (`StackedCurves`) only
    the calibrated devices with a graph figure change. An engine captures graphs only up to
    `EngineProfile.cuda_graph_max_batch` sequences; `evaluate` and `serving.Curves` time larger decode batches
    against the eager ceilings (a sweep grid that mixes both sides stays on the graph side).
    """
    curves = real.curves
    if curves is None or curves.graph_overhead_s is None:
        return real
    graph_s = curves.graph_overhead_s
    if np.ndim(graph_s):
        graph_s = np.where(np.isnan(graph_s), real.kernel_overhead_s, graph_s)
    return replace(real, kernel_overhead_s=graph_s, curves=curves.replayed())


def evaluate(model: ModelSpec, rd: ResolvedDeployment, real: Ceilings, floor: Ceilings, batch, prompt, output, tp,
             hop: tuple | None = None, limits: tuple | None = None) -> Evaluation:
    """Every headline figure for one model and deployment; batch, prompt, output, tp and the
    ceilings may be numpy arrays of one grid. Returns an `Evaluation` of arrays (0-d for one scenario)
    with the prefill and decode operator tables and timings it used.

    Pipeline parallelism (pp stages, mb micro-batches of batch/mb sequences): each stage runs 1/pp of
    every operator per micro-batch, and a micro-batch hands its activations to the next stage
    (`hop` = (bytes/s, latency s) of that link, real; default the NVLink of `real`):

        TTFT = (mb + pp - 1) · t_stage_prefill + (pp - 1) · t_hop(tokens of a micro-batch)
        TPOT = max(mb, pp) · t_stage_step + pp · t_hop(one token per sequence)

    With mb = 1 a pipeline only splits memory; with mb >= pp it keeps every stage busy, at the cost
    of reading each stage's weights once per micro-batch. pp = 1 gives the plain pass.
    Prefix caching with hit rate h: TTFT = (1 - h) · TTFT(whole prompt) + h · TTFT(prompt after the cached prefix).

    A serving engine (`rd.engine`, with `limits` = (max running sequences, tokens per step) on this device,
    `parallelism.engine_limits`) adds its CPU time per step h(B) (`EngineProfile.step_s`) to every step: the
    batch's B·S prompt tokens run in ceil(B·S / budget) steps, so

        TTFT += ceil(B·S / budget) · h(B),   every decode step += h(B);

    and it keeps the workspace of its largest step (a pass over `budget` tokens) whatever the batch, so the
    workspace is fixed, not per sequence, and at most `max running sequences` fit.
    """
    dep = rd.dep
    pp, ep = dep.pp, dep.ep
    mb = microbatches(dep, batch)
    b_mb = batch if pp == 1 else batch / mb
    # (a number, or a numpy scalar, has the shape (): only arrays add axes)
    shapes = [x.shape for x in (batch, prompt, output, tp, real.bytes_per_s) if isinstance(x, np.ndarray)]
    grid = np.broadcast_shapes(*shapes) if shapes else ()
    h = dep.prefix_hit_rate
    # the forward passes of a request, as (new tokens, past tokens) per sequence (`ops.forward_ops`)
    passes = {"prefill": (prompt, 0)}
    if h > 0:  # the prefill of a request whose shared prefix is cached
        passes["hit"] = (prompt - dep.prefix_tokens, dep.prefix_tokens)
    # decode: each op is affine in m = min(context, window); probe at contexts 1 and 2
    passes["d1"], passes["d2"] = (1, 0), (1, 1)
    # decode is replayed from CUDA graphs, but an engine captures them only up to a batch size: beyond it, eager
    graphed = rd.engine is None or (bool(np.all(b_mb <= rd.engine.cuda_graph_max_batch)) if isinstance(b_mb, np.ndarray)
                                    else b_mb <= rd.engine.cuda_graph_max_batch)
    dec = decode_ceilings(real) if graphed else real
    workspace, tables, timed_real, timed_floor, sums, probes = _timed_passes(model, rd, b_mb, passes, grid, pp, tp, ep, real, floor, dec)
    pre, pre_real, pre_floor, pre_sums = tables["prefill"], timed_real["prefill"], timed_floor["prefill"], sums["prefill"]
    ttft = pre_sums.time_s
    ttft_floor = pre_sums.floor_s
    if h > 0:
        ttft = (1 - h) * ttft + h * sums["hit"].time_s
        ttft_floor = (1 - h) * ttft_floor + h * sums["hit"].floor_s

    if type(prompt) is int and type(output) is int:  # one scenario's lengths: the same integers without numpy
        steps = max(output - 1, 0)
        lo = prompt + 1
        hi = prompt + steps if steps > 0 else lo  # with no decode step, price the next one
        n = max(steps, 1)
    else:
        steps = np.maximum(output - 1, 0)
        lo = prompt + 1
        hi = np.where(steps > 0, prompt + steps, lo)  # with no decode step, price the next one
        n = np.maximum(steps, 1)
    if probes is not None:  # one scenario: the decode probes timed once for this batch, over this scenario's steps
        dec_real, dec_floor, pair = probes.over(lo, hi)
        if pair is not None and probes.both_at_once:  # the realistic and floor decode sums in one pass over both sets
            tpot, tpot_floor = pair.total_s() / n
        else:
            tpot, tpot_floor = dec_real.total_s() / n, dec_floor.total_s() / n
    else:
        d1, d2 = tables["d1"], tables["d2"]
        dec_real = DecodeSteps(d1, d2, timed_real["d1"], timed_real["d2"], lo, hi)
        dec_floor = DecodeSteps(d1, d2, timed_floor["d1"], timed_floor["d2"], lo, hi)
        tpot = dec_real.total_s() / n
        tpot_floor = dec_floor.total_s() / n
    first_step, last_step = dec_real.step_s(lo), dec_real.step_s(hi)
    if pp > 1:
        link_bw, link_lat = hop if hop is not None else (real.link_bytes_per_s, real.link_latency_s)
        slots = _maximum(mb, pp)
        pre_hops = (pp - 1) * pipeline_hop_s(model, rd, tp, b_mb * prompt, link_bw, link_lat)
        step_hops = pp * pipeline_hop_s(model, rd, tp, b_mb, link_bw, link_lat)
        ttft = (mb + pp - 1) * ttft + pre_hops
        ttft_floor = (mb + pp - 1) * ttft_floor
        tpot, tpot_floor = slots * tpot + step_hops, slots * tpot_floor
        first_step, last_step = slots * first_step + step_hops, slots * last_step + step_hops
    eng = rd.engine
    cap, workspace_fixed, step_h = np.inf, 0.0, 0.0
    if eng is not None and limits is not None:
        cap, budget = limits
        step_h = eng.step_s(batch)
        ttft = ttft + _ceil(batch * prompt / budget) * step_h
        tpot, first_step, last_step = tpot + step_h, first_step + step_h, last_step + step_h
        workspace = workspace_fixed = step_workspace_bytes(model, rd, tp, engine_step_tokens(budget, prompt, eng.chunked_prefill), ep)
    e2e = ttft + tpot * steps
    e2e_floor = ttft_floor + tpot_floor * steps
    # per-GPU work: a stage runs its slice once per micro-batch
    dec_flops = mb * dec_real.mean_flops_per_step()
    dec_bytes = mb * dec_real.mean_hbm_bytes_per_step()
    mean_terms = dec_real.mean_terms_s()
    pre_flops = mb * pre_sums.flops
    pre_bytes = mb * pre_sums.hbm_bytes

    # memory per GPU: a stage's share of the weights and KV; offloaded fractions live in host memory
    weights = weight_bytes_per_gpu(model, rd, tp)
    kv_seq = kv_bytes_per_gpu(model, rd, tp, kv_allocated_tokens(dep, prompt + output, model.max_context))
    shared = shared_prefix_tokens(dep)
    kv_shared = kv_bytes_per_gpu(model, rd, tp, shared) if shared else 0.0
    kv_seq = kv_seq - h * kv_shared  # a hit's prefix slots are the shared copy's
    reserve = dep.runtime_reserve_bytes
    kv = batch * kv_seq + kv_shared
    required = weights + kv + workspace + reserve
    return Evaluation(
        ttft_s=ttft, ttft_floor_s=ttft_floor, tpot_s=tpot, tpot_floor_s=tpot_floor,
        tpot_first_step_s=first_step, tpot_last_step_s=last_step, e2e_latency_s=e2e, e2e_latency_floor_s=e2e_floor,
        prefill_flops=pre_flops, prefill_bytes=pre_bytes, decode_flops_per_step=dec_flops, decode_bytes_per_step=dec_bytes,
        weight_bytes=weights, kv_cache_bytes=kv, activation_workspace_bytes=workspace,
        runtime_reserve_bytes=reserve, memory_required_bytes_per_gpu=required,
        prefill_bound_index=pre_sums.bound_index, decode_bound_index=bound_index(*mean_terms),
        kv_bytes_per_sequence=kv_seq, workspace_bytes_per_sequence=(workspace - workspace_fixed) / batch,
        workspace_fixed_bytes=workspace_fixed, max_sequences=cap, engine_step_s=step_h, kv_shared_bytes=kv_shared,
        prefill=PrefillTables(pre, pre_real, pre_floor), decode=DecodeTables(dec_real, dec_floor, n),
    )


@dataclass(frozen=True)
class PassSums:
    """A timed pass summed over its operators: realistic and floor time, the realistic compute, memory and
    communication terms and the index of the largest (`roofline.bound_index`), FLOPs and HBM bytes."""

    time_s: Any
    floor_s: Any
    compute_s: Any
    memory_s: Any
    comm_s: Any
    bound_index: Any
    flops: Any
    hbm_bytes: Any


def pass_sums(table: OpTable, real: Timing, floor: Timing) -> PassSums:
    """The sums of `PassSums` of one pass (`table`, timed realistic and floor): one scenario's prefill passes keep
    theirs (`PrefillPasses.sums`)."""
    compute, memory, comm = real.compute_s.sum(axis=0), real.memory_s.sum(axis=0), real.comm_s.sum(axis=0)
    return PassSums(real.time_s.sum(axis=0), floor.time_s.sum(axis=0), compute, memory, comm, bound_index(compute, memory, comm),
                    table.f["flops"].sum(axis=0), table.hbm_bytes.sum(axis=0))


def _workspace(t: OpTable):
    """The largest per-layer activation footprint (bytes read and written) of a pass: the prefill's is the workspace."""
    return t.layer_activation_bytes()


def _timed_passes(model: ModelSpec, rd: ResolvedDeployment, batch, passes: dict[str, tuple], grid: tuple, pp, tp, ep,
                  real: Ceilings, floor: Ceilings, dec: Ceilings):
    """The operator table of each pass ({name: (new tokens, past tokens)}, `batch` sequences; one pipeline stage),
    timed realistic (decode passes `d1`, `d2` against `dec`) and floor; and the prefill's activation workspace.
    Returns (workspace, tables, real timings, floor timings, each prefill pass's `PassSums`, the decode probes'
    `DecodeProbes`: None for a grid, whose tables and timings hold its probes `d1`, `d2`; one scenario's hold its
    prefill passes alone).

    A grid builds and times pass by pass. One scenario stacks its prefill passes (`prefill`, `hit`) in one table
    (`OpTable.of_phases`) and times it once against the realistic and floor ceilings at once (`prefill_passes`), and
    its decode probes likewise (`decode_probes`); the probes depend on the batch but on neither the prompt nor the
    output length, and both are kept: the same formulas, called twice (or not at all) instead of eight times.
    """
    if grid != ():
        ops = {name: O.forward_ops(model, rd, batch, new, past, tp, ep=ep) for name, (new, past) in passes.items()}
        # the two decode probes list the same ops over the same grid: one table of both, timed once and cut in two
        n = len(ops["d1"])
        groups = {name: [name] for name in ops if name not in ("d1", "d2")} | {"decode": ["d1", "d2"]}
        tables, timed_real, timed_floor = {}, {}, {}
        for group, members in groups.items():
            t = OpTable.of([op for name in members for op in ops[name]], grid)
            if group == "prefill":
                workspace = _workspace(t)
            t = stage(t, pp)
            real_t, floor_t = time_ops(t, dec if group == "decode" else real, tp), time_ops(t, floor, tp)
            for j, name in enumerate(members):
                rows = slice(j * n, (j + 1) * n) if len(members) > 1 else slice(None)
                tables[name], timed_real[name], timed_floor[name] = t.op_rows(rows), real_t.op_rows(rows), floor_t.op_rows(rows)
        sums = {name: pass_sums(tables[name], timed_real[name], timed_floor[name]) for name in passes if name not in ("d1", "d2")}
        return workspace, tables, timed_real, timed_floor, sums, None
    names = [name for name in passes if name not in ("d1", "d2")]
    tokens = tuple(passes[name] for name in names)
    pre_key, probes_key = _scenario_keys(model, rd, batch, tokens, pp, tp, ep, real, floor, dec)
    pre = None if pre_key is None else _PREFILL_PASSES.find(pre_key)
    probes = None if probes_key is None else _DECODE_PROBES.find(probes_key)
    if pre is None and probes is None and pre_key is not None and probes_key is not None:
        # a new batch and prompt: both kept tables miss, and one stacked timing serves both
        together = _timed_together(model, rd, batch, tokens, pp, tp, ep, real, floor, dec)
        if together is not None:
            pre, probes = together
            _PREFILL_PASSES.put(pre_key, pre)
            _DECODE_PROBES.put(probes_key, probes)
    if pre is None:
        pre = prefill_passes(model, rd, batch, tokens, pp, tp, ep, real, floor, key=pre_key)
    if probes is None:
        probes = decode_probes(model, rd, batch, pp, tp, ep, dec, floor, key=probes_key)
    # (the decode probes' tables are in `probes`)
    tables, timed_real, timed_floor = dict(zip(names, pre.tables)), dict(zip(names, pre.real)), dict(zip(names, pre.floor))
    return pre.workspace, tables, timed_real, timed_floor, dict(zip(names, pre.sums)), probes


def _time_phases(table: OpTable, tp, sets: list[Ceilings]) -> tuple[OpTable, Timing]:
    """A table of stacked passes (`OpTable.of_phases`) timed against several sets of ceilings at once, set j on the
    last axis (`stacked`; a calibrated profile's sets first resolved to one rate per op through its measured curves,
    `per_op_ceilings`, and stacked with `stacked_per_op`)."""
    if all(c.curves is None for c in sets):
        return table, time_ops(table, stacked(sets), tp)
    return table, time_ops(table, stacked_per_op(per_op_ceilings_of_sets(table, sets, tp), table.f["flops"].shape), tp)


def _kept_key(key: tuple):
    """The key a kept table stores `key` = (model, resolution, *rest) under: (model's identity, resolution's key, *rest)
    where every part of rest is a plain value, a tuple of them or an `Identity`; else None (a grid: not stored)."""
    for x in key[2:]:
        if not (isinstance(x, _KEY_PARTS) or x is None):  # `memo.plain`, an `Identity` (an int), or a tuple
            return None
    return (Identity(key[0]), key[1].key(), *key[2:])


_KEY_PARTS = (*PLAIN_TYPES, tuple)


def _kept(table: Memo, key, compute):
    """`table.get(key, compute)` under a key of `_kept_key`; `compute()`, not stored, where that is None."""
    return compute() if key is None else table.get(key, compute)


@dataclass(frozen=True)
class PrefillPasses:
    """One scenario's prefill passes (the whole prompt, and with prefix caching the prompt after the cached prefix):
    the activation workspace of the first, and per pass its table (one pipeline stage), realistic and floor timings
    and their sums over the operators (`pass_sums`)."""

    workspace: Any
    tables: tuple[OpTable, ...]
    real: tuple[Timing, ...]
    floor: tuple[Timing, ...]
    sums: tuple[PassSums, ...]


_PREFILL_PASSES = Memo("engine.prefill_passes", maxsize=64)


def prefill_passes(model: ModelSpec, rd: ResolvedDeployment, batch, tokens: tuple[tuple, ...], pp, tp, ep,
                   real: Ceilings, floor: Ceilings, key: tuple | None | bool = False) -> PrefillPasses:
    """The prefill passes of one scenario (`tokens`: (new, past) tokens per sequence of each, `ops.forward_ops`) stacked
    in one table (`OpTable.of_phases`), staged and timed against `real` and `floor` at once (`_time_phases`), and kept
    per (model, resolution, batch, tokens, pp, tp, ep, ceilings): another output length of the same batch and prompt,
    or the same scenario again, finds them timed (the ceilings of `Ceilings.of` are shared objects). `key`: the kept key
    where the caller has built it (`_prefill_key`), so a found scenario builds it once."""
    def compute() -> PrefillPasses:
        table = OpTable.of_phases([O.forward_ops(model, rd, batch, new, past, tp, ep=ep) for new, past in tokens])
        workspace = _workspace(table)[0, 0]
        table, both = _time_phases(stage(table, pp), tp, [real, floor])
        return _prefill_cut(table, both, len(tokens), 0, 1, workspace)

    if key is False:
        key = _prefill_key(model, rd, batch, tokens, pp, tp, ep, real, floor)
    return _kept(_PREFILL_PASSES, key, compute)


def _prefill_key(model, rd, batch, tokens, pp, tp, ep, real, floor):
    """`prefill_passes`' kept key (`_kept_key`), None where a token count is not a plain number."""
    if not all(plain(x) for pair in tokens for x in pair):
        return None
    return _kept_key((model, rd, batch, tokens, pp, tp, ep, Identity(real), Identity(floor)))


def _scenario_keys(model, rd, batch, tokens, pp, tp, ep, real, floor, dec) -> tuple:
    """(`_prefill_key`, `_probes_key`) of one scenario, the same tuples with their common parts built once."""
    if not all(isinstance(x, _KEY_PARTS) or x is None for x in (batch, pp, tp, ep)):
        return None, None
    model_id, key, floor_id = Identity(model), rd.key(), Identity(floor)
    probes = (model_id, key, batch, pp, tp, ep, Identity(dec), floor_id)
    if not all(plain(x) for pair in tokens for x in pair):
        return None, probes
    return (model_id, key, batch, tokens, pp, tp, ep, Identity(real), floor_id), probes


@dataclass(frozen=True)
class DecodeProbes:
    """One scenario's decode probes (contexts 1 and 2, one pipeline stage) timed realistic and floor, as `DecodeSteps`
    without a range (`DecodeSteps.over` gives the steps of a prompt and output); `pair` holds the two sets on its last
    axis. `both_at_once`: the two sets' step totals are summed in one pass over `pair` (an uncalibrated profile); else
    set by set, `pair` serving only the per-op step sums, which are elementwise (`over`), and built on first use from
    `pair_parts` (the probes' tables and their timings against both sets): a range summed in plain floats needs none."""

    real: DecodeSteps
    floor: DecodeSteps
    both_at_once: bool
    pair_parts: tuple = ()

    @functools.cached_property
    def pair(self) -> DecodeSteps:
        """The two sets on the last axis of one `DecodeSteps` (built once: the record is kept with its key)."""
        return DecodeSteps(*self.pair_parts)

    def over(self, lo, hi) -> tuple[DecodeSteps, DecodeSteps, DecodeSteps | None]:
        """The realistic, floor and paired steps at contexts lo..hi, the per-op sums over every step (`sum_over_steps`)
        taken once for both sets: every term of them is elementwise per (op, set), so each set's column is the sum
        its own steps would take, bit for bit. A range of plain numbers is summed set by set in plain floats
        (`DecodeSteps.over`), the same operations: no pair (None)."""
        real, floor = self.real.over(lo, hi), self.floor.over(lo, hi)
        if real._plain is not None and floor._plain is not None:  # one scenario's range: each set in plain floats
            return real, floor, None
        pair = self.pair.over(lo, hi)
        if not pair.any_dep:
            return self.real.over(lo, hi, None, pair.count), self.floor.over(lo, hi, None, pair.count), pair
        busy = pair.dep_busy_s()
        return self.real.over(lo, hi, busy[:, 0], pair.count), self.floor.over(lo, hi, busy[:, 1], pair.count), pair


_DECODE_PROBES = Memo("engine.decode_probes", maxsize=64)


def decode_probes(model: ModelSpec, rd: ResolvedDeployment, batch, pp, tp, ep, dec: Ceilings, floor: Ceilings,
                  key: tuple | None | bool = False) -> DecodeProbes:
    """The decode probes of `batch` sequences (one new token each after 0 and 1 past tokens, `ops.forward_ops`) stacked,
    staged and timed against `dec` and `floor` at once (`_time_phases`), kept per (model, resolution, batch, pp, tp,
    ep, ceilings): every prompt and output length of a batch finds them.

    An uncalibrated profile sums its realistic and floor decode steps in one pass over both sets (`both`); a
    calibrated one set by set (summing both at once adds them in another order: the last bit may differ).
    `key`: the kept key where the caller has built it (`_probes_key`).
    """
    def compute() -> DecodeProbes:
        ops = [O.forward_ops(model, rd, batch, 1, past, tp, ep=ep) for past in (0, 1)]
        table, timed = _time_phases(stage(OpTable.of_phases(ops), pp), tp, [dec, floor])
        return _probes_cut(table, timed, 0, 0, 1, dec.curves is None)

    if key is False:
        key = _probes_key(model, rd, batch, pp, tp, ep, dec, floor)
    return _kept(_DECODE_PROBES, key, compute)


def _probes_key(model, rd, batch, pp, tp, ep, dec, floor):
    """`decode_probes`' kept key (`_kept_key`)."""
    return _kept_key((model, rd, batch, pp, tp, ep, Identity(dec), Identity(floor)))


def _timed_together(model: ModelSpec, rd: ResolvedDeployment, batch, tokens: tuple[tuple, ...], pp, tp, ep,
                    real: Ceilings, floor: Ceilings, dec: Ceilings) -> tuple[PrefillPasses, DecodeProbes] | None:
    """`prefill_passes` and `decode_probes` of one scenario from one stacked table: the prefill passes, then the two
    decode probes (`OpTable.of_phases`), timed once against [real, dec, floor] (or [real, floor] where decode runs
    eager, dec = real) with `_time_phases`, and cut as those two cut theirs. Every term is elementwise per (op,
    pass, set), so each pass's timing against each set is the one its own call computes, bit for bit; only the
    per-set work (`per_op_ceilings`, `stacked_per_op`, `time_ops` and their array set-up) is done once, not twice.
    None where the passes do not list the same operators (each is then timed by its own call)."""
    pre_ops = [O.forward_ops(model, rd, batch, new, past, tp, ep=ep) for new, past in tokens]
    probe_ops = [O.forward_ops(model, rd, batch, 1, past, tp, ep=ep) for past in (0, 1)]
    names = [op.name for op in pre_ops[0]]
    if any([op.name for op in ops] != names for ops in (*pre_ops[1:], *probe_ops)):
        return None
    table = OpTable.of_phases(pre_ops + probe_ops)
    workspace = _workspace(table)[0, 0]  # the first prefill pass's, as `prefill_passes` takes it
    sets, j_dec, j_floor = ([real, floor], 0, 1) if dec is real else ([real, dec, floor], 1, 2)
    table, timed = _time_phases(stage(table, pp), tp, sets)
    n = len(tokens)
    return _prefill_cut(table, timed, n, 0, j_floor, workspace), _probes_cut(table, timed, n, j_dec, j_floor, dec.curves is None)


def _prefill_cut(table: OpTable, timed: Timing, n: int, j_real: int, j_floor: int, workspace) -> PrefillPasses:
    """The first `n` passes of a stacked, timed table as `PrefillPasses`: realistic timings from set `j_real`, floor
    from set `j_floor` (`prefill_passes` times its own table, `_timed_together` a table it shares with the probes)."""
    tables, real, floor = (tuple(table.phase(i) for i in range(n)), tuple(timed.at(i, j_real) for i in range(n)),
                           tuple(timed.at(i, j_floor) for i in range(n)))
    return PrefillPasses(workspace, tables, real, floor, tuple(pass_sums(*t) for t in zip(tables, real, floor)))


def _probes_cut(table: OpTable, timed: Timing, i: int, j_dec: int, j_floor: int, both_at_once: bool) -> DecodeProbes:
    """Passes i and i + 1 of a stacked, timed table (contexts 1 and 2) as `DecodeProbes` against sets `j_dec` and
    `j_floor` (adjacent), the two sets also kept on the last axis (`pair`). `both_at_once` (an uncalibrated profile):
    the step totals summed in one pass over the pair; else set by set (summing over ops with both sets at once adds
    them in another order: the last bit may differ), the pair serving only the elementwise per-op step sums."""
    t1, t2 = table.phase(i), table.phase(i + 1)
    sets = slice(j_dec, j_floor + 1)
    parts = (t1, t2, timed.at(i, sets), timed.at(i + 1, sets))
    if both_at_once:
        pair = DecodeSteps(*parts)
        return DecodeProbes(pair.at(0), pair.at(1), True, parts)
    return DecodeProbes(DecodeSteps(t1, t2, timed.at(i, j_dec), timed.at(i + 1, j_dec)),
                        DecodeSteps(t1, t2, timed.at(i, j_floor), timed.at(i + 1, j_floor)), False, parts)


def derived(r: Evaluation, batch, output, gpus, memory_bytes, bandwidth, peak, price) -> Derived:
    """Throughput, utilization, fit and cost from the times and bytes of `evaluate`; `gpus` per replica.

    Throughput = batch · output / e2e (a static batch); per GPU divides by the replica's GPUs.
    MBU = bytes moved / time / peak bandwidth; MFU = FLOPs / time / dense peak of the compute dtype;
    both per GPU, both in [0, 1] because no operator beats its floor. `max_batch_size_fits` solves the
    memory for the batch (`memory_bytes`: the engine's share of a GPU, `parallelism.engine_memory_bytes`), at
    most the engine's running-sequence cap. Cost per million output tokens: `usd_per_million_tokens`; NaN when the
    scenario does not fit in memory (it cannot be bought), so a sorted sweep never ranks it first.
    """
    tokens_per_s = batch * output / r.e2e_latency_s
    free = memory_bytes - r.weight_bytes - r.runtime_reserve_bytes - r.kv_shared_bytes - r.workspace_fixed_bytes
    per_seq = r.kv_bytes_per_sequence + r.workspace_bytes_per_sequence
    gpu_hour = price * gpus
    fits = (r.memory_required_bytes_per_gpu <= memory_bytes) & (batch <= r.max_sequences)  # memory, and the engine's cap
    return Derived(
        output_tokens_per_s=tokens_per_s,
        output_tokens_per_s_per_gpu=tokens_per_s / gpus,
        mbu_prefill=r.prefill_bytes / r.ttft_s / bandwidth,
        mfu_prefill=r.prefill_flops / r.ttft_s / peak,
        mbu_decode=r.decode_bytes_per_step / r.tpot_s / bandwidth,
        mfu_decode=r.decode_flops_per_step / r.tpot_s / peak,
        memory_available_bytes_per_gpu=memory_bytes,
        fits=fits,
        max_batch_size_fits=_minimum(_maximum(_floor(free / per_seq), 0), r.max_sequences),
        usd_per_hour=gpu_hour,
        # a deployment that cannot be run has no price per token: NaN, which sorts last
        usd_per_million_output_tokens=_where(fits, usd_per_million_tokens(gpu_hour, tokens_per_s), np.nan),
    )


def operator_frame(r: Evaluation):
    """One row per operator and phase (a DataFrame): FLOPs, bytes by kind and their HBM total, time terms,
    realistic and floor time, bound. Decode rows are the mean step: FLOPs and bytes at the mean context,
    times summed exactly over every step and divided by the step count."""
    import pandas as pd  # only here: a frame is built on demand, and `import roofline` stays light

    pre, pre_real, pre_floor = r.prefill.table, r.prefill.real, r.prefill.floor
    dec, dec_floor, n = r.decode.real, r.decode.floor, r.decode.steps
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
