"""The small kernels of a DeepSeek-V3 layer that the operator table counts since issue 12 (hand arithmetic):
MLA's latent RMSNorms, the absorbed decode's two batched GEMMs through W_UK and W_UV, the MoE routing kernel, the
sum of the shared and routed experts, and the per-token-group FP8 quantization before every block-scaled W8A8
GEMM outside the fused MoE.

DeepSeek-V3 shapes (config.json): h = 7168, 128 heads, r_q = 1536, r_kv = 512, d_rope = 64, d_nope = d_v = 128,
E = 256, k = 8, F_s = 2048 (one shared expert), dense F = 18432, 128 x 128 weight blocks."""

from __future__ import annotations

import roofline as rl
from roofline import ops as O

DS = rl.load_model("deepseek-v3")
W8A8 = rl.Deployment(activation_dtype="fp8")  # the checkpoint's block-FP8 weights, computed in FP8
H, R_Q, R_KV = 7168, 1536, 512


def by_name(ops):
    return {(op.name, op.group): op for op in ops}


def moe_layer(ops, name):
    return by_name(ops)[(name, "full/moe")]


def test_mla_norms_by_hand():
    # q_a_layernorm (1536) and kv_a_layernorm (512) over 4 tokens in bf16: read and write 4·2048·2, weights 2048·2
    op = O.mla_norms("g", 1, 4, R_Q, R_KV, 2, 2)
    assert op.launches == 2
    assert op.act_read_bytes == op.act_write_bytes == 4 * 2048 * 2 == 16_384
    assert op.weight_bytes == 2048 * 2
    assert op.flops == O.NORM_FLOPS_PER_ELEMENT * 4 * 2048
    # without a query latent (DeepSeek-V2-Lite: q_lora_rank None) only kv_a_layernorm runs
    assert O.mla_norms("g", 1, 4, None, R_KV, 2, 2).launches == 1


def test_moe_topk_by_hand():
    # 4 tokens' 256 bf16 scores read; 4·8 int32 ids and fp32 gate weights written; one launch per layer
    op = O.moe_topk("g", 58, 4, 256, 8, 2)
    assert op.launches == 58
    assert op.act_read_bytes == 58 * 4 * 256 * 2
    assert op.act_write_bytes == 58 * 4 * 8 * (4 + 4)
    assert op.weight_bytes == 0  # the correction bias is counted with the router's weights


def test_shared_add_by_hand():
    # routed + shared outputs, 4 tokens x 7168 in bf16: read both, write the sum; one launch per layer
    op = O.shared_add("g", 58, 4, H, 2)
    assert op.launches == 58
    assert op.act_read_bytes == 58 * 2 * 4 * H * 2 == 58 * 114_688
    assert op.act_write_bytes == 58 * 4 * H * 2
    assert op.flops == 58 * 4 * H
    # only models with shared experts run it: DeepSeek-V3 does, Mixtral does not
    rd = W8A8.resolved(DS)
    assert moe_layer(O.forward_ops(DS, rd, 4, 1, 99, tp=8), "shared_add").launches == 58
    mixtral = rl.load_model("mixtral-8x7b")
    assert "shared_add" not in {op.name for op in O.forward_ops(mixtral, rl.Deployment().resolved(mixtral), 4, 1, 99)}


def test_act_quant_by_hand():
    # q_a_proj's input: 4 tokens x 7168 in bf16 read, written as FP8 with one fp32 scale per 128 elements
    gemm = O.Op("q_a_proj", "g", O.OpKind.GEMM, 1, launches=1, flops=0.0, act_read_bytes=4 * H * 2, gemm_m=4, gemm_k=H)
    op = O.act_quant("g", 1, [gemm], 128)
    assert op.launches == 1
    assert op.act_read_bytes == 57_344
    assert op.act_write_bytes == 4 * H * (1 + 4 / 128) == 29_568


def test_block_w8a8_needs_block_scales_and_fp8_compute():
    assert O.block_quantized_activations(W8A8.resolved(DS))
    assert not O.block_quantized_activations(rl.Deployment().resolved(DS))  # bf16 compute: weight-only FP8
    llama = rl.load_model("llama-3.1-8b")
    assert not O.block_quantized_activations(rl.Deployment(weight_dtype="fp8", activation_dtype="fp8").resolved(llama))


