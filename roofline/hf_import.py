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
* Quantized checkpoints (`native_weight_dtype` and `checkpoint_quant`, see
  `specs.CheckpointQuant`), from `quantization_config`, or from ModelOpt's
  `hf_quant_config.json` beside config.json (it wins when it names a quant_algo):
    - fp8 (DeepSeek-V3): fp8_e4m3 / fp8_e5m2 by `fmt`; `weight_block_size`
      [b, b] -> block scales of b x b; an `activation_scheme` -> W8A8 (FP8 compute).
    - mxfp4 (gpt-oss): fp4 = E2M1 with an 8-bit scale per 32 (4.25 bits).
    - gptq / awq: int4 / int8 by `bits`; `group_size` (-1 = one scale per row);
      zero points when GPTQ `sym` is false or AWQ `zero_point` is true.
    - bitsandbytes: 4-bit nf4 / fp4 with an FP32 absmax per 64 (8-bit with
      `bnb_4bit_use_double_quant`), 8-bit = int8 with an FP32 scale per row.
    - compressed-tensors: the config group targeting Linear: weights' num_bits and
      type (float 8 -> fp8_e4m3, int 8 -> int8, int 4 -> int4, float 4 -> fp4, with
      E4M3 scales per 16 for NVFP4), `strategy` (tensor / channel / group / block),
      group_size, `symmetric`; `input_activations` -> the compute format (W8A8);
      `kv_cache_scheme` -> the KV format.
    - modelopt: `quant_algo` (FP8, FP8_PER_CHANNEL_PER_TOKEN, FP8_BLOCK_SCALES,
      INT8_WEIGHT_ONLY, W8A8_SQ_PER_CHANNEL, W4A16_AWQ, W4A8_AWQ, NVFP4, W4A16_NVFP4,
      MXFP4), `group_size`, `kv_cache_quant_algo` (FP8, INT8).
  Modules a checkpoint leaves unquantized (`modules_to_not_convert`, `ignore`,
  `exclude_modules`, `llm_int8_skip_modules`) become whole weight groups kept in
  native_dtype (attention, dense_mlp, shared_experts, lm_head, embedding); a
  pattern naming single layers counts once it covers every layer of its group.
  gptq (unless `lm_head: true`), awq, bitsandbytes and fp8 keep the LM head
  native, as their loaders do. An unknown quant_method is ignored (the weights are
  then taken to be in native_dtype) and said so in `notes`.
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

* Quantization detail finer than a weight group: modules left unquantized in only
  some layers, several config groups with different schemes (the one targeting
  Linear layers is applied to all), GPTQ's act-order index, ModelOpt's FP32
  per-tensor second-level scales (recorded in `notes` when present).
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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from .errors import SpecError, validation_message
from .files import check_shape, read_mapping
from .specs import MAX_CONTEXT, MAX_EXPERTS, MAX_HEADS, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, ModelSpec

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

    def key_of(self, quantity: str) -> str:
        """The config key a quantity is read from: the first alias present, else its first alias."""
        return next((k for k in _ALIASES[quantity] if self.cfg.get(k) is not None), _ALIASES[quantity][0])

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
HF_QUANT_CONFIG = "hf_quant_config.json"  # ModelOpt's file beside config.json


def _load(path_or_dict, hf_quant_config=None) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """config.json as a dict, where it came from, and ModelOpt's hf_quant_config.json: the one given, else
    the file beside a config.json read from disk, else None."""
    quant = None
    if isinstance(hf_quant_config, Mapping):
        quant = dict(hf_quant_config)
        check_shape(quant, "the hf_quant_config dict")
    elif hf_quant_config is not None:
        if not isinstance(hf_quant_config, (str, Path)):
            raise SpecError("hf_quant_config", f"expected a path to hf_quant_config.json or a dict, got {type(hf_quant_config).__name__}")
        quant = read_mapping(Path(hf_quant_config), "json", field="hf_quant_config")
    if isinstance(path_or_dict, Mapping):
        cfg, where = dict(path_or_dict), "the config dict"
        check_shape(cfg, where)
        return cfg, where, quant
    if not isinstance(path_or_dict, (str, Path)):
        raise SpecError("config", f"expected a path to config.json or a dict, got {type(path_or_dict).__name__}")
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    beside = path.parent / HF_QUANT_CONFIG
    if quant is None and beside.is_file():
        quant = read_mapping(beside, "json", field="hf_quant_config")
    return read_mapping(path, "json", field="config"), str(path), quant


