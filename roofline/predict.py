"""From operator times to the figures a capacity planner reads: `predict()` and its `Prediction`.

The façade over three levels: `parallelism.check` validates the scenario and `parallelism.scale_out` picks
the links of a wide replica; `engine.evaluate` times the operator table into TTFT, TPOT, FLOPs, bytes and
memory, and `engine.derived` adds throughput, MBU/MFU, fit and cost; `speculative.apply_speculative`
rewrites the decode figures when a drafter is set. Their formulas are in those modules' docstrings:

* TTFT = the prefill pass; TPOT = (e2e - TTFT) / (output - 1), the mean decode step (`engine`).
* Throughput = batch · output / e2e (a static batch); per GPU divides by the replica's GPUs.
* MBU = bytes moved / time / peak bandwidth; MFU = FLOPs / time / dense peak of the compute dtype.
* Memory per GPU = weights + KV cache + activation workspace + runtime reserve; `max_batch_size_fits`
  solves it for the batch.
* Cost per million output tokens = price/GPU-hour · GPUs / 3600 / (tokens/s) · 1e6
  (`engine.usd_per_million_tokens`); NaN when the scenario does not fit in memory.
* Energy: P = P_idle + (TDP - P_idle) · u per operator, u the utilization of its bound resource;
  J per output token and kWh per million output tokens (`energy.static_energy`).

The names these levels define are re-exported here (`check`, `evaluate`, `valid_tps`, ...), where
callers have always imported them from.
"""

import dataclasses
import functools
import math
import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    import pandas as pd

from . import fmt
from . import ops as O
from .bands import Band, bands_for
from .energy import static_energy
from .engine import DecodeSteps, Derived, Evaluation, decode_ceilings, derived, evaluate, operator_frame, stage, sum_of_m, sum_over_steps  # noqa: F401  re-exported
from .engines import engine_tables
from .errors import SpecError, renamed
from .hardware import HardwareProfile
from .parallelism import (  # noqa: F401  re-exported
    beyond_context_note,
    check,
    engine_limits,
    engine_limits_on,
    engine_memory_bytes,
    kv_allocated_tokens,
    replica_span,
    scale_out,
    shared_prefix_tokens,
    tp_widths,
    valid_tps,
    weight_bytes_per_gpu,
)
from .registry import as_hardware, as_model
from .roofline import BOUNDS, Ceilings
from .specs import ModelSpec
from .speculative import apply_speculative
from .workload import Deployment, Workload

# ------------------------------------------------------------ the result
BAND_FAMILIES = {"ttft_s": "ttft_static", "tpot_s": "tpot_static", "e2e_latency_s": "e2e_static",
                 "output_tokens_per_s": "throughput_static"}
"""The published-corpus family (`calibrate.corpus.family_of`) each banded figure of a static batch belongs to."""


