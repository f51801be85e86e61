"""Serving-engine profiles: what an inference engine adds to the kernels a roofline times.

The roofline prices the GPU's work. An engine (vLLM, SGLang, TensorRT-LLM, LMDeploy) adds work of its own and sets
the limits a deployment runs under; each is a sourced, versioned YAML file in `hardware_profiles/engines/`,
chosen by `Deployment.engine` (default `DEFAULT_ENGINE`; `None` is the bare roofline, no engine at all). A profile
that varies another (an older release of the same runtime) writes `extends: <base id>` and only what differs (its
name, versions and notes, the fields whose figure, or whose evidence for its releases, is its own, each with its
source); it loads as the base with those laid over it (`registry.profile_mapping`), its `engine_base` naming the base:

* **CPU time per engine step** the GPU waits for (scheduling, preparing inputs, processing the sampled
  tokens), not hidden behind the GPU's work: h(B) = `step_overhead_s` + B · `step_overhead_per_sequence_s`
  for a step that runs B sequences. Every prefill pass and every decode step pays it once.
* **Per-request latency** outside the steps (the API server, tokenization, handing the first token back):
  `request_overhead_s` + S · `tokenize_s_per_token` for a prompt of S tokens, added to the TTFT of an
  online request (`serving`); an offline batch (`predict`) comes with token ids and pays none of it.
* **Overlap scheduling** (`overlap_scheduler`): the CPU prepares step n+1 while the GPU runs step n, so a request
  that arrives during step n is first seen when step n+1 is already queued; it waits out the rest of step n and
  all of step n+1 before its prefill runs (`serving`: the residual r = 3t̄/2 instead of t̄/2).
* **CUDA graphs**: decode steps of up to `cuda_graph_max_batch` sequences are replayed from a captured
  graph (their launches cost the graph replay, not the eager launch); larger batches run eagerly.
* **Limits**: at most `max_num_seqs` running sequences and `max_num_batched_tokens` tokens per step (the
  chunked-prefill budget); with attention data parallelism over ep ranks (`Deployment.ep`) an engine whose
  scheduler runs per rank (`seqs_per_attention_rank`, TensorRT-LLM's enable_attention_dp) holds up to
  ep · `max_num_seqs` running sequences in the replica (`parallelism.engine_limits`); with attention data parallelism
  over the tp ranks (`Deployment.attention_dp`, SGLang's --enable-dp-attention) every rank is a scheduler of its own,
  holding up to tp · `max_num_seqs`, each with `max_num_batched_tokens` // `attention_dp_budget_divisor` tokens a
  step, and the MLP/MoE output returns to the ranks by `attention_dp_combine`; a step may prefill several prompts (`multi_prompt_prefill`) and may decode the running
  sequences in the same step (`mixed_prefill_decode`; else prefill steps pause decode, `serving.wave_schedule`).
* **Admission** (`admission`): a waiting request joins the running batch while a slot of its whole context is free
  (`slots`, the steady state's memory rule), or, in SGLang 0.4.0 serving ignore_eos requests (`future_kv`), while the
  KV pool holds every running request to its max_new_tokens, counting what the shortest ones free as they finish
  (`serving.future_kv_fits`, which a finite overloaded run's scheduler applies: `serving.overload_run`).
* **Memory**: weights, the activation workspace of its largest step (a pass over `max_num_batched_tokens`
  tokens, which the engine profiles at start-up) and the runtime reserve come first, and the KV cache, in
  blocks of `kv_block_tokens`, gets what `gpu_memory_fraction` leaves. The fraction is of the whole device
  (`memory_fraction_of: device`: vLLM's gpu_memory_utilization, SGLang's mem_fraction_static, which cap all
  the engine's memory) or of the memory still free once the fixed part is loaded (`memory_fraction_of: free`:
  TensorRT-LLM's free_gpu_memory_fraction, which sizes only the KV pool), or of the whole device but sizing the
  KV pool alone (`memory_fraction_of: device_for_kv`: LMDeploy TurboMind's cache_max_entry_count before 0.2.2).
  `predict` and `steady_state` size the batch the same way (`parallelism.engine_memory_bytes`). An engine whose
  runtime allocates buffers for every sequence slot at start-up (TensorRT-LLM's C++ executor: fp32 logits, sampling
  workspaces, output ids and log-probs, for its `max_num_seqs` slots) holds them before the KV pool too
  (`slot_bytes_per_vocab_entry`, `slot_bytes_per_context_token`, `slot_bytes_fixed`; `parallelism.sequence_slot_bytes`):
  the steady state and the offline capacity count them; a static batch (`predict`, which TensorRT-LLM ran in GptSession,
  sized for the batch, whose buffers were not audited) counts none.

* **GQA decode kernel** (`grouped_decode_kernel`): the head layouts (head size, query heads per KV head) whose decode
  kernel reads each KV head once for its group (TensorRT-LLM 0.7 - 0.9's XQA: head 128 / 256 at group 8); any other
  GQA layer runs the generic kernel (masked MHA), one block per (sequence, query head), which streams its KV head once
  per query head: HBM supplies it once and L2 serves the repeats (`ops.decode_kv_reads`). Unset: every layout's
  decode reads each KV head once.
* **All-reduce**: vLLM, SGLang and TensorRT-LLM run their own one-shot / two-shot all-reduce kernels inside an
  NVLink domain (`custom_allreduce`); without one (LMDeploy TurboMind 0.1 - 0.2, whose layers call NCCL; and on the
  bare roofline, which runs torch.distributed) the all-reduce is NCCL's (`nccl_allreduce`): the calibration's measured NCCL points where the file has them, else the
  analytical ring (`collectives`). The engine's custom table times its whole all-reduce call (the collector calls
  vLLM's tensor_model_parallel_all_reduce, TensorRT-LLM's AllReduceStrategy.AUTO), so a message above the custom
  kernel's limit (vLLM: max_size, 8 MiB by default) is already timed as NCCL's, or whatever the table's release
  dispatches it to (calibrate/public/README.md, the all-reduce item). A release older than the table that left its
  custom kernel for NCCL at a smaller size sets that size (`custom_allreduce_max_bytes`: SGLang 0.4.0, which ran vLLM
  0.6's all-reduce, and vLLM 0.7, both at 8 MiB, where the SGLang 0.5.14 table keeps the custom kernel to 32 MiB and the
  vLLM 0.24.0 one runs symmetric memory to 64 MiB): its messages of that size and more are timed by the NCCL points
  (`with_custom_allreduce_limit`, `calibration.switched_allreduce_points`). Worked number (H200, the NCCL 2.29.2 table): a tp-8 decode all-reduce of
  131,072 bytes is 18.2 µs + 131,072 / 220.1e9 = 18.8 µs by NCCL, where vLLM's custom kernel (its 0.24.0 table) takes 5.38 µs + 131,072 / 224.2e9 = 5.96 µs.

Defaults that depend on the GPU (vLLM gives GPUs with at least 70 GiB, other than the A100, larger
budgets) are a `large_gpu` override, resolved by `EngineProfile.limits`.
"""

