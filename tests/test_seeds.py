"""Every worked number of the source texts (../shared/seeds/README.md), reproduced through the public API.

Each test quotes the sentence it checks and writes the arithmetic out; the
tolerance says how loosely the text rounds ("about", "~").
"""

from __future__ import annotations

import pytest

import roofline as rl
from roofline.dtypes import QuantScheme, get_dtype

H100 = "h100-sxm"


def one_token(batch=1, prompt=1, output=2):
    return rl.Workload(batch_size=batch, prompt_tokens=prompt, output_tokens=output)


@pytest.mark.parametrize("model_id", ["llama-2-70b", "llama-3.1-70b"])
def test_70b_fp16_reads_140_gb_per_token_and_has_a_42_ms_floor(model_id):
    """'70 billion parameters stored in FP16 (2 bytes each), that's 140 GB of weight data read per
    token. On an H100 with 3.35 TB/s of bandwidth, reading 140 GB takes about 42 milliseconds.'"""
    model, hw = rl.load_model(model_id), rl.load_hardware(H100)
    p = rl.predict(model, hw, one_token(), rl.Deployment(weight_dtype="fp16", activation_dtype="fp16", kv_dtype="fp16"))
    assert p.weight_bytes == 2 * model.param_count  # stored: 2 bytes per parameter
    # read per decode step: every weight except the embedding table, of which one row is gathered
    assert p.decode_bytes_per_step == pytest.approx(140e9, rel=0.03)
    assert hw.memory_bandwidth_bytes_per_s == 3.35e12
    assert 140e9 / 3.35e12 == pytest.approx(0.0418, abs=1e-4)
    assert p.tpot_floor_s == pytest.approx(0.042, rel=0.03)
    assert p.tpot_s > p.tpot_floor_s  # the realistic figure never beats the floor
    assert not p.fits  # 140 GB of weights do not fit in one 80 GB H100 ...
    # ... and it says so, against the 90% of the GPU the default engine (vLLM, gpu_memory_utilization 0.9) uses
    assert p.memory_required_bytes_per_gpu > p.memory_available_bytes_per_gpu == pytest.approx(0.9 * hw.memory_bytes)


def test_int4_weights_35_gb_and_10_ms_floor_a_4x_gain():
    """'If you quantize those same weights to INT4 (0.5 bytes each), you're reading 35 GB instead,
    and the floor drops to about 10 milliseconds. That's a 4x improvement.'"""
    model, hw = rl.load_model("llama-2-70b"), rl.load_hardware(H100)
    fp16 = rl.predict(model, hw, one_token(), rl.Deployment(weight_dtype="fp16"))
    int4 = rl.predict(model, hw, one_token(), rl.Deployment(weight_dtype="int4", activation_dtype="fp16"))
    # int4 in groups of 128 with fp16 scales: 4 + 16/128 = 4.125 bits per weight; ~69B weights -> ~35.6 GB
    assert int4.weight_bytes == pytest.approx(35e9, rel=0.05)
    assert int4.tpot_floor_s == pytest.approx(0.010, rel=0.08)
    assert fp16.tpot_floor_s / int4.tpot_floor_s == pytest.approx(4, rel=0.05)
    assert int4.fits  # 35 GB fits where 140 GB did not
    assert int4.compute_dtype == "fp16"  # weight-only: W4A16 still computes at the 16-bit peak


def test_h100_dense_peaks_and_ridge_point_doubling():
    """'~990 TFLOPS FP16/BF16 dense, ~1,979 TFLOPS FP8/INT8 dense; the ridge point (FLOPs per byte)
    doubles when moving from FP16 to FP8.'"""
    hw = rl.load_hardware(H100)
    assert hw.peak_flops_per_s["bf16"] == pytest.approx(990e12, rel=0.001)
    assert hw.peak_flops_per_s["fp16"] == pytest.approx(990e12, rel=0.001)
    assert hw.peak_flops_per_s["fp8"] == pytest.approx(1979e12, rel=0.001)
    assert hw.peak_flops_per_s["int8"] == pytest.approx(1979e12, rel=0.001)
    ridge16 = hw.ridge_point_flops_per_byte("fp16")
    assert ridge16 == pytest.approx(989.4e12 / 3.35e12)  # ~295 FLOP/byte
    assert hw.ridge_point_flops_per_byte("fp8") == pytest.approx(2 * ridge16, rel=0.001)


