"""What is asked of the model (`Workload`) and how it is deployed (`Deployment`).

Both are frozen pydantic records; a bad value is a one-line `SpecError`-style
validation error naming the field.
"""

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .dtypes import DEQUANT_OPS_PER_WEIGHT, QuantScheme, get_dtype
from .engines import DEFAULT_ENGINE, load_engine
from .errors import NumbersAreNumbers, SpecError, renamed
from .memo import HashedKey, Identity, memoized
from .specs import MAX_CONTEXT, MAX_LAYERS, MAX_WIDTH, CheckpointQuant, ModelSpec, kv_scheme
from .units import GIB

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every number finite
MAX_BATCH = 1 << 24  # sequences
MAX_GPUS = 1 << 16  # per replica, along any one parallel axis


class Workload(NumbersAreNumbers):
    """A static batch: `batch_size` sequences, each a prompt then `output_tokens` generated tokens.

    The first output token comes out of prefill (TTFT); the remaining
    `output_tokens - 1` come from decode steps (TPOT).
    """

    model_config = _FROZEN
    batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="concurrent sequences")
    prompt_tokens: int = Field(ge=1, le=MAX_CONTEXT, description="input tokens per sequence")
    output_tokens: int = Field(ge=1, le=MAX_CONTEXT, description="generated tokens per sequence")

    @property
    def context_tokens(self) -> int:
        """Tokens each sequence holds in the KV cache at the end: prompt + output."""
        return self.prompt_tokens + self.output_tokens


# Acceptance-rate defaults, each from a published measurement (the rate is an input: pass your own).
ACCEPTANCE_RATE_DRAFT_MODEL = 0.7
"""Per-token acceptance of a same-family small draft: Leviathan et al. 2023 (arXiv:2211.17192), Table 3,
report alpha 0.5-0.9 across T5/LaMDA pairs; Chen et al. 2023 (arXiv:2302.01318) about 0.7-0.8 for Chinchilla 4B->70B."""
ACCEPTANCE_RATE_SELF_DRAFT = 0.85
"""Self-drafting / multi-token-prediction heads: DeepSeek-V3 technical report (arXiv:2412.19437), section 5.4.3,
reports 85-90% acceptance of the second (MTP) token."""


class Speculative(NumbersAreNumbers):
    """Speculative decoding: a cheap drafter proposes `k` tokens, the target verifies them in one pass of k+1 tokens.

    With a per-token acceptance rate a (independent tokens), the expected tokens one
    target step yields is 1 + a + ... + a^k = (1 - a^(k+1)) / (1 - a): a=0.8, k=4 gives 3.36.
    `draft` names a draft model (id or spec path); None means self-drafting
    (Medusa heads / multi-token prediction) costed as `draft_layers` extra
    transformer layers of the target plus its LM head per drafted token.
    """

    model_config = _FROZEN
    draft: str | ModelSpec | None = Field(None, description="draft model id, spec path or ModelSpec; None = self-drafting (MTP/Medusa)")
    k: int = Field(4, ge=1, le=16, description="tokens drafted per target step")
    acceptance_rate: float | None = Field(
        None, description="probability each drafted token is accepted, in [0, 1); default 0.7 with a draft model, 0.85 self-drafting")
    draft_layers: int = Field(1, ge=1, le=MAX_LAYERS, description="transformer layers one self-drafting head runs (DeepSeek-V3 MTP: 1)")

    @model_validator(mode="after")
    def _check(self) -> "Speculative":
        a = self.acceptance_rate
        if a is not None and not 0 <= a < 1:
            raise ValueError(f"acceptance_rate: must be in [0, 1), got {a} (1 would mean every draft is accepted forever)")
        return self

    @property
    def rate(self) -> float:
        if self.acceptance_rate is not None:
            return self.acceptance_rate
        return ACCEPTANCE_RATE_SELF_DRAFT if self.draft is None else ACCEPTANCE_RATE_DRAFT_MODEL

    @property
    def expected_tokens_per_step(self) -> float:
        """(1 - a^(k+1)) / (1 - a): tokens emitted per verification (the accepted run plus the target's own token)."""
        a = self.rate
        return (1 - a ** (self.k + 1)) / (1 - a)


