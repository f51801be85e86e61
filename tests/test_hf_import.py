"""Importing Hugging Face config.json files (roofline.hf_import).

The files in tests/hf_configs/ are the published config.json of each model
(key names and values as released), plus one deliberately tiny config. Parameter
counts are checked against arithmetic written out below from the published
architecture, not against the library's own sums; where a model card or the
checkpoint's safetensors index states a total, the comment gives it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import roofline as rl
from roofline import ModelSpec, SpecError
from roofline.hf_import import SUPPORTED_MODEL_TYPES, from_hf_config

CONFIGS = Path(__file__).parent / "hf_configs"
MODEL_SPECS = Path(__file__).resolve().parent.parent / "model_specs"
ALL_CONFIGS = sorted(CONFIGS.glob("*.json"))

# config file -> Hugging Face repositories it is the config of (for matching shipped YAML specs)
HF_REPOS = {
    "llama-3.1-8b": ["meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"],
    "llama-3.1-70b": ["meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct"],
    "llama-3.1-405b": ["meta-llama/Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct"],
    "llama-3.2-1b": ["meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"],
    "llama-3.2-3b": ["meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct"],
    "llama-3.3-70b-instruct": ["meta-llama/Llama-3.3-70B-Instruct"],
    "llama-2-7b": ["meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"],
    "llama-2-13b": ["meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-chat-hf"],
    "llama-2-70b": ["meta-llama/Llama-2-70b-hf", "meta-llama/Llama-2-70b-chat-hf"],
    "mistral-7b-v0.1": ["mistralai/Mistral-7B-v0.1"],
    "mixtral-8x7b": ["mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"],
    "qwen2.5-7b": ["Qwen/Qwen2.5-7B"],
    "qwen2.5-72b": ["Qwen/Qwen2.5-72B"],
    "qwen3-8b": ["Qwen/Qwen3-8B"],
    "qwen3-32b": ["Qwen/Qwen3-32B"],
    "qwen3-30b-a3b": ["Qwen/Qwen3-30B-A3B"],
    "qwen3-235b-a22b": ["Qwen/Qwen3-235B-A22B"],
    "gemma-2-9b": ["google/gemma-2-9b", "google/gemma-2-9b-it"],
    "gemma-2-27b": ["google/gemma-2-27b", "google/gemma-2-27b-it"],
    "deepseek-v3": ["deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-V3-Base", "deepseek-ai/DeepSeek-V3-0324", "deepseek-ai/DeepSeek-R1"],
    "gpt-oss-20b": ["openai/gpt-oss-20b"],
    "gpt-oss-120b": ["openai/gpt-oss-120b"],
    "falcon-7b": ["tiiuae/falcon-7b", "tiiuae/falcon-7b-instruct"],
    "falcon-7b-refinedwebmodel": ["tiiuae/falcon-7b", "tiiuae/falcon-7b-instruct"],
    "falcon-40b": ["tiiuae/falcon-40b", "tiiuae/falcon-40b-instruct"],
    "falcon-40b-refinedweb": ["tiiuae/falcon-40b", "tiiuae/falcon-40b-instruct"],
    "falcon-180b": ["tiiuae/falcon-180B", "tiiuae/falcon-180B-chat"],
    "gpt-j-6b": ["EleutherAI/gpt-j-6b"],
    "phi-3-mini-4k-instruct": ["microsoft/Phi-3-mini-4k-instruct"],
}


def load(stem: str, **overrides) -> ModelSpec:
    return from_hf_config(CONFIGS / f"{stem}.json", **overrides)


def raw(stem: str) -> dict:
    return json.loads((CONFIGS / f"{stem}.json").read_text())


# ------------------------------------------------------------------ coverage
def test_one_config_per_supported_model_type():
    types = {json.loads(p.read_text())["model_type"] for p in ALL_CONFIGS}
    assert set(SUPPORTED_MODEL_TYPES) <= types


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.stem)
def test_every_config_imports(path):
    spec = ModelSpec.from_hf_config(path)
    cfg = json.loads(path.read_text())
    assert spec.param_count > 0 and spec.kv_bytes_per_token("bf16") > 0
    assert spec.source.startswith("https://")
    assert spec.vocab_size == cfg["vocab_size"]
    # the attention kind follows from the head counts alone
    if spec.mla is None:
        expected = "mha" if spec.num_kv_heads == spec.num_attention_heads else "mqa" if spec.num_kv_heads == 1 else "gqa"
        assert spec.attention == expected


def test_path_to_folder_and_dict_give_the_same_spec(tmp_path):
    (tmp_path / "config.json").write_text((CONFIGS / "llama-3.1-8b.json").read_text())
    from_file = from_hf_config(CONFIGS / "llama-3.1-8b.json")
    from_str = from_hf_config(str(CONFIGS / "llama-3.1-8b.json"))
    from_dir = from_hf_config(tmp_path)
    from_dict = from_hf_config(raw("llama-3.1-8b"))
    assert from_dict.param_count == from_file.param_count == from_dir.param_count == from_str.param_count
    assert from_dict.model_dump(exclude={"notes"}) == from_file.model_dump(exclude={"notes"})


# ----------------------------------------------------------- structure
def test_llama_fields():
    s = load("llama-3.1-8b")
    assert (s.num_layers, s.hidden_size, s.num_attention_heads, s.num_kv_heads, s.head_dim) == (32, 4096, 32, 8, 128)
    assert (s.intermediate_size, s.vocab_size, s.max_context) == (14336, 128256, 131072)
    assert (s.attention, s.ffn_kind, s.activation, s.norm, s.native_dtype) == ("gqa", "gated", "silu", "rmsnorm", "bf16")
    assert not s.tied_embeddings and not s.qkv_bias and s.position_embedding == "rope"
    assert s.attention_pattern == ("full",) and s.sliding_window is None
    assert s.name == "llama"  # no _name_or_path in the published file: the model_type


def test_mistral_window_applies_to_every_layer():
    s = load("mistral-7b-v0.1")
    assert s.attention_pattern == ("sliding",) and s.sliding_window == 4096
    # Mixtral publishes "sliding_window": null: full attention
    assert load("mixtral-8x7b").attention_pattern == ("full",)


def test_qwen2_bias_and_sliding_only_when_enabled():
    s = load("qwen2.5-7b")
    assert s.qkv_bias and not s.o_bias
    assert s.attention_pattern == ("full",) and s.sliding_window is None  # use_sliding_window: false
    cfg = raw("qwen2.5-7b") | {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    s = from_hf_config(cfg)
    assert s.attention_pattern == ("full",) * 20 + ("sliding",) * 8 and s.sliding_window == 4096
    assert [g.label for g in s.layer_groups()] == ["full/dense", "sliding4096/dense"]
    # a window at least as long as the context bounds nothing: full attention
    cfg["sliding_window"] = 131072
    assert from_hf_config(cfg).attention_pattern == ("full",)


def test_qwen3_qk_norm_and_explicit_head_dim():
    s = load("qwen3-8b")
    assert s.qk_norm and s.head_dim == 128 and not s.qkv_bias
    tiny = load("tiny-qwen3-moe")
    assert tiny.head_dim == 16 and tiny.hidden_size // tiny.num_attention_heads == 8


def test_qwen3_moe_experts_and_dense_layers():
    s = load("qwen3-30b-a3b")
    assert (s.moe.num_experts, s.moe.experts_per_token, s.moe.expert_intermediate_size) == (128, 8, 768)
    assert s.moe.dense_layers == () and s.moe.num_shared_experts == 0
    tiny = load("tiny-qwen3-moe")
    # decoder_sparse_step 2: layer i is MoE when (i + 1) % 2 == 0 -> 1, 3, 5; mlp_only_layers removes 3
    assert tiny.moe.dense_layers == (0, 2, 3, 4)
    assert [tiny.layer_is_moe(i) for i in range(6)] == [False, True, False, False, False, True]


def test_gemma2_alternates_starting_with_a_sliding_layer():
    s = load("gemma-2-9b")
    assert s.attention_pattern == ("sliding", "full") and s.sliding_window == 4096
    assert s.layer_attention(0) == "sliding" and s.layer_attention(41) == "full"
    assert s.n_norms_per_layer == 4 and s.tied_embeddings and s.head_dim == 256
    assert s.activation == "gelu_pytorch_tanh" and s.native_dtype == "fp32"
    # newer configs spell the pattern out in layer_types; same result
    cfg = raw("gemma-2-9b") | {"layer_types": ["sliding_attention", "full_attention"] * 21}
    assert from_hf_config(cfg).attention_pattern == ("sliding", "full")


def test_deepseek_v3_mla_and_moe():
    s = load("deepseek-v3")
    assert s.attention == "mla" and s.num_kv_heads == s.num_attention_heads == 128
    assert (s.mla.q_lora_rank, s.mla.kv_lora_rank) == (1536, 512)
    assert (s.mla.qk_nope_head_dim, s.mla.qk_rope_head_dim, s.mla.v_head_dim) == (128, 64, 128)
    assert s.head_dim == 128 + 64
    assert s.moe.dense_layers == (0, 1, 2)  # first_k_dense_replace: 3
    assert (s.moe.num_experts, s.moe.experts_per_token, s.moe.num_shared_experts) == (256, 8, 1)
    assert s.moe.expert_intermediate_size == 2048 and s.intermediate_size == 18432
    assert s.native_weight_dtype == "fp8_e4m3" and s.native_dtype == "bf16"  # quantization_config: fp8, fmt e4m3
    assert "multi-token-prediction" in s.notes
    # MLA caches one latent of kv_lora_rank + rope dims per token per layer: 61 x 576 x 2 bytes
    assert s.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2 == 70_272
    # moe_layer_freq 2: only even layers from k on are MoE
    alt = from_hf_config(raw("deepseek-v3") | {"moe_layer_freq": 2})
    assert alt.moe.dense_layers == (0, 1, 2) + tuple(range(3, 61, 2))


def test_gpt_oss_layer_types_and_biases():
    s = load("gpt-oss-20b")
    assert s.attention_pattern == ("sliding", "full") and s.sliding_window == 128
    assert (s.moe.num_experts, s.moe.experts_per_token, s.moe.expert_intermediate_size) == (32, 4, 2880)
    assert s.moe.router_bias and s.moe.expert_bias and s.qkv_bias and s.o_bias
    assert s.head_dim == 64 and s.num_attention_heads * s.head_dim == 4096 != s.hidden_size
    # quantization_config mxfp4 sets the weight format; with no torch_dtype key a quantized checkpoint computes in bf16
    assert s.native_weight_dtype == "fp4" and s.native_dtype == "bf16" and "mxfp4" in s.notes


def test_falcon_layouts():
    old = load("falcon-7b")
    assert (old.attention, old.num_kv_heads, old.head_dim) == ("mqa", 1, 64)  # multi_query
    assert old.parallel_blocks and old.n_norms_per_layer == 1 and old.norm == "layernorm" and old.norm_bias
    assert (old.ffn_kind, old.intermediate_size, old.max_context) == ("plain", 4 * 4544, 2048)
    assert old.tied_embeddings and not old.qkv_bias
    new = load("falcon-40b")
    assert (new.attention, new.num_kv_heads, new.n_norms_per_layer) == ("gqa", 8, 2)
    # new_decoder_architecture ignores multi_query and reads num_kv_heads
    assert from_hf_config(raw("falcon-180b") | {"multi_query": True}).num_kv_heads == 8
    # the old layout without parallel_attn has two norms; alibi replaces rotary
    seq = from_hf_config(raw("falcon-7b") | {"parallel_attn": False, "alibi": True, "bias": True})
    assert not seq.parallel_blocks and seq.n_norms_per_layer == 2 and seq.position_embedding == "alibi"
    assert seq.qkv_bias and seq.o_bias and seq.mlp_bias


@pytest.mark.parametrize(("legacy", "current"), [("falcon-7b-refinedwebmodel", "falcon-7b"), ("falcon-40b-refinedweb", "falcon-40b")])
def test_legacy_refinedweb_configs_match_the_falcon_ones(legacy, current):
    a, b = load(legacy), load(current)
    assert a.model_dump(exclude={"notes"}) == b.model_dump(exclude={"notes"})


def test_gptj_fields():
    s = load("gpt-j-6b")
    assert (s.num_layers, s.hidden_size, s.num_attention_heads, s.max_context) == (28, 4096, 16, 2048)
    assert s.intermediate_size == 4 * 4096  # n_inner: null
    assert s.attention == "mha" and s.parallel_blocks and s.n_norms_per_layer == 1
    assert (s.ffn_kind, s.activation, s.norm) == ("plain", "gelu_new", "layernorm")
    assert s.mlp_bias and s.lm_head_bias and not s.qkv_bias and not s.o_bias and not s.tied_embeddings
    assert s.position_embedding == "rope"
    assert s.native_dtype == "fp32"  # no torch_dtype: transformers loads float32, as the main branch stores


@pytest.mark.parametrize(("quant", "dtype"), [
    ({"quant_method": "fp8", "fmt": "e4m3"}, "fp8_e4m3"),
    ({"quant_method": "mxfp4"}, "fp4"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "int4"),
    ({"quant_method": "awq", "bits": 4}, "int4"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "nf4"),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "int8"),
    ({"quant_method": "some_future_method"}, None),  # unknown: weights taken to be in native_dtype
])
def test_quantization_config_sets_native_weight_dtype(quant, dtype):
    s = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": quant})
    assert s.native_weight_dtype == dtype and s.native_dtype == "bf16" and s.param_count == 8_030_261_248


def test_phi3_fields():
    s = load("phi-3-mini-4k-instruct")
    assert s.attention == "mha" and s.num_kv_heads == 32  # no num_key_value_heads key: = query heads
    assert s.name == "Phi-3-mini-4k-instruct"  # from _name_or_path
    assert s.attention_pattern == ("sliding",) and s.sliding_window == 2047


# ------------------------------------------------- hand-derived parameter counts
def test_llama_3_1_8b_param_count():
    h, f, v, L = 4096, 14336, 128256, 32
    attn = h * h + 2 * h * (8 * 128) + h * h  # q, k, v (8 KV heads x 128), o
    mlp = 3 * h * f  # gate, up, down
    layer = attn + mlp + 2 * h  # two RMSNorms
    total = L * layer + 2 * v * h + h  # untied embedding + LM head, final norm
    assert total == 8_030_261_248  # the checkpoint's safetensors total
    assert load("llama-3.1-8b").param_count == total


def test_qwen2_5_7b_param_count_with_qkv_biases():
    h, f, v, L, kv = 3584, 18944, 152064, 28, 4 * 128
    attn = (h * h + h) + 2 * (h * kv + kv) + h * h  # q, k, v with biases; o without
    layer = attn + 3 * h * f + 2 * h
    total = L * layer + 2 * v * h + h
    assert total == 7_615_616_512
    assert load("qwen2.5-7b").param_count == total


def test_gemma_2_9b_param_count():
    h, f, v, L, heads, kv, d = 3584, 14336, 256000, 42, 16, 8, 256
    attn = h * heads * d + 2 * h * kv * d + heads * d * h
    layer = attn + 3 * h * f + 4 * h  # four RMSNorms per layer
    total = L * layer + v * h + h  # tied embeddings
    assert total == 9_241_705_984
    assert load("gemma-2-9b").param_count == total


def test_falcon_7b_param_count():
    h, v, L, d = 4544, 65024, 32, 64
    attn = h * (h + 2 * d) + h * h  # fused qkv with one shared K/V head, dense out; no biases
    mlp = 2 * h * (4 * h)
    layer = attn + mlp + 2 * h  # one LayerNorm (weight + bias) for the parallel block
    total = L * layer + v * h + 2 * h  # tied embeddings, final LayerNorm
    assert total == 6_921_720_704
    assert load("falcon-7b").param_count == total


def test_gpt_j_6b_param_count():
    h, v, L = 4096, 50400, 28
    attn = 4 * h * h  # q, k, v, out without biases
    mlp = (h * 4 * h + 4 * h) + (4 * h * h + h)  # fc_in, fc_out with biases
    layer = attn + mlp + 2 * h  # ln_1 (weight + bias)
    total = L * layer + v * h + (v * h + v) + 2 * h  # wte, lm_head with bias, ln_f
    assert total == 6_050_882_784
    assert load("gpt-j-6b").param_count == total


def test_mixtral_8x7b_param_counts():
    h, f, v, L, E = 4096, 14336, 32000, 32, 8
    attn = 2 * h * h + 2 * h * 1024
    layer = attn + E * h + E * 3 * h * f + 2 * h  # router, 8 experts, norms
    total = L * layer + 2 * v * h + h
    assert total == 46_702_792_704
    active = total - L * (E - 2) * 3 * h * f  # top-2 of 8
    assert active == 12_879_925_248
    s = load("mixtral-8x7b")
    assert (s.param_count, s.active_param_count) == (total, active)


def test_deepseek_v3_param_count():
    h, v, L, heads = 7168, 129280, 61, 128
    qr, kvr, nope, rope, vd = 1536, 512, 128, 64, 128
    attn = (h * qr + qr  # q_a_proj, q_a_layernorm
            + qr * heads * (nope + rope)  # q_b_proj
            + h * (kvr + rope) + kvr  # kv_a_proj_with_mqa, kv_a_layernorm
            + kvr * heads * (nope + vd)  # kv_b_proj
            + heads * vd * h)  # o_proj
    dense_mlp = 3 * h * 18432
    moe = (256 * h + 256  # gate weight, e_score_correction_bias
           + 256 * 3 * h * 2048  # routed experts
           + 3 * h * 2048)  # one shared expert
    norms = 2 * h
    total = 3 * (attn + dense_mlp + norms) + 58 * (attn + moe + norms) + 2 * v * h + h
    assert total == 671_026_419_200  # "671B" main-model weights (the 14B MTP module excluded)
    assert load("deepseek-v3").param_count == total


def test_gpt_oss_20b_param_count():
    h, v, L, E, f = 2880, 201088, 24, 32, 2880
    q, kv = 64 * 64, 8 * 64
    attn = (h * q + q) + 2 * (h * kv + kv) + (q * h + h)  # all with biases
    moe = (E * h + E) + E * (h * 2 * f + 2 * f) + E * (f * h + h)  # router, gate_up, down, with biases
    layer = attn + moe + 2 * h
    total = L * layer + 2 * v * h + h
    sinks = L * 64  # one learned sink logit per head: not representable, not counted
    assert total + sinks == 20_914_757_184  # the checkpoint's total
    assert load("gpt-oss-20b").param_count == total


def test_tiny_qwen3_moe_param_count():
    h, v, L, heads, kv, d = 64, 1000, 6, 8, 2, 16
    attn = h * heads * d + 2 * h * kv * d + heads * d * h + 2 * d  # + q_norm, k_norm
    dense = 3 * h * 256
    moe = 4 * h + 4 * 3 * h * 32
    norms = 2 * h
    total = 4 * (attn + dense + norms) + 2 * (attn + moe + norms) + v * h + h  # tied
    assert total == 434_176
    s = load("tiny-qwen3-moe")
    assert s.param_count == total
    assert s.active_param_count == total - 2 * 2 * 3 * h * 32  # 2 of 4 experts idle in 2 MoE layers
    assert s.kv_bytes_per_token("fp16") == L * 2 * kv * d * 2


# ---------------------------------------------------------------- overrides
def test_overrides_replace_fields_and_rederive_attention():
    s = load("llama-3.1-8b", name="Llama 3.1 8B", source="https://huggingface.co/meta-llama/Llama-3.1-8B", max_context=8192)
    assert (s.name, s.source, s.max_context) == ("Llama 3.1 8B", "https://huggingface.co/meta-llama/Llama-3.1-8B", 8192)
    assert load("llama-3.1-8b", num_kv_heads=1).attention == "mqa"
    assert load("llama-3.1-8b", num_kv_heads=32).attention == "mha"
    assert load("llama-3.1-8b", native_dtype="fp16").native_dtype == "fp16"


def test_source_must_be_a_url():
    with pytest.raises(SpecError) as exc:
        load("llama-3.1-8b", source="meta-llama/Llama-3.1-8B")
    assert exc.value.field == "source"


def test_name_or_path_gives_name_and_source():
    s = from_hf_config(raw("qwen3-8b") | {"_name_or_path": "Qwen/Qwen3-8B"})
    assert s.name == "Qwen/Qwen3-8B" and s.source == "https://huggingface.co/Qwen/Qwen3-8B"


def test_unknown_override_field_is_a_spec_error():
    with pytest.raises(SpecError, match="num_layer"):
        load("llama-3.1-8b", num_layer=4)


# -------------------------------------------------------------------- errors
def test_unknown_model_type():
    with pytest.raises(SpecError) as exc:
        from_hf_config(raw("llama-3.1-8b") | {"model_type": "bert"})
    assert exc.value.field == "model_type"
    assert "'bert'" in str(exc.value) and "llama" in str(exc.value) and "gpt_oss" in str(exc.value)


def test_missing_model_type():
    cfg = raw("llama-3.1-8b")
    del cfg["model_type"]
    with pytest.raises(SpecError) as exc:
        from_hf_config(cfg)
    assert exc.value.field == "model_type"


def test_missing_key_names_the_key_and_the_file(tmp_path):
    cfg = raw("mistral-7b-v0.1")
    del cfg["num_hidden_layers"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(SpecError) as exc:
        from_hf_config(path)
    assert exc.value.field == "num_hidden_layers"
    assert str(path) in str(exc.value) and "n_layer" in str(exc.value)


def test_missing_intermediate_size_is_an_error_except_where_the_family_defaults_it():
    cfg = raw("llama-3.1-8b")
    del cfg["intermediate_size"]
    with pytest.raises(SpecError) as exc:
        from_hf_config(cfg)
    assert exc.value.field == "intermediate_size"


def test_unsupported_layer_type_is_rejected():
    cfg = raw("gpt-oss-20b")
    cfg["layer_types"] = ["linear_attention"] * 24
    with pytest.raises(SpecError) as exc:
        from_hf_config(cfg)
    assert exc.value.field == "layer_types"


def test_bad_json_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        from_hf_config(path)


# ------------------------------------------------- agreement with shipped specs
def _repo_key(repo: str) -> str:
    """Compare repositories loosely: case, a 'Meta-' prefix and instruct/chat suffixes do not matter."""
    org, _, name = repo.lower().partition("/")
    name = re.sub(r"^meta-", "", name)
    name = re.sub(r"-(instruct|chat|it|hf|base)(?=-|$)", "", name)
    return f"{org}/{name}"


def _matching_config(yaml_path: Path) -> Path | None:
    stem = yaml_path.stem
    if (CONFIGS / f"{stem}.json").exists():
        return CONFIGS / f"{stem}.json"
    source = yaml.safe_load(yaml_path.read_text()).get("source", "")
    m = re.search(r"huggingface\.co/([^/\s]+/[^/\s]+)", str(source))
    if not m:
        return None
    want = _repo_key(m.group(1))
    for cfg_stem, repos in HF_REPOS.items():
        if any(_repo_key(r) == want for r in repos):
            return CONFIGS / f"{cfg_stem}.json"
    return None


SHIPPED = sorted(MODEL_SPECS.glob("*.yaml")) if MODEL_SPECS.is_dir() else []


@pytest.mark.parametrize("yaml_path", SHIPPED, ids=lambda p: p.stem)
def test_imported_spec_agrees_with_shipped_yaml(yaml_path):
    config = _matching_config(yaml_path)
    if config is None:
        pytest.skip(f"no config.json in tests/hf_configs for {yaml_path.name}")
    shipped = rl.load_model(yaml_path)
    imported = from_hf_config(config)
    assert imported.param_count == shipped.param_count, f"{config.name} vs {yaml_path.name}"
    assert imported.kv_bytes_per_token("bf16") == shipped.kv_bytes_per_token("bf16"), f"{config.name} vs {yaml_path.name}"


# ------------------------------------------------- quantized checkpoints
def _weight_bytes(spec: ModelSpec, **dep) -> float:
    from roofline import ops as O

    return O.weight_storage_bytes(spec, rl.Deployment(**dep).resolved(spec))


def test_gpt_oss_20b_weight_bytes_by_hand():
    """MXFP4 experts, BF16 everything else (modules_to_not_convert: self_attn, router, embed_tokens, lm_head).

    h = 2880, 24 layers, 64 query heads and 8 KV heads of 64, 32 experts of width 2880, vocabulary 201,088.
    Experts: up 5760 x 2880 + down 2880 x 2880 = 24,883,200 weights per expert, x 32 x 24 = 19,110,297,600,
      at 4 bits + one 8-bit scale per 32 (2880 = 90 x 32, no partial group) = 4.25 bits: 10,151,095,600 bytes.
    BF16 (2 bytes each):
      attention: qkv (64 + 2·8)·64 = 5120 x 2880 = 14,745,600 + 5,120 bias; o 2880 x 4096 = 11,796,480 + 2,880 bias
                 = 26,550,080 per layer, x 24 = 637,201,920
      routers:   32 x 2880 + 32 = 92,192 per layer, x 24 = 2,212,608
      expert biases: (5760 + 2880) x 32 x 24 = 6,635,520
      norms:     2 x 2880 x 24 + 2880 (final) = 141,120
      embedding and LM head (untied): 2 x 201,088 x 2880 = 1,158,266,880
      sum 1,804,458,048 parameters = 3,608,916,096 bytes.
    Total 13,760,011,696 bytes; the checkpoint's safetensors files hold about 13.8 GB.
    """
    experts = 24_883_200 * 32 * 24
    assert experts == 19_110_297_600
    bf16_params = 637_201_920 + 2_212_608 + 6_635_520 + 141_120 + 1_158_266_880
    assert bf16_params == 1_804_458_048
    expected = experts * 4.25 / 8 + 2 * bf16_params
    imported = load("gpt-oss-20b")
    assert imported.param_count == experts + bf16_params
    assert _weight_bytes(imported) == pytest.approx(expected, rel=1e-12)
    assert _weight_bytes(rl.load_model("gpt-oss-20b")) == pytest.approx(expected, rel=1e-12)  # the shipped spec agrees
    # before checkpoint_quant, attention and LM head were counted at 4.25 bits: 13% light
    everything_fp4 = from_hf_config(raw("gpt-oss-20b") | {"quantization_config": {"quant_method": "mxfp4"}})
    attn_lm = 24 * (14_745_600 + 11_796_480) + 201_088 * 2880  # matrices (biases stay BF16 either way)
    assert _weight_bytes(everything_fp4) == pytest.approx(expected - attn_lm * (2 - 4.25 / 8), rel=1e-12)
    assert 1 - _weight_bytes(everything_fp4) / expected == pytest.approx(0.13, abs=0.005)
    # asking for another weight format re-quantizes every group with that format's defaults
    assert _weight_bytes(imported, weight_dtype="fp4") == pytest.approx(_weight_bytes(everything_fp4), rel=1e-12)


LLAMA8B_LINEAR = 32 * (4096 * 6144 + 4096 * 4096 + 2 * 14336 * 4096 + 4096 * 14336)  # qkv, o, gate+up, down


@pytest.mark.parametrize(("quant", "dtype", "ck"), [
    # GPTQ: groups of 128, symmetric, LM head unquantized (lm_head: false is the default)
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True},
     "int4", {"scale_granularity": "group", "group_size": 128, "unquantized": ("lm_head",)}),
    ({"quant_method": "gptq", "bits": 8, "group_size": -1, "sym": False, "lm_head": True},
     "int8", {"scale_granularity": "row", "zero_point": True}),
    ({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True, "version": "gemm"},
     "int4", {"scale_granularity": "group", "group_size": 64, "zero_point": True, "unquantized": ("lm_head",)}),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
     "nf4", {"scale_granularity": "group", "group_size": 64, "scale_dtype": "fp32", "unquantized": ("lm_head",)}),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True, "llm_int8_skip_modules": ["lm_head", "model.embed_tokens"]},
     "int8", {"scale_dtype": "fp32", "unquantized": ("lm_head", "embedding")}),
    ({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]},
     "fp8_e4m3", {"scale_granularity": "block", "group_size": 128, "activation_dtype": "fp8_e4m3", "unquantized": ("lm_head",)}),
    # compressed-tensors FP8 W8A8 (per-channel weights, dynamic per-token activations), FP8 KV, LM head ignored
    ({"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
      "config_groups": {"group_0": {"targets": ["Linear"],
                                    "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
                                    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True}}},
      "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor"}},
     "fp8_e4m3", {"scale_granularity": "row", "activation_dtype": "fp8_e4m3", "kv_dtype": "fp8_e4m3", "unquantized": ("lm_head",)}),
    # compressed-tensors INT8 W8A8
    ({"quant_method": "compressed-tensors", "ignore": ["lm_head"],
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
                                    "input_activations": {"num_bits": 8, "type": "int", "strategy": "token"}}}},
     "int8", {"scale_granularity": "row", "activation_dtype": "int8", "unquantized": ("lm_head",)}),
    # compressed-tensors W4A16, asymmetric groups of 128; the LM head quantized (not ignored)
    ({"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": [],
      "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                    "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": False}}}},
     "int4", {"scale_granularity": "group", "group_size": 128, "zero_point": True}),
    # ModelOpt in config.json
    ({"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]},
     "fp8_e4m3", {"activation_dtype": "fp8_e4m3", "kv_dtype": "fp8_e4m3", "unquantized": ("lm_head",)}),
])
def test_quantization_config_sets_the_checkpoint_layout(quant, dtype, ck):
    s = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": quant})
    assert s.native_weight_dtype == dtype and s.native_dtype == "bf16"
    got = s.checkpoint_quant.model_dump(exclude_defaults=True) if s.checkpoint_quant else {}
    assert got == ck


def test_awq_int4_llama_8b_weight_bytes_by_hand():
    """AWQ 4-bit, groups of 64 with an FP16 scale and a 4-bit zero point each: 4 + (16 + 4)/64 = 4.3125 bits
    per linear weight (every K of Llama-3.1-8B, 4096 and 14336, is a multiple of 64); LM head, embedding
    and norms BF16: 2 x 128,256 x 4096 + 32 x 2 x 4096 + 4096 = 1,050,955,776 parameters."""
    s = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 64}})
    assert LLAMA8B_LINEAR == 6_979_321_856
    bf16 = 2 * 128_256 * 4096 + 32 * 2 * 4096 + 4096
    assert LLAMA8B_LINEAR + bf16 == s.param_count == 8_030_261_248
    assert _weight_bytes(s) == pytest.approx(LLAMA8B_LINEAR * 4.3125 / 8 + 2 * bf16, rel=1e-12)
    # the deployment's own group size overrides the checkpoint's (zero points kept)
    assert _weight_bytes(s, weight_group_size=128) == pytest.approx(LLAMA8B_LINEAR * (4 + 20 / 128) / 8 + 2 * bf16, rel=1e-12)


def test_fp8_w8a8_checkpoint_computes_at_the_fp8_peak_and_falls_back_where_there_is_none():
    s = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": {
        "quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}})
    rd = rl.Deployment().resolved(s)
    assert (rd.weights.dtype.name, rd.act.name, rd.kv.dtype.name, rd.compute_key) == ("fp8_e4m3", "fp8_e4m3", "fp8_e4m3", "fp8")
    # LM head quantized too (no exclude_modules): 8-bit everywhere but the embedding, one FP32 scale per tensor
    wl = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=8)
    p = rl.predict(s, "a100-sxm-80gb", wl)  # no FP8 tensor cores: the checkpoint runs weight-only, not an error
    assert any("fell back" in n for n in p.notes)
    # a deployment that asks for the format explicitly still gets the usual one-line error
    with pytest.raises(SpecError, match="on_unsupported_dtype"):
        rl.predict(s, "a100-sxm-80gb", wl, rl.Deployment(activation_dtype="fp8"))


def test_hf_quant_config_json_beside_config_json(tmp_path):
    """ModelOpt NVFP4: E2M1 in blocks of 16 with an E4M3 scale = 4.5 bits; exclude_modules keeps the LM head
    and attention in BF16; kv_cache_quant_algo FP8."""
    (tmp_path / "config.json").write_text(json.dumps(raw("llama-3.1-8b")))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({
        "producer": {"name": "modelopt", "version": "0.23.0"},
        "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16,
                         "exclude_modules": ["lm_head", "model.layers.*.self_attn*"]}}))
    for where in (tmp_path, tmp_path / "config.json"):  # the folder or the config path
        s = ModelSpec.from_hf_config(where)
        assert s.native_weight_dtype == "fp4"
        assert s.checkpoint_quant.model_dump(exclude_defaults=True) == {
            "group_size": 16, "scale_dtype": "fp8_e4m3", "activation_dtype": "fp4", "kv_dtype": "fp8_e4m3",
            "unquantized": ("attention", "lm_head")}
    mlp = 32 * (2 * 14336 * 4096 + 4096 * 14336)
    bf16 = s.param_count - mlp
    assert _weight_bytes(s) == pytest.approx(mlp * 4.5 / 8 + 2 * bf16, rel=1e-12)
    assert rl.load_model(str(tmp_path / "config.json")).checkpoint_quant == s.checkpoint_quant  # the CLI's --model path
    # given explicitly (a dict) it is read with a config dict too
    given = from_hf_config(raw("llama-3.1-8b"), hf_quant_config={"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 64}})
    assert given.native_weight_dtype == "int4" and given.checkpoint_quant.group_size == 64


def test_per_layer_ignore_lists_count_only_when_they_cover_every_layer():
    every = [f"model.layers.{i}.self_attn.{p}" for i in range(32) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    base = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}}}
    s = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": base | {"ignore": every + ["lm_head"]}})
    assert s.checkpoint_quant.unquantized == ("attention", "lm_head")
    some = from_hf_config(raw("llama-3.1-8b") | {"quantization_config": base | {"ignore": every[:8]}})
    assert some.checkpoint_quant.unquantized == () and "not modelled" in some.notes


def test_checkpoint_quant_is_validated():
    spec = rl.load_model("llama-3.1-8b").model_dump()
    with pytest.raises(Exception, match="checkpoint_quant: .*native_weight_dtype"):
        ModelSpec.model_validate(spec | {"checkpoint_quant": {"unquantized": ["lm_head"]}})
    with pytest.raises(Exception, match="unquantized"):
        ModelSpec.model_validate(spec | {"native_weight_dtype": "int4", "checkpoint_quant": {"unquantized": ["mlp"]}})
    with pytest.raises(Exception, match="group size"):
        ModelSpec.model_validate(spec | {"native_weight_dtype": "int4", "checkpoint_quant": {"scale_granularity": "block"}})


def test_a_checkpoint_folder_is_a_model_argument(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(raw("gpt-oss-20b")))
    assert rl.load_model(str(tmp_path)).checkpoint_quant.unquantized == ("attention", "lm_head", "embedding")