def test_fp8_raises_the_compute_ceiling_for_prefill():
    """Prefill is compute-bound; W8A8 FP8 computes at the doubled peak, so its compute time halves."""
    model, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware(H100)
    wl = rl.Workload(batch_size=4, prompt_tokens=4096, output_tokens=2)
    bf16 = rl.predict(model, hw, wl).operators
    fp8 = rl.predict(model, hw, wl, rl.Deployment(weight_dtype="fp8", activation_dtype="fp8")).operators
    pick = lambda df: df[(df.phase == "prefill") & (df.op == "mlp_up")].iloc[0]  # noqa: E731
    assert pick(bf16).bound == pick(fp8).bound == "compute"
    assert pick(bf16).flops == pick(fp8).flops  # the same FLOPs ...
    ratio_floor = pick(bf16).floor_s / pick(fp8).floor_s  # ... at twice the datasheet rate
    assert ratio_floor == pytest.approx(1978.9 / 989.4, rel=1e-9)  # = 2.0001


def _variant(model_id: str, **update) -> rl.ModelSpec:
    return rl.ModelSpec.model_validate({**rl.load_model(model_id).model_dump(), **update})


def test_mha_kv_cache_32768_bytes_per_token_per_layer():
    """'MHA KV cache, FP16, 64 heads x head_dim 128: 2 x 64 x 128 x 2 = 32,768 bytes per token per layer.'"""
    mha70 = _variant("llama-2-70b", attention="mha", num_kv_heads=64)
    assert mha70.kv_bytes_per_token_per_layer("fp16") == 2 * 64 * 128 * 2 == 32_768


def test_gqa_is_4x_and_mqa_is_heads_x_smaller_than_mha():
    """'GQA with 32 query heads and 8 KV groups: 4x smaller than MHA. MQA: smaller by the number of heads.'"""
    gqa = rl.load_model("llama-3.1-8b")  # 32 query heads, 8 KV heads
    assert (gqa.num_attention_heads, gqa.num_kv_heads) == (32, 8)
    mha = _variant("llama-3.1-8b", attention="mha", num_kv_heads=32)
    mqa = _variant("llama-3.1-8b", attention="mqa", num_kv_heads=1)
    assert mha.kv_bytes_per_token("bf16") / gqa.kv_bytes_per_token("bf16") == 4
    assert mha.kv_bytes_per_token("bf16") / mqa.kv_bytes_per_token("bf16") == 32


def test_group_scales_of_a_2048_square_matrix():
    """'Group-wise quantization of a 2,048 x 2,048 matrix in groups of 32 needs 131,072 scales.'"""
    scheme = QuantScheme.of(get_dtype("int4"), group_size=32)
    assert scheme.n_groups(2048, 2048) == 2048 * 2048 // 32 == 131_072
    # with fp16 scales: 2,097,152 bytes of 4-bit elements + 262,144 bytes of scales
    assert scheme.matrix_bytes(2048, 2048) == 2048 * 2048 / 2 + 131_072 * 2


def test_lm_head_hidden_4096_vocab_128k_is_half_a_billion_parameters():
    """'LM head with hidden 4,096 and vocabulary 128,000: ~500 M parameters, ~1 GB in FP16.'"""
    model = rl.load_model("llama-3.1-8b")  # hidden 4,096, vocabulary 128,256, untied
    assert model.lm_head_params == 4096 * 128_256 == 525_336_576
    assert model.lm_head_params == pytest.approx(500e6, rel=0.06)
    p = rl.predict(model, rl.load_hardware(H100), one_token(), rl.Deployment(weight_dtype="fp16"))
    lm = p.operators.query("phase == 'decode' and op == 'lm_head'").iloc[0]
    assert lm.weight_bytes == 2 * 525_336_576  # ~1.05 GB read at every decode step
    assert lm.weight_bytes == pytest.approx(1e9, rel=0.06)


def test_7b_model_is_28_gb_in_fp32_and_7_gb_in_int8():
    """'7B model: 28 GB in FP32, 7 GB in INT8.'"""
    model, hw = rl.load_model("mistral-7b"), rl.load_hardware(H100)  # 7.24B parameters
    fp32 = rl.predict(model, hw, one_token(), rl.Deployment(weight_dtype="fp32", activation_dtype="fp32"))
    int8 = rl.predict(model, hw, one_token(), rl.Deployment(weight_dtype="int8"))
    assert fp32.weight_bytes == 4 * model.param_count == pytest.approx(28e9, rel=0.05)
    # int8 per-channel: 1 byte per weight + one fp16 scale per output row; the embedding table stays bf16
    assert int8.weight_bytes == pytest.approx(7e9, rel=0.06)
    assert fp32.weight_bytes / int8.weight_bytes == pytest.approx(4, rel=0.06)