DEFAULT_EXPERT_ROUTING_ALPHA = 1.01
"""Power-law exponent of the tokens each routed expert gets in one step (`ops.skewed_routing`). aiconfigurator-core 0.12.0
(`sdk/config.py`: `workload_distribution = "power_law"` by default; `sdk/models/deepseek.py` and its other MoE models set
`_power_law_alpha = 1.01`) times MoE layers with this distribution by default, its authors' stand-in for "real-world load
imbalance" (ai-dynamo/aiconfigurator `collector/helper.py`, `power_law_logits_v3`); its kernel tables measure it
(`moe_perf.parquet`, distribution `power_law_1.01`)."""
MAX_ROUTING_ALPHA = 100.0  # beyond this the power law sits at its lower bound: balanced


class Deployment(NumbersAreNumbers):
    """How the model runs: parallelism, number formats, attention kernel, memory reserve.

    dtypes default to the model's native formats (`None` = native: the released
    weight format, e.g. MXFP4 for gpt-oss, and native_dtype for the rest). Weight and
    KV dtypes are storage formats; `activation_dtype` is the compute format and
    picks the tensor-core peak: W4A16 (`weight_dtype="int4"`) computes at the
    BF16 peak, W8A8 / FP8 at the 8-bit peak.
    """

    model_config = _FROZEN
    tp: int = Field(1, ge=1, le=MAX_GPUS, description="tensor-parallel degree (GPUs per replica)")
    weight_dtype: str | None = Field(None, description="storage format of linear-layer weights and the LM head")
    activation_dtype: str | None = Field(None, description="compute format of GEMMs and attention")
    kv_dtype: str | None = Field(None, description="storage format of the KV cache")
    weight_group_size: int | None = Field(None, gt=0, le=MAX_WIDTH, description="elements per quantization scale (group-wise quantization)")
    weight_scale_dtype: str | None = Field(None, description="format of the quantization scales (default: the weight dtype's convention)")
    weight_zero_point: bool = Field(False, description="asymmetric quantization: one zero point per scale, stored at the weight's bit width")
    pp: int = Field(1, ge=1, le=MAX_GPUS, description="pipeline-parallel stages; a replica has tp x pp x ep GPUs")
    pp_microbatches: int | None = Field(
        None, ge=1, le=MAX_BATCH, description="micro-batches the batch is split into across the pipeline (default: min(batch, pp))")
    ep: int = Field(1, ge=1, le=MAX_GPUS, description="expert-parallel GPUs for MoE layers: experts spread E/ep per GPU with "
                                         "all-to-all dispatch and combine, attention data-parallel over the ep GPUs (needs tp=1)")
    attention_dp: bool = Field(
        False, description="attention data-parallel over the tp GPUs, MLP/MoE tensor-parallel (SGLang --enable-dp-attention): "
                           "each rank holds the whole attention weights, embedding and LM head and runs them on its own "
                           "sequences with its own KV cache; their hidden states are all-gathered before every MLP/MoE "
                           "block, which runs tp-sharded over all ranks' tokens, and combined after it (needs tp > 1, ep = 1)")
    expert_routing_alpha: float | None = Field(
        DEFAULT_EXPERT_ROUTING_ALPHA, gt=0, le=MAX_ROUTING_ALPHA,
        description="uneven expert routing: tokens per expert follow a power law of this exponent (`ops.skewed_routing`; "
                    "aiconfigurator-core's default 1.01); None = balanced, every expert the same load")
    network: str | None = Field(None, description="scale-out network profile id (`roofline networks`) for a replica larger than "
                                                  "one NVLink domain; default: `network.DEFAULT_NETWORK`")
    on_unsupported_dtype: Literal["error", "fallback"] = Field(
        "error", description="compute dtype the hardware lacks: error, or fall back to weight-only storage with "
                             "native compute (FP8 on A100 runs as FP8-weight / BF16-compute, as vLLM's FP8 Marlin kernels do)")
    weight_scale_granularity: Literal["tensor", "row", "group", "block"] | None = Field(
        None, description="scale layout: one per tensor, per output row, per group of weight_group_size along K, or per "
                          "weight_group_size x weight_group_size block (DeepSeek-V3 FP8: 128 x 128); default: the dtype's")
    dequant_tile_tokens: int = Field(
        64, ge=1, le=MAX_CONTEXT, description="token rows a weight-only (W4A16/W8A16) kernel computes per dequantized weight tile: weights "
                              "are dequantized once per such tile (Marlin-style kernels use 16-64)")
    sparsity: Literal["dense", "2:4", "unstructured"] = Field(
        "dense", description="2:4: half the linear weights are zero in 2:4 pattern, run on sparse tensor cores; unstructured: "
                             "sparsity_fraction of weights are zero, kernels stay dense")
    sparsity_fraction: float = Field(0.5, ge=0, lt=1, description="fraction of zero weights for unstructured sparsity")
    sparse_format: Literal["dense", "bitmask", "csr"] = Field(
        "dense", description="storage of unstructured-sparse weights: dense (zeros stored), bitmask (1 bit per element + "
                             "non-zeros) or csr (non-zeros + a 16-bit column index each + 32-bit row pointers)")
    kv_allocation: Literal["exact", "paged", "contiguous"] = Field(
        "exact", description="exact: each sequence holds its own tokens; paged: rounded up to kv_block_tokens (vLLM); "
                             "contiguous: every sequence reserves kv_reserved_tokens up front")
    kv_block_tokens: int = Field(16, ge=1, le=MAX_CONTEXT, description="tokens per KV block with paged allocation (vLLM default 16)")
    kv_reserved_tokens: int | None = Field(None, ge=1, le=MAX_CONTEXT, description="tokens reserved per sequence with contiguous allocation (default: the model's max_context)")
    prefix_tokens: int = Field(0, ge=0, le=MAX_CONTEXT, description="prompt tokens shared by requests (system prompt) that prefix caching can reuse")
    prefix_hit_rate: float = Field(0.0, ge=0, le=1, description="fraction of requests whose shared prefix is already cached")
    weight_offload_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of weights kept in host memory and streamed over the host link every pass")
    kv_offload_fraction: float = Field(0.0, ge=0, lt=1, description="fraction of the KV cache kept in host memory and read over the host link every step")
    speculative: "Speculative | None" = Field(None, description="speculative decoding: a draft model or self-drafting heads")
    attention_impl: Literal["flash", "naive"] = Field("flash", description="flash: fused, no score matrix in HBM; naive: scores and probabilities written and read")
    runtime_reserve_bytes: float = Field(
        2 * GIB, ge=0, le=1e13,
        description="per-GPU memory the runtime keeps (CUDA context, cuBLAS/NCCL workspaces, CUDA graphs); "
        "vLLM and TensorRT-LLM logs on 80 GB cards report about 1-3 GiB of such non-tensor memory",
    )
    engine: str | None = Field(
        DEFAULT_ENGINE, description="serving engine profile (`roofline engines`): CPU time per step and per request, "
        "CUDA-graph range, running-sequence and per-step token limits, memory fraction; None = the bare roofline",
    )

    @model_validator(mode="after")
    def _check(self) -> "Deployment":
        for field in ("weight_dtype", "activation_dtype", "kv_dtype", "weight_scale_dtype"):
            value = getattr(self, field)
            if value is not None:
                get_dtype(value, field)
        if self.attention_dp and self.ep > 1:
            raise ValueError(f"attention_dp: ep={self.ep} already runs attention data-parallel over the ep GPUs; "
                             "use attention_dp with tp > 1 and ep=1, or ep alone")
        if self.ep > 1 and self.tp > 1:
            raise ValueError(f"ep: ep={self.ep} with tp={self.tp}: expert parallelism here runs attention data-parallel "
                             "over the ep GPUs; use tp=1 with ep, or ep=1 with tp")
        if self.attention_dp and self.tp == 1:
            raise ValueError("attention_dp: needs tp > 1 (attention data-parallel over the tp GPUs); set tp, or drop attention_dp")
        if self.weight_scale_granularity == "block" and self.weight_group_size is None:
            raise ValueError("weight_scale_granularity: 'block' needs weight_group_size (the block edge, e.g. 128)")
        if self.sparse_format != "dense" and self.sparsity != "unstructured":
            raise ValueError(f"sparse_format: {self.sparse_format!r} stores unstructured sparsity; set sparsity='unstructured'")
        if self.engine is not None:
            load_engine(self.engine)  # an unknown id is a one-line error listing the shipped engines
        if self.prefix_tokens == 0 and self.prefix_hit_rate > 0:
            raise ValueError("prefix_hit_rate: needs prefix_tokens > 0 (the shared prefix length)")
        return self

    @property
    def gpus_per_replica(self) -> int:
        """GPUs in one replica: tp x pp x ep."""
        return self.tp * self.pp * self.ep

    @property
    def attention_ranks(self) -> int:
        """Data-parallel attention ranks of a replica, each running attention on its own sequences with its own KV
        cache: ep with expert parallelism, tp with `attention_dp`, else 1 (attention tensor-parallel over tp)."""
        return self.ep if self.ep > 1 else (self.tp if self.attention_dp else 1)

    @property
    def is_tp_group(self) -> bool:
        """One tensor-parallel group: pp = 1 and ep = 1, every GPU of the replica running every layer over the tp GPUs
        (attention tensor-parallel, or data-parallel with `attention_dp`). The layout `serving.wave` steps."""
        return self.pp == 1 and self.ep == 1

    @property
    def is_tp_replica(self) -> bool:
        """A replica that is tensor-parallel alone: one tp group (`is_tp_group`) whose attention is tensor-parallel
        too, so one scheduler serves it (`attention_ranks` = 1). The layout the runs stepped one engine step at a time
        (the stepped overload run, offline waves, the block queue) and the mixed prefill-decode step loop model."""
        return self.is_tp_group and not self.attention_dp

    num_gpus = renamed("num_gpus", "gpus_per_replica")  # its name before issue 11's one-spelling rename

    def resolved(self, model) -> "ResolvedDeployment":
        """Fill the model's native formats in and check the formats against each other.

        Kept per (deployment, model) object (`memo`, by identity: both are frozen), with its `key()`: every prediction
        of a deployment resolves it again. A resolution is not changed once built (`with_note`, `fallen_back` copy it)."""
        return _resolved(self, model)


