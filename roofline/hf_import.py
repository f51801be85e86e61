"""Import a Hugging Face `config.json` as a `ModelSpec`: one adapter for every supported family.

    spec = ModelSpec.from_hf_config("checkpoints/Llama-3.1-8B/config.json")   # a file, or its folder
    spec = from_hf_config(json.loads(text), name="Llama 3.1 8B",
                          source="https://huggingface.co/meta-llama/Llama-3.1-8B")

How it reads a config
---------------------
Every family is read by the same code. Differences between families live in two
tables, so an alias or a family default is stated once:

* `_ALIASES`: for each spec quantity, the config keys that may hold it, first
  match wins (`num_hidden_layers` / `n_layer` / `num_layers`, `hidden_size` /
  `n_embd` / `d_model`, ...). A key present with the value `null` counts as absent.
* `_FAMILIES`: for each `model_type`, what the published config leaves implicit,
  i.e. the defaults of the matching transformers config class (GPT-J and Falcon
  `intermediate_size = 4 · hidden`, Falcon's 2,048-token context, which families
  tie their embeddings) and the fixed traits of the architecture (Falcon and GPT-J
  are LayerNorm, parallel-block, plain-GELU models; Qwen2 has q/k/v biases; Qwen3
  normalises q and k per head; Gemma-2 has four norms per layer).

Supported `model_type`s: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe,
gemma2, deepseek_v3, gpt_oss, falcon (and the legacy "RefinedWebModel" = Falcon-7B
layout and "RefinedWeb" = Falcon-40B layout), gptj, phi3.

Derivations
-----------
* `head_dim`: the config's `head_dim` if given (Gemma-2, Qwen3, gpt-oss), else
  hidden / heads; for MLA (DeepSeek-V3) qk_nope_head_dim + qk_rope_head_dim.
* `attention`: "mla" when the config has `kv_lora_rank`; else "mha" if KV heads =
  query heads, "mqa" if 1, "gqa" otherwise. `num_kv_heads` defaults to the
  query heads (transformers' rule); MLA sets it to the query heads.
  Falcon: `num_kv_heads` (alias `n_head_kv`) with `new_decoder_architecture`,
  else 1 if `multi_query`, else the query heads.
* Blocks: `attention_bias` switches the q/k/v and o biases, `mlp_bias` the MLP's
  (Llama family, gpt-oss). Falcon's `bias` switches every linear layer's bias;
  its blocks are parallel when `parallel_attn` or `new_decoder_architecture`,
  with one LayerNorm in the old layout (two when not parallel) and two in the
  new one (`num_ln_in_parallel_attn` if given); `alibi: true` replaces rotary.
* Attention pattern: an explicit `layer_types` list wins ("full_attention" /
  "sliding_attention"). Otherwise Gemma-2 alternates sliding/full starting with
  a sliding layer 0; gpt-oss does the same; Qwen2/Qwen3 use a window only when
  `use_sliding_window` is true, on layers >= `max_window_layers`; Mistral,
  Mixtral and Phi-3 apply a non-null `sliding_window` to every layer. The list
  is stored as its shortest repeating cycle. A window at least as long as the
  maximum context bounds nothing, so such layers are imported as full attention.
* MoE: experts from `num_local_experts` / `num_experts` / `n_routed_experts`,
  top-k from `num_experts_per_tok` / `experts_per_token`, expert width from
  `moe_intermediate_size` (else `intermediate_size`, as in Mixtral and gpt-oss).
  Dense layers: DeepSeek's `first_k_dense_replace` and `moe_layer_freq` (layer i
  is MoE when i >= k and i % freq == 0); Qwen3-MoE's `mlp_only_layers` and
  `decoder_sparse_step` (layer i is MoE when i is not listed and
  (i + 1) % step == 0). gpt-oss routers and experts carry biases; DeepSeek-V3's
  `e_score_correction_bias` (one value per routed expert, `topk_method:
  noaux_tc`) is counted as the router bias.
* `native_dtype` (activations, KV cache, unquantized weights) from
  `torch_dtype` (or `dtype`): bfloat16 -> bf16, float16 -> fp16, float32 -> fp32.
  Without either, fp32: transformers then loads float32, which is what such
  (older) checkpoints store, e.g. GPT-J's main branch; a quantized checkpoint
  without either computes in bf16.
* `native_weight_dtype`, the format a quantized checkpoint stores its linear
  weights in, from a `quantization_config` the simulator knows (fp8 ->
  fp8_e4m3 or fp8_e5m2 by `fmt`, mxfp4 -> fp4, gptq/awq with 4 or 8 `bits` ->
  int4/int8, bitsandbytes 4-bit nf4 -> nf4, 8-bit -> int8); None otherwise.
* `name` defaults to `_name_or_path`, else the model_type; `source` defaults to
  "https://huggingface.co/<_name_or_path>" when that is an "org/name" repository
  id, else to the hub's listing of that model_type (a placeholder: pass the
  repository's URL as `source=`). A `source` override must be an http(s) URL.

Keys that are not represented
-----------------------------
Most keys of a config.json (token ids, dropout, init ranges, rope_theta,
norm epsilons, soft-capping, router loss weights, ...) change neither the
parameter count nor the bytes moved, and are ignored. These change structure or
storage and are knowingly not modelled (the first three are recorded in the
spec's `notes` when present):

* `quantization_config` beyond its format: the schema has one weight dtype per
  model, so modules a checkpoint leaves unquantized (`modules_to_not_convert`:
  gpt-oss keeps attention, router, embeddings and LM head in bf16) and block or
  group sizes other than the dtype's defaults (DeepSeek-V3's 128 x 128 FP8
  blocks) are not represented. A quant_method not listed above is ignored
  (the weights are then taken to be in native_dtype).
* `num_nextn_predict_layers` (DeepSeek-V3's multi-token-prediction module, 14B
  parameters used only for speculative decoding): not counted.
* gpt-oss attention sinks (one learned logit per head per layer, 1,536
  parameters in gpt-oss-20b): no field in the schema; not counted.
* `rope_scaling`, partial rotary (`rotary_dim`, `partial_rotary_factor`),
  Gemma-2 `query_pre_attn_scalar` and logit soft-capping, DeepSeek group-limited
  routing (`n_group`, `topk_group`): no effect on parameters or bytes.

Rejected with a `SpecError` because the schema cannot express them:
`layer_types` other than full/sliding attention, and MLA with `attention_bias`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from .errors import SpecError, validation_message
from .specs import ModelSpec

# Spec quantity -> config keys that may hold it, in order of preference.
_ALIASES: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "head_dim": ("head_dim",),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size"),
    "vocab_size": ("vocab_size",),
    "max_context": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
    "activation": ("hidden_activation", "hidden_act", "activation_function"),
    "tied_embeddings": ("tie_word_embeddings",),
    "dtype": ("torch_dtype", "dtype"),
    "sliding_window": ("sliding_window",),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "experts_per_token": ("num_experts_per_tok", "experts_per_token"),
    "expert_intermediate_size": ("moe_intermediate_size",),
}

_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}
_INT_QUANT_METHODS = ("gptq", "awq")  # quant_method values whose `bits` give int4 / int8
_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding"}


@dataclass(frozen=True)
class _Family:
    """What a family's config.json leaves implicit: its config class's defaults and fixed traits."""

    defaults: Mapping[str, Any] = field(default_factory=dict)  # spec quantity -> value, or fn(reader) -> value
    fixed: Mapping[str, Any] = field(default_factory=dict)  # spec fields that are the same for every model of the family
    sliding: str = "none"  # how a `sliding_window` applies without `layer_types`: none | all | qwen | alternate
    bias_key: str | None = "attention_bias"  # config key switching the q/k/v and o biases on; None = no such key


def _four_hidden(r: "_Reader") -> int:
    return 4 * r.get("hidden_size")


_ROPE_DECODER = {"tied_embeddings": False}
_FAMILIES: dict[str, _Family] = {
    "llama": _Family(_ROPE_DECODER),
    "mistral": _Family(_ROPE_DECODER, sliding="all"),
    "mixtral": _Family(_ROPE_DECODER, sliding="all"),
    "qwen2": _Family(_ROPE_DECODER, {"qkv_bias": True}, sliding="qwen", bias_key=None),
    "qwen3": _Family(_ROPE_DECODER, {"qk_norm": True}, sliding="qwen"),
    "qwen3_moe": _Family(_ROPE_DECODER, {"qk_norm": True}, sliding="qwen"),
    "gemma2": _Family({"tied_embeddings": True, "activation": "gelu_pytorch_tanh"}, {"norms_per_layer": 4}, sliding="alternate"),
    "deepseek_v3": _Family(_ROPE_DECODER),
    "gpt_oss": _Family(_ROPE_DECODER, sliding="alternate"),
    "falcon": _Family(
        {"tied_embeddings": True, "intermediate_size": _four_hidden, "max_context": 2048, "activation": "gelu"},
        {"ffn_kind": "plain", "norm": "layernorm", "norm_bias": True},
        bias_key="bias",  # one switch for every linear layer (see _block_layout)
    ),
    "gptj": _Family(
        {"tied_embeddings": False, "intermediate_size": _four_hidden, "max_context": 2048, "activation": "gelu_new"},
        {"ffn_kind": "plain", "norm": "layernorm", "norm_bias": True, "parallel_blocks": True,
         "mlp_bias": True, "lm_head_bias": True},
        bias_key=None,
    ),
    "phi3": _Family(_ROPE_DECODER, sliding="all"),
}
_LEGACY_FALCON = {"RefinedWebModel": False, "RefinedWeb": True}  # model_type -> new_decoder_architecture
SUPPORTED_MODEL_TYPES: tuple[str, ...] = (*_FAMILIES, *_LEGACY_FALCON)


class _Reader:
    """Reads spec quantities from one config through `_ALIASES` and the family's defaults."""

    def __init__(self, cfg: Mapping[str, Any], family: _Family, where: str):
        self.cfg, self.family, self.where = cfg, family, where

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        """One config key as written (None counts as absent)."""
        value = self.cfg.get(key)
        return default if value is None else value

    def get(self, quantity: str, default: Any = ...) -> Any:
        """A spec quantity: the first alias present, else the family default, else `default`, else an error."""
        for key in _ALIASES[quantity]:
            if self.cfg.get(key) is not None:
                return self.cfg[key]
        if quantity in self.family.defaults:
            value = self.family.defaults[quantity]
            return value(self) if callable(value) else value
        if default is not ...:
            return default
        keys = _ALIASES[quantity]
        also = f" (also read as {', '.join(keys[1:])})" if len(keys) > 1 else ""
        raise SpecError(keys[0], f"required key missing from {self.where}{also}")