import functools
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, model_validator

from .calibration import switched_allreduce_points
from .errors import NumbersAreNumbers, SpecError, validation_message
from .memo import Identity, memoized
from .registry import for_framework, load_profile, profile_ids
from .specs import MAX_HEADS, MAX_WIDTH

DEFAULT_ENGINE = "vllm"
MAX_OVERHEAD_S = 1.0
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
_SOURCED = ("step_overhead_s", "step_overhead_per_sequence_s", "request_overhead_s", "tokenize_s_per_token",
            "cuda_graph_max_batch", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_fraction", "kv_block_tokens",
            "multi_prompt_prefill", "mixed_prefill_decode", "overlap_scheduler", "custom_allreduce", "memory_fraction_of")
SLOT_FIELDS = ("slot_bytes_per_vocab_entry", "slot_bytes_per_context_token", "slot_bytes_fixed")


class _Profile(NumbersAreNumbers):
    """A profile record whose numbers are numbers (`errors.NumbersAreNumbers`): YAML's true / false where a count, a
    share or a time belongs is a one-line error naming the field (`gpu_memory_fraction: true` would be the whole GPU)."""

    model_config = _FROZEN


class LargeGpuLimits(_Profile):
    """Limits an engine picks on GPUs with at least `min_memory_bytes` of memory (except `except_architectures`)."""

    min_memory_bytes: float = Field(gt=0)
    except_architectures: tuple[str, ...] = ()
    max_num_seqs: int = Field(ge=1, le=1_000_000)
    max_num_batched_tokens: int = Field(ge=1, le=10_000_000)


