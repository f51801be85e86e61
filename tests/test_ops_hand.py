"""Per-operator FLOPs, bytes and times of a tiny model, derived by hand in the test.

The model: 2 layers, hidden 64, 4 query heads and 2 KV heads of 16 dims, gated FFN of
128, vocabulary 1,000, untied, BF16 (2 bytes). The hardware: round numbers, so each
time can be written down. Shapes are written [tokens, in] x [in, out].
"""

from __future__ import annotations

import itertools

import pytest

import roofline as rl
from roofline import ops as O
from roofline.predict import decode_ceilings, sum_over_steps
from roofline.roofline import Ceilings, OpTable, time_ops

TINY = rl.ModelSpec(
    name="tiny", source="https://example.org/tiny", num_layers=2, hidden_size=64, num_attention_heads=4,
    num_kv_heads=2, head_dim=16, intermediate_size=128, ffn_kind="gated", activation="silu", vocab_size=1000,
    tied_embeddings=False, max_context=4096, attention="gqa",
)

ROUND_HW = rl.HardwareProfile.model_validate({
    "name": "round", "vendor": "test", "architecture": "test",
    "memory_bytes": 10**10, "memory_bandwidth_bytes_per_s": 1e12,
    "peak_flops_per_s": {"fp32": 1e13, "bf16": 1e14, "fp16": 1e14, "fp8": 2e14},
    "l2_bytes": 10**7,
    "interconnect": {"name": "link", "bytes_per_s_per_direction": 1e11, "latency_s": 1e-6, "max_gpus": 8},
    "host_link_bytes_per_s_per_direction": 1e10, "tdp_w": 100, "idle_power_w": 20, "price_usd_per_gpu_hour": 3.6, "price_date": "2026-01",
    "gemm_tile_tokens": 16,
    "efficiency": {
        "memory_bandwidth_fraction": 0.5, "flops_fraction": {"fp32": 0.5, "bf16": 0.5, "fp16": 0.5, "fp8": 0.5},
        "attention_flops_fraction": 0.25, "interconnect_bandwidth_fraction": 0.5, "kernel_overhead_s": 1e-6,
        "sources": {k: "test" for k in ("memory_bandwidth_fraction", "flops_fraction", "attention_flops_fraction",
                                        "interconnect_bandwidth_fraction", "kernel_overhead_s")},
    },
    "sources": {k: "test" for k in ("memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s", "l2_bytes",
                                    "interconnect", "host_link_bytes_per_s_per_direction", "tdp_w", "idle_power_w",
                                    "price_usd_per_gpu_hour", "gemm_tile_tokens")},
})

L, H, HQ, HKV, D, F, V = 2, 64, 4, 2, 16, 128, 1000
RD = rl.Deployment().resolved(TINY)


def by_name(ops):
    return {op.name: op for op in ops}


def test_parameter_count_by_hand():
    attn = H * (HQ + 2 * HKV) * D + HQ * D * H  # qkv 64x128 + o 64x64 = 12,288
    mlp = 3 * H * F  # gate, up, down = 24,576
    norms = 2 * H  # two RMSNorms per layer
    assert TINY.param_count == L * (attn + mlp + norms) + 2 * V * H + H == 202_048