# ------------------------------------------------------------------ loading
def _load(path_or_dict) -> tuple[dict[str, Any], str]:
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), "the config dict"
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(str(path), f"is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise SpecError(str(path), "must be a JSON object of key: value")
    return cfg, str(path)


# ------------------------------------------------------------ derivations
def _kv_heads(r: _Reader, model_type: str, heads: int) -> int:
    if model_type != "falcon":
        return r.get("num_kv_heads", heads)
    if r.raw("new_decoder_architecture", False):
        return r.get("num_kv_heads", heads)
    return 1 if r.raw("multi_query", False) else heads


def _attention_kind(heads: int, kv_heads: int, mla: bool) -> str:
    if mla:
        return "mla"
    if kv_heads == heads:
        return "mha"
    return "mqa" if kv_heads == 1 else "gqa"


def _mla(r: _Reader) -> dict[str, Any] | None:
    if not r.has("kv_lora_rank"):
        return None
    if r.raw("attention_bias", False):
        raise SpecError("attention_bias", f"MLA projections with biases are not representable (in {r.where})")
    req = {k: r.raw(k) for k in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
    missing = [k for k, v in req.items() if v is None]
    if missing:
        raise SpecError(missing[0], f"required key missing from {r.where} (MLA configs need kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim)")
    return {"q_lora_rank": r.raw("q_lora_rank"), **req}


def _layer_types(r: _Reader, n_layers: int) -> list[str]:
    """Per-layer attention type, before windows longer than the context are dropped."""
    types = r.raw("layer_types")
    if types is not None:
        if len(types) != n_layers:
            raise SpecError("layer_types", f"has {len(types)} entries for {n_layers} layers (in {r.where})")
        bad = sorted({t for t in types if t not in _LAYER_TYPES})
        if bad:
            raise SpecError("layer_types", f"{bad} not supported; only {', '.join(_LAYER_TYPES)} (in {r.where})")
        return [_LAYER_TYPES[t] for t in types]
    rule = r.family.sliding
    if rule == "alternate":
        return ["sliding" if i % 2 == 0 else "full" for i in range(n_layers)]
    if rule == "all" and r.has("sliding_window"):
        return ["sliding"] * n_layers
    if rule == "qwen" and r.raw("use_sliding_window", False) and r.has("sliding_window"):
        first = r.raw("max_window_layers", 28)  # Qwen2Config / Qwen3Config default
        return ["sliding" if i >= first else "full" for i in range(n_layers)]
    return ["full"] * n_layers


def _shortest_cycle(types: list[str]) -> tuple[str, ...]:
    n = len(types)
    for p in range(1, n + 1):
        if all(types[i] == types[i % p] for i in range(n)):
            return tuple(types[:p])
    return tuple(types)


def _attention_pattern(r: _Reader, n_layers: int, max_context: int) -> tuple[tuple[str, ...], int | None]:
    types = _layer_types(r, n_layers)
    window = r.get("sliding_window", None)
    if "sliding" in types and window is None:
        raise SpecError("sliding_window", f"layers use sliding attention but no window is given (in {r.where})")
    if "sliding" not in types or window >= max_context:
        return ("full",), None
    return _shortest_cycle(types), window


def _moe(r: _Reader, model_type: str, n_layers: int, dense_width: int) -> dict[str, Any] | None:
    experts = r.get("num_experts", 0)
    if not experts:
        return None
    if r.has("first_k_dense_replace") or r.has("moe_layer_freq"):  # DeepSeek
        k, freq = r.raw("first_k_dense_replace", 0), r.raw("moe_layer_freq", 1)
        dense = [i for i in range(n_layers) if not (i >= k and i % freq == 0)]
    else:  # Qwen-MoE (Mixtral and gpt-oss have neither key: every layer is MoE)
        only, step = set(r.raw("mlp_only_layers", [])), r.raw("decoder_sparse_step", 1)
        dense = [i for i in range(n_layers) if i in only or (i + 1) % step != 0]
    return {
        "num_experts": experts,
        "experts_per_token": r.get("experts_per_token"),
        "expert_intermediate_size": r.get("expert_intermediate_size", dense_width),
        "num_shared_experts": r.raw("n_shared_experts", 0),
        "dense_layers": tuple(dense),
        "router_bias": model_type == "gpt_oss" or (model_type == "deepseek_v3" and r.raw("topk_method", "noaux_tc") == "noaux_tc"),
        "expert_bias": model_type == "gpt_oss",
    }


def _block_layout(r: _Reader, model_type: str) -> dict[str, Any]:
    """Biases, parallel attention + MLP, and norms per layer (before the family's fixed traits)."""
    bias = bool(r.raw(r.family.bias_key, False)) if r.family.bias_key else False
    if model_type != "falcon":
        return {"qkv_bias": bias, "o_bias": bias, "mlp_bias": bool(r.raw("mlp_bias", False))}
    new = bool(r.raw("new_decoder_architecture", False))
    parallel = new or bool(r.raw("parallel_attn", True))
    if new:
        norms = r.raw("num_ln_in_parallel_attn", 2)  # ln_attn + ln_mlp (Falcon-11B: 1)
    else:
        norms = 1 if parallel else 2
    return {"qkv_bias": bias, "o_bias": bias, "mlp_bias": bias, "parallel_blocks": parallel, "norms_per_layer": norms}


def _int(r: _Reader, quantity: str, default: Any = ...) -> Any:
    value = r.get(quantity, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(_ALIASES[quantity][0], f"must be an integer, got {value!r} (in {r.where})")
    return value


def _quantized_dtype(quant: Any) -> str | None:
    """The simulator's dtype for a checkpoint's `quantization_config`, or None when it names none it knows."""
    if not isinstance(quant, Mapping):
        return None
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8":
        return "fp8_e5m2" if "e5m2" in str(quant.get("fmt", "")).lower() else "fp8_e4m3"
    if method == "mxfp4":
        return "fp4"
    if method in _INT_QUANT_METHODS and quant.get("bits") in (4, 8):
        return f"int{quant['bits']}"
    if method == "bitsandbytes":
        if quant.get("load_in_4bit") and quant.get("bnb_4bit_quant_type", "fp4") == "nf4":
            return "nf4"
        if quant.get("load_in_8bit"):
            return "int8"
    return None


def _native_dtype(r: _Reader) -> str:
    quantized = _quantized_dtype(r.raw("quantization_config")) is not None
    dtype = str(r.get("dtype", "bfloat16" if quantized else "float32"))
    if dtype not in _DTYPES:
        raise SpecError(_ALIASES["dtype"][0], f"{dtype!r} not understood (in {r.where}); expected one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _notes(r: _Reader, model_type: str) -> str:
    notes = [f"Imported from {r.where} (model_type {model_type})."]
    quant = r.raw("quantization_config")
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, Mapping) else "?"
        if _quantized_dtype(quant):
            kept = quant.get("modules_to_not_convert") if isinstance(quant, Mapping) else None
            notes.append(f"native_weight_dtype from quantization_config ({method})"
                         + (f"; modules left unquantized ({', '.join(map(str, kept))}) are not distinguished." if kept else "."))
        else:
            notes.append(f"quantization_config ({method}) not modelled: weights taken to be in native_dtype.")
    if r.raw("num_nextn_predict_layers"):
        notes.append(f"{r.raw('num_nextn_predict_layers')} multi-token-prediction layer(s) not counted.")
    if model_type == "gpt_oss":
        notes.append("Attention sinks (one logit per head per layer) not counted.")
    return " ".join(notes)


# ------------------------------------------------------------------ entry
def from_hf_config(path_or_dict, **overrides) -> ModelSpec:
    """Build a `ModelSpec` from a Hugging Face config.json: a path (file or folder) or a parsed dict.

    `overrides` replace fields of the imported spec (e.g. `name=`, `source=`,
    `max_context=`); `attention` is re-derived from the heads unless overridden.
    Raises `SpecError` for an unsupported model_type, a missing required key or
    an invalid result.
    """
    cfg, where = _load(path_or_dict)
    model_type = cfg.get("model_type")
    if model_type is None:
        raise SpecError("model_type", f"missing from {where}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    if model_type in _LEGACY_FALCON:
        cfg.setdefault("new_decoder_architecture", _LEGACY_FALCON[model_type])
        model_type = "falcon"
    if model_type not in _FAMILIES:
        raise SpecError("model_type", f"{model_type!r} is not supported (in {where}); supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    r = _Reader(cfg, _FAMILIES[model_type], where)

    n_layers = _int(r, "num_layers")
    hidden = _int(r, "hidden_size")
    heads = _int(r, "num_attention_heads")
    max_context = _int(r, "max_context")
    dense_width = _int(r, "intermediate_size")
    mla = _mla(r)
    kv_heads = heads if mla else _kv_heads(r, model_type, heads)
    if mla:
        head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        head_dim = _int(r, "head_dim", None) or hidden // max(heads, 1)
    pattern, window = _attention_pattern(r, n_layers, max_context)
    name_or_path = str(r.raw("_name_or_path", ""))
    hub_repo = re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) is not None  # "org/name", not a local path

    fields: dict[str, Any] = {
        "name": name_or_path or model_type,
        "source": f"https://huggingface.co/{name_or_path}" if hub_repo else f"https://huggingface.co/models?other={model_type}",
        "num_layers": n_layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": dense_width,
        "ffn_kind": "gated",
        "activation": str(r.get("activation", "silu")),
        "vocab_size": _int(r, "vocab_size"),
        "tied_embeddings": bool(r.get("tied_embeddings")),
        "max_context": max_context,
        "mla": mla,
        "attention_pattern": pattern,
        "sliding_window": window,
        "moe": _moe(r, model_type, n_layers, dense_width),
        "native_dtype": _native_dtype(r),
        "native_weight_dtype": _quantized_dtype(r.raw("quantization_config")),
        "position_embedding": "alibi" if r.raw("alibi", False) else "rope",
        "notes": _notes(r, model_type),
        **_block_layout(r, model_type),
        **r.family.fixed,
    }
    fields.update(overrides)
    if "attention" not in overrides:
        fields["attention"] = _attention_kind(fields["num_attention_heads"], fields["num_kv_heads"], fields["mla"] is not None)
    if not str(fields["source"]).startswith(("http://", "https://")):
        raise SpecError("source", f"must be a URL (http:// or https://), got {fields['source']!r}")
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as exc:
        raise validation_message(exc, where) from None