class GroupedDecodeKernel(_Profile):
    """The head layouts an engine's GQA-aware decode kernel serves (TensorRT-LLM's XQA): a GQA layer whose head size is
    in `head_dims` and whose query heads per KV head are in `group_sizes` runs it, reading each KV head once for its
    whole group; every other GQA layer (group > 1) runs the engine's generic decode kernel (TensorRT-LLM's masked MHA),
    one thread block per (sequence, query head), which reads its KV head once per query head. Empty tuples: no GQA-aware
    kernel at all."""

    model_config = _FROZEN
    head_dims: tuple[Annotated[int, Field(gt=0, le=MAX_WIDTH)], ...] = Field(
        (), description="head sizes (elements) the GQA-aware kernel serves, e.g. [128, 256]")
    group_sizes: tuple[Annotated[int, Field(gt=0, le=MAX_HEADS)], ...] = Field(
        (), description="query heads per KV head (on one GPU) it serves, e.g. [8]")

    def reads_per_kv_head(self, head_dim, group):
        """How many times one decode step reads each KV head of a sequence (scalar or array `group`): 1 where the
        GQA-aware kernel serves the layout (or there is no group: MHA, group 1), else `group` (the generic kernel,
        one read per query head). Falcon-180B (head 64, group 29) under TensorRT-LLM 0.9 (head_dims (128, 256),
        group_sizes (8,)): 29; Llama-2-70B (head 128, group 8): 1."""
        served = (head_dim in self.head_dims) & np.isin(group, self.group_sizes)
        out = np.where(served | (np.asarray(group) <= 1), 1.0, np.asarray(group, dtype=float))
        return float(out) if out.ndim == 0 else out