def test_prefill_operators_by_hand():
    b, s = 2, 8
    t = b * s  # 16 tokens
    ops = by_name(O.forward_ops(TINY, RD, b, s, 0))
    # embedding: gather one 64-wide bf16 row per token
    assert ops["embedding"].weight_bytes == t * H * 2 == 2_048
    # 2 norms per layer, each fused residual-add + RMSNorm: reads x and residual, writes both
    n = ops["norms"]
    assert n.launches == L * 2 == 4
    assert n.act_read_bytes == n.act_write_bytes == 4 * 2 * t * H * 2 == 16_384
    assert n.weight_bytes == 4 * H * 2
    # qkv: [16, 64] x [64, (4 + 2*2) * 16 = 128]
    q = ops["qkv_proj"]
    assert q.flops == L * 2 * t * 64 * 128 == 524_288
    assert q.weight_bytes == L * 64 * 128 * 2 == 32_768
    assert q.act_read_bytes == L * t * 64 * 2 and q.act_write_bytes == L * t * 128 * 2
    assert q.gemm_m == t
    # attention: causal over 8 tokens = 8*9/2 = 36 (query, key) pairs per head and sequence,
    # each 2*16 FLOPs for the score and 2*16 for the weighted sum of V
    a = ops["attention"]
    assert a.flops == L * b * HQ * 36 * (2 * D + 2 * D) == 36_864
    kv_token = 2 * HKV * D * 2  # K and V, 2 heads of 16 dims, 2 bytes = 128 bytes per token per layer
    assert a.kv_write_bytes == L * t * kv_token == 4_096
    assert a.kv_read_bytes == L * b * s * kv_token == 4_096  # flash: each visible K/V token read once
    assert a.act_read_bytes == L * t * HQ * D * 2 == a.act_write_bytes  # Q in, O out; no scores in HBM
    # o_proj [16, 64] x [64, 64]; mlp_up [16, 64] x [64, 256] (gate and up fused); mlp_down [16, 128] x [128, 64]
    assert ops["o_proj"].flops == L * 2 * t * 64 * 64 == 262_144
    assert ops["mlp_up"].flops == L * 2 * t * 64 * 256 == 1_048_576
    assert ops["mlp_up"].weight_bytes == L * 64 * 256 * 2
    assert ops["mlp_down"].flops == L * 2 * t * 128 * 64 == 524_288
    act = ops["mlp_act"]  # silu(gate) * up: read 2 x 128, write 128 per token
    assert act.act_read_bytes == L * t * 2 * F * 2 and act.act_write_bytes == L * t * F * 2
    # the LM head runs on the last position of each sequence only: [2, 64] x [64, 1000]
    lm = ops["lm_head"]
    assert lm.flops == 2 * b * 64 * 1000 == 256_000 and lm.gemm_m == b
    assert lm.weight_bytes == 64 * 1000 * 2
    assert "allreduce" not in ops or ops["allreduce"].comm_bytes == 0  # one GPU: nothing to reduce


def test_decode_step_operators_by_hand():
    b, c = 2, 10  # decode the 10th token: 9 cached, the new one attends to 10 keys
    ops = by_name(O.forward_ops(TINY, RD, b, 1, c - 1))
    a = ops["attention"]
    assert a.flops == L * b * HQ * c * 4 * D == 10_240
    assert a.kv_read_bytes == L * b * c * 128 == 5_120
    assert a.kv_write_bytes == L * b * 128 == 512
    # weights are read whatever the batch: every matrix once, plus the embedding rows
    matrices = L * (64 * 128 + 64 * 64 + 64 * 256 + 128 * 64) * 2 + 64 * 1000 * 2
    assert sum(op.weight_bytes for op in ops.values() if op.kind is O.OpKind.GEMM) == matrices
    assert ops["qkv_proj"].flops == L * 2 * b * 64 * 128


def test_prefill_and_decode_are_one_derivation():
    """A decode step at context c is the prefill formula with one new token and c - 1 past tokens:
    prefill of 8 tokens = Σ of the attention pairs of decoding tokens 1..8."""
    pre = by_name(O.forward_ops(TINY, RD, 1, 8, 0))["attention"].flops
    steps = sum(by_name(O.forward_ops(TINY, RD, 1, 1, c - 1))["attention"].flops for c in range(1, 9))
    assert pre == steps


def test_operator_time_by_hand():
    """Decode qkv_proj at batch 2: padded to a 16-token tile; memory-bound; plus 2 launches."""
    ops = O.forward_ops(TINY, RD, 2, 1, 9)
    table = OpTable.of(ops, ())
    real = time_ops(table, Ceilings.of(ROUND_HW, "bf16"), 1)
    floor = time_ops(table, Ceilings.of(ROUND_HW, "bf16", floor=True), 1)
    i = table.names.index("qkv_proj")
    flops = 2 * 2 * 2 * 64 * 128  # layers x 2 x tokens x in x out = 65,536
    compute = flops * (16 / 2) / (1e14 * 0.5)  # tile padding 2 -> 16 rows
    hbm = 2 * 64 * 128 * 2 + 2 * 2 * 64 * 2 + 2 * 2 * 128 * 2  # weights + activations in + out = 34,304
    memory = hbm / (1e12 * 0.5)
    assert real.compute_s[i] == pytest.approx(compute)
    assert real.memory_s[i] == pytest.approx(memory)
    assert real.time_s[i] == pytest.approx(max(compute, memory) + 2 * 1e-6)
    assert floor.time_s[i] == pytest.approx(max(flops / 1e14, hbm / 1e12))  # no fraction, padding or overhead


