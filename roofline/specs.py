"""Model specifications: the structure of a decoder-only transformer, as validated frozen data.

A `ModelSpec` holds only what a model's published config states (layers, widths,
heads, attention kind and pattern, MoE routing, biases, norms). Everything else,
parameter count, active parameters, KV-cache bytes, is derived here from one
list of weight matrices (`ModelSpec.layer_matrices`), the same list the operator
cost table in `ops.py` walks, so the parameter count and the bytes a decode step
reads can never disagree.

Conventions
-----------
* A weight matrix is `n` outputs x `k` inputs (`k` is the reduction dimension).
* `param_count` counts every stored parameter once (tied embeddings once).
* `active_param_count` counts the parameters one token touches: all dense
  weights plus `experts_per_token` routed experts (and the shared experts) in
  each MoE layer, embeddings included (the convention of Mixtral's "12.9B active"
  and DeepSeek-V3's "37B activated").
* KV bytes per token per layer (standard attention) = 2 · n_kv_heads · head_dim · bytes;
  Llama-2-70B-style MHA at FP16 with 64 heads x 128: 2·64·128·2 = 32,768 bytes.
  MLA stores one latent of (kv_lora_rank + qk_rope_head_dim) elements per token per layer.
"""

import functools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .dtypes import DType, QuantScheme, get_dtype
from .errors import NumbersAreNumbers, SpecError
from .memo import identity_cached_property

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False,
                     ignored_types=(identity_cached_property,))

# Structural upper bounds: well above every published model (Llama-3.1-405B: 126 layers, hidden 16,384,
# FFN 53,248; DeepSeek-V3: 256 experts; Gemma: 256K vocabulary; Llama 4 Scout: 10M context), low enough
# that a typo cannot make the operator table, the layer list or a parameter count hang or exhaust memory.
MAX_LAYERS = 4096
MAX_WIDTH = 1 << 20  # hidden, FFN, head and latent dims (elements)
MAX_HEADS = 1 << 14
MAX_EXPERTS = 1 << 16
MAX_VOCAB = 1 << 24
MAX_CONTEXT = 1 << 28  # tokens

AttentionKind = Literal["mha", "gqa", "mqa", "mla"]
LayerAttention = Literal["full", "sliding"]
# Weight groups a quantized checkpoint may leave in native_dtype (routers always are; see `ops.matrix_scheme`).
KeptWeights = Literal["attention", "dense_mlp", "shared_experts", "lm_head", "embedding"]


class MLAConfig(NumbersAreNumbers):
    """Multi-head latent attention (DeepSeek-V2/V3): K and V are compressed to a shared latent."""

    model_config = _FROZEN
    q_lora_rank: int | None = Field(None, gt=0, le=MAX_WIDTH, description="query compression rank; None = no query compression")
    kv_lora_rank: int = Field(gt=0, le=MAX_WIDTH, description="rank of the shared KV latent c_KV")
    qk_nope_head_dim: int = Field(gt=0, le=MAX_WIDTH, description="per-head query/key dims without rotary embedding")
    qk_rope_head_dim: int = Field(gt=0, le=MAX_WIDTH, description="per-head query/key dims with rotary embedding (key part shared by all heads)")
    v_head_dim: int = Field(gt=0, le=MAX_WIDTH, description="per-head value dim")


class MoEConfig(NumbersAreNumbers):
    """Mixture-of-experts feed-forward layers."""

    model_config = _FROZEN
    num_experts: int = Field(gt=0, le=MAX_EXPERTS, description="routed experts per MoE layer")
    experts_per_token: int = Field(gt=0, le=MAX_EXPERTS, description="routed experts each token is sent to (top-k)")
    expert_intermediate_size: int = Field(gt=0, le=MAX_WIDTH, description="FFN width of one routed expert")
    num_shared_experts: int = Field(0, ge=0, le=MAX_EXPERTS, description="always-active experts per MoE layer")
    shared_expert_intermediate_size: int | None = Field(None, gt=0, le=MAX_WIDTH, description="FFN width of one shared expert; default = expert width")
    dense_layers: tuple[int, ...] = Field((), max_length=MAX_LAYERS, description="0-based indices of layers with a dense MLP (intermediate_size) instead of experts")
    router_bias: bool = False
    expert_bias: bool = False

    @model_validator(mode="after")
    def _check(self) -> "MoEConfig":
        if self.experts_per_token > self.num_experts:
            raise SpecError("moe.experts_per_token", f"{self.experts_per_token} exceeds num_experts={self.num_experts}")
        return self

    @property
    def shared_width(self) -> int:
        return self.shared_expert_intermediate_size or self.expert_intermediate_size


