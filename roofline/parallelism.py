"""How one replica is laid out over GPUs: the rules a deployment must meet, the widths tensor parallelism
splits, the nodes and network a wide replica spans, and the KV slots the allocator hands each sequence.

    tp: tensor-parallel GPUs (each holds 1/tp of every weight matrix; tp divides heads and FFN widths)
    pp: pipeline stages (each holds 1/pp of the layers)
    ep: expert-parallel GPUs (each holds E/ep experts; attention data-parallel over them)
    GPUs per replica = tp · pp · ep; nodes = ceil(GPUs / NVLink domain)

Below the engine (`engine.evaluate` prices a deployment this module has checked) and above the specs.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import ops as O
from .errors import SpecError
from .hardware import HardwareProfile
from .memo import Identity, memoized, plain
from .network import DEFAULT_NETWORK, load_network
from .roofline import Ceilings, OpTable
from .specs import ModelSpec
from .workload import Deployment, ResolvedDeployment, Workload


def check(model: ModelSpec, hw: HardwareProfile, wl: Workload, dep: Deployment) -> ResolvedDeployment:
    """Every rule a scenario must meet, each failing with a one-line error naming the field."""
    rd = dep.resolved(model)
    if rd.compute_key not in hw.peak_flops_per_s:
        if dep.on_unsupported_dtype != "fallback" and not rd.act_from_checkpoint:  # a checkpoint's own W8A8/W4A4 falls back
            try:
                hw.peak_flops(rd.compute_key, "activation_dtype")
            except SpecError as exc:
                raise SpecError("activation_dtype", f"{exc.msg}; or set on_unsupported_dtype='fallback' to run "
                                                    f"{rd.weights.dtype.name} weights with {rd.native.name} compute") from None
        rd = rd.fallen_back(f"{hw.name} has no {rd.compute_key} tensor cores: fell back to {rd.weights.dtype.name} weights "
                            f"with {rd.native.name} compute (weight-only kernel, dequantized on the fly)")
    rd = rd.on(hw)  # a block-scaled pair the tensor cores take as stored is not weight-only there
    if dep.sparsity == "2:4" and hw.sparsity_2_4_speedup is None:
        raise SpecError("sparsity", f"{hw.name} has no 2:4 sparse tensor cores; use sparsity='dense'")
    if dep.prefix_tokens and dep.prefix_tokens >= wl.prompt_tokens:
        raise SpecError("prefix_tokens", f"{dep.prefix_tokens} must be less than prompt_tokens={wl.prompt_tokens} "
                                         "(at least one new token is prefilled)")
    tp = dep.tp
    if dep.attention_dp:
        if model.parallel_blocks:
            raise SpecError("attention_dp", f"{model.name} runs attention and MLP on the same input (parallel blocks); "
                                            "gathering between them is not modelled: drop attention_dp")
    for name, width in tp_widths(model).items():
        if dep.attention_dp and name == "num_attention_heads":  # attention runs whole on every rank
            continue
        if width % tp:
            choices = ", ".join(map(str, valid_tps(model, hw)))
            raise SpecError("tp", f"{tp} does not divide {name}={width} of {model.name}; choose one of {choices}")
    if dep.ep > 1:
        if model.moe is None:
            raise SpecError("ep", f"{model.name} has no experts to spread; use ep=1 (tp or pp for a dense model)")
        if model.moe.num_experts % dep.ep:
            raise SpecError("ep", f"{dep.ep} does not divide the {model.moe.num_experts} experts of {model.name}")
    if dep.pp > model.num_layers:
        raise SpecError("pp", f"{dep.pp} stages exceed the {model.num_layers} layers of {model.name}")
    if dep.gpus_per_replica > hw.interconnect.max_gpus or dep.network is not None:
        load_network(dep.network or DEFAULT_NETWORK)
    if wl.context_tokens > model.max_context:
        rd = rd.with_note(beyond_context_note(model, wl.context_tokens))  # a copy: the kept resolution is shared
    return rd


def beyond_context_note(model: ModelSpec, context_tokens: float) -> str:
    """Engines run a model past its trained context when told to (vLLM --max-model-len, TensorRT-LLM
    max_seq_len); the performance physics holds there, so it is predicted, with this note."""
    return (f"prompt + output = {context_tokens:,.0f} tokens runs past max_context={model.max_context:,} of {model.name}: "
            "predicted as the engine would run it; output quality there is not modelled")


def replica_span(hw: HardwareProfile, dep: Deployment) -> tuple[int, str | None]:
    """(nodes, scale-out network id) of one replica: ceil(tp·pp·ep / NVLink domain) nodes, and the
    deployment's network (default `network.DEFAULT_NETWORK`) when that is more than one, else None."""
    nodes = math.ceil(dep.gpus_per_replica / hw.interconnect.max_gpus)
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
        notes = [f"network {dep.network} unused: the {dep.gpus_per_replica}-GPU replica fits one {domain}-GPU node"] if dep.network else []
        return real, floor, None, notes
    net = load_network(network)
    bw = net.bytes_per_s_per_gpu_per_direction
    notes = [f"the {dep.gpus_per_replica}-GPU replica spans {nodes} nodes of {domain}; scale-out over {net.name}"
             + ("" if dep.network else f" (default '{DEFAULT_NETWORK}'; set network to change it)")]
    if max(dep.tp, dep.ep) > domain:
        # across nodes the collectives are NCCL's ring over the network: no custom all-reduce, NVLS or mesh links
        ring = {"pair_link_bytes_per_s": np.inf, "allreduce_step_s": np.inf, "nvls_bytes_per_s": 0.0}
        real = replace(real, link_bytes_per_s=bw * net.bandwidth_fraction, link_latency_s=net.latency_s, **ring)
        floor = replace(floor, link_bytes_per_s=bw, **ring)
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