class Prediction(BaseModel):
    """Every headline figure of one scenario. Seconds, bytes, FLOPs, fractions; per GPU where it says so.

    `mode` says whether measured curves timed every operator (`calibrated`, with the calibration file's
    `calibration_id`) or the datasheet peaks times the profile's achievable fractions did (`analytical`).
    Memory figures are per GPU of the replica. When `fits` is False,
    `memory_required_bytes_per_gpu` and `memory_available_bytes_per_gpu` say by how much; the latency and
    throughput fields are then what-ifs (as if the memory were there) and
    `usd_per_million_output_tokens` is NaN.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)  # built by `predict` without validating: the schema waits for a dump

    model: str
    hardware: str
    workload: Workload
    deployment: Deployment
    notes: tuple[str, ...] = ()
    peak_flops_per_s: float = math.nan
    ridge_point_flops_per_byte: float = math.nan
    speculative_tokens_per_step: float | None = None
    tpot_without_speculation_s: float | None = None
    mode: Literal["analytical", "calibrated"] = "analytical"  # calibrated: measured curves timed every operator
    calibration_id: str | None = None  # the calibration file's id (device slug and date) when calibrated
    gpus_per_replica: int
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

    weight_bytes: float = Field(description="weights and quantization scales one GPU holds")
    kv_cache_bytes: float = Field(description="KV cache of the whole batch on one GPU, at prompt + output tokens")
    kv_bytes_per_token: float = Field(description="KV bytes of one token of one sequence over all layers at one GPU's tp share (pp, ep not divided out)")
    activation_workspace_bytes: float = Field(description="largest per-layer activation footprint of prefill, one GPU (with an engine: of its largest step, a pass over its token budget)")
    runtime_reserve_bytes: float = Field(description="CUDA context, allocator slack and graphs, per GPU")
    memory_required_bytes_per_gpu: float = Field(description="per GPU: weights + KV cache + workspace + reserve")
    memory_available_bytes_per_gpu: float = Field(description="memory of one GPU the engine uses: gpu_memory_fraction x HBM (all of it with engine=None)")
    fits: bool
    max_batch_size_fits: int

    usd_per_hour: float
    usd_per_million_output_tokens: float
    prefill_energy_j: float = Field(math.nan, description="board energy of the prefill pass, all GPUs of the replica (`roofline.energy`)")
    decode_energy_j: float = Field(math.nan, description="board energy of the decode steps, all GPUs of the replica")
    energy_per_output_token_j: float = Field(math.nan, description="(prefill + decode energy) / (batch · output tokens)")
    kwh_per_million_output_tokens: float = Field(math.nan, description="energy_per_output_token_j · 10⁶ / 3.6·10⁶")
    mean_power_w_per_gpu: float = Field(math.nan, description="energy / e2e latency / GPUs: between idle_power_w and tdp_w")
    bands: dict[str, Band] = Field(default_factory=dict, description=(
        "80% error bands of ttft_s, tpot_s, e2e_latency_s and output_tokens_per_s from the published corpus "
        "(`roofline.bands`); a figure whose family has too few published rows has none"))

    # the names of issue 11's one-spelling rename, kept a while for callers that read them
    num_gpus = renamed("num_gpus", "gpus_per_replica")
    max_batch_size = renamed("max_batch_size", "max_batch_size_fits")
    cost_per_hour_usd = renamed("cost_per_hour_usd", "usd_per_hour")
    cost_per_million_output_tokens_usd = renamed("cost_per_million_output_tokens_usd", "usd_per_million_output_tokens")
    memory_required_bytes = renamed("memory_required_bytes", "memory_required_bytes_per_gpu")
    memory_available_bytes = renamed("memory_available_bytes", "memory_available_bytes_per_gpu")

    @property
    def source_kind(self) -> str:
        """Deprecated: `mode` says it ('analytical' was 'default')."""
        warnings.warn("Prediction.source_kind is dropped; read mode ('analytical' or 'calibrated') and calibration_id",
                      DeprecationWarning, stacklevel=2)
        return "calibrated" if self.mode == "calibrated" else "default"

    _evaluation: Evaluation = PrivateAttr()
    _operators: Any = PrivateAttr(None)  # the DataFrame `operators` builds on first access

    @property
    def operators(self) -> "pd.DataFrame":
        """One row per operator and phase: FLOPs, bytes by kind and their HBM total (`hbm_bytes`),
        time terms, realistic and floor time, bound.

        Decode rows are the mean step: FLOPs and bytes at the mean context, times summed
        exactly over every step and divided by the step count. Built on first access.
        """
        if self._operators is None:
            self._operators = operator_frame(self._evaluation)
        return self._operators.copy()

    def tpot_at(self, context_tokens: int) -> float:
        """Realistic time of the one decode step whose new token attends to `context_tokens` keys
        (the prompt, the tokens generated so far, and itself), with the engine's CPU time per step."""
        if context_tokens < 1:
            raise SpecError("context_tokens", f"must be at least 1, got {context_tokens}")
        ev = self._evaluation
        return float(ev.decode.real.step_s(context_tokens) + ev.engine_step_s)

    @property
    def fit_message(self) -> str:
        need, have = self.memory_required_bytes_per_gpu, self.memory_available_bytes_per_gpu
        if not self.fits and need <= have:  # memory holds it; the engine's running-sequence cap does not
            return (f"does NOT fit: batch {self.workload.batch_size:,} exceeds the {self.max_batch_size_fits:,} sequences the "
                    f"{self.deployment.engine} engine runs at once (max_num_seqs); it needs {fmt.gigabytes(need)} per GPU of "
                    f"{fmt.gigabytes(have)}")
        verdict = "fits" if self.fits else "does NOT fit"
        return f"{verdict}: needs {fmt.gigabytes(need)} per GPU of {fmt.gigabytes(have)}"