class CheckpointQuant(NumbersAreNumbers):
    """How a quantized checkpoint stores its weights, beyond their format (`ModelSpec.native_weight_dtype`).

    Each field is what the checkpoint's `quantization_config` (or ModelOpt's `hf_quant_config.json`)
    states; None keeps the weight dtype's default (`dtypes.py`). They apply only while a deployment
    runs the checkpoint's own weights (`Deployment.weight_dtype` unset): asking for another weight
    format re-quantizes everything with that format's defaults.

    gpt-oss-20b: MXFP4 experts (4 bits + one 8-bit scale per 32 = 4.25 bits per weight) with
    `unquantized: [attention, lm_head, embedding]` kept in BF16.
    """

    model_config = _FROZEN
    group_size: int | None = Field(None, gt=0, le=MAX_WIDTH, description="elements per scale (per block edge for block scales)")
    scale_granularity: Literal["tensor", "row", "group", "block"] | None = Field(None, description="scale layout; default: the dtype's")
    scale_dtype: str | None = Field(None, description="format of the scales (NVFP4: fp8); default: the dtype's")
    zero_point: bool = Field(False, description="asymmetric: one zero point per scale (AWQ, GPTQ sym=false)")
    activation_dtype: str | None = Field(None, description="compute format the scheme runs at (W8A8 FP8: fp8; NVFP4 W4A4: fp4); "
                                                           "None = native_dtype (weight-only)")
    kv_dtype: str | None = Field(None, description="KV-cache format the checkpoint was calibrated for (kv_cache_scheme, kv_cache_quant_algo)")
    unquantized: tuple[KeptWeights, ...] = Field((), description="weight groups the checkpoint keeps in native_dtype "
                                                                 "(modules_to_not_convert / ignore / exclude_modules)")

    @model_validator(mode="after")
    def _check(self) -> "CheckpointQuant":
        for name in ("scale_dtype", "activation_dtype", "kv_dtype"):
            value = getattr(self, name)
            if value is not None:
                get_dtype(value, f"checkpoint_quant.{name}")
        if self.scale_granularity in ("group", "block") and self.group_size is None:
            raise SpecError("checkpoint_quant.group_size", f"{self.scale_granularity} scales need a group size (e.g. 128)")
        if len(set(self.unquantized)) != len(self.unquantized):
            raise SpecError("checkpoint_quant.unquantized", f"lists a group twice: {list(self.unquantized)}")
        return self


@dataclass(frozen=True)
class Matrix:
    """One weight matrix (or a stack of identical ones, `copies` > 1 for experts)."""

    name: str
    n: int  # outputs
    k: int  # inputs (reduction dim)
    copies: int = 1
    bias: bool = False

    @property
    def params(self) -> int:
        return self.copies * (self.n * self.k + (self.n if self.bias else 0))


@dataclass(frozen=True)
class LayerGroup:
    """Layers that share a structure: attention type (and window) and dense-vs-MoE FFN."""

    attention: LayerAttention
    moe: bool
    count: int
    window: int | None  # tokens of context a sliding layer attends to; None = all

    @property
    def label(self) -> str:
        att = f"sliding{self.window}" if self.attention == "sliding" else "full"
        return f"{att}/{'moe' if self.moe else 'dense'}"