# ------------------------------------------------------------ what one GPU holds, what a stage hands on
@memoized(lambda model, rd, tp: (Identity(model), rd.key(), tp) if plain(tp) else None)
def weight_bytes_per_gpu(model: ModelSpec, rd: ResolvedDeployment, tp) -> float:
    """Weight (and quantization-scale) bytes one GPU of the replica holds: 1/tp of every matrix with the experts
    spread E/ep (`ops.weight_storage_bytes`), 1/pp of the layers, less the fraction offloaded to host memory."""
    dep = rd.dep
    return O.weight_storage_bytes(model, rd, tp, dep.ep) / dep.pp * (1 - dep.weight_offload_fraction)


def kv_bytes_per_gpu(model: ModelSpec, rd: ResolvedDeployment, tp, slots):
    """KV bytes one GPU holds for one sequence occupying `slots` KV slots (`kv_allocated_tokens`): 1/tp of
    the KV heads (`ops.kv_cache_bytes`), 1/pp of the layers, 1/ep of the sequences (each data-parallel
    attention rank keeps its own), less the fraction offloaded to host memory. Under `Deployment.attention_dp` a GPU
    holds every KV head (`ops.attention_tp`: 1) of 1/tp of the sequences: for GQA the same bytes per GPU as 1/tp of
    the heads of all of them, for MLA (whose latent every tp rank replicates) 1/tp of them."""
    dep = rd.dep
    return O.kv_cache_bytes(model, rd, 1, slots, O.attention_tp(rd, tp)) * ((1 - dep.kv_offload_fraction) / (dep.pp * dep.attention_ranks))


def pipeline_hop_s(model: ModelSpec, rd: ResolvedDeployment, tp, tokens, link_bytes_per_s, latency_s):
    """One pipeline hand-off of `tokens` tokens' activations to the next stage: latency + tokens · hidden ·
    activation bytes / tp / link (each tp rank sends its slice). Llama-3.1-70B, bf16, tp 8, 2,048 tokens
    over 50 GB/s: 2,048 · 8,192 · 2 / 8 / 50e9 = 84 us plus the latency."""
    return latency_s + tokens * (model.hidden_size * rd.act_bytes / tp) / link_bytes_per_s


# ------------------------------------------------------------ what the serving engine allows
def engine_limits(rd: ResolvedDeployment, hws: list[HardwareProfile]) -> tuple[np.ndarray, np.ndarray] | None:
    """(max running sequences, tokens per step) of the deployment's engine on each device (`EngineProfile.limits`),
    as arrays of shape (H,); None for the bare roofline (no engine). An engine that schedules each attention
    data-parallel rank on its own (`EngineProfile.seqs_per_attention_rank`) runs up to ep · max_num_seqs sequences
    in a replica of ep ranks: TensorRT-LLM with enable_attention_dp, max_batch_size 384 on 8 ranks, holds 3,072."""
    if rd.engine is None:
        return None
    lim = np.array([rd.engine.limits(h) for h in hws], dtype=float)
    return lim[:, 0] * _attention_ranks(rd), _rank_step_tokens(rd, lim[:, 1])


