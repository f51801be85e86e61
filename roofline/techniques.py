"""Model-spec transforms: what a technique does to the architecture, as a new validated `ModelSpec`.

Each function returns a copy of the spec with some fields changed and the name saying
how; the copy goes through the same validation as a shipped spec, so an impossible
result (heads not divisible by KV heads, a window on no layer) is a one-line `SpecError`.
Parameter counts, KV bytes and every operator follow from the new fields through the
one derivation in `specs.py` / `ops.py`; nothing here computes a cost.

* `prune`            structured pruning: drop layers, query heads (within each KV group),
                     FFN neurons (kept a multiple of 128) or experts.
* `with_attention`   the same model with MHA, MQA, GQA or MLA attention.
* `with_sliding_window`, `with_cla`, `with_parallel_blocks`: the other attention-side savings.
* `with_vocab`       a different vocabulary size (pair it with a tokens-per-text factor in `compare`).

Unstructured and 2:4 sparsity do not change the architecture: they are `Deployment` options
(`sparsity=...`), costed in `ops.stored_matrix_bytes` and the roofline.
"""

from __future__ import annotations

from pydantic import ValidationError

from .errors import SpecError, validation_message
from .specs import ModelSpec

FFN_MULTIPLE = 128  # pruned FFN widths are kept a multiple of this (tensor-core and tp friendly)
# MLA defaults from DeepSeek-V2 (arXiv:2405.04434, section 2.1.2): latent d_c = 4 d_h, decoupled RoPE dims d_h/2.
MLA_LATENT_PER_HEAD_DIM = 4
MLA_ROPE_FRACTION = 0.5


def _rebuild(model: ModelSpec, suffix: str, **changes) -> ModelSpec:
    data = model.model_dump()
    data.update(changes)
    data["name"] = f"{model.name} {suffix}"
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, data["name"]) from None


def _fraction(name: str, value: float | None) -> float:
    if value is None:
        return 1.0
    if not 0 < value <= 1:
        raise SpecError(name, f"is the fraction kept, in (0, 1], got {value}")
    return value


def first_layers(model: ModelSpec, layers: int) -> dict:
    """The spec changes that keep layers 0 .. layers-1: the layer count, the attention pattern cut to them
    (no sliding window left when no sliding layer is), and the MoE dense layers among them.
    Used by `prune` and by a self-drafting head's cost (`speculative.truncated`)."""
    changes = {"num_layers": layers, "attention_pattern": tuple(model.attention_pattern[:layers])}
    if model.attention_pattern and "sliding" not in changes["attention_pattern"]:
        changes["sliding_window"] = None
    if model.moe is not None:
        changes["moe"] = {**model.moe.model_dump(), "dense_layers": tuple(i for i in model.moe.dense_layers if i < layers)}
    return changes


def prune(model: ModelSpec, keep_layers: float | None = None, keep_heads: float | None = None,
          keep_ffn: float | None = None, keep_experts: float | None = None) -> ModelSpec:
    """Structured pruning: keep a fraction of the layers, query heads, FFN neurons or routed experts.

    Layers: round(L · keep). Heads: query heads are removed inside each KV group, so
    kv_heads · max(1, round(group · keep)) remain (KV heads stay: their cache is what
    GQA already shrank). FFN: width · keep rounded to a multiple of 128. Experts: E · keep,
    at least top-k. Llama-3.1-8B keeping 75% of 32 layers has 24.
    """
    kl, kh, kf, ke = (_fraction(n, v) for n, v in (("keep_layers", keep_layers), ("keep_heads", keep_heads),
                                                     ("keep_ffn", keep_ffn), ("keep_experts", keep_experts)))
    changes, parts = {}, []
    if kl < 1:
        layers = max(1, round(model.num_layers * kl))
        changes.update(first_layers(model, layers))
        parts.append(f"{layers}/{model.num_layers} layers")
    if kh < 1:
        if model.attention == "mla":
            heads = max(1, round(model.num_attention_heads * kh))
            changes["num_attention_heads"] = heads
            changes["num_kv_heads"] = heads
        else:
            per_group = max(1, round(model.group_size * kh))
            heads = model.num_kv_heads * per_group
            changes["num_attention_heads"] = heads
            if model.attention == "mha":
                changes["num_kv_heads"] = heads
            elif per_group == 1:
                changes["attention"] = "mha" if model.attention == "gqa" else model.attention
        parts.append(f"{changes['num_attention_heads']}/{model.num_attention_heads} heads")
    if kf < 1:
        width = max(FFN_MULTIPLE, round(model.intermediate_size * kf / FFN_MULTIPLE) * FFN_MULTIPLE)
        changes["intermediate_size"] = width
        if model.moe is not None:
            moe = changes.get("moe", model.moe.model_dump())
            ew = max(FFN_MULTIPLE, round(model.moe.expert_intermediate_size * kf / FFN_MULTIPLE) * FFN_MULTIPLE)
            changes["moe"] = {**moe, "expert_intermediate_size": ew}
        parts.append(f"FFN {width}/{model.intermediate_size}")
    if ke < 1:
        if model.moe is None:
            raise SpecError("keep_experts", f"{model.name} has no experts to prune")
        moe = changes.get("moe", model.moe.model_dump())
        experts = max(model.moe.experts_per_token, round(model.moe.num_experts * ke))
        changes["moe"] = {**moe, "num_experts": experts}
        parts.append(f"{experts}/{model.moe.num_experts} experts")
    if not parts:
        raise SpecError("prune", "keeps everything; pass keep_layers, keep_heads, keep_ffn or keep_experts below 1")
    return _rebuild(model, f"pruned ({', '.join(parts)})", **changes)