class ModelSpec(NumbersAreNumbers):
    """A decoder-only transformer as its published config describes it."""

    model_config = _FROZEN

    name: str = Field(min_length=1, max_length=200, description="display name")
    source: str = Field(pattern=r"^https?://", description="URL of the published config this spec was verified against")
    num_layers: int = Field(gt=0, le=MAX_LAYERS)
    hidden_size: int = Field(gt=0, le=MAX_WIDTH)
    num_attention_heads: int = Field(gt=0, le=MAX_HEADS, description="query heads")
    num_kv_heads: int = Field(gt=0, le=MAX_HEADS, description="key/value heads (= query heads for MHA, 1 for MQA)")
    head_dim: int = Field(gt=0, le=MAX_WIDTH, description="query/key head dim (MLA: nope + rope dims)")
    intermediate_size: int = Field(gt=0, le=MAX_WIDTH, description="FFN width of a dense MLP layer")
    ffn_kind: Literal["gated", "plain"] = Field(description="gated = 3 matrices (SwiGLU/GeGLU); plain = 2 (GELU/ReLU MLP)")
    activation: str = Field(description="activation function, informational (silu, gelu, ...)")
    vocab_size: int = Field(gt=0, le=MAX_VOCAB)
    tied_embeddings: bool
    max_context: int = Field(gt=0, le=MAX_CONTEXT, description="maximum sequence length (tokens)")
    attention: AttentionKind
    mla: MLAConfig | None = None
    attention_pattern: tuple[LayerAttention, ...] = Field(("full",), min_length=1, max_length=MAX_LAYERS, description="per-layer attention types, repeated cyclically over layers")
    sliding_window: int | None = Field(None, gt=0, le=MAX_CONTEXT, description="window (tokens) of sliding-attention layers")
    kv_share_factor: int = Field(1, ge=1, le=MAX_LAYERS, description="consecutive layers sharing one KV cache (cross-layer attention); 1 = none")
    parallel_blocks: bool = Field(False, description="attention and MLP read the same input and are summed (GPT-J, Falcon)")
    moe: MoEConfig | None = None
    native_dtype: str = Field("bf16", description="format of activations, KV cache and unquantized weights as released")
    native_weight_dtype: str | None = Field(
        None, description="format the published checkpoint stores its linear weights in, when not native_dtype "
        "(gpt-oss: fp4 = MXFP4 experts; DeepSeek-V3: fp8)")
    checkpoint_quant: CheckpointQuant | None = Field(
        None, description="the quantized checkpoint's scale layout, compute and KV formats, and the weight groups it keeps "
        "in native_dtype; needs native_weight_dtype")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_bias: bool = False
    norms_per_layer: int | None = Field(None, ge=0, le=16, description="default 1 with parallel blocks, else 2 (Gemma-2 has 4)")
    qk_norm: bool = Field(False, description="per-head RMSNorm on queries and keys (Qwen3)")
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    position_embedding: Literal["rope", "learned", "alibi", "none"] = "rope"
    notes: str = ""

    @classmethod
    def from_hf_config(cls, path_or_dict, hf_quant_config=None, **overrides) -> "ModelSpec":
        """Build a spec from a Hugging Face `config.json` (a path, its folder, or an already-loaded dict),
        with ModelOpt's `hf_quant_config.json` (a path or dict; by default the file beside config.json).

        See `roofline.hf_import` for the architectures, aliases and quantization formats handled.
        """
        from .hf_import import from_hf_config

        return from_hf_config(path_or_dict, hf_quant_config, **overrides)

    # ---------------------------------------------------------------- checks
    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        q, kv = self.num_attention_heads, self.num_kv_heads
        kind = self.attention
        if kind == "mla":
            if self.mla is None:
                raise SpecError("mla", "attention 'mla' needs an mla: block (kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim)")
            if self.head_dim != self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim:
                raise SpecError("head_dim", f"for MLA must equal qk_nope_head_dim + qk_rope_head_dim = {self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim}, got {self.head_dim}")
        elif self.mla is not None:
            raise SpecError("mla", f"an mla: block needs attention: mla, not {kind!r}")
        if kind != "mla" and q % kv:
            raise SpecError("num_kv_heads", f"num_attention_heads={q} is not divisible by num_kv_heads={kv}")
        if kind == "mha" and kv != q:
            raise SpecError("num_kv_heads", f"MHA needs num_kv_heads == num_attention_heads ({q}), got {kv}; use attention: gqa or mqa")
        if kind == "mqa" and kv != 1:
            raise SpecError("num_kv_heads", f"MQA needs num_kv_heads == 1, got {kv}; use attention: gqa")
        if kind == "gqa" and not 1 < kv < q:
            raise SpecError("num_kv_heads", f"GQA needs 1 < num_kv_heads < num_attention_heads ({q}), got {kv}; use mha or mqa")
        if "sliding" in self.attention_pattern and self.sliding_window is None:
            raise SpecError("sliding_window", "attention_pattern has sliding layers but no sliding_window is given")
        if "sliding" not in self.attention_pattern and self.sliding_window is not None:
            raise SpecError("attention_pattern", "sliding_window is set but no layer in attention_pattern is 'sliding'")
        if len(self.attention_pattern) > self.num_layers:
            raise SpecError("attention_pattern", f"has {len(self.attention_pattern)} entries for {self.num_layers} layers")
        if self.moe is not None:
            bad = [i for i in self.moe.dense_layers if not 0 <= i < self.num_layers]
            if bad:
                raise SpecError("moe.dense_layers", f"indices {bad} outside 0..{self.num_layers - 1}")
        native = get_dtype(self.native_dtype, "native_dtype")
        if native.is_quantized or native.peak_key is None or native.name == "tf32":
            raise SpecError("native_dtype", f"{self.native_dtype!r} is a storage format; native_dtype is the format of activations "
                                            "and the KV cache (bf16, fp16 or fp32); give a quantized checkpoint's weight format "
                                            "as native_weight_dtype")
        if self.native_weight_dtype is not None and get_dtype(self.native_weight_dtype, "native_weight_dtype").name == "tf32":
            raise SpecError("native_weight_dtype", "tf32 is a compute mode, not a storage format; use fp32")
        if self.checkpoint_quant is not None:
            if self.native_weight_dtype is None:
                raise SpecError("checkpoint_quant", "describes a quantized checkpoint; set native_weight_dtype (its weight format) too")
            ck = self.checkpoint_quant
            QuantScheme.of(get_dtype(self.native_weight_dtype), ck.group_size, ck.scale_dtype, ck.zero_point,
                           field="checkpoint_quant.weight", granularity=ck.scale_granularity)
        return self

    # ------------------------------------------------------------ structure
    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 for MHA, num_attention_heads for MQA)."""
        return self.num_attention_heads // self.num_kv_heads

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    @property
    def n_norms_per_layer(self) -> int:
        if self.norms_per_layer is not None:
            return self.norms_per_layer
        return 1 if self.parallel_blocks else 2

    def layer_attention(self, i: int) -> LayerAttention:
        return self.attention_pattern[i % len(self.attention_pattern)]

    def layer_is_moe(self, i: int) -> bool:
        return self.moe is not None and i not in self.moe.dense_layers

    def layer_groups(self) -> tuple[LayerGroup, ...]:
        """Layers grouped by (attention type, MoE or dense), in first-seen order."""
        return self._layer_groups

    @identity_cached_property
    def _layer_groups(self) -> tuple[LayerGroup, ...]:
        counts = Counter((self.layer_attention(i), self.layer_is_moe(i)) for i in range(self.num_layers))
        return tuple(
            LayerGroup(att, moe, n, self.sliding_window if att == "sliding" else None)
            for (att, moe), n in counts.items()
        )

    def attention_matrices(self) -> tuple[Matrix, ...]:
        """Weight matrices of one attention block (QKV fused for standard attention)."""
        return self._attention_matrices

    def mlp_matrices(self, moe: bool) -> tuple[Matrix, ...]:
        """FFN weight matrices of one layer: a dense MLP, or router + routed + shared experts.

        Gated FFNs fuse gate and up into one 2f x h matrix (as vLLM does).
        """
        return self._mlp_matrices[moe]

    @identity_cached_property
    def _attention_matrices(self) -> tuple[Matrix, ...]:
        h, hq, d = self.hidden_size, self.num_attention_heads, self.head_dim
        if self.mla is None:
            qkv_out = (hq + 2 * self.num_kv_heads) * d
            return (Matrix("qkv_proj", qkv_out, h, bias=self.qkv_bias), Matrix("o_proj", h, hq * d, bias=self.o_bias))
        m = self.mla
        mats = []
        if m.q_lora_rank:
            mats += [Matrix("q_a_proj", m.q_lora_rank, h), Matrix("q_b_proj", hq * d, m.q_lora_rank)]
        else:
            mats += [Matrix("q_proj", hq * d, h)]
        mats += [
            Matrix("kv_a_proj", m.kv_lora_rank + m.qk_rope_head_dim, h),
            Matrix("kv_b_proj", hq * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank),
            Matrix("o_proj", h, hq * m.v_head_dim, bias=self.o_bias),
        ]
        return tuple(mats)

    @identity_cached_property
    def _mlp_matrices(self) -> dict[bool, tuple[Matrix, ...]]:
        return {False: self._build_mlp_matrices(False), True: self._build_mlp_matrices(True) if self.moe else ()}

    def _build_mlp_matrices(self, moe: bool) -> tuple[Matrix, ...]:
        h = self.hidden_size
        up_rows = 2 if self.ffn_kind == "gated" else 1
        if not moe:
            f = self.intermediate_size
            return (Matrix("mlp_up", up_rows * f, h, bias=self.mlp_bias), Matrix("mlp_down", h, f, bias=self.mlp_bias))
        e = self.moe
        assert e is not None
        fe = e.expert_intermediate_size
        mats = [
            Matrix("router", e.num_experts, h, bias=e.router_bias),
            Matrix("experts_up", up_rows * fe, h, copies=e.num_experts, bias=e.expert_bias),
            Matrix("experts_down", h, fe, copies=e.num_experts, bias=e.expert_bias),
        ]
        if e.num_shared_experts:
            fs = e.num_shared_experts * e.shared_width
            mats += [Matrix("shared_up", up_rows * fs, h), Matrix("shared_down", h, fs)]
        return tuple(mats)

    def layer_matrices(self, moe: bool) -> tuple[Matrix, ...]:
        return self.attention_matrices() + self.mlp_matrices(moe)

    def norm_params_per_layer(self) -> int:
        """Norm (and QK-norm, MLA latent-norm) parameters in one layer."""
        per_norm = self.hidden_size * (2 if self.norm_bias else 1)
        n = self.n_norms_per_layer * per_norm
        if self.qk_norm:
            n += 2 * self.head_dim
        if self.mla is not None:
            n += self.mla.kv_lora_rank + (self.mla.q_lora_rank or 0)
        return n

    @property
    def embedding_params(self) -> int:
        """Token embedding table (plus learned positions); the LM head is counted apart."""
        pos = self.max_context * self.hidden_size if self.position_embedding == "learned" else 0
        return self.vocab_size * self.hidden_size + pos

    @property
    def lm_head_params(self) -> int:
        """LM head parameters stored apart from the embedding (0 when tied, except a bias)."""
        bias = self.vocab_size if self.lm_head_bias else 0
        return (0 if self.tied_embeddings else self.vocab_size * self.hidden_size) + bias

    @property
    def final_norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm_bias else 1)

    def _layer_params(self, moe: bool, active: bool) -> int:
        total = self.norm_params_per_layer()
        for m in self.layer_matrices(moe):
            if active and m.copies > 1:  # routed experts: a token touches experts_per_token of them
                total += m.params // m.copies * self.moe.experts_per_token
            else:
                total += m.params
        return total

    # -------------------------------------------------------------- counts
    @property
    def param_count(self) -> int:
        """Every stored parameter, tied embeddings counted once."""
        layers = sum(g.count * self._layer_params(g.moe, active=False) for g in self.layer_groups())
        return layers + self.embedding_params + self.lm_head_params + self.final_norm_params

    @property
    def active_param_count(self) -> int:
        """Parameters touched by one token (routed experts: only the top-k), embeddings included."""
        layers = sum(g.count * self._layer_params(g.moe, active=True) for g in self.layer_groups())
        return layers + self.embedding_params + self.lm_head_params + self.final_norm_params

    # ---------------------------------------------------------------- KV
    def kv_heads_per_gpu(self, tp=1):
        """KV heads each of `tp` GPUs holds: n_kv_heads / tp, or 1 (replicated) when tp exceeds them."""
        return _ceil_div(self.num_kv_heads, tp)

    def kv_row(self, tp=1) -> tuple[int, int]:
        """(vectors, length) cached per token per layer on one GPU.

        Standard attention: (2 · KV heads per GPU, head_dim), K and V.
        MLA: (1, kv_lora_rank + qk_rope_head_dim), one latent that every GPU replicates.
        """
        if self.mla is not None:
            return 1, self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.kv_heads_per_gpu(tp), self.head_dim

    def kv_layers(self) -> dict[LayerAttention, int]:
        """Layers that store their own KV cache, by attention type (CLA shares one cache per `kv_share_factor` layers)."""
        return dict(self._kv_layers)

    @identity_cached_property
    def _kv_layers(self) -> tuple[tuple[LayerAttention, int], ...]:
        """`kv_layers`, counted once per spec (a `model_copy` counts its own)."""
        out: dict[LayerAttention, int] = {}
        for g in self.layer_groups():
            out[g.attention] = out.get(g.attention, 0) + g.count
        return tuple((att, math.ceil(n / self.kv_share_factor)) for att, n in out.items())

    def kv_bytes_per_token_per_layer(self, dtype: str | DType = "bf16", tp=1) -> float:
        """Bytes one token adds to one layer's cache on one GPU, quantization scales included
        (per-tensor scales are one per layer, not per token, and are left out)."""
        scheme = kv_scheme(dtype)
        vectors, length = self.kv_row(tp)
        if scheme.granularity == "tensor":  # one scale per layer: nothing per token
            return vectors * length * scheme.dtype.bits / 8
        return scheme.matrix_bytes(vectors, length)

    def kv_bytes_per_token(self, dtype: str | DType = "bf16") -> float:
        """Bytes one token adds to the KV cache across all layers, while the context is shorter than every window.

        Llama-3.1-70B, BF16: 80 layers x 2 x 8 KV heads x 128 x 2 bytes = 327,680 bytes per token.
        """
        return sum(self.kv_layers().values()) * self.kv_bytes_per_token_per_layer(dtype)

    def kv_bytes(self, context_tokens, dtype: str | DType = "bf16"):
        """KV-cache bytes for one sequence of `context_tokens` tokens; sliding layers keep only the window."""
        per_layer = self.kv_bytes_per_token_per_layer(dtype)
        total = 0
        for att, n in self.kv_layers().items():
            tokens = context_tokens if att == "full" else _minimum(context_tokens, self.sliding_window)
            total = total + n * tokens * per_layer
        return total


@functools.lru_cache(maxsize=64)
def kv_scheme(dtype: str | DType) -> QuantScheme:
    """The KV cache's storage scheme for a dtype (scales per token and head for int formats); built once per dtype."""
    d = dtype if isinstance(dtype, DType) else get_dtype(dtype, "kv_dtype")
    return QuantScheme.of(d, field="kv")


def _ceil_div(a, b):
    """ceil(a / b) for ints or numpy arrays."""
    if isinstance(b, int) and isinstance(a, int):
        return -(-a // b)
    import numpy as np

    return np.ceil(np.asarray(a) / np.asarray(b))


def _minimum(a, b):
    if isinstance(a, (int, float)):
        return min(a, b)
    import numpy as np

    return np.minimum(a, b)