def engine_limits_on(rd: ResolvedDeployment, hw: HardwareProfile) -> tuple[float, float] | None:
    """`engine_limits` on one device, as two floats (the same float64 products, without building arrays)."""
    if rd.engine is None:
        return None
    seqs, tokens = rd.engine.limits(hw)
    return float(seqs) * _attention_ranks(rd), float(_rank_step_tokens(rd, tokens))


def _attention_ranks(rd: ResolvedDeployment) -> int:
    """Ranks an engine schedules sequences on separately: ep where it runs each attention data-parallel rank on its own;
    the tp ranks under `Deployment.attention_dp`, where each rank is a scheduler of its own (SGLang's
    DataParallelController starts one per rank, each with its own KV pool and running batch)."""
    if rd.dep.attention_dp:
        return rd.dep.attention_ranks
    return rd.dep.ep if rd.engine.seqs_per_attention_rank else 1


def _rank_step_tokens(rd: ResolvedDeployment, tokens):
    """An engine's tokens per step on one rank: its budget, or under attention data parallelism the budget floor-divided
    by `EngineProfile.attention_dp_budget_divisor` (SGLang 0.4 server_args: chunked_prefill_size // 2, 8,192 -> 4,096)."""
    if not rd.dep.attention_dp:
        return tokens
    return np.floor_divide(tokens, rd.engine.attention_dp_budget_divisor)


def engine_memory_bytes(rd: ResolvedDeployment, memory_bytes, fixed_bytes=0.0, tp=None):
    """The part of a GPU's memory M the engine uses, f its share at the deployment's tp (`EngineProfile.memory_fraction`:
    `gpu_memory_fraction`, or SGLang 0.4.0's share by tp; all of M without an engine):

    * a share of the device (`memory_fraction_of: device`, vLLM, SGLang): f · M, whatever is loaded;
    * a share of the memory still free once the fixed part F is loaded (`memory_fraction_of: free`, TensorRT-LLM's
      KvCacheConfig.free_gpu_memory_fraction): the KV pool is f · (M - F), so the engine uses F + f · (M - F);
    * a share of the device that sizes the KV pool alone, on top of the fixed part (`memory_fraction_of: device_for_kv`,
      LMDeploy TurboMind's cache_max_entry_count before 0.2.2: blocks = total · f / block bytes): the KV pool is
      f · M, so the engine uses F + f · M, and never more than the device: min(M, F + f · M).

    `tp`: the tensor-parallel size the share is taken at (scalar or array, a sweep's tp axis; default the deployment's).
    `fixed_bytes` F: what the engine holds before it sizes its KV pool (weights, the profiled activation workspace,
    the runtime reserve). F = 0 gives f · M in both cases, so a caller that does not know F gets the device share.
    Worked number (H200, M = 143.8e9 B, Llama-3.3-70B FP8 on one GPU, F = 72e9 B, f = 0.9): a device share leaves
    0.9 · 143.8e9 - 72e9 = 57.4e9 B of KV; TensorRT-LLM's pool is 0.9 · (143.8e9 - 72e9) = 64.6e9 B; TurboMind's
    (f = 0.5) is 0.5 · 143.8e9 = 71.9e9 B, the engine using min(143.8e9, 72e9 + 71.9e9) = 143.8e9 B."""
    if rd.engine is None:
        return memory_bytes
    f = rd.engine.memory_fraction(rd.dep.tp if tp is None else tp)
    if rd.engine.memory_fraction_of == "device":
        return memory_bytes * f
    if rd.engine.memory_fraction_of == "device_for_kv":
        return np.minimum(memory_bytes, fixed_bytes + device_kv_pool_bytes(rd, memory_bytes, tp))
    return fixed_bytes + f * (memory_bytes - fixed_bytes)