class EngineProfile(_Profile):
    """One serving engine at the versions `versions` describes. Seconds, tokens, sequences; every figure sourced."""

    model_config = _FROZEN
    name: str = Field(min_length=1)
    versions: str = Field(min_length=1, description="the engine versions these figures describe")
    framework: Literal["vllm", "sglang", "trtllm"] | None = Field(
        description="whose measured kernel tables describe its kernels (null: none collected under this engine, so the "
                    "device's default tables)")
    step_overhead_s: float = Field(ge=0, le=MAX_OVERHEAD_S, description="CPU time per engine step the GPU waits for")
    step_overhead_per_sequence_s: float = Field(ge=0, le=MAX_OVERHEAD_S, description="the same, per running sequence")
    request_overhead_s: float = Field(ge=0, le=MAX_OVERHEAD_S, description="per-request latency outside the steps")
    tokenize_s_per_token: float = Field(ge=0, le=MAX_OVERHEAD_S, description="tokenizing one prompt token on the request path")
    cuda_graph_max_batch: int = Field(ge=0, le=1_000_000, description="largest decode batch replayed from a CUDA graph (0: none)")
    max_num_seqs: int = Field(ge=1, le=1_000_000, description="running sequences at most")
    max_num_batched_tokens: int = Field(ge=1, le=10_000_000, description="tokens per step at most (the chunked-prefill budget)")
    chunked_prefill: bool = Field(description="long prompts are prefilled in chunks of the token budget, mixed with decode")
    multi_prompt_prefill: bool = Field(description="one step may prefill several prompts")
    mixed_prefill_decode: bool = Field(description="one step may both prefill prompts and decode running sequences (else a "
                                                   "step that prefills pauses decode)")
    overlap_scheduler: bool = Field(description="the CPU schedules step n+1 while the GPU runs step n: a request that arrives "
                                                 "during a step joins the step after the next")
    gpu_memory_fraction: float = Field(gt=0, le=1, description="share of the GPU's memory the engine uses")
    gpu_memory_fraction_by_tp: dict[int, float] | None = Field(
        None, description="an engine whose default share depends on the tensor-parallel size: {smallest tp: share}; a "
                          "deployment takes the share of the largest listed tp not above its own, and gpu_memory_fraction "
                          "below every listed tp (`memory_fraction`)")
    memory_fraction_of: Literal["device", "free", "device_for_kv"] = Field(
        "device", description="what gpu_memory_fraction is a share of: the whole device (it caps all the engine's "
                              "memory), the memory free after weights, workspace and reserve (it sizes the KV pool), "
                              "or the whole device sizing the KV pool alone, on top of what is loaded")
    kv_block_tokens: int = Field(ge=1, le=1_000_000, description="tokens per KV cache block")
    windowed_kv_cache: bool = Field(True, description="a sliding-window layer's KV cache holds only its window (else the "
                                                      "engine's cache keeps every layer's whole context, as for full "
                                                      "attention, while the kernel still attends to the window); false "
                                                      "needs a source")
    admission: Literal["slots", "future_kv"] = Field(
        "slots", description="how the engine admits a waiting request: `slots`, while a running-sequence slot of the whole "
                             "context is free (memory / the KV of one sequence at its full context); `future_kv`, while its "
                             "KV pool holds every running request to its max_new_tokens, counting the tokens the ones that "
                             "finish first free (SGLang's PrefillAdder for ignore_eos requests with the radix cache off; "
                             "`serving.future_kv_fits`); future_kv needs a source")
    seqs_per_attention_rank: bool = Field(False, description="with attention data parallelism (ep > 1) every rank schedules "
                                                             "its own batch of up to max_num_seqs sequences (else "
                                                             "max_num_seqs bounds the whole replica)")
    attention_dp_combine: Literal["all_reduce", "reduce_scatter"] = Field(
        "reduce_scatter", description="with attention data parallelism (`Deployment.attention_dp`), how the MLP/MoE output "
                                      "returns to each rank: an all-reduce of every rank's rows, each rank slicing its own, "
                                      "or a reduce-scatter (`ops.attention_dp_combine`); all_reduce needs a source")
    attention_dp_budget_divisor: int = Field(
        1, ge=1, le=1024, description="with attention data parallelism each rank's tokens per step are "
                                      "max_num_batched_tokens // this (SGLang 0.4: chunked_prefill_size // 2); >1 needs a source")
    custom_allreduce: bool = Field(description="the engine all-reduces with its own one-shot / two-shot kernels inside "
                                               "an NVLink domain (else NCCL's)")
    custom_allreduce_max_bytes: float | None = Field(
        None, gt=1, le=2.0**40, description="the message bytes from which the engine's all-reduce call leaves its custom "
                                            "kernel for NCCL (vLLM's CustomAllreduce max_size: messages S < it run the "
                                            "custom kernel); None: the framework's kernel table's own switch applies "
                                            "(`with_custom_allreduce_limit`); set needs a source and custom_allreduce")
    slot_bytes_per_vocab_entry: float = Field(0.0, ge=0, le=1e3, description="device bytes the runtime allocates at start-up, "
                                              "before sizing its KV pool, per sequence slot (max_num_seqs of them) and "
                                              "per entry of the padded vocabulary (logits, sampling workspaces); 0: none "
                                              "modelled, nonzero needs a source")
    slot_bytes_per_context_token: float = Field(0.0, ge=0, le=1e4, description="the same per sequence slot and per token "
                                                "of the engine's max sequence length (output ids, log-probs, cache "
                                                "indirection); 0: none modelled, nonzero needs a source")
    slot_bytes_fixed: float = Field(0.0, ge=0, le=1e9, description="the same per sequence slot, whatever the vocabulary "
                                    "and length; 0: none modelled, nonzero needs a source")
    grouped_decode_kernel: GroupedDecodeKernel | None = Field(
        None, description="the head layouts its GQA-aware decode kernel serves (`GroupedDecodeKernel`); other GQA "
                          "layouts run a generic kernel that reads each KV head once per query head. None: every "
                          "layout's decode reads each KV head once (FlashInfer, FlashAttention, later XQA); set needs "
                          "a source")
    large_gpu: LargeGpuLimits | None = None
    sources: dict[str, str]
    notes: str = ""
    engine_base: str | None = Field(
        None, description="the id of the shipped profile this one varies (its file's `extends:`, resolved by "
                          "`registry.profile_mapping`); None for a base. Set on loading, not written in the file")

    @model_validator(mode="after")
    def _check(self) -> "EngineProfile":
        missing = [k for k in _SOURCED if k not in self.sources]
        if not self.windowed_kv_cache and "windowed_kv_cache" not in self.sources:
            missing.append("windowed_kv_cache")
        if self.admission != "slots" and "admission" not in self.sources:
            missing.append("admission")
        if self.attention_dp_combine != "reduce_scatter" and "attention_dp_combine" not in self.sources:
            missing.append("attention_dp_combine")
        if self.attention_dp_budget_divisor != 1 and "attention_dp_budget_divisor" not in self.sources:
            missing.append("attention_dp_budget_divisor")
        if self.custom_allreduce_max_bytes is not None and "custom_allreduce_max_bytes" not in self.sources:
            missing.append("custom_allreduce_max_bytes")
        if self.grouped_decode_kernel is not None and "grouped_decode_kernel" not in self.sources:
            missing.append("grouped_decode_kernel")
        if self.gpu_memory_fraction_by_tp is not None and "gpu_memory_fraction_by_tp" not in self.sources:
            missing.append("gpu_memory_fraction_by_tp")
        missing += [k for k in SLOT_FIELDS if getattr(self, k) and k not in self.sources]
        if missing:
            raise SpecError("sources", f"no source for {', '.join(missing)}")
        if self.custom_allreduce_max_bytes is not None and not self.custom_allreduce:
            raise SpecError("custom_allreduce_max_bytes", "is the custom all-reduce kernel's limit: set custom_allreduce "
                                                          "true, or remove it")
        bad = {k: v for k, v in (self.gpu_memory_fraction_by_tp or {}).items() if k < 1 or not 0 < v <= 1}
        if bad:
            raise SpecError("gpu_memory_fraction_by_tp", f"needs tp sizes >= 1 and shares in (0, 1], got {bad}")
        return self

    def memory_fraction(self, tp):
        """The share of each GPU's memory the engine uses at tensor-parallel size `tp` (scalar or array):
        `gpu_memory_fraction`, or where the engine sets it by tp (`gpu_memory_fraction_by_tp`), the share of the largest
        listed tp not above `tp`. SGLang 0.4.0 (`sglang-0.4.0`): 0.88 at tp 1, 0.87 at tp 2-3, 0.85 at tp 4-7, 0.81 at
        tp 8-15, 0.79 from 16."""
        if not self.gpu_memory_fraction_by_tp:
            return self.gpu_memory_fraction
        t = np.asarray(tp)
        out = np.full(t.shape, self.gpu_memory_fraction)
        for smallest_tp, share in sorted(self.gpu_memory_fraction_by_tp.items()):
            out = np.where(t >= smallest_tp, share, out)
        return float(out) if out.ndim == 0 else out

    def limits(self, hw) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) on device `hw`: the large-GPU defaults where they apply."""
        big = self.large_gpu
        if big is not None and hw.memory_bytes >= big.min_memory_bytes and hw.architecture not in big.except_architectures:
            return big.max_num_seqs, big.max_num_batched_tokens
        return self.max_num_seqs, self.max_num_batched_tokens

    def slot_bytes(self, vocab_padded, max_seq_len):
        """Device bytes the runtime allocates for one sequence slot before it sizes its KV pool (scalar or array):
        `slot_bytes_per_vocab_entry` · padded vocabulary + `slot_bytes_per_context_token` · max sequence length +
        `slot_bytes_fixed`; 0 for an engine that models none. TensorRT-LLM's C++ executor (`trtllm-cpp`: 20, 40,
        65,536), Llama-3.1 (128,256 entries) at 4,096 tokens: 20 · 128,256 + 40 · 4,096 + 65,536 = 2,794,496 B."""
        return (self.slot_bytes_per_vocab_entry * vocab_padded + self.slot_bytes_per_context_token * max_seq_len
                + self.slot_bytes_fixed)

    def step_s(self, sequences):
        """h(B): the CPU time of one engine step running `sequences` sequences (scalar or array)."""
        return self.step_overhead_s + self.step_overhead_per_sequence_s * sequences

    def request_s(self, prompt_tokens):
        """Latency a request adds outside the engine steps: the fixed part plus tokenizing its prompt."""
        return self.request_overhead_s + self.tokenize_s_per_token * prompt_tokens


def list_engines() -> list[str]:
    """Ids of the shipped engine profiles."""
    return profile_ids("engines")


@functools.lru_cache(maxsize=None)
def load_engine(engine_id: str) -> EngineProfile:
    """A shipped engine profile by id; an unknown id is a one-line error listing the choices. A variant's file
    (`extends: <base id>`) holds only what differs from its base; it loads laid over the base (`registry.overlay`),
    with the base's id in `engine_base`."""
    return load_profile("engines", engine_id, EngineProfile, "engine", ", or none for the bare roofline",
                        base_field="engine_base")