def with_attention(model: ModelSpec, kind: str, kv_heads: int | None = None) -> ModelSpec:
    """The same model with another attention kind; query heads and widths unchanged.

    mha: one KV head per query head; mqa: one KV head; gqa: `kv_heads` (default 8);
    mla: a shared latent of 4 · head_dim plus head_dim/2 RoPE dims (DeepSeek-V2's ratios),
    query/key width head_dim + head_dim/2, no query compression.
    """
    q, d = model.num_attention_heads, model.head_dim if model.mla is None else model.mla.qk_nope_head_dim
    base = {"mla": None}
    if kind == "mha":
        return _rebuild(model, "(MHA)", **base, attention="mha", num_kv_heads=q, head_dim=d)
    if kind == "mqa":
        return _rebuild(model, "(MQA)", **base, attention="mqa", num_kv_heads=1, head_dim=d)
    if kind == "gqa":
        kv = kv_heads or 8
        return _rebuild(model, f"(GQA, {kv} KV heads)", **base, attention="gqa", num_kv_heads=kv, head_dim=d)
    if kind == "mla":
        rope = int(d * MLA_ROPE_FRACTION)
        mla = {"q_lora_rank": None, "kv_lora_rank": MLA_LATENT_PER_HEAD_DIM * d, "qk_nope_head_dim": d,
               "qk_rope_head_dim": rope, "v_head_dim": d}
        return _rebuild(model, "(MLA)", attention="mla", mla=mla, num_kv_heads=q, head_dim=d + rope)
    raise SpecError("kind", f"unknown attention kind {kind!r}; choose one of mha, mqa, gqa, mla")


def with_sliding_window(model: ModelSpec, window: int, pattern: tuple[str, ...] = ("sliding",)) -> ModelSpec:
    """Sliding-window attention of `window` tokens on the layers `pattern` marks (repeated over layers);
    ("sliding",) * 5 + ("full",) is Gemma-3's 5:1 interleave."""
    return _rebuild(model, f"(sliding window {window}, pattern {'/'.join(pattern)})",
                    sliding_window=window, attention_pattern=tuple(pattern))


def with_cla(model: ModelSpec, share: int = 2) -> ModelSpec:
    """Cross-layer attention: `share` consecutive layers read one KV cache (Brandon et al. 2024, CLA2 = 2)."""
    return _rebuild(model, f"(CLA{share})", kv_share_factor=share)


def with_parallel_blocks(model: ModelSpec) -> ModelSpec:
    """Attention and MLP read the same normalized input and are summed (GPT-J, PaLM): one norm and one
    all-reduce per layer instead of two."""
    return _rebuild(model, "(parallel blocks)", parallel_blocks=True, norms_per_layer=None)


def with_vocab(model: ModelSpec, vocab_size: int) -> ModelSpec:
    """Another vocabulary size: embedding and LM head grow or shrink with it."""
    return _rebuild(model, f"(vocab {vocab_size:,})", vocab_size=vocab_size)