def device_kv_pool_bytes(rd: ResolvedDeployment, memory_bytes, tp=None):
    """The KV pool of an engine whose share f sizes the KV pool alone (`memory_fraction_of: device_for_kv`, LMDeploy
    TurboMind's cache_max_entry_count below 1 before 0.2.2: `BlockManager` blocks = total · ratio / block bytes):
    f · M of a GPU's memory M, whatever else is loaded. `tp`: as `engine_memory_bytes`. Worked number (A100-80GB,
    M = 85.9e9 B, f = 0.5): 42.95e9 B."""
    if rd.engine is None or rd.engine.memory_fraction_of != "device_for_kv":
        raise SpecError("engine", "a KV pool sized by a share of the device alone needs an engine with "
                                  "memory_fraction_of: device_for_kv")
    return rd.engine.memory_fraction(rd.dep.tp if tp is None else tp) * memory_bytes


def engine_step_tokens(budget_tokens, prompt_tokens, chunked: bool):
    """Tokens of the largest step an engine runs, the pass it profiles its activation workspace for: its token
    budget (`max_num_batched_tokens`) when prompts are chunked to it, else the larger of the budget and a whole
    prompt, which then runs in one step (trtllm-bench without chunked prefill raises max_num_tokens to the longest
    prompt plus max_batch_size: tensorrt_llm/bench/benchmark/utils/general.py). A 20,000-token prompt on
    TensorRT-LLM (8,192 budget, no chunking): a 20,000-token step."""
    return budget_tokens if chunked else np.maximum(budget_tokens, prompt_tokens)


def sequence_slot_bytes(model: ModelSpec, rd: ResolvedDeployment, tp, replica_slots, max_seq_len):
    """Device bytes one GPU's runtime allocates for its sequence slots before it sizes its KV pool, for an engine
    built for sequences of up to `max_seq_len` tokens: slots · `EngineProfile.slot_bytes`(V_pad, max_seq_len), the
    vocabulary padded to a multiple of the world size tp · pp (TensorRT-LLM's ModelConfig::getVocabSizePadded); 0
    without an engine or for one that models none. `replica_slots`: the replica's running-sequence cap
    (`engine_limits`); a GPU holds all of them, or 1/ep of them where each attention data-parallel rank schedules its
    own batch (`EngineProfile.seqs_per_attention_rank`). Every tensor-parallel rank holds them (each runs its own
    decoder on the gathered logits). Worked number, TensorRT-LLM's C++ executor (`trtllm-cpp`), Llama-3.1-70B at
    tp 2, 2,048 slots, built for 4,096 tokens: 2,048 · (20 · 128,256 + 40 · 4,096 + 65,536) = 2,048 · 2,794,496
    = 5.72e9 B per GPU."""
    eng = rd.engine
    if eng is None:
        return 0.0
    world = tp * rd.dep.pp
    vocab_padded = np.ceil(model.vocab_size / world) * world
    return replica_slots / _attention_ranks(rd) * eng.slot_bytes(vocab_padded, max_seq_len)


def engine_workspace_bytes(model: ModelSpec, rd: ResolvedDeployment, tp, step_tokens, replica_slots, max_seq_len,
                           ep: int = 1):
    """What an engine holds besides weights and the runtime reserve before it sizes its KV pool, one GPU, whatever
    the batch: the activation workspace of its largest step (`step_workspace_bytes` over `step_tokens`) and its
    sequence-slot buffers (`sequence_slot_bytes`: the replica's `replica_slots` running-sequence cap, sequences of up
    to `max_seq_len` tokens)."""
    return step_workspace_bytes(model, rd, tp, step_tokens, ep) + sequence_slot_bytes(model, rd, tp, replica_slots, max_seq_len)


@memoized(lambda model, rd, tp, tokens, ep=1: (Identity(model), rd.key(), tp, tokens, ep) if plain(tp) and plain(tokens) else None)
def step_workspace_bytes(model: ModelSpec, rd: ResolvedDeployment, tp, tokens, ep: int = 1):
    """Activation workspace of the largest engine step, one GPU: the largest per-layer activation footprint
    (bytes read + written) of one prefill pass over `tokens` tokens. An engine sizes its KV cache after a
    profiling pass of its token budget, so this is what it keeps free whatever the batch. Under attention data
    parallelism the budget is each rank's, and every rank prefills its own while the MLP/MoE runs over all of them:
    the pass of one prompt a rank."""
    ranks = rd.dep.attention_ranks if rd.dep.attention_dp else 1
    t = OpTable.of(O.forward_ops(model, rd, ranks, tokens, 0, tp, ep=ep), np.shape(tokens))
    return t.layer_activation_bytes()