def nccl_allreduce(engine: EngineProfile | None) -> bool:
    """Whether all-reduces run in NCCL: on the bare roofline (no engine: torch.distributed) and in an engine without
    custom all-reduce kernels."""
    return engine is None or not engine.custom_allreduce


@memoized(lambda hw: (Identity(hw),))
def with_nccl_allreduce(hw):
    """`hw` with its all-reduce as NCCL runs it: no custom one-shot / two-shot step (so no NVLS either: the analytical
    model keeps the ring) and, in a calibrated profile, the measured NCCL points (and line) of each group size in place
    of the engine's kernel (none measured: the ring). One copy per profile (memoized by identity), so the ceilings memoized
    by profile identity (`Ceilings.of`) are found again on the next call instead of built for a fresh copy."""
    ic = hw.interconnect
    update = {}
    if ic.custom_allreduce_latency_s is not None:
        update["interconnect"] = ic.model_copy(update={"custom_allreduce_latency_s": None, "nvls_bandwidth_fraction": None})
    cal = hw.calibration
    if cal is not None and (cal.allreduce or cal.nccl_allreduce or cal.allreduce_points or cal.nccl_allreduce_points):
        update["calibration"] = cal.model_copy(update={"allreduce": cal.nccl_allreduce,
                                                       "allreduce_points": cal.nccl_allreduce_points})
    return hw.model_copy(update=update) if update else hw