def test_deepseek_decode_layer_quantizes_six_gemm_inputs():
    # a MoE layer at tp 8, batch 4, decode at context 3600: q_a [4, 7168], kv_a [4, 7168], q_b [4, 1536],
    # o_proj [4, 128·128/8 = 2048], shared_up [4, 7168], shared_down [4, 2048/8 = 256]; not the router (bf16), not the
    # absorbed W_UK / W_UV batched GEMMs, not the fused MoE's experts
    ops = O.forward_ops(DS, W8A8.resolved(DS), 4, 1, 3599, tp=8)
    q = moe_layer(ops, "act_quant")
    L = 58
    widths = H + H + R_Q + 2048 + H + 256
    assert q.launches == 6 * L
    assert q.act_read_bytes == L * 4 * widths * 2
    assert q.act_write_bytes == L * 4 * widths * (1 + 4 / 128)
    # the GEMM reads the quantized input: 4·7168 FP8 bytes and 4·56 fp32 scales per layer
    assert moe_layer(ops, "q_a_proj").act_read_bytes == L * 4 * H * (1 + 4 / 128)
    assert moe_layer(ops, "router").act_read_bytes == L * 4 * H * 2  # bf16 router, no quantization
    # the dense layers quantize q_a, kv_a, q_b, o_proj, mlp_up [4, 7168] and mlp_down [4, 18432/8 = 2304]
    dense = by_name(ops)[("act_quant", "full/dense")]
    assert dense.launches == 3 * 6
    assert dense.act_read_bytes == 3 * 4 * (3 * H + R_Q + 2048 + 2304) * 2


def test_absorbed_kv_b_launches_twice_and_prefill_once():
    rd = W8A8.resolved(DS)
    decode = moe_layer(O.forward_ops(DS, rd, 4, 1, 3599, tp=8), "kv_b_proj")
    prefill = moe_layer(O.forward_ops(DS, rd, 1, 64, 0, tp=8), "kv_b_proj")
    assert decode.launches == 58 * 2  # W_UK before the attention kernel, W_UV after it
    assert prefill.launches == 58
    # prefill decompresses 64 latents through kv_b_proj, whose block-FP8 GEMM quantizes them: 7 GEMM inputs a layer
    pre_q = moe_layer(O.forward_ops(DS, rd, 1, 64, 0, tp=8), "act_quant")
    assert pre_q.launches == 58 * 7
    assert pre_q.act_read_bytes == 58 * 2 * 64 * (H + H + R_Q + 2048 + H + 256)
    # kv_b_proj's input is the 64 latents read from the KV cache (its read, as before: the 576-wide bf16 cache entry,
    # latent and RoPE key); the quantization now reads them and writes the 512-wide latent in FP8
    assert pre_q.kv_read_bytes == 58 * 64 * (R_KV + 64) * 2
    kv_b = moe_layer(O.forward_ops(DS, rd, 1, 64, 0, tp=8), "kv_b_proj")
    assert kv_b.kv_read_bytes == 0 and kv_b.act_read_bytes == 58 * 64 * R_KV * (1 + 4 / 128)


def test_new_kernels_in_both_passes_and_mla_norms_every_layer():
    rd = W8A8.resolved(DS)
    names = lambda ops: [(op.name, op.group) for op in ops]  # noqa: E731
    pre, dec = O.forward_ops(DS, rd, 2, 16, 0, tp=8), O.forward_ops(DS, rd, 2, 1, 15, tp=8)
    assert names(pre) == names(dec)
    norms = [op for op in dec if op.name == "mla_norms"]
    assert sum(op.launches for op in norms) == 2 * 61
    assert sum(op.launches for op in dec if op.name == "moe_topk") == 58


def test_bf16_llama_table_unchanged():
    # no MLA, no MoE, no block scales: none of the new kernels appears
    llama = rl.load_model("llama-3.1-8b")
    ops = O.forward_ops(llama, rl.Deployment().resolved(llama), 4, 1, 511)
    assert not {op.name for op in ops} & {"mla_norms", "moe_topk", "act_quant", "shared_add"}