@memoized(lambda dep, model: (Identity(dep), Identity(model)))
def _resolved(dep: Deployment, model) -> "ResolvedDeployment":
    """`Deployment.resolved`, kept."""
    return ResolvedDeployment.of(dep, model.native_dtype, model.native_weight_dtype, model.checkpoint_quant)


class ResolvedDeployment:
    """A Deployment with dtypes resolved against a model: what `ops.py` consumes. Read-only once built (a kept
    resolution, `Deployment.resolved`, serves every prediction of its deployment and model)."""

    __slots__ = ("dep", "weights", "act", "kv", "native", "unquantized", "compute_key", "notes", "engine", "_key",
                 "weight_only", "dequant_ops_per_weight", "act_bytes", "unquantized_bytes", "kept", "act_from_checkpoint",
                 "native_mma")

    @classmethod
    def of(cls, dep: Deployment, native_dtype: str, native_weight_dtype: str | None = None,
           checkpoint: CheckpointQuant | None = None) -> "ResolvedDeployment":
        """Resolve the formats. A quantized checkpoint's own layout (`checkpoint`: scales, compute format,
        groups kept in native_dtype) applies while the deployment keeps its weights (weight_dtype unset);
        the deployment's own group size, scale format, zero point and granularity override it field by field."""
        self = cls()
        self.dep = dep
        self.native = get_dtype(native_dtype, "native_dtype")
        own = checkpoint if dep.weight_dtype is None and native_weight_dtype is not None else None
        wd = get_dtype(dep.weight_dtype or native_weight_dtype or native_dtype, "weight_dtype")
        self.act_from_checkpoint = dep.activation_dtype is None and own is not None and own.activation_dtype is not None
        ad = get_dtype(dep.activation_dtype or (own.activation_dtype if own else None) or native_dtype, "activation_dtype")
        if wd.name == "tf32":
            raise SpecError("weight_dtype", "tf32 is a compute mode, not a storage format; use fp32")
        if ad.peak_key is None:
            raise SpecError("activation_dtype", f"{ad.name} is a storage-only format; compute in bf16 or fp16")
        if ad.bits < wd.bits and ad.name != "tf32":
            raise SpecError(
                "activation_dtype",
                f"{ad.name} activations with {wd.name} weights would need the weights re-quantized every step; "
                f"use weight_dtype with at most {ad.bits} bits (e.g. weight_dtype={ad.name})",
            )
        if own is None:
            self.weights = QuantScheme.of(wd, dep.weight_group_size, dep.weight_scale_dtype, dep.weight_zero_point, field="weight",
                                          granularity=dep.weight_scale_granularity)
        else:
            self.weights = QuantScheme.of(wd, dep.weight_group_size or own.group_size, dep.weight_scale_dtype or own.scale_dtype,
                                          dep.weight_zero_point or own.zero_point, field="weight",
                                          granularity=dep.weight_scale_granularity or (None if dep.weight_group_size else own.scale_granularity))
        # weight groups the checkpoint keeps in native_dtype (`ops.matrix_scheme`); none once re-quantized
        self.kept = frozenset(own.unquantized) if own is not None and wd.is_quantized else frozenset()
        # Tensors quantizers leave alone (norms, biases, routers, an untied embedding table) follow a plain
        # float cast of the weights (fp32, fp16) but stay in the native dtype under int8/int4/fp8/nf4/fp4.
        self.unquantized = self.weights if not wd.is_quantized else QuantScheme.of(self.native)
        self.act = ad
        self.kv = kv_scheme(dep.kv_dtype or (checkpoint.kv_dtype if checkpoint else None) or native_dtype)
        self.compute_key = ad.peak_key
        self.notes = []
        self._key = None  # `key()`, built on first use
        self.native_mma = None  # a block-scaled pair the GPU multiplies as stored (`on`); None until a GPU is named
        self.engine = None if dep.engine is None else load_engine(dep.engine)
        # looked up by every operator of every pass: derived once here (see `_derived_sizes` for each formula)
        self.weight_only, self.dequant_ops_per_weight, self.act_bytes, self.unquantized_bytes = self._derived_sizes()
        return self

    def with_note(self, note: str) -> "ResolvedDeployment":
        """The same resolution with `note` added to its notes (a note changes no number: the key is the same)."""
        out = object.__new__(ResolvedDeployment)
        for name in self.__slots__:
            object.__setattr__(out, name, getattr(self, name))
        out.notes = [*self.notes, note]
        return out

    def fallen_back(self, reason: str) -> "ResolvedDeployment":
        """The explicit fallback for a compute dtype the hardware lacks: keep the weights in their
        (requested) 8/4-bit storage format, compute in the native dtype (a weight-only kernel)."""
        dep = self.dep.model_copy(update={"activation_dtype": self.native.name, "weight_dtype": self.weights.dtype.name,
                                          "on_unsupported_dtype": "error"})
        out = ResolvedDeployment.of(dep, self.native.name)
        out.dep = self.dep
        out.weights, out.kept, out.kv = self.weights, self.kept, self.kv  # the checkpoint's layout, unchanged
        out.weight_only, out.dequant_ops_per_weight, out.act_bytes, out.unquantized_bytes = out._derived_sizes()
        out.notes = [*self.notes, reason]
        out._key = None  # the formats above replaced those `of` resolved
        return out

    def on(self, hw) -> "ResolvedDeployment":
        """This resolution on `hw`: where the weights are narrower than the activations (`weight_only`) and `hw`'s
        tensor cores multiply the pair as stored (`HardwareProfile.native_block_scaled`: Blackwell's MXFP4 weights x
        MXFP8 activations), the GEMMs are not weight-only: nothing is dequantized (`dequant_ops_per_weight` 0) and they
        compute at the pair's peak (`compute_key` = its `peak_key`); the weights keep their packed bytes and scales.
        Elsewhere (Hopper: no block-scaled MMA) this resolution as it is. Kept per (resolution, pair)."""
        pair = hw.native_block_scaled(self.weights, self.act) if self.weight_only else None
        return self if pair is None else _native(self, pair)

    def key(self) -> tuple:
        """What every size and time derived from this resolution depends on, as a hashable tuple (a `memo` key):
        the deployment (engine named in it) and the resolved formats. `notes` are left out: they change no number;
        `weight_only`, `dequant_ops_per_weight`, `act_bytes`, `unquantized_bytes` and `act_from_checkpoint` follow
        from the rest and `native_mma` (the block-scaled pair the GPU takes as stored, `on`), which is kept. Keyed together with the model's identity, since the formats were resolved against it.

        Built once per resolution and kept with its hash (`memo.HashedKey`): a prediction looks its op lists, weights
        and workspace up under it several times, and hashing the deployment's fields each time cost more than the lookup."""
        if self._key is None:
            self._key = HashedKey((self.dep, self.weights, self.act, self.kv, self.native, self.unquantized, self.kept, self.native_mma,
                                   self.compute_key))
        return self._key

    def _derived_sizes(self) -> tuple[bool, int, float, float]:
        """(weight_only, dequant_ops_per_weight, act_bytes, unquantized_bytes):

        * weight_only: weights stored narrower than the compute format, so the GEMM dequantizes them on the fly
          (unless a GPU multiplies the pair as stored: `on`);
        * dequant_ops_per_weight: vector operations per weight of that dequantization (0 when not weight-only);
        * act_bytes: bytes per activation element moved between kernels. 16-bit or wider compute keeps its own
          width. 8- and 4-bit compute (W8A8, FP8, FP4) quantizes activations inside the GEMM prologue and writes
          16-bit outputs, so activations in HBM (and all-reduce messages) stay 2 bytes (block-scaled W8A8 quantizes
          them in a kernel of its own before the GEMM: `ops.act_quant`);
        * unquantized_bytes: bytes per element of norms, biases and other tensors quantization leaves alone.
        """
        weight_only = self.weights.dtype.is_quantized and self.weights.dtype.bits < self.act.bits
        dequant = DEQUANT_OPS_PER_WEIGHT.get(self.weights.dtype.bits, 3) if weight_only else 0
        return weight_only, dequant, max(self.act.bits / 8, 2.0), self.unquantized.dtype.bits / 8


@memoized(lambda rd, pair: (Identity(rd), pair))
def _native(rd: ResolvedDeployment, pair) -> ResolvedDeployment:
    """`ResolvedDeployment.on` where the GPU takes the pair natively: a copy, not weight-only, at the pair's peak."""
    out = object.__new__(ResolvedDeployment)
    for name in ResolvedDeployment.__slots__:
        object.__setattr__(out, name, getattr(rd, name))
    out.native_mma, out.weight_only, out.dequant_ops_per_weight, out.compute_key = pair, False, 0, pair.peak_key
    out._key = None  # the pair is part of the key
    return out