_FIELDS = frozenset(Prediction.model_fields)  # looked up once: pydantic builds the mapping on every access
# the figures `predict` takes from `Derived` (its fit as a bool, its batch as an int, the rest as floats) and from
# `Evaluation` (floats; a name in both is the derived one's)
_DERIVED_FLOATS = tuple(f.name for f in dataclasses.fields(Derived) if f.name in _FIELDS and f.name not in ("fits", "max_batch_size_fits"))
_EVALUATION_FLOATS = tuple(f.name for f in dataclasses.fields(Evaluation)
                           if f.name in _FIELDS and f.name not in {g.name for g in dataclasses.fields(Derived)})


@functools.cache
def _blank_prediction() -> Prediction:
    """A `Prediction` with every field set to None, in the model's field order. `predict` sets every field
    (tests/test_speed_paths.py) by copying it with them (`model_copy(update=...)`, which validates nothing, as
    `model_construct` does not): the record `model_construct(**fields)` builds, same fields set, same order, without
    its Python loop over the fields (and their aliases and defaults) on every prediction."""
    return Prediction.model_construct(**dict.fromkeys(Prediction.model_fields))


def _inputs(model, hw, workload, deployment) -> tuple[ModelSpec, HardwareProfile, Deployment]:
    """The arguments of `predict`: ids and paths loaded; a wrong type is a TypeError naming the argument."""
    if not isinstance(workload, Workload):
        raise TypeError(f"workload: expected a roofline.Workload, got {type(workload).__name__}")
    if deployment is not None and not isinstance(deployment, Deployment):
        raise TypeError(f"deployment: expected a roofline.Deployment or None, got {type(deployment).__name__}")
    return as_model(model), as_hardware(hw), deployment or _default_deployment()


@functools.cache
def _default_deployment() -> Deployment:
    """`Deployment()`, built once: it is frozen, so every prediction without a deployment shares it (and the memo
    keys that hold it compare by identity first)."""
    return Deployment()


def predict(model: ModelSpec, hw: HardwareProfile, workload: Workload, deployment: Deployment | None = None) -> Prediction:
    """Predict one scenario. Bad combinations raise `SpecError`; a scenario that does not fit
    in memory returns `fits=False` with required and available bytes. `model` and `hw` may be ids or paths."""
    model, hw, dep = _inputs(model, hw, workload, deployment)
    hw = engine_tables(hw, dep.engine)  # timed with the kernel tables of the engine's framework, where shipped
    rd = check(model, hw, workload, dep)
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    real, floor, hop, notes = scale_out(hw, dep, real, floor)
    b, s, o, tp = workload.batch_size, workload.prompt_tokens, workload.output_tokens, dep.tp
    r = evaluate(model, rd, real, floor, b, s, o, tp, hop, engine_limits_on(rd, hw))
    spec = None
    if dep.speculative is not None:
        spec = apply_speculative(model, hw, workload, dep, rd, real, floor, hop, r)
        r = spec.evaluation
        notes = notes + list(spec.notes)
    peak = hw.peak_flops(rd.compute_key)
    fixed = r.weight_bytes + r.runtime_reserve_bytes + r.workspace_fixed_bytes  # loaded before the KV pool is sized
    d = derived(r, b, o, dep.gpus_per_replica, engine_memory_bytes(rd, hw.memory_bytes, fixed), hw.memory_bandwidth_bytes_per_s, peak,
                hw.price_usd_per_gpu_hour)
    fields = {k: float(getattr(r, k)) for k in _EVALUATION_FLOATS}
    fields.update({k: float(getattr(d, k)) for k in _DERIVED_FLOATS}, fits=bool(d.fits), max_batch_size_fits=int(d.max_batch_size_fits))
    en = static_energy(r, hw, dep, b, o, None if spec is None else (peak, hw.memory_bandwidth_bytes_per_s))
    fields.update(prefill_energy_j=en.prefill_j, decode_energy_j=en.decode_j, energy_per_output_token_j=en.energy_per_output_token_j,
                  kwh_per_million_output_tokens=en.kwh_per_million_output_tokens, mean_power_w_per_gpu=en.mean_power_w_per_gpu)
    # every value above is already of its field's type: construct without validating it again
    p = _blank_prediction().model_copy(update=dict(
        model=model.name, hardware=hw.name, workload=workload, deployment=dep,
        notes=tuple(rd.notes) + tuple(notes), peak_flops_per_s=peak,
        ridge_point_flops_per_byte=peak / hw.memory_bandwidth_bytes_per_s,
        speculative_tokens_per_step=None if spec is None else spec.tokens_per_step,
        tpot_without_speculation_s=None if spec is None else spec.tpot_without_s,
        gpus_per_replica=dep.gpus_per_replica, compute_dtype=rd.act.name,
        mode=hw.mode, calibration_id=None if hw.calibration is None else hw.calibration.id,
        prefill_bound=BOUNDS[int(r.prefill_bound_index)].value,
        decode_bound=BOUNDS[int(r.decode_bound_index)].value,
        kv_bytes_per_token=float(O.kv_cache_bytes(model, rd, 1, 1, tp)),
        bands=bands_for({name: (fields[name], family) for name, family in BAND_FAMILIES.items()}, hw, rd.weights.dtype.name, rd.act.name),
        **fields,
    ))
    p._evaluation = r
    return p