def test_tensor_parallel_allreduce_by_hand():
    """tp=2: heads, FFN and vocabulary split in two; two ring all-reduces of the [T, 64] bf16 activations per layer."""
    b, s, tp = 1, 8, 2
    ops = by_name(O.forward_ops(TINY, RD, b, s, 0, tp=tp))
    assert ops["qkv_proj"].flops == L * 2 * 8 * 64 * ((HQ / 2 + 2 * HKV / 2) * D)
    assert ops["mlp_down"].flops == L * 2 * 8 * (F / 2) * 64
    ar = ops["allreduce"]
    msg = 8 * 64 * 2  # tokens x hidden x 2 bytes = 1,024
    assert ar.messages == L * 2 and ar.comm_bytes == L * 2 * msg
    table = OpTable.of(list(ops.values()), ())
    t = time_ops(table, Ceilings.of(ROUND_HW, "bf16"), tp)
    i = table.names.index("allreduce")
    ring = 2 * (tp - 1) / tp  # each GPU sends and receives (p-1)/p of the message twice
    expected = ring * L * 2 * msg / (1e11 * 0.5) + 2 * (tp - 1) * L * 2 * 1e-6
    assert t.comm_s[i] == pytest.approx(expected)
    assert t.time_s[i] == pytest.approx(expected)  # no launch on top: the collective's latency holds its kernel


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    """tp=4 > 2 KV heads: each GPU keeps one KV head (a copy), not half of one."""
    assert TINY.kv_heads_per_gpu(4) == 1
    assert TINY.kv_bytes_per_token_per_layer("bf16", tp=4) == 2 * 1 * D * 2


def test_weight_storage_is_two_bytes_per_parameter_in_bf16():
    assert O.weight_storage_bytes(TINY, RD) == 2 * TINY.param_count


def test_expected_distinct_experts():
    """E·(1 - (1 - k/E)^T): one token touches exactly k experts; Mixtral (8, top-2) at 8 tokens touches 7.2."""
    assert O.expected_experts_touched(1, 8, 2) == pytest.approx(2.0)
    assert O.expected_experts_touched(8, 8, 2) == pytest.approx(8 * (1 - 0.75**8)) == pytest.approx(7.2, abs=0.01)
    assert O.expected_experts_touched(10_000, 8, 2) == pytest.approx(8.0)


def test_attended_keys_with_a_window():
    # window 4, prefill 6 tokens: queries see 1, 2, 3, 4, 4, 4 keys = 18
    assert O.attended_keys(6, 0, 4) == 18
    assert O.attended_keys(6, 0) == 21  # full: 6*7/2
    assert O.visible_keys(6, 0, 4) == 6 and O.visible_keys(1, 99, 4) == 4


def test_mean_tpot_equals_the_sum_of_every_step():
    """The closed-form sum over decode steps equals pricing every step one by one (the bare roofline: an engine
    adds the same CPU time h(B) to each step, tests/test_engines.py)."""
    model = rl.load_model("gemma-2-9b")  # half its layers slide over 4,096 tokens: the window bends the sum
    hw = rl.load_hardware("h100-sxm")
    wl = rl.Workload(batch_size=4, prompt_tokens=4000, output_tokens=200)
    p = rl.predict(model, hw, wl, rl.Deployment(engine=None))
    rd = rl.Deployment().resolved(model)
    c = decode_ceilings(Ceilings.of(hw, rd.compute_key))  # decode steps: a calibrated profile's CUDA-graph launches
    steps = [time_ops(OpTable.of(O.forward_ops(model, rd, 4, 1, ctx - 1), ()), c, 1).time_s.sum()
             for ctx in range(4001, 4200)]
    assert p.tpot_s == pytest.approx(sum(steps) / len(steps), rel=1e-12)
    assert p.tpot_first_step_s == pytest.approx(steps[0], rel=1e-12)
    assert p.tpot_last_step_s == pytest.approx(steps[-1], rel=1e-12)


@pytest.mark.parametrize(("c0", "c1", "b0", "b1", "lo", "hi", "w"), list(itertools.product(
    [0.0, 5.0], [0.0, 1.0, 3.0], [2.0, 40.0], [0.5, 2.0], [1, 7], [7, 30], [float("inf"), 3, 12])))
def test_sum_over_steps_matches_a_loop(c0, c1, b0, b1, lo, hi, w):
    loop = sum(max(c0 + c1 * min(c, w), b0 + b1 * min(c, w)) for c in range(lo, hi + 1))
    assert float(sum_over_steps(c0, c1, b0, b1, lo, hi, w)) == pytest.approx(loop, rel=1e-12, abs=1e-12)
