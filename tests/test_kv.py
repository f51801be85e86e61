"""KV-cache bytes per token for every attention kind, against hand arithmetic.

Per token per layer (standard attention): 2 (K and V) x KV heads x head_dim x bytes.
MLA: one latent of kv_lora_rank + qk_rope_head_dim elements. Sliding layers keep at
most `window` tokens; cross-layer sharing stores one cache per `kv_share_factor` layers.
"""

from __future__ import annotations

import pytest

import roofline as rl


def variant(model_id: str, **update) -> rl.ModelSpec:
    return rl.ModelSpec.model_validate({**rl.load_model(model_id).model_dump(), **update})


def test_mha_llama_2_7b():
    m = rl.load_model("llama-2-7b")  # 32 layers, 32 heads x 128, MHA
    assert m.attention == "mha"
    assert m.kv_bytes_per_token("fp16") == 32 * 2 * 32 * 128 * 2 == 524_288


def test_gqa_llama_3_1_70b():
    m = rl.load_model("llama-3.1-70b")  # 80 layers, 8 KV heads x 128
    assert m.kv_bytes_per_token("bf16") == 80 * 2 * 8 * 128 * 2 == 327_680
    # LLaMA-style worked number: at 8,192 tokens one sequence holds 2.68 GB
    assert m.kv_bytes(8192, "bf16") == 8192 * 327_680


def test_mqa_falcon_7b():
    m = rl.load_model("falcon-7b")  # 32 layers, 1 KV head x 64
    assert m.attention == "mqa"
    assert m.kv_bytes_per_token("bf16") == 32 * 2 * 1 * 64 * 2 == 8_192


def test_mla_deepseek_v3():
    m = rl.load_model("deepseek-v3")  # 61 layers, latent 512 + rope 64
    assert m.attention == "mla"
    assert m.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2 == 70_272
    # an MHA cache of the same heads would hold 128 heads x (192 K + 128 V) per layer: ~71x more
    mha_equivalent = 61 * 128 * (192 + 128) * 2
    assert mha_equivalent / m.kv_bytes_per_token("bf16") == pytest.approx(71.1, abs=0.1)


def test_sliding_window_mistral_and_hybrid_gemma_2():
    mistral = rl.load_model("mistral-7b")  # every layer: window 4,096; 8 KV heads x 128
    per_token = 32 * 2 * 8 * 128 * 2
    assert mistral.kv_bytes_per_token("bf16") == per_token == 131_072
    assert mistral.kv_bytes(2_000) == 2_000 * per_token
    assert mistral.kv_bytes(32_768) == 4_096 * per_token  # bounded by the window
    gemma = rl.load_model("gemma-2-9b")  # 42 layers alternating sliding (4,096) and full; 8 KV heads x 256
    per_layer = 2 * 8 * 256 * 2
    assert gemma.kv_layers() == {"sliding": 21, "full": 21}
    assert gemma.kv_bytes(8_192) == 21 * 8_192 * per_layer + 21 * 4_096 * per_layer


def test_gpt_oss_window_128():
    m = rl.load_model("gpt-oss-120b")  # 36 layers alternating window-128 and full; 8 KV heads x 64
    per_layer = 2 * 8 * 64 * 2
    assert m.kv_bytes(10_000) == 18 * 10_000 * per_layer + 18 * 128 * per_layer


def test_cross_layer_sharing_halves_the_cache():
    base = rl.load_model("llama-3.1-8b")
    cla = variant("llama-3.1-8b", kv_share_factor=2)
    assert cla.kv_bytes_per_token() == base.kv_bytes_per_token() / 2
    assert cla.param_count == base.param_count  # sharing the cache is not sharing weights


def test_quantized_kv_counts_its_scales():
    m = rl.load_model("llama-3.1-8b")  # 32 layers, 8 KV heads x 128
    vectors = 2 * 8  # K and V vectors per token per layer, each 128 long
    assert m.kv_bytes_per_token("fp8") == 32 * vectors * 128 * 1  # per-tensor scale: nothing per token
    # int8: one fp16 scale per 128-long vector; int4: groups of 128 with fp16 scales, i.e. the same scale count
    assert m.kv_bytes_per_token("int8") == 32 * vectors * (128 + 2)
    assert m.kv_bytes_per_token("int4") == 32 * vectors * (64 + 2)
    assert m.kv_bytes_per_token("fp8") < m.kv_bytes_per_token("bf16") / 1.99


def test_tp_splits_kv_heads():
    m = rl.load_model("llama-3.1-70b")  # 8 KV heads
    assert m.kv_bytes_per_token_per_layer("bf16", tp=4) == 2 * 2 * 128 * 2
    assert m.kv_bytes_per_token_per_layer("bf16", tp=8) == 2 * 1 * 128 * 2
    mla = rl.load_model("deepseek-v3")  # the latent is replicated on every GPU
    assert mla.kv_bytes_per_token_per_layer("bf16", tp=8) == mla.kv_bytes_per_token_per_layer("bf16")
