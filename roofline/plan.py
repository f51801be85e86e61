"""The capacity planner: the cheapest deployment of a model, per hardware, that serves a traffic within its SLOs.

`plan(model, requests_per_s, prompt_tokens, output_tokens, ttft_slo_s, tpot_slo_s)` enumerates, for every
hardware profile (default: all shipped), every deployment option:

* precision: native; FP8 W8A8 where the device has FP8 tensor cores; INT8 W8A8 where it has INT8;
  INT4 weight-only in groups of 128 (W4A16, computed at the native peak);
* parallelism of one replica (`gpus_per_replica` = tp x pp x ep, at most `max_gpus_per_replica`):
  - tensor parallelism: every tp `valid_tps` allows inside the device's NVLink domain;
  - pipeline parallelism: pp in `pps` (default 1, 2, 4, 8, 16 stages) on top of each tp, the way wide
    models are served across nodes (tp inside a node, pp across nodes, as vLLM and TensorRT-LLM do);
  - expert parallelism for MoE models: ep in `eps` (default every power of two up to the GPU limit that
    divides the experts), tp = 1, attention data-parallel over the ep GPUs;
  - for a MoE model's tp > 1 replicas (pp = ep = 1) both attention layouts (`attention_dp`): tensor-parallel, and
    data-parallel over the tp GPUs with the MLP/MoE tensor-parallel (SGLang --enable-dp-attention); the
    `attention_dp` column says which a row runs.
  A replica wider than the NVLink domain spans nodes and runs what crosses them on the scale-out
  network (`network`, default `network.DEFAULT_NETWORK`); `nodes_per_replica` and `network` say so in the row.

For each option the replica runs continuous batching in steady state (`serving.Curves`: stage step times from
the operator table, Little's law, the M/G/1 prefill queue; pipelines and expert waves as in `serving`).
Every latency rises with the per-replica rate λ_r, so the largest λ* meeting all constraints is one root
of a falling margin, found by bracketing on the batch grid and regula falsi (`max_rate`):

    stable (λ_r below the capacity: memory and prefill), mean TPOT ≤ tpot_slo_s,
    P(TTFT > ttft_slo_s) ≤ 1 - ttft_percentile

and the fleet is replicas = ceil(λ / λ*), GPUs = replicas · gpus_per_replica, $/hour = GPUs · price per
GPU-hour, $/million output tokens = $/hour / (λ · E[O] · 3600) · 10⁶ (the offered load, idle headroom
included). The figures of a row are the steady state at λ / replicas. A replica's batch is what the load
makes it (Little's law); `max_batch_size_fits` is the most memory holds (set the engine's max_num_seqs at or below it).

An option is infeasible when it does not fit at batch 1 (required vs available bytes), when even an idle
replica misses the TPOT SLO (a decode step at batch 1) or the TTFT SLO (its prefill alone), or when the
device lacks the compute format. `best_only=True` keeps one row per device: its cheapest feasible option
(fewest $/hour, then fewest GPUs, then lowest TTFT), or, when none is feasible, the option closest to
feasible with its reason (an SLO miss before a memory shortfall, the smallest shortfall first).
Feasible rows come first, ranked 1..k by $/hour; the rest follow, unranked (`rank`, also the report's order).

`serving="static"` is the same planner for static batching: the same options (tp alone unless `pps`/`eps`
widen it), the same fleet arithmetic, columns and ranking, but each option's replica runs whole batches from
prefill to the last token at the largest batch within the SLOs (`_static_row`, one `predict` per probe).

Cost of a call: one operator table per (precision, tp, pp, ep) for all devices at once, over a grid of
batch sizes, then vectorized root finding; with `best_only` the options run smallest replica first and
a device skips any option whose fleet cannot beat its cheapest one so far (`_group_rows`, exact: the
skipped rows are ones `best_only` would drop). `tests/benchmarks/bench_plan.py` times both modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from . import fmt
from .bands import band_limits, hardware_class, precision_class
from .energy import fleet_energy_per_output_token_j, kwh_per_million, serving_energy_per_output_token_j
from .engine import usd_per_million_tokens
from .engines import DEFAULT_ENGINE, engine_tables, load_engine
from .errors import SpecError
from .hardware import HardwareProfile, hardware_labels
from .network import load_network
from .parallelism import check, engine_memory_bytes, replica_span, tp_widths, valid_tps
from .predict import Prediction, predict
from .registry import as_hardware, as_model, list_hardware
from .serving import (
    TTFT_PERCENTILES,
    Curves,
    Traffic,
    batch_grid_for,
    check_chunk_tokens,
    check_positive_int,
    check_traffic,
    stable_side,
)
from .specs import ModelSpec
from .workload import Deployment, Workload

PRECISIONS: dict[str, Deployment] = {
    "native": Deployment(),
    "fp8": Deployment(weight_dtype="fp8", activation_dtype="fp8"),
    "int8": Deployment(weight_dtype="int8", activation_dtype="int8"),
    "int4-g128": Deployment(weight_dtype="int4", weight_group_size=128),
}

COLUMNS = [
    "rank", "hardware_id", "hardware", "feasible", "binding_constraint", "reason", "precision", "weight_dtype",
    "activation_dtype", "kv_dtype", "tp", "pp", "ep", "attention_dp", "gpus_per_replica", "nodes_per_replica", "network", "replicas", "gpus",
    "batch_size", "max_batch_size_fits",
    "requests_per_s_per_replica", "capacity_requests_per_s_per_replica", "prefill_utilization",
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "ttft_at_slo_percentile_s", "tpot_s", "itl_max_s",
    "ttft_at_slo_percentile_band_low_s", "ttft_at_slo_percentile_band_high_s", "tpot_band_low_s", "tpot_band_high_s",
    "output_tokens_per_s_per_replica", "output_tokens_per_s_per_gpu", "usd_per_hour", "usd_per_million_output_tokens",
    "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu", "price_usd_per_gpu_hour",
    "energy_per_output_token_j", "kwh_per_million_output_tokens", "price_note",
]
SERVING_MODES = ("continuous", "static")
MAX_REPLICAS = 1_000_000
MAX_GPUS_PER_REPLICA = 64
# the attention layouts to try, by name (`plan --attention-dp`, a report scenario's `attention_dp`) -> SearchSpace.attention_dp
ATTENTION_LAYOUTS = {"both": (False, True), "on": (True,), "off": (False,)}
PIPELINE_STAGES = (1, 2, 4, 8, 16)
_BISECTIONS = 40
_ILLINOIS_STEPS = 20


@dataclass(frozen=True)
class SLO:
    """The latency limits a fleet must meet: the `ttft_percentile` of TTFT at most `ttft_s`, mean TPOT at most `tpot_s`."""

    ttft_s: float
    tpot_s: float
    ttft_percentile: float = 0.9

    def __post_init__(self):
        for name, v in (("ttft_slo_s", self.ttft_s), ("tpot_slo_s", self.tpot_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise SpecError(name, f"must be a positive number of seconds, got {v!r}")
        q = self.ttft_percentile
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
            raise SpecError("ttft_percentile", f"must be in (0, 1), e.g. 0.9 for p90; got {q!r}")


def _check_degrees(name: str, values) -> None:
    if values is not None and (isinstance(values, (str, int)) or not list(values) or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values)):
        raise SpecError(name, f"must be a non-empty list of positive integers, got {values!r}")


@dataclass(frozen=True)
class SearchSpace:
    """The options the planner tries and the engine settings they run with.

    `hardware`: ids or profiles (None: every shipped profile); `precisions`: label -> Deployment of number
    formats (None: `PRECISIONS`); `tps`, `pps`, `eps`: the degrees to try (None: `parallelisms`' defaults);
    `max_gpus_per_replica`; `network`: the scale-out network of a replica wider than one NVLink domain
    (None: `network.DEFAULT_NETWORK`); `chunk_tokens`: chunked prefill budget per step (None: the engine's
    budget when it chunks prefill, else whole prompts);
    `max_batch_size`: a cap on running sequences below the engine's; `best_only`: one row per device;
    `attention_dp`: the attention layouts to try on a MoE model's tp > 1, pp = ep = 1 replicas: False (attention
    tensor-parallel), True (attention data-parallel over the tp GPUs, `Deployment.attention_dp`); both by default,
    each row saying which (`attention_dp` column); a dense model and other shapes take False;
    `engine`: the serving engine profile every option runs under (`roofline engines`; None: the bare roofline);
    `serving`: how a replica serves, "continuous" (continuous batching in steady state, `serving.Curves`) or
    "static" (whole batches from prefill to the last token, each option's largest batch within the SLOs;
    `_static_row`): the same options, enumerated and ranked the same way."""

    hardware: object = None
    precisions: dict[str, Deployment] | None = None
    tps: tuple[int, ...] | list[int] | None = None
    pps: tuple[int, ...] | list[int] | None = None
    eps: tuple[int, ...] | list[int] | None = None
    max_gpus_per_replica: int = MAX_GPUS_PER_REPLICA
    network: str | None = None
    attention_dp: tuple[bool, ...] | list[bool] = (False, True)
    chunk_tokens: int | None = None
    max_batch_size: int | None = None
    best_only: bool = True
    engine: str | None = DEFAULT_ENGINE
    serving: str = "continuous"

    def __post_init__(self):
        if self.serving not in SERVING_MODES:
            raise SpecError("serving", f"must be one of {', '.join(SERVING_MODES)}, got {self.serving!r}")
        if self.serving == "static" and self.chunk_tokens is not None:
            raise SpecError("chunk_tokens", "chunked prefill needs serving='continuous' (a static batch prefills whole prompts)")
        check_positive_int(self.chunk_tokens, "chunk_tokens")
        check_positive_int(self.max_batch_size, "max_batch_size")
        for name in ("tps", "pps", "eps"):
            _check_degrees(name, getattr(self, name))
        layouts = self.attention_dp
        if isinstance(layouts, (bool, str)) or not layouts or any(not isinstance(x, (bool, np.bool_)) for x in layouts):
            raise SpecError("attention_dp", f"must be a non-empty list of True/False (the layouts to try), got {layouts!r}")
        g = self.max_gpus_per_replica
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
            raise SpecError("max_gpus_per_replica", f"must be a positive integer, got {g!r}")
        if self.network is not None:
            load_network(self.network)
        if self.engine is not None:
            load_engine(self.engine)

    def devices(self) -> list[tuple[str, HardwareProfile]]:
        """(id as given, profile) of every device to try."""
        h = self.hardware
        ids = list_hardware() if h is None else ([h] if isinstance(h, (str, HardwareProfile)) else list(h))
        if not ids:
            raise SpecError("hardware", "needs at least one hardware id; see `roofline hardware`")
        # keyed by the id each was given by (a shipped id or a path; a profile: the id it was loaded by), the same
        # file twice counted once; profiles sharing a display name (an edited copy beside the shipped file) are
        # told apart by `hardware_labels` and carry that label as their name through the planner
        by_key = {}
        for x in ids:
            hw = as_hardware(x)
            by_key.setdefault(x if isinstance(x, str) else (hw.id or hw.name), hw)
        labels = hardware_labels([hw.model_copy(update={"id": k}) for k, hw in by_key.items()])
        return [(k, hw if hw.name == label else hw.model_copy(update={"name": label}))
                for (k, hw), label in zip(by_key.items(), labels)]

    def check_model(self, model: ModelSpec) -> None:
        """The degrees the model can take: stage counts within its layers, expert degrees dividing its experts;
        a chunk budget within its context."""
        check_chunk_tokens(model, self.chunk_tokens)
        pps, eps = self.pps, self.eps
        if pps is not None and min(pps) > model.num_layers:
            raise SpecError("pps", f"every stage count in {list(pps)} exceeds the {model.num_layers} layers of {model.name}")
        if eps is not None and any(e > 1 for e in eps):
            if model.moe is None:
                raise SpecError("eps", f"{model.name} has no experts to spread; leave eps unset (or [1]) for a dense model")
            bad = [e for e in eps if e > 1 and model.moe.num_experts % e]
            if bad:
                raise SpecError("eps", f"{bad} do not divide the {model.moe.num_experts} experts of {model.name}")

    def shapes(self, model: ModelSpec, hw: HardwareProfile) -> list[tuple[int, int, int]]:
        """The (tp, pp, ep) replica shapes to try on `hw` (`parallelisms`); a static batch runs on tp alone
        (pp = ep = 1) unless `pps` / `eps` say otherwise."""
        pps, eps = self.pps, self.eps
        if self.serving == "static":
            pps, eps = pps or (1,), eps or (1,)
        return parallelisms(model, hw, self.tps, pps, eps, self.max_gpus_per_replica)

    def no_shape_reason(self, model: ModelSpec, hw: HardwareProfile) -> str:
        """Why no shape is tried on `hw` (`shapes`, narrowed by `attention_layouts`): each asked tp that does not divide
        the widths or leaves the node, or an `attention_dp` of True alone that no shape admits."""
        domain, why = hw.interconnect.max_gpus, []
        for t in self.tps or ():
            if t > domain:
                why.append(f"tp {t} exceeds the {domain}-GPU NVLink domain (the planner keeps tp inside a node; pp spans nodes)")
            else:
                bad = [f"{k}={w}" for k, w in tp_widths(model).items() if w % t]
                if bad:
                    why.append(f"tp {t} does not divide {', '.join(bad)}")
        if self.eps is not None and 1 not in self.eps and ((self.tps and 1 not in self.tps) or (self.pps and 1 not in self.pps)):
            given = " / ".join(f"{name}={list(v)}" for name, v in (("tps", self.tps), ("pps", self.pps)) if v is not None)
            why.append(f"ep {', '.join(map(str, self.eps))} runs with tp = pp = 1 (attention data-parallel over the ep GPUs), "
                       f"which {given} leave out")
        if False not in self.attention_dp and not why:
            why.append("attention_dp=[True] runs attention data-parallel only, which the planner tries on a MoE model's "
                       "replicas of tp > 1 with pp = ep = 1" + ("" if model.moe is not None else f" ({model.name} is dense)")
                       + "; allow False too (--attention-dp both or off)")
        if not why:
            why.append(f"none within tps={self.tps}, pps={self.pps}, eps={self.eps}, at most {self.max_gpus_per_replica} GPUs per replica")
        return f"no replica shape: {'; '.join(why)}; valid tp on this device: {', '.join(map(str, valid_tps(model, hw)))}"


def max_rate(cv: Curves, margin: Callable[[dict], np.ndarray], cap: np.ndarray, on_grid: bool = True) -> np.ndarray:
    """Per device row, the largest rate in [0, cap] at which `margin(state) >= 0` (0 when it fails even as the
    rate goes to 0). Every constraint only gets worse as the rate rises, so the margin falls with it.

    The state interpolates the curves linearly between the rates of the batch grid, so the margin is
    smooth between two grid rates and kinked at them: with `on_grid`, one vectorized evaluation at every
    grid rate brackets the root between two neighbours; then regula falsi with the Illinois rule
    (the retained end's value halved when it is kept twice) until the bracket is 1e-10 of the rate wide or
    lo's margin is exactly 0: superlinear on smooth pieces, typically 6 to 13 evaluations instead of the
    40 of plain bisection. Rows not settled after 20 such steps finish by bisection. The margins are
    bounded (`slack`), so an infinite TPOT cannot stall the secant."""
    cap = np.asarray(cap, float)
    n = len(cap)
    tiny = cap * 1e-9
    f_tiny = margin(cv.state(tiny))
    good0 = (f_tiny >= 0) & (cap > 0)
    top_rate = np.where(good0, stable_side(cap), 0.0)
    f_top = margin(cv.state(top_rate))
    top = good0 & (f_top >= 0)
    active = good0 & ~top
    lo, hi = np.where(top, top_rate, np.where(good0, tiny, 0.0)), top_rate.copy()
    flo, fhi = np.where(active, f_tiny, 0.0), np.where(active, f_top, -1.0)
    if on_grid and active.any():
        rates = np.clip(np.where(np.isfinite(cv.lam_env), cv.lam_env, 0.0), tiny[:, None], top_rate[:, None])
        k = rates.shape[1]
        f = margin(cv.state(rates.ravel(), rows=np.repeat(np.arange(n), k))).reshape(n, k)
        fail = f < 0
        first = np.where(fail.any(axis=1), fail.argmax(axis=1), k)
        r = np.arange(n)
        below = first > 0
        g_lo, f_glo = rates[r, np.maximum(first - 1, 0)], f[r, np.maximum(first - 1, 0)]
        g_hi, f_ghi = rates[r, np.minimum(first, k - 1)], f[r, np.minimum(first, k - 1)]
        lift = active & below & (g_lo > lo)
        lo, flo = np.where(lift, g_lo, lo), np.where(lift, f_glo, flo)
        drop = active & (first < k) & (g_hi < hi)
        hi, fhi = np.where(drop, g_hi, hi), np.where(drop, f_ghi, fhi)
    side = np.zeros(n)  # +1: the last step moved lo, -1: it moved hi
    for step in range(_ILLINOIS_STEPS + _BISECTIONS):
        active &= ((hi - lo) > 1e-10 * hi) & (flo > 0)  # margin exactly 0 at lo: lo is the root
        if not active.any():
            break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = hi - fhi * (hi - lo) / (fhi - flo)
        x = np.where(~np.isfinite(x) | (x <= lo) | (x >= hi) | (step >= _ILLINOIS_STEPS), (lo + hi) / 2, x)
        x = np.where(active, x, lo)
        fx = margin(cv.state(x))
        ok, bad = active & (fx >= 0), active & (fx < 0)
        fhi = np.where(ok & (side > 0), fhi / 2, fhi)
        flo = np.where(bad & (side < 0), flo / 2, flo)
        lo, flo = np.where(ok, x, lo), np.where(ok, fx, flo)
        hi, fhi = np.where(bad, x, hi), np.where(bad, fx, fhi)
        side = np.where(ok, 1.0, np.where(bad, -1.0, side))
    return lo


def slack(limit, value):
    """(limit - value) / (limit + value): >= 0 exactly when value <= limit, bounded in [-1, 1] (value = inf gives -1),
    so regula falsi in `max_rate` is not stalled by an unbounded side."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(value), -1.0, (limit - value) / (limit + value))


def parallelisms(model: ModelSpec, hw: HardwareProfile, tps=None, pps=None, eps=None,
                 max_gpus: int = MAX_GPUS_PER_REPLICA) -> list[tuple[int, int, int]]:
    """The (tp, pp, ep) shapes of one replica the planner tries on a device, at most `max_gpus` GPUs each:
    tp in `valid_tps` (inside the NVLink domain) times pp in `pps` (default `PIPELINE_STAGES`, at most the
    layer count), with ep = 1 unless `eps` leaves 1 out; for a MoE model also ep in `eps` (default: powers
    of two that divide the experts) with tp = pp = 1. `tps`, `pps`, `eps` narrow the choice."""
    shapes = []
    if eps is None or 1 in eps:
        shapes = [(tp, pp, 1) for tp in valid_tps(model, hw) if tps is None or tp in tps
                  for pp in (PIPELINE_STAGES if pps is None else pps) if pp <= model.num_layers and tp * pp <= max_gpus]
    if model.moe is not None and (tps is None or 1 in tps) and (pps is None or 1 in pps):
        e = model.moe.num_experts
        cand = [2**i for i in range(1, 31) if 2**i <= max_gpus] if eps is None else [x for x in eps if x > 1]
        shapes += [(1, 1, ep) for ep in cand if e % ep == 0 and ep <= max_gpus]
    return shapes


def _options(model: ModelSpec, hws: list[HardwareProfile], traffic: Traffic, space: SearchSpace, rows: list):
    """Group the valid (precision, tp, pp, ep) options by the devices that accept them:
    {(label, tp, pp, ep): (dep, rd, [hw])}. Devices lacking a precision's compute format get an 'unsupported' row."""
    wl = traffic.memory_workload()
    network = space.network
    groups: dict = {}
    for label, dep in (space.precisions or PRECISIONS).items():
        try:
            rd0 = dep.resolved(model)
        except SpecError as exc:
            for hw in hws:
                rows.append(_infeasible_row(hw, label, dep, None, "unsupported", str(exc)))
            continue
        for hw in hws:
            if rd0.compute_key not in hw.peak_flops_per_s:
                rows.append(_infeasible_row(hw, label, dep, rd0, "unsupported", f"{hw.name} has no {rd0.compute_key} tensor cores"))
                continue
            shapes = [(tp, pp, ep, dp) for tp, pp, ep in space.shapes(model, hw)
                      for dp in attention_layouts(model, tp, pp, ep, space.attention_dp)]
            if not shapes:
                rows.append(_infeasible_row(hw, label, dep, None, "parallelism", space.no_shape_reason(model, hw)))
            for tp, pp, ep, dp in shapes:
                d = dep.model_copy(update={"tp": tp, "pp": pp, "ep": ep, "attention_dp": dp, "network": network,
                                           "engine": space.engine})
                rd = check(model, hw, wl, d)
                groups.setdefault((label, tp, pp, ep, dp), (d, rd, []))[2].append(hw)
    return groups


def attention_layouts(model: ModelSpec, tp: int, pp: int, ep: int, allowed) -> list[bool]:
    """The `Deployment.attention_dp` values the planner tries for one (tp, pp, ep) shape: those of `allowed` for a MoE
    model at tp > 1 with pp = ep = 1 (attention tensor- or data-parallel over the tp GPUs, the MLP/MoE tensor-parallel
    either way), else False alone (a dense model, tp = 1, a pipeline, or expert parallelism, which already runs
    attention data-parallel); no layout at all when `allowed` leaves False out there."""
    if model.moe is not None and tp > 1 and pp == 1 and ep == 1:
        return [bool(x) for x in dict.fromkeys(allowed)]
    return [False] if False in allowed else []


def _infeasible_row(hw, label, dep, rd, binding, reason, **figures) -> dict:
    row = {c: math.nan for c in COLUMNS}
    placed = rd is not None and binding != "unsupported"
    row.update(hardware_id=hw.name, hardware=hw.name, feasible=False, binding_constraint=binding, reason=reason,
               precision=label, tp=dep.tp if placed else 0, pp=dep.pp if placed else 0, ep=dep.ep if placed else 0,
               attention_dp=dep.attention_dp,
               gpus_per_replica=dep.gpus_per_replica if placed else 0,
               **(_span(dep, hw) if placed else dict(nodes_per_replica=0, network="")),
               memory_available_bytes_per_gpu=float(hw.memory_bytes if rd is None else engine_memory_bytes(rd, hw.memory_bytes)),
               price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_note=hw.price_note,
               weight_dtype=rd.weights.dtype.name if rd else dep.weight_dtype, activation_dtype=rd.act.name if rd else dep.activation_dtype,
               kv_dtype=rd.kv.dtype.name if rd else dep.kv_dtype)
    row.update(figures)
    return row


def _span(dep: Deployment, hw: HardwareProfile) -> dict:
    """The row's nodes_per_replica and network ("" inside one NVLink domain), from `parallelism.replica_span`."""
    nodes, network = replica_span(hw, dep)
    return dict(nodes_per_replica=nodes, network=network or "")


def plan(model, requests_per_s: float | None, prompt_tokens, output_tokens, ttft_slo_s: float, tpot_slo_s: float,
         hardware=None, ttft_percentile: float = 0.9, chunk_tokens: int | None = None, max_batch_size: int | None = None,
         precisions: dict[str, Deployment] | None = None, tps: list[int] | None = None, pps: list[int] | None = None,
         eps: list[int] | None = None, max_gpus_per_replica: int = MAX_GPUS_PER_REPLICA, network: str | None = None,
         attention_dp: tuple[bool, ...] | list[bool] = (False, True), best_only: bool = True, serving: str = "continuous", concurrency: float | None = None,
         engine: str | None = DEFAULT_ENGINE) -> pd.DataFrame:
    """The cheapest deployment per hardware that serves `requests_per_s` within the SLOs (module docstring):
    the keyword form of `plan_fleet`, which it calls with the `Traffic`, `SLO` and `SearchSpace` it builds.

    `prompt_tokens` / `output_tokens`: an int, a `serving.LengthDist` or a string like "lognormal:2048:0.5".
    `concurrency` instead of `requests_per_s` (which is then None): the fleet is loaded by a closed loop of that
    many clients, the way `vllm bench serve --max-concurrency`, genai-perf and AIPerf measure (`_group_rows`).
    `ttft_slo_s` applies to the `ttft_percentile` of TTFT, `tpot_slo_s` to the mean TPOT. The rest are the
    fields of `SearchSpace`. Returns a DataFrame with the columns of `COLUMNS` (SI units, USD), best first.
    """
    m = as_model(model)
    slo = SLO(ttft_slo_s, tpot_slo_s, ttft_percentile)
    traffic = check_traffic(m, requests_per_s, prompt_tokens, output_tokens, chunk_tokens)
    if concurrency is not None:
        traffic = Traffic(traffic.prompt_tokens, traffic.output_tokens, traffic.requests_per_s, concurrency)
    space = SearchSpace(hardware=hardware, precisions=precisions, tps=tps, pps=pps, eps=eps, max_gpus_per_replica=max_gpus_per_replica,
                        network=network, attention_dp=attention_dp, chunk_tokens=chunk_tokens, max_batch_size=max_batch_size, best_only=best_only,
                        serving=serving, engine=engine)
    return plan_fleet(m, traffic, slo, space)


def plan_fleet(model: ModelSpec, traffic: Traffic, slo: SLO, space: SearchSpace = SearchSpace()) -> pd.DataFrame:
    """`plan` on typed inputs: the cheapest fleet per device of `space` serving `traffic` within `slo`."""
    import pandas as pd

    m = model
    if traffic.requests_per_s is None and traffic.concurrency is None:
        raise SpecError("requests_per_s", "the planner sizes a fleet for a load; give requests_per_s (or a concurrency)")
    devices = space.devices()
    # each device timed with the kernel tables of the engine's framework, where shipped
    devices = [(given, engine_tables(hw, space.engine)) for given, hw in devices]
    space.check_model(m)
    static = space.serving == "static"
    if static and traffic.concurrency is not None:
        raise SpecError("concurrency", "a closed loop of clients needs serving='continuous' (a static batch is sized by its rate)")
    if static:
        for name in ("prompt_tokens", "output_tokens"):
            if getattr(traffic, name).kind != "fixed":
                raise SpecError(name, "a length distribution needs serving='continuous' (static batches run fixed lengths)")
    hws = [hw for _, hw in devices]
    given_ids = {hw.name: given for given, hw in devices}
    rows: list[dict] = []
    options = _options(m, hws, traffic, space, rows)
    # smallest replicas first, so that with best_only the cheapest fleet found so far bounds the rest
    bound: dict[str, float] | None = {} if space.best_only else None
    for (label, *_), (dep, rd, group) in sorted(options.items(), key=lambda kv: kv[1][0].gpus_per_replica):
        new = (_static_rows if static else _group_rows)(m, dep, rd, label, group, traffic, slo, space, bound)
        if bound is not None:
            for r in new:
                if r["feasible"]:
                    bound[r["hardware"]] = min(bound.get(r["hardware"], math.inf), r["usd_per_hour"])
        rows += new
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"])
    frame["hardware_id"] = frame["hardware"].map(given_ids)
    df = rank(frame, "hardware_id" if space.best_only else None)
    # 80% error bands of the TTFT and TPOT figures, from the published corpus (`roofline.bands`): serving runs'
    # or static batches'
    kind = "static" if static else "serving"
    classes = {hw.name: hardware_class(hw) for hw in hws}
    hc = [classes.get(h, "") for h in df["hardware"]]
    pc = [precision_class(w, a) for w, a in zip(df["weight_dtype"], df["activation_dtype"])]
    for col, family in (("ttft_at_slo_percentile", f"ttft_{kind}"), ("tpot", f"tpot_{kind}")):
        df[f"{col}_band_low_s"], df[f"{col}_band_high_s"] = band_limits(df[f"{col}_s"], family, hc, pc)
    for c in ("replicas", "gpus", "max_batch_size_fits", "tp", "pp", "ep", "gpus_per_replica", "nodes_per_replica"):
        df[c] = pd.array([None if pd.isna(x) else int(x) for x in df[c]], dtype="Int64")
    rate = traffic.requests_per_s
    df.attrs.update(model=m.name, requests_per_s=None if rate is None else float(rate), concurrency=traffic.concurrency,
                    prompt_tokens=traffic.prompt_tokens.describe(),
                    output_tokens=traffic.output_tokens.describe(), ttft_slo_s=slo.ttft_s, ttft_percentile=slo.ttft_percentile,
                    tpot_slo_s=slo.tpot_s, chunk_tokens=space.chunk_tokens, max_gpus_per_replica=space.max_gpus_per_replica,
                    serving=space.serving, engine=space.engine)
    return df


def _group_rows(m: ModelSpec, dep: Deployment, rd, label: str, hws: list[HardwareProfile], traffic: Traffic, slo: SLO,
                space: SearchSpace, bound: dict[str, float] | None = None) -> list[dict]:
    """Every device of one (precision, tp, pp, ep) option at once: curves, largest good rate, fleet and figures.

    With `bound` ({device: cheapest feasible $/hour so far}), a device is skipped where the option cannot
    cost less: one replica already costs gpus_per_replica · price, and the fleet at least
    ceil(λ / capacity) replicas (the SLOs only lower the rate a replica may take). Skipped options could
    only be dropped by `best_only`, so the plan is the same, found faster."""
    tp = dep.tp
    closed = traffic.concurrency is not None
    lam, o = (math.nan if closed else float(traffic.requests_per_s)), traffic.output_tokens
    ttft_slo, tpot_slo, q, cap_batch = slo.ttft_s, slo.tpot_s, slo.ttft_percentile, space.max_batch_size
    if bound is not None:
        hws = [h for h in hws if dep.gpus_per_replica * h.price_usd_per_gpu_hour <= bound.get(h.name, math.inf)]
        if not hws:
            return []
    cv = Curves(m, rd, tp, hws, traffic, space.chunk_tokens, batch_grid_for(m, rd, hws, traffic, cap_batch), cap_batch)
    if bound is not None and not closed:
        with np.errstate(divide="ignore"):
            floor_usd = np.ceil(lam / cv.capacity - 1e-9) * cv.gpus * np.array([h.price_usd_per_gpu_hour for h in hws])
        keep = [i for i, h in enumerate(hws) if floor_usd[i] <= bound.get(h.name, math.inf)]
        if not keep:
            return []
        if len(keep) < len(hws):
            cv, hws = cv.subset(keep), [hws[i] for i in keep]

    def margin(st):  # >= 0 exactly when every constraint holds: each term (slack)/(sum) lies in [-1, 1], smooth in the rate
        return np.where(st.stable, np.minimum(slack(tpot_slo, st.tpot_s), slack(1 - q, cv.ttft_tail(st, ttft_slo))), -1.0)

    best = max_rate(cv, margin, cv.capacity)
    idle = cv.state(cv.capacity * 1e-9)
    good = cv.fits & (best > 0)
    if closed:  # the clients one replica keeps within the SLOs: n* = λ*·R(λ*) (response-time law)
        load = np.where(good, cv.in_flight(np.where(good, best, cv.capacity * 1e-9)), 1.0)
        total = float(traffic.concurrency)
    else:
        load, total = np.where(good, best, 1.0), lam
    replicas = np.where(good, np.maximum(1, np.ceil(total / load - 1e-9)), 0)  # a fleet has a replica
    good &= replicas <= MAX_REPLICAS
    if closed:
        per = np.where(good, _closed_loop_rate(cv, total / np.maximum(replicas, 1), best), cv.capacity * 1e-9)
    else:
        per = np.where(good, lam / np.maximum(replicas, 1), cv.capacity * 1e-9)
    st = cv.state(per)
    qs = sorted({*TTFT_PERCENTILES, q})
    pct = dict(zip(qs, cv.ttft_percentile(st, np.array(qs)[:, None])))  # every percentile in one bisection
    nxt = cv.state(np.minimum(best * 1.001 + 1e-12, cv.capacity))
    rows = []
    for i, hw in enumerate(hws):
        mem = dict(memory_required_bytes_per_gpu=float(st.memory_required_bytes_per_gpu[i]))
        if not cv.fits[i]:
            rows.append(_infeasible_row(hw, label, dep, rd, "memory", (
                f"does not fit: needs {fmt.gigabytes(cv.memory_required[i, 0])} per GPU at {fmt.replica_of_deployment(dep)}, batch 1, of "
                f"{fmt.gigabytes(cv.memory_available[i, 0])}"), memory_required_bytes_per_gpu=float(cv.memory_required[i, 0])))
            continue
        if not good[i]:
            if idle.tpot_s[i] > tpot_slo:
                why, reason = "TPOT SLO", f"TPOT {fmt.seconds(idle.tpot_s[i])} even at batch 1 (SLO {fmt.seconds(tpot_slo)})"
            elif best[i] <= 0:
                t_idle = float(cv.ttft_percentile(idle, q)[i])
                why, reason = "TTFT SLO", f"p{100 * q:g} TTFT {fmt.seconds(t_idle)} with no queue (prefill alone; SLO {fmt.seconds(ttft_slo)})"
            else:
                why, reason = "replicas", f"needs more than {MAX_REPLICAS:,} replicas"
            rows.append(_infeasible_row(hw, label, dep, rd, why, reason, **mem))
            continue
        n = int(replicas[i])
        if best[i] >= cv.capacity[i] * (1 - 1e-6) or not nxt.stable[i]:
            binding = "capacity"  # memory, the batch cap or the prefill server, not an SLO
        elif nxt.tpot_s[i] > tpot_slo:
            binding = "TPOT SLO"
        else:
            binding = "TTFT SLO"
        gpus = n * cv.gpus
        hour = gpus * hw.price_usd_per_gpu_hour
        tokens = per[i] * o.mean_tokens
        j_token = serving_energy_per_output_token_j(m, rd, hw, tp, float(st.batch_size[i]), cv.es, cv.context_s, o.mean_tokens,
                                                    tokens, cv.gpus)
        fleet_rate = n * per[i] if closed else lam  # requests/s: what a closed loop answers, or the offered rate
        rows.append(dict(
            hardware_id=hw.name, hardware=hw.name, feasible=True, binding_constraint=binding, reason="",
            precision=label, weight_dtype=rd.weights.dtype.name, activation_dtype=rd.act.name, kv_dtype=rd.kv.dtype.name,
            tp=tp, pp=dep.pp, ep=dep.ep, attention_dp=dep.attention_dp, gpus_per_replica=cv.gpus, **_span(dep, hw), replicas=n, gpus=gpus, batch_size=float(st.batch_size[i]),
            max_batch_size_fits=float(cv.max_batch_size_fits(st)[i]), requests_per_s_per_replica=float(per[i]),
            capacity_requests_per_s_per_replica=float(cv.capacity[i]), prefill_utilization=float(st.utilization[i]),
            ttft_mean_s=float(st.ttft_mean_s[i]), ttft_p50_s=float(pct[0.5][i]), ttft_p90_s=float(pct[0.9][i]),
            ttft_p99_s=float(pct[0.99][i]), ttft_at_slo_percentile_s=float(pct[q][i]), tpot_s=float(st.tpot_s[i]),
            itl_max_s=float(st.itl_max_s[i]), output_tokens_per_s_per_replica=tokens, output_tokens_per_s_per_gpu=tokens / cv.gpus,
            usd_per_hour=hour, usd_per_million_output_tokens=usd_per_million_tokens(hour, fleet_rate * o.mean_tokens),
            memory_available_bytes_per_gpu=float(engine_memory_bytes(rd, hw.memory_bytes)), price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, **mem,
            energy_per_output_token_j=j_token, kwh_per_million_output_tokens=float(kwh_per_million(j_token)), price_note=hw.price_note,
        ))
    return rows


def _closed_loop_rate(cv: Curves, clients: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per device row, the rate λ ≤ `top` at which a closed loop of `clients` runs: the root of λ·R(λ) = clients
    (`Curves.in_flight` rises with λ), by bisection to 1e-10 of the rate; rows whose clients exceed λ·R at
    `top` get `top` (the planner only asks for at most what `top` keeps busy)."""
    lo, hi = np.zeros_like(top), np.asarray(top, float).copy()
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        over = cv.in_flight(mid) >= clients
        lo, hi = np.where(over, lo, mid), np.where(over, mid, hi)
        if np.all(hi - lo <= 1e-10 * np.maximum(hi, 1e-300)):
            break
    return hi


def _static_rows(m: ModelSpec, dep: Deployment, rd, label: str, hws: list[HardwareProfile], traffic: Traffic, slo: SLO,
                 space: SearchSpace, bound: dict[str, float] | None = None) -> list[dict]:
    """`serving="static"`: every device of one option running whole batches (`_static_row`); with `bound`, a
    device is skipped where one replica already costs more than its cheapest feasible fleet so far."""
    return [_static_row(m, dep, rd, label, hw, traffic, slo, space) for hw in hws
            if bound is None or dep.gpus_per_replica * hw.price_usd_per_gpu_hour <= bound.get(hw.name, math.inf)]


def _slos_missed(p: Prediction, slo: SLO) -> str:
    """'TTFT SLO', 'TPOT SLO', both joined by 'and', or '' when a static batch meets both."""
    return " and ".join(name for name, miss in (("TTFT SLO", p.ttft_s > slo.ttft_s), ("TPOT SLO", p.tpot_s > slo.tpot_s)) if miss)


def _static_row(m: ModelSpec, dep: Deployment, rd, label: str, hw: HardwareProfile, traffic: Traffic, slo: SLO,
                space: SearchSpace) -> dict:
    """One option on one device serving static batches: each replica runs batches of b requests from prefill to
    the last token, so every request of a batch sees TTFT = the batch's prefill and TPOT = its mean decode step
    (`predict`; a fixed number, so every TTFT percentile is that one figure).

    b is the largest batch ≤ min(what memory holds at this shape, `max_batch_size`) that meets both SLOs;
    both latencies grow with b, so a bisection over b, one `predict` per probe. Tokens/s is not monotone in b
    (the tile sawtooth, `roofline.roofline`): when the last multiple of the GEMM or dequantization tile below b
    serves more tokens/s, that batch is taken and `reason` says so. `reason` says what stops b + 1: memory,
    the batch cap, or the SLO b + 1 misses. The fleet: one replica serves X = b·O / e2e output tokens/s at full
    load, so replicas = ceil(λ·O / X) and its capacity is X / O requests/s; the figures are those of batch b."""
    lam = float(traffic.requests_per_s)
    s, o = int(traffic.prompt_tokens.tokens), int(traffic.output_tokens.tokens)
    cache: dict[int, Prediction] = {}

    def at(b: int) -> Prediction:
        if b not in cache:
            cache[b] = predict(m, hw, Workload(batch_size=b, prompt_tokens=s, output_tokens=o), dep)
        return cache[b]

    p1 = at(1)
    mem = dict(memory_required_bytes_per_gpu=p1.memory_required_bytes_per_gpu)
    if not p1.fits:
        return _infeasible_row(hw, label, dep, rd, "memory", (
            f"does not fit: needs {fmt.gigabytes(p1.memory_required_bytes_per_gpu)} per GPU at {fmt.replica_of_deployment(dep)}, batch 1, of "
            f"{fmt.gigabytes(p1.memory_available_bytes_per_gpu)}"), **mem)
    missed = _slos_missed(p1, slo)
    if missed:
        return _infeasible_row(hw, label, dep, rd, missed, (
            f"batch 1 misses the {missed} (TTFT {fmt.seconds(p1.ttft_s)}, TPOT {fmt.seconds(p1.tpot_s)})"), **mem)

    def good(b: int) -> bool:
        p = at(b)
        return p.fits and not _slos_missed(p, slo)

    fit_limit = p1.max_batch_size_fits  # exact: memory is affine in the batch (tests/test_properties.py)
    cap = space.max_batch_size
    upper = fit_limit if cap is None else min(fit_limit, cap)
    lo, hi = 1, upper  # good(lo) holds; the largest good b in [lo, hi]
    if good(hi):
        b = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if good(mid) else (lo, mid)
        b = lo
    if b == upper:
        capped = cap is not None and cap < fit_limit
        binding = "batch cap" if capped else "memory"
        reason = f"batch capped at {cap} (memory holds {fit_limit})" if capped else f"batch {b + 1} would not fit in memory at {fmt.replica_of_deployment(dep)}"
    else:
        nxt = at(b + 1)
        binding = _slos_missed(nxt, slo)
        reason = f"batch {b + 1}: TTFT {fmt.seconds(nxt.ttft_s)}, TPOT {fmt.seconds(nxt.tpot_s)}"
    # batches just past a tile step are dominated by the multiple below it (faster and more tokens/s)
    best, step = b, None
    for tile in sorted({hw.gemm_tile_tokens, dep.dequant_tile_tokens}, reverse=True):
        c = b // tile * tile
        if 1 <= c < best and at(c).output_tokens_per_s > at(best).output_tokens_per_s:
            best, step = c, tile
    if step is not None:
        reason += (f"; batch {best} (a multiple of the {step}-row tile) serves more tokens/s than {b}, which is past a tile "
                   f"step: {fmt.count(at(best).output_tokens_per_s)} vs {fmt.count(at(b).output_tokens_per_s)}")
        b = best
    p = at(b)
    n = math.ceil(lam * o / p.output_tokens_per_s - 1e-9)
    if n > MAX_REPLICAS:
        return _infeasible_row(hw, label, dep, rd, "replicas", f"needs more than {MAX_REPLICAS:,} replicas", **mem)
    gpus = n * dep.gpus_per_replica
    hour = gpus * hw.price_usd_per_gpu_hour
    # the fleet's board energy: the demanded share of its replica-seconds at a batch's mean power, the rest idle
    j_token = fleet_energy_per_output_token_j(n, dep.gpus_per_replica, hw.idle_power_w, p.mean_power_w_per_gpu,
                                              p.output_tokens_per_s, lam * o)
    return dict(
        hardware_id=hw.name, hardware=hw.name, feasible=True, binding_constraint=binding, reason=reason,
        precision=label, weight_dtype=rd.weights.dtype.name, activation_dtype=rd.act.name, kv_dtype=rd.kv.dtype.name,
        tp=dep.tp, pp=dep.pp, ep=dep.ep, attention_dp=dep.attention_dp, gpus_per_replica=dep.gpus_per_replica, **_span(dep, hw), replicas=n, gpus=gpus,
        batch_size=float(b), max_batch_size_fits=float(fit_limit), requests_per_s_per_replica=lam / n,
        capacity_requests_per_s_per_replica=p.output_tokens_per_s / o, prefill_utilization=math.nan,
        ttft_mean_s=p.ttft_s, ttft_p50_s=p.ttft_s, ttft_p90_s=p.ttft_s, ttft_p99_s=p.ttft_s, ttft_at_slo_percentile_s=p.ttft_s,
        tpot_s=p.tpot_s, itl_max_s=max(p.tpot_first_step_s, p.tpot_last_step_s),
        output_tokens_per_s_per_replica=lam * o / n, output_tokens_per_s_per_gpu=lam * o / gpus,
        usd_per_hour=hour, usd_per_million_output_tokens=usd_per_million_tokens(hour, lam * o),
        memory_required_bytes_per_gpu=p.memory_required_bytes_per_gpu, memory_available_bytes_per_gpu=p.memory_available_bytes_per_gpu,
        price_usd_per_gpu_hour=hw.price_usd_per_gpu_hour, price_note=hw.price_note,
        energy_per_output_token_j=j_token, kwh_per_million_output_tokens=float(kwh_per_million(j_token)),
    )


_CLOSENESS = {"TTFT SLO": 0, "TPOT SLO": 0, "replicas": 0, "memory": 1, "parallelism": 2, "unsupported": 2}


def ranked(df: pd.DataFrame, by: list[str], ascending: list[bool], first_per: str | None = None) -> pd.DataFrame:
    """The one ranking of options (the planner's and the report's): feasible rows first, each part sorted by
    `by` (stable, NaN last); with `first_per`, only the first row of each value of that column; then a
    `rank` column 1..k on the feasible rows and NA on the rest."""
    import pandas as pd

    df = df.sort_values(["feasible", *by], ascending=[False, *ascending], na_position="last", kind="stable")
    if first_per is not None:
        df = df.drop_duplicates(first_per, keep="first")
    df = df.reset_index(drop=True)
    df.insert(0, "rank", pd.array([i + 1 if f else pd.NA for i, f in enumerate(df["feasible"])], dtype="Int64"))
    return df


def rank(df: pd.DataFrame, first_per: str | None = None) -> pd.DataFrame:
    """The planner's order of fleets (any frame with the planner's columns, e.g. several models' plans joined):
    cheapest fleet first, then fewest GPUs, lowest TTFT; infeasible rows closest to feasible first. With
    `first_per` (a column), only the best row of each of its values."""
    df = df.copy()
    df["_close"] = df["binding_constraint"].map(_CLOSENESS).fillna(0)
    # among options that do not fit, the smallest shortfall (required / available per GPU) is the closest
    df["_short"] = (df["memory_required_bytes_per_gpu"] / df["memory_available_bytes_per_gpu"]).round(3)
    df = ranked(df, ["usd_per_hour", "gpus", "ttft_at_slo_percentile_s", "_close", "_short", "gpus_per_replica", "pp", "tp"],
                [True, True, True, True, True, True, True, False], first_per)
    df = df.drop(columns=["_close", "_short"])
    df["feasible"] = df["feasible"].astype(bool)
    return df