def test_larger_vocabulary_fewer_decode_steps():
    """'32K -> 128K vocabulary: 10-20% fewer tokens for the same text, hence fewer decode steps.'
    The token saving is a tokenizer property (an input); what the simulator must show is its
    consequence: 15% fewer output tokens cost about 15% less decode time, while each step of the
    larger-vocabulary model pays for a 4x larger LM head."""
    hw = rl.load_hardware(H100)
    big_vocab = rl.load_model("llama-3.1-8b")  # 128,256
    small_vocab = _variant("llama-3.1-8b", vocab_size=32_000)
    wl_small = rl.Workload(batch_size=1, prompt_tokens=512, output_tokens=1001)
    wl_big = rl.Workload(batch_size=1, prompt_tokens=512, output_tokens=851)  # 15% fewer tokens
    p_small, p_big = rl.predict(small_vocab, hw, wl_small), rl.predict(big_vocab, hw, wl_big)
    decode_small = p_small.e2e_latency_s - p_small.ttft_s
    decode_big = p_big.e2e_latency_s - p_big.ttft_s
    assert p_big.tpot_s > p_small.tpot_s  # bigger LM head per step ...
    assert decode_big < decode_small  # ... but fewer steps win
    lm = lambda p: p.operators.query("phase == 'decode' and op == 'lm_head'").iloc[0].weight_bytes  # noqa: E731
    assert lm(p_big) / lm(p_small) == pytest.approx(128_256 / 32_000)


def test_batch_512_by_2048_on_a_large_mha_model_needs_terabytes_of_kv():
    """'Batch 512 x sequence 2,048 on a very large MHA model: a KV cache of terabytes, several times the weights.'"""
    gpt3 = rl.load_model("gpt-3-175b")  # MHA, 96 layers, 96 heads x 128
    per_token = 96 * 2 * 96 * 128 * 2  # layers x (K,V) x heads x head_dim x 2 bytes = 4,718,592
    assert gpt3.kv_bytes_per_token("fp16") == per_token
    p = rl.predict(gpt3, rl.load_hardware(H100), rl.Workload(batch_size=512, prompt_tokens=2047, output_tokens=1),
                   rl.Deployment(weight_dtype="fp16", activation_dtype="fp16", kv_dtype="fp16"))
    assert p.kv_cache_bytes == 512 * 2048 * per_token  # 4.95e12 bytes: terabytes
    assert p.kv_cache_bytes > 1e12
    assert p.kv_cache_bytes / p.weight_bytes > 10  # ~14x the 350 GB of weights
    assert not p.fits


def test_sliding_window_attention_cost_and_kv_bounded_by_window():
    """'Sliding window attention: attention cost O(S x w) instead of O(S^2); KV cache per layer bounded by the window.'"""
    swa = rl.load_model("mistral-7b")  # every layer slides over 4,096 tokens
    full = _variant("mistral-7b", attention_pattern=("full",), sliding_window=None)
    hw = rl.load_hardware(H100)
    s, w = 16_384, swa.sliding_window
    wl = rl.Workload(batch_size=1, prompt_tokens=s, output_tokens=1)
    attn = lambda p: p.operators.query("phase == 'prefill' and op == 'attention'").iloc[0].flops  # noqa: E731
    pairs_swa = w * (w + 1) / 2 + (s - w) * w  # queries inside the first window, then w keys each
    pairs_full = s * (s + 1) / 2
    assert attn(rl.predict(swa, hw, wl)) / attn(rl.predict(full, hw, wl)) == pytest.approx(pairs_swa / pairs_full)
    assert swa.kv_bytes(32_000) == swa.kv_bytes(w) == w * swa.kv_bytes_per_token()
    assert full.kv_bytes(32_000) == 32_000 * full.kv_bytes_per_token()


def test_2_4_sparsity_is_a_separate_2x_factor_on_the_dense_peak():
    """'2:4 structured sparsity: close to 2x on sparse tensor-core operations.' The datasheet headline
    (3,958 TFLOPS FP8 for the H100 SXM) is the sparse figure; the profile keeps the dense peak and the factor apart."""
    hw = rl.load_hardware(H100)
    assert hw.sparsity_2_4_speedup == 2.0
    assert hw.peak_flops_per_s["fp8"] * hw.sparsity_2_4_speedup == pytest.approx(3958e12, rel=0.001)
