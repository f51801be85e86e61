"""Speculative decoding on top of the operator table: draft k tokens cheaply, verify them in one target pass.

Per iteration (one target step), for a decode batch at mean context c̄ = prompt + output/2:

    t_iter   = k · t_draft_step + t_verify(k + 1 new tokens per sequence, past c̄ - 1)
    E        = (1 - a^(k+1)) / (1 - a)          expected tokens emitted per iteration
    TPOT     = t_iter / E
    speed-up = TPOT without speculation / TPOT

The verify pass is the target's own `forward_ops` with k + 1 new tokens (attention runs
absorbed for MLA, as in decode); its cost is taken at the mean context, where the
attention term, affine in the context, equals its mean. The drafter is either a draft
model (any spec sharing the target's vocabulary, smaller than it) or self-drafting heads
costed as `draft_layers` layers of the target plus its embedding and LM head (DeepSeek-V3
MTP, Medusa). TTFT also pays the drafter's prefill; memory holds the drafter's weights and
KV cache. At small batch decode is memory-bound and k + 1 tokens cost about as much as
one, so speculation pays; as the batch grows the verify pass turns compute-bound and the
drafted tokens that get rejected become wasted FLOPs (`breakeven_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import fmt
from . import ops as O
from .engine import Evaluation, evaluate
from .errors import SpecError
from .parallelism import tp_widths
from .registry import as_model
from .roofline import Ceilings, OpTable, time_ops
from .specs import ModelSpec
from .techniques import first_layers
from .workload import Deployment, ResolvedDeployment, Speculative, Workload


@dataclass(frozen=True)
class SpeculativeResult:
    """The target's figures with speculation (`evaluation`) and what the speculation itself costs and yields."""

    evaluation: Evaluation
    tokens_per_step: float
    tpot_without_s: float
    draft_step_s: float
    verify_s: float
    notes: tuple[str, ...] = ()


def truncated(model: ModelSpec, layers: int, name: str | None = None) -> ModelSpec:
    """The first `layers` layers of a spec, with its embedding and LM head (a self-drafting head's cost)."""
    return ModelSpec.model_validate({**model.model_dump(), **first_layers(model, layers),
                                     "name": name or f"{model.name} ({layers} layers)"})


def draft_model(model: ModelSpec, spec: Speculative) -> ModelSpec:
    """The drafter's spec, checked against the target."""
    if spec.draft is None:
        return truncated(model, spec.draft_layers, f"{model.name} self-draft ({spec.draft_layers} layer)")
    d = as_model(spec.draft)
    if d.vocab_size != model.vocab_size:
        raise SpecError("speculative.draft", f"{d.name} has vocab_size {d.vocab_size}, the target {model.name} "
                                             f"{model.vocab_size}; a draft must share the target's tokenizer")
    if d.param_count >= model.param_count:
        raise SpecError("speculative.draft", f"{d.name} ({fmt.billions(d.param_count)} parameters) is not smaller than "
                                             f"the target {model.name} ({fmt.billions(model.param_count)}); use a smaller draft")
    return d


def _draft_deployment(model: ModelSpec, d: ModelSpec, dep: Deployment) -> Deployment:
    tp = dep.tp if all(w % dep.tp == 0 for w in tp_widths(d).values()) else 1
    return Deployment(tp=tp, kv_dtype=dep.kv_dtype, attention_impl=dep.attention_impl,
                      weight_dtype=dep.weight_dtype if d is not model else None,
                      activation_dtype=dep.activation_dtype, runtime_reserve_bytes=0)


def apply_speculative(model: ModelSpec, hw, wl: Workload, dep: Deployment, rd: ResolvedDeployment,
                      real: Ceilings, floor: Ceilings, hop, r: Evaluation) -> SpeculativeResult:
    """`evaluate`'s result `r` for the target alone, made speculative: a new `Evaluation` with the drafter's
    prefill added to TTFT, its weights and KV cache to memory, and TPOT = t_iter / E (module docstring)."""
    spec = dep.speculative
    if dep.pp > 1:
        raise SpecError("speculative", "speculative decoding with pipeline parallelism is not modelled; use pp=1")
    d = draft_model(model, spec)
    self_draft = spec.draft is None
    if self_draft:
        rd_d, tp_d = rd, dep.tp
    else:
        dd = _draft_deployment(model, d, dep)
        rd_d, tp_d = dd.resolved(d).on(hw), dd.tp  # a draft in a block-scaled pair the GPU takes natively: not weight-only
        if rd_d.compute_key not in hw.peak_flops_per_s:
            rd_d = rd
    b, s, o = wl.batch_size, wl.prompt_tokens, wl.output_tokens
    rdr = evaluate(d, rd_d, Ceilings.of(hw, rd_d.compute_key) if rd_d is not rd else real,
                   Ceilings.of(hw, rd_d.compute_key, floor=True) if rd_d is not rd else floor, b, s, o, tp_d)
    k, a = spec.k, spec.rate
    tokens = spec.expected_tokens_per_step
    mean_past = s + max(o - 1, 1) / 2 - 1
    verify = OpTable.of(O.forward_ops(model, rd, b, k + 1, mean_past, dep.tp, mla_absorbed=True, ep=dep.ep), ())
    t_verify = float(time_ops(verify, real, dep.tp).time_s.sum())
    t_verify_floor = float(time_ops(verify, floor, dep.tp).time_s.sum())
    base_tpot = float(r.tpot_s)
    tpot = (k * float(rdr.tpot_s) + t_verify) / tokens
    tpot_floor = (k * float(rdr.tpot_floor_s) + t_verify_floor) / tokens
    steps = max(o - 1, 0)
    ratio = tpot / base_tpot
    extra_weights = rdr.weight_bytes
    if self_draft:  # the heads share the target's embedding and LM head
        extra_weights = extra_weights - O.embedding_storage_bytes(d, rd, dep.tp) - O.lm_head_storage_bytes(d, rd, dep.tp)
    ttft, ttft_floor = r.ttft_s + rdr.ttft_s, r.ttft_floor_s + rdr.ttft_floor_s
    spec_r = replace(
        r, ttft_s=ttft, ttft_floor_s=ttft_floor, tpot_s=tpot, tpot_floor_s=tpot_floor,
        tpot_first_step_s=r.tpot_first_step_s * ratio, tpot_last_step_s=r.tpot_last_step_s * ratio,
        e2e_latency_s=ttft + tpot * steps, e2e_latency_floor_s=ttft_floor + tpot_floor * steps,
        decode_flops_per_step=(k * rdr.decode_flops_per_step + verify.f["flops"].sum()) / tokens,
        decode_bytes_per_step=(k * rdr.decode_bytes_per_step + verify.hbm_bytes.sum()) / tokens,
        weight_bytes=r.weight_bytes + extra_weights,
        kv_bytes_per_sequence=r.kv_bytes_per_sequence + rdr.kv_bytes_per_sequence,
        kv_cache_bytes=r.kv_cache_bytes + rdr.kv_cache_bytes,
        memory_required_bytes_per_gpu=r.memory_required_bytes_per_gpu + extra_weights + rdr.kv_cache_bytes,
    )
    what = f"self-drafting ({spec.draft_layers} layer)" if self_draft else f"draft {d.name}"
    notes = [f"speculative decoding: {what}, k={k}, acceptance {a:g} -> {tokens:.2f} tokens per target step; "
             f"TPOT {fmt.seconds(base_tpot)} -> {fmt.seconds(tpot)} ({base_tpot / tpot:.2f}x)"]
    return SpeculativeResult(spec_r, tokens, base_tpot, float(rdr.tpot_s), t_verify, tuple(notes))