@memoized(lambda hw, limit_bytes: (Identity(hw), float(limit_bytes)))
def with_custom_allreduce_limit(hw, limit_bytes: float):
    """`hw` with its calibrated all-reduce as an engine runs it whose custom kernel takes messages below `limit_bytes`
    and NCCL the rest (`EngineProfile.custom_allreduce_max_bytes`): per group size measured in both tables, the custom
    points below the limit and NCCL's from it (`calibration.switched_allreduce_points`); a group NCCL's table lacks
    keeps its custom points. The fitted lines (`Calibration.allreduce`, a summary the points replace) are kept.

    Why: a framework's kernel table times its whole all-reduce call at the table's release, so it switches where that
    release does (SGLang 0.5.14: NCCL from 32 MiB; vLLM 0.24.0 on Hopper tp8: symmetric memory to 64 MiB); a release
    that took NCCL from 8 MiB (vLLM 0.6 - 0.7, whose max_size SGLang 0.4.0 ran) is timed by NCCL's points there.
    An uncalibrated device, or one without both tables, is returned as it is: the analytical model
    (`collectives`) already times each message by the fastest algorithm the link allows. One copy per (profile, limit),
    memoized by identity like `with_nccl_allreduce`.

    A limit whose joined points are no measurement (the custom kernel's time carried on to a limit far past its table
    exceeds a kernel's 1 s, or NCCL's last segment beats the custom group's speed of light) is a one-line error naming
    `custom_allreduce_max_bytes` and the sizes both tables measured, not the joined table's own check."""
    cal = hw.calibration
    if cal is None or cal.allreduce_points is None or cal.nccl_allreduce_points is None:
        return hw
    nccl = cal.nccl_allreduce_points.groups
    try:
        groups = {key: (switched_allreduce_points(g, nccl[key], limit_bytes) if key in nccl else g)
                  for key, g in cal.allreduce_points.groups.items()}
    except ValidationError as exc:
        both = [min(g.message_bytes[-1], nccl[k].message_bytes[-1]) for k, g in cal.allreduce_points.groups.items() if k in nccl]
        raise SpecError("custom_allreduce_max_bytes",
                        f"{limit_bytes:,.0f} B cannot join the custom all-reduce's measured points to NCCL's on "
                        f"{hw.name or hw.id} ({validation_message(exc, '')}); choose a limit within the sizes both "
                        f"tables measured, at most {min(both):,.0f} B") from None
    source = f"{cal.allreduce_points.source}; below {limit_bytes:,.0f} B, then NCCL's ({cal.nccl_allreduce_points.source})"
    points = cal.allreduce_points.model_copy(update={"groups": groups, "source": source})
    return hw.model_copy(update={"calibration": cal.model_copy(update={"allreduce_points": points})})


def engine_tables(hw, engine_id: str | None):
    """`hw` timed the way engine `engine_id` runs it: with the kernel tables of its framework where shipped
    (`registry.for_framework`), with NCCL's all-reduce where the engine has no custom one (`nccl_allreduce`), and with
    NCCL's from the engine's own custom-kernel limit where it sets one (`with_custom_allreduce_limit`); the bare
    roofline (None) keeps the device's tables and all-reduces with NCCL."""
    engine = None if engine_id is None else load_engine(engine_id)
    out = hw if engine is None else for_framework(hw, engine.framework)
    if nccl_allreduce(engine):
        return with_nccl_allreduce(out)
    if engine.custom_allreduce_max_bytes is not None:
        return with_custom_allreduce_limit(out, engine.custom_allreduce_max_bytes)
    return out