# ------------------------------------------------------------ typed reads
# A config.json is untrusted: every value is checked for its type and range before it is used, so a
# string, a float or a zero where a count belongs is a one-line error naming the key, never a crash
# or a silently wrong structure (the string "false" is truthy in Python).
def _check_int(key: str, value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer() and lo <= value <= hi:
        value = int(value)  # 4096.0: an integer written as a float
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(key, f"must be an integer, got {value!r} (in {where})")
    if not lo <= value <= hi:
        raise SpecError(key, f"must be between {lo:,} and {hi:,}, got {value:,} (in {where})")
    return value


def _int(r: "_Reader", quantity: str, default: Any = ..., lo: int = 1, hi: int = MAX_WIDTH) -> Any:
    """A spec quantity that must be an integer in [lo, hi] (None stays None)."""
    value = r.get(quantity, default)
    return None if value is None else _check_int(r.key_of(quantity), value, r.where, lo, hi)


def _raw_int(r: "_Reader", key: str, default: Any, lo: int = 1, hi: int = MAX_WIDTH) -> Any:
    """One config key that must be an integer in [lo, hi] when present."""
    value = r.raw(key)
    return default if value is None else _check_int(key, value, r.where, lo, hi)


def _bool(r: "_Reader", key: str | None, default: bool = False) -> bool:
    """A JSON boolean; the strings "true"/"false" (and numbers) are refused, never read as truthy."""
    if key is None:
        return default
    value = r.raw(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(key, f"must be true or false (a JSON boolean, unquoted), got {value!r} (in {r.where})")
    return value


def _str(r: "_Reader", key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SpecError(key, f"must be a string, got {value!r} (in {r.where})")
    return value


def _int_list(r: "_Reader", key: str, lo: int, hi: int) -> list[int]:
    value = r.raw(key, [])
    if not isinstance(value, list):
        raise SpecError(key, f"must be a list of layer indices, got {value!r} (in {r.where})")
    return [_check_int(key, v, r.where, lo, hi) for v in value]


# ------------------------------------------------------------ derivations
def _kv_heads(r: _Reader, model_type: str, heads: int) -> int:
    if model_type != "falcon" or _bool(r, "new_decoder_architecture"):
        return _int(r, "num_kv_heads", heads, hi=MAX_HEADS)
    return 1 if _bool(r, "multi_query") else heads


def _attention_kind(heads: int, kv_heads: int, mla: bool) -> str:
    if mla:
        return "mla"
    if kv_heads == heads:
        return "mha"
    return "mqa" if kv_heads == 1 else "gqa"


def _mla(r: _Reader) -> dict[str, Any] | None:
    if not r.has("kv_lora_rank"):
        return None
    if _bool(r, "attention_bias"):
        raise SpecError("attention_bias", f"MLA projections with biases are not representable (in {r.where})")
    req = {k: _raw_int(r, k, None) for k in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
    missing = [k for k, v in req.items() if v is None]
    if missing:
        raise SpecError(missing[0], f"required key missing from {r.where} (MLA configs need kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim)")
    return {"q_lora_rank": _raw_int(r, "q_lora_rank", None), **req}


def _layer_types(r: _Reader, n_layers: int) -> list[str]:
    """Per-layer attention type, before windows longer than the context are dropped."""
    types = r.raw("layer_types")
    if types is not None:
        if not isinstance(types, list):
            raise SpecError("layer_types", f"must be a list of attention types per layer, got {types!r} (in {r.where})")
        if len(types) != n_layers:
            raise SpecError("layer_types", f"has {len(types)} entries for {n_layers} layers (in {r.where})")
        bad = sorted({repr(t) for t in types if not isinstance(t, str) or t not in _LAYER_TYPES})
        if bad:
            raise SpecError("layer_types", f"{bad} not supported; only {', '.join(_LAYER_TYPES)} (in {r.where})")
        return [_LAYER_TYPES[t] for t in types]
    rule = r.family.sliding
    if rule == "alternate":
        return ["sliding" if i % 2 == 0 else "full" for i in range(n_layers)]
    if rule == "all" and r.has("sliding_window"):
        return ["sliding"] * n_layers
    if rule == "qwen" and _bool(r, "use_sliding_window") and r.has("sliding_window"):
        first = _raw_int(r, "max_window_layers", 28, lo=0, hi=MAX_LAYERS)  # Qwen2Config / Qwen3Config default
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
    window = _int(r, "sliding_window", None, hi=MAX_CONTEXT)
    if "sliding" in types and window is None:
        raise SpecError("sliding_window", f"layers use sliding attention but no window is given (in {r.where})")
    if "sliding" not in types or window >= max_context:
        return ("full",), None
    return _shortest_cycle(types), window


def _moe(r: _Reader, model_type: str, n_layers: int, dense_width: int) -> dict[str, Any] | None:
    experts = _int(r, "num_experts", 0, lo=0, hi=MAX_EXPERTS)
    if not experts:
        return None
    if r.has("first_k_dense_replace") or r.has("moe_layer_freq"):  # DeepSeek
        k = _raw_int(r, "first_k_dense_replace", 0, lo=0, hi=MAX_LAYERS)
        freq = _raw_int(r, "moe_layer_freq", 1, lo=1, hi=MAX_LAYERS)
        dense = [i for i in range(n_layers) if not (i >= k and i % freq == 0)]
    else:  # Qwen-MoE (Mixtral and gpt-oss have neither key: every layer is MoE)
        only = set(_int_list(r, "mlp_only_layers", 0, MAX_LAYERS))
        step = _raw_int(r, "decoder_sparse_step", 1, lo=1, hi=MAX_LAYERS)
        dense = [i for i in range(n_layers) if i in only or (i + 1) % step != 0]
    topk_method = r.raw("topk_method", "noaux_tc")
    return {
        "num_experts": experts,
        "experts_per_token": _int(r, "experts_per_token", hi=MAX_EXPERTS),
        "expert_intermediate_size": _int(r, "expert_intermediate_size", dense_width),
        "num_shared_experts": _raw_int(r, "n_shared_experts", 0, lo=0, hi=MAX_EXPERTS),
        "dense_layers": tuple(dense),
        "router_bias": model_type == "gpt_oss" or (model_type == "deepseek_v3" and topk_method == "noaux_tc"),
        "expert_bias": model_type == "gpt_oss",
    }


def _block_layout(r: _Reader, model_type: str) -> dict[str, Any]:
    """Biases, parallel attention + MLP, and norms per layer (before the family's fixed traits)."""
    bias = _bool(r, r.family.bias_key)
    if model_type != "falcon":
        return {"qkv_bias": bias, "o_bias": bias, "mlp_bias": _bool(r, "mlp_bias")}
    new = _bool(r, "new_decoder_architecture")
    parallel = new or _bool(r, "parallel_attn", True)
    if new:
        norms = _raw_int(r, "num_ln_in_parallel_attn", 2, lo=0, hi=16)  # ln_attn + ln_mlp (Falcon-11B: 1)
    else:
        norms = 1 if parallel else 2
    return {"qkv_bias": bias, "o_bias": bias, "mlp_bias": bias, "parallel_blocks": parallel, "norms_per_layer": norms}


def _tied(r: _Reader) -> bool:
    """tie_word_embeddings: a JSON boolean, else the family default."""
    if r.has("tie_word_embeddings"):
        return _bool(r, "tie_word_embeddings")
    return bool(r.get("tied_embeddings"))


# ------------------------------------------------------- quantized checkpoints
@dataclass
class _Quant:
    """What a checkpoint's quantization metadata says: the weight format, its layout, what stays native."""

    method: str
    dtype: str | None = None  # native_weight_dtype; None = a scheme the simulator does not know
    ck: dict[str, Any] = field(default_factory=dict)  # CheckpointQuant fields
    kept: set[str] = field(default_factory=set)  # specs.KeptWeights
    notes: list[str] = field(default_factory=list)


_MODELOPT_ALGOS: dict[str, tuple[str, dict[str, Any]]] = {  # quant_algo -> weight dtype, CheckpointQuant fields
    "FP8": ("fp8_e4m3", {"activation_dtype": "fp8_e4m3"}),  # per-tensor W8A8
    "FP8_PER_CHANNEL_PER_TOKEN": ("fp8_e4m3", {"scale_granularity": "row", "activation_dtype": "fp8_e4m3"}),
    "FP8_BLOCK_SCALES": ("fp8_e4m3", {"scale_granularity": "block", "group_size": 128, "activation_dtype": "fp8_e4m3"}),
    "INT8_WEIGHT_ONLY": ("int8", {}),
    "W8A8_SQ_PER_CHANNEL": ("int8", {"activation_dtype": "int8"}),
    "W4A16_AWQ": ("int4", {"group_size": 128}),
    "W4A8_AWQ": ("int4", {"group_size": 128, "activation_dtype": "fp8_e4m3"}),
    # NVFP4: E2M1 in blocks of 16 with an FP8 (E4M3) scale each (+ one FP32 per tensor, not counted)
    "NVFP4": ("fp4", {"group_size": 16, "scale_dtype": "fp8_e4m3", "activation_dtype": "fp4"}),
    "W4A16_NVFP4": ("fp4", {"group_size": 16, "scale_dtype": "fp8_e4m3"}),
    "MXFP4": ("fp4", {}),
}
_MODELOPT_KV = {"FP8": "fp8_e4m3", "INT8": "int8"}
_CT_STRATEGY = {"tensor": "tensor", "channel": "row", "group": "group", "tensor_group": "group", "block": "block"}
# Methods whose loaders leave the LM head in native_dtype unless told otherwise (transformers skips the
# output embedding for bitsandbytes and fp8; AutoAWQ and GPTQ quantize only the decoder blocks).
_LM_HEAD_NATIVE = ("gptq", "awq", "bitsandbytes", "fp8")


def _module_group(pattern: str) -> str | None:
    """The weight group (`specs.KeptWeights`, or "router") a module name or pattern covers, if one."""
    p = pattern.lower()
    if "lm_head" in p or p == "output":
        return "lm_head"
    if "embed" in p:
        return "embedding"
    if "shared_expert" in p:
        return "shared_experts"
    if "router" in p or re.search(r"(mlp|block_sparse_moe)\.gate(\b|$)(?!_)", p):
        return "router"
    if re.search(r"attn|attention|[qkvo]_proj|qkv", p):
        return "attention"
    if "expert" in p:
        return None
    if re.search(r"mlp|feed_forward|(gate|up|down)_proj", p):
        return "dense_mlp"
    return None


def _kept_groups(q: _Quant, modules: Any, key: str, n_layers: int, moe_layers: set[int]) -> None:
    """Read a list of modules left unquantized into whole weight groups.

    A pattern without a layer index (`model.layers.*.self_attn`, `re:.*mlp.gate$`) covers its group in
    every layer; explicit per-layer names count once they cover every layer the group exists in (dense
    MLPs: the dense layers; shared experts: the MoE layers). Anything else cannot be represented
    (one format per group) and is named in the notes.
    """
    if modules is None:
        return
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, list):
        raise SpecError(key, f"must be a list of module names, got {modules!r}")
    seen: dict[str, set[int]] = {}
    partial: list[str] = []
    for name in modules:
        group = _module_group(str(name))
        if group is None:
            partial.append(str(name))
            continue
        idx = re.search(r"layers\.(\d+)\.", str(name))
        seen.setdefault(group, set()).add(-1 if idx is None else int(idx.group(1)))
    for group, layers in seen.items():
        needs = {"dense_mlp": set(range(n_layers)) - moe_layers, "shared_experts": moe_layers}.get(group, set(range(n_layers)))
        if group == "router":
            continue  # routers are always native
        if -1 in layers or (group in ("attention", "dense_mlp", "shared_experts") and needs <= layers):
            q.kept.add(group)
        else:
            partial.append(f"{group} of layers {sorted(layers)[:4]}...")
    if partial:
        q.notes.append(f"{key} entries not modelled (one format per weight group): {', '.join(partial[:6])}"
                       + (f" and {len(partial) - 6} more" if len(partial) > 6 else ""))


def _bits_dtype(bits: Any, kind: str) -> str | None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        return None
    return {("float", 8): "fp8_e4m3", ("int", 8): "int8", ("int", 4): "int4", ("float", 4): "fp4"}.get((kind, bits))


def _compressed_tensors(quant: Mapping[str, Any], q: _Quant) -> None:
    """compressed-tensors (llm-compressor): the scheme of the config group that targets Linear layers."""
    groups = quant.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        return
    schemes = [g for g in groups.values() if isinstance(g, Mapping) and isinstance(g.get("weights"), Mapping)]
    if not schemes:
        return
    g = next((g for g in schemes if "Linear" in (g.get("targets") or [])), schemes[0])
    if len(schemes) > 1:
        q.notes.append(f"{len(schemes)} config_groups: the one targeting Linear layers is applied to all of them.")
    w = g["weights"]
    q.dtype = _bits_dtype(w.get("num_bits"), str(w.get("type", "int")))
    if q.dtype is None:
        return
    strategy = _CT_STRATEGY.get(str(w.get("strategy", "")))
    if strategy:
        q.ck["scale_granularity"] = strategy
    size = w.get("group_size")
    block = w.get("block_structure")
    if strategy == "block" and isinstance(block, list) and len(block) == 2 and block[0] == block[1]:
        size = block[0]
    if isinstance(size, int) and not isinstance(size, bool) and size > 0 and strategy in ("group", "block"):
        q.ck["group_size"] = size
    if q.dtype == "fp4" and q.ck.get("group_size") == 16:
        q.ck["scale_dtype"] = "fp8_e4m3"  # NVFP4: an E4M3 scale per 16
    if w.get("symmetric") is False:
        q.ck["zero_point"] = True
    act = g.get("input_activations")
    if isinstance(act, Mapping):
        q.ck["activation_dtype"] = _bits_dtype(act.get("num_bits"), str(act.get("type", "int")))
    kv = quant.get("kv_cache_scheme")
    if isinstance(kv, Mapping):
        q.ck["kv_dtype"] = _bits_dtype(kv.get("num_bits"), str(kv.get("type", "int")))


def _modelopt(algo_block: Mapping[str, Any], q: _Quant, where: str) -> None:
    """TensorRT Model Optimizer: `quant_algo`, `kv_cache_quant_algo`, `group_size` (hf_quant_config.json's
    `quantization` block, or a config.json quantization_config with quant_method modelopt)."""
    algo = str(algo_block.get("quant_algo") or "").upper()
    if algo in _MODELOPT_ALGOS:
        q.dtype, fields = _MODELOPT_ALGOS[algo]
        q.ck.update(fields)
        size = algo_block.get("group_size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0 and "group_size" in fields:
            q.ck["group_size"] = size
        if algo_block.get("has_zero_point") is True:
            q.ck["zero_point"] = True
    elif algo:
        q.notes.append(f"ModelOpt quant_algo {algo} ({where}) not modelled.")
    kv = str(algo_block.get("kv_cache_quant_algo") or "").upper()
    if kv in _MODELOPT_KV:
        q.ck["kv_dtype"] = _MODELOPT_KV[kv]
    elif kv and kv != "NONE":
        q.notes.append(f"ModelOpt kv_cache_quant_algo {kv} not modelled: KV cache in native_dtype.")


def _checkpoint_quant(r: _Reader, hf_quant: Mapping[str, Any] | None, n_layers: int, moe_layers: set[int]) -> _Quant | None:
    """The checkpoint's quantization: config.json's `quantization_config`, overridden by ModelOpt's
    `hf_quant_config.json` (`hf_quant`) when that names a quant_algo."""
    quant = r.raw("quantization_config")
    block = hf_quant.get("quantization") if isinstance(hf_quant, Mapping) else None
    if block is not None and not isinstance(block, Mapping):
        raise SpecError("quantization", f"must be a mapping (quant_algo, kv_cache_quant_algo, ...) in hf_quant_config.json, got {block!r}")
    if block and block.get("quant_algo"):
        q = _Quant("modelopt (hf_quant_config.json)")
        _modelopt(block, q, "hf_quant_config.json")
        _kept_groups(q, block.get("exclude_modules"), "exclude_modules", n_layers, moe_layers)
        return q if q.dtype else _unknown(q)
    if not isinstance(quant, Mapping):
        return None
    method = str(quant.get("quant_method", "?")).lower()
    q = _Quant(method)
    bits = quant.get("bits")
    if method == "fp8":
        q.dtype = "fp8_e5m2" if "e5m2" in str(quant.get("fmt", "")).lower() else "fp8_e4m3"
        block_size = quant.get("weight_block_size")
        if isinstance(block_size, list) and len(block_size) == 2 and block_size[0] == block_size[1] and isinstance(block_size[0], int):
            q.ck.update(scale_granularity="block", group_size=block_size[0])
        if quant.get("activation_scheme") in ("dynamic", "static"):
            q.ck["activation_dtype"] = q.dtype  # W8A8: activations quantized to FP8 too
    elif method == "mxfp4":
        q.dtype = "fp4"  # E2M1, a shared 8-bit E8M0 scale per 32: the fp4 row of dtypes.py
    elif method in _INT_QUANT_METHODS and not isinstance(bits, bool) and bits in (4, 8):
        q.dtype = f"int{int(bits)}"
        size = quant.get("group_size", 128)
        if size == -1:
            q.ck["scale_granularity"] = "row"  # one scale per output channel
        elif isinstance(size, int) and not isinstance(size, bool) and size > 0:
            q.ck.update(scale_granularity="group", group_size=size)
        if (method == "gptq" and quant.get("sym", True) is False) or (method == "awq" and quant.get("zero_point", True) is True):
            q.ck["zero_point"] = True
        if method == "gptq" and quant.get("desc_act") is True:
            q.notes.append("GPTQ desc_act: the per-input-channel group index (4 bytes per input row) is not counted.")
    elif method == "bitsandbytes":
        if quant.get("load_in_4bit") is True:
            kind = quant.get("bnb_4bit_quant_type", "fp4")
            q.dtype = "nf4" if kind == "nf4" else "fp4"
            q.ck.update(scale_granularity="group", group_size=64, scale_dtype="fp32")  # an FP32 absmax per 64
            if quant.get("bnb_4bit_use_double_quant") is True:
                q.ck["scale_dtype"] = "int8"  # absmax re-quantized to 8 bits (+ an FP32 per 256 blocks, not counted)
        elif quant.get("load_in_8bit") is True:
            q.dtype = "int8"
            q.ck["scale_dtype"] = "fp32"  # LLM.int8(): an FP32 scale per row
        _kept_groups(q, quant.get("llm_int8_skip_modules"), "llm_int8_skip_modules", n_layers, moe_layers)
    elif method == "compressed-tensors":
        _compressed_tensors(quant, q)
        _kept_groups(q, quant.get("ignore"), "ignore", n_layers, moe_layers)
    elif method == "modelopt":
        _modelopt(quant, q, "config.json")
        _kept_groups(q, quant.get("exclude_modules", quant.get("ignore")), "exclude_modules", n_layers, moe_layers)
    if not q.dtype:
        return _unknown(q)
    if method in _LM_HEAD_NATIVE and not (method == "gptq" and quant.get("lm_head") is True):
        q.kept.add("lm_head")
    if method not in ("compressed-tensors", "modelopt", "bitsandbytes"):
        _kept_groups(q, quant.get("modules_to_not_convert"), "modules_to_not_convert", n_layers, moe_layers)
    return q


def _unknown(q: _Quant) -> _Quant:
    q.dtype = None
    q.ck, q.kept = {}, set()
    return q


def _quant_fields(q: _Quant | None) -> tuple[str | None, dict[str, Any] | None]:
    """native_weight_dtype and checkpoint_quant for the spec."""
    if q is None or q.dtype is None:
        return None, None
    ck = {k: v for k, v in q.ck.items() if v is not None}
    order = ("attention", "dense_mlp", "shared_experts", "lm_head", "embedding")
    kept = tuple(g for g in order if g in q.kept)
    if kept:
        ck["unquantized"] = kept
    return q.dtype, (ck or None)


def _native_dtype(r: _Reader, quantized: bool) -> str:
    dtype = r.get("dtype", "bfloat16" if quantized else "float32")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise SpecError(_ALIASES["dtype"][0], f"{dtype!r} not understood (in {r.where}); expected one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _notes(r: _Reader, model_type: str, q: _Quant | None) -> str:
    notes = [f"Imported from {r.where} (model_type {model_type})."]
    if q is not None:
        if q.dtype:
            kept = sorted(q.kept - {"router"})
            notes.append(f"native_weight_dtype from {q.method}" + (f"; kept in native_dtype: {', '.join(kept)}." if kept else "."))
        else:
            notes.append(f"quantization ({q.method}) not modelled: weights taken to be in native_dtype.")
        notes += q.notes
    mtp = _raw_int(r, "num_nextn_predict_layers", 0, lo=0, hi=MAX_LAYERS)
    if mtp:
        notes.append(f"{mtp} multi-token-prediction layer(s) not counted.")
    if model_type == "gpt_oss":
        notes.append("Attention sinks (one logit per head per layer) not counted.")
    return " ".join(notes)


# ------------------------------------------------------------------ entry
def from_hf_config(path_or_dict, hf_quant_config=None, **overrides) -> ModelSpec:
    """Build a `ModelSpec` from a Hugging Face config.json: a path (file or folder) or a parsed dict.

    `hf_quant_config`: ModelOpt's hf_quant_config.json (a path or a dict); by default the file of
    that name beside a config.json read from disk, when there is one.

    `overrides` replace fields of the imported spec (e.g. `name=`, `source=`,
    `max_context=`); `attention` is re-derived from the heads unless overridden.
    Raises `SpecError` for an unsupported model_type, a missing required key or
    an invalid result.
    """
    cfg, where, hf_quant = _load(path_or_dict, hf_quant_config)
    model_type = cfg.get("model_type")
    if model_type is None:
        raise SpecError("model_type", f"missing from {where}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    if not isinstance(model_type, str):
        raise SpecError("model_type", f"must be a string, got {model_type!r} (in {where}); supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    if model_type in _LEGACY_FALCON:
        cfg.setdefault("new_decoder_architecture", _LEGACY_FALCON[model_type])
        model_type = "falcon"
    if model_type not in _FAMILIES:
        raise SpecError("model_type", f"{model_type!r} is not supported (in {where}); supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    r = _Reader(cfg, _FAMILIES[model_type], where)
    if r.has("quantization_config") and not isinstance(r.raw("quantization_config"), Mapping):
        raise SpecError("quantization_config", f"must be a mapping (quant_method, bits, ...), got {r.raw('quantization_config')!r} (in {where})")

    n_layers = _int(r, "num_layers", hi=MAX_LAYERS)
    hidden = _int(r, "hidden_size")
    heads = _int(r, "num_attention_heads", hi=MAX_HEADS)
    max_context = _int(r, "max_context", hi=MAX_CONTEXT)
    dense_width = _int(r, "intermediate_size")
    mla = _mla(r)
    kv_heads = heads if mla else _kv_heads(r, model_type, heads)
    if mla:
        head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        head_dim = _int(r, "head_dim", None) or hidden // heads
    pattern, window = _attention_pattern(r, n_layers, max_context)
    moe = _moe(r, model_type, n_layers, dense_width)
    moe_layers = set(range(n_layers)) - set(moe["dense_layers"]) if moe else set()
    quant = _checkpoint_quant(r, hf_quant, n_layers, moe_layers)
    weight_dtype, checkpoint_quant = _quant_fields(quant)
    name_or_path = r.raw("_name_or_path", "")
    name_or_path = name_or_path.strip()[:200] if isinstance(name_or_path, str) else ""
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
        "activation": _str(r, r.key_of("activation"), r.get("activation", "silu")),
        "vocab_size": _int(r, "vocab_size", hi=MAX_VOCAB),
        "tied_embeddings": _tied(r),
        "max_context": max_context,
        "mla": mla,
        "attention_pattern": pattern,
        "sliding_window": window,
        "moe": moe,
        "native_dtype": _native_dtype(r, weight_dtype is not None),
        "native_weight_dtype": weight_dtype,
        "checkpoint_quant": checkpoint_quant,
        "position_embedding": "alibi" if _bool(r, "alibi") else "rope",
        "notes": _notes(r, model_type, quant),
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