def predict_fitting(model: ModelSpec, hw: HardwareProfile, workload: Workload, deployment: Deployment | None = None) -> Prediction:
    """`predict` at the smallest valid tp whose memory fits (the deployment's tp is ignored).

    The tps tried are those the deployment's other fields allow: tp 1 alone with expert parallelism (ep > 1 runs
    attention data-parallel over the ep GPUs, `Deployment`'s check), tp > 1 alone with `attention_dp`.
    When no tp fits, the prediction at the largest tried tp is returned with fits=False,
    so its required and available bytes say by how much.
    """
    model, hw, dep = _inputs(model, hw, workload, deployment)
    tps = fitting_tps(model, hw, dep)
    p = None
    for i, tp in enumerate(tps):
        d = dep.model_copy(update={"tp": tp})
        if i < len(tps) - 1 and _weights_alone_overflow(model, hw, d):
            continue  # weights + reserve already exceed the memory: it cannot fit, no need to time it
        p = predict(model, hw, workload, d)
        if p.fits:
            return p
    assert p is not None  # the largest valid tp is always predicted
    return p


def fitting_tps(model: ModelSpec, hw: HardwareProfile, dep: Deployment) -> list[int]:
    """The tps `predict_fitting` tries, smallest first: the model's valid tps on `hw` (`valid_tps`: dividing its
    widths, inside the NVLink domain) that the deployment's other fields allow, tp 1 alone with expert parallelism
    (ep > 1 runs attention data-parallel over the ep GPUs) and tp > 1 alone with `attention_dp` (`Deployment`'s
    checks). Llama 3.1 70B on an 8-GPU H100 node: 1, 2, 4, 8; with attention_dp 2, 4, 8. A one-line error when
    attention_dp leaves none."""
    tps = [t for t in valid_tps(model, hw) if not (dep.ep > 1 and t > 1) and not (dep.attention_dp and t == 1)]
    if not tps:
        raise SpecError("tp", f"attention_dp needs tp > 1 and no tp above 1 divides {model.name}'s widths within "
                              f"{hw.name}'s {hw.interconnect.max_gpus}-GPU domain; drop attention_dp")
    return tps


def _weights_alone_overflow(model: ModelSpec, hw: HardwareProfile, dep: Deployment) -> bool:
    """Weights + runtime reserve per GPU above the engine's memory: a lower bound of `memory_required_bytes_per_gpu`
    already over `memory_available_bytes_per_gpu`, so `predict` would say fits=False."""
    try:
        rd = dep.resolved(model)
    except SpecError:
        return False  # let predict raise (or fall back) with its own message
    fixed = weight_bytes_per_gpu(model, rd, dep.tp) + dep.runtime_reserve_bytes
    return fixed > engine_memory_bytes(rd, hw.memory_bytes, fixed)


def breakeven_batch(model: ModelSpec, hw, wl: Workload, dep: Deployment, max_batch: int = 4096) -> int | None:
    """The smallest power-of-two batch at which speculation no longer lowers TPOT (None if it always pays up to max_batch)."""
    if dep.speculative is None:
        raise SpecError("speculative", "set a Speculative(...) on the deployment to find where it stops paying")
    base = dep.model_copy(update={"speculative": None})
    b = 1
    while b <= max_batch:
        w = wl.model_copy(update={"batch_size": b})
        if predict(model, hw, w, dep).tpot_s >= predict(model, hw, w, base).tpot_s:
            return b
        b *= 2
    return None
