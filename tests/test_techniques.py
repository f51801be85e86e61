"""What-if techniques (issue 3): worked examples by hand, invariants and bad input.

Every expected number is derived in the test from first principles; the model and hardware
figures used (Llama-3.1-70B: 80 layers, hidden 8192, 64 heads / 8 KV heads of 128; H100 SXM:
3.35 TB/s, 989.4 / 1978.9 TFLOP/s dense BF16 / FP8, NVLink 450 GB/s per direction at 1.8 us
per hop, fraction 0.82) are those of the shipped YAML files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.compare import Variant, compare, parse_variant
from roofline.dtypes import QuantScheme, get_dtype
from roofline.predict import breakeven_batch, kv_allocated_tokens
from roofline.roofline import OpTable
from roofline.techniques import prune, with_attention, with_cla, with_sliding_window, with_vocab
from roofline.workload import Speculative

M70 = rl.load_model("llama-3.1-70b")
M8 = rl.load_model("llama-3.1-8b")
H100 = rl.load_hardware("h100-sxm", analytical=True)  # the datasheet model the hand arithmetic below derives
A100 = rl.load_hardware("a100-sxm-80gb", analytical=True)
WL = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)


def P(model=M70, hw=H100, wl=WL, **dep):
    return rl.predict(model, hw, wl, rl.Deployment(**dep))


# ------------------------------------------------------------------ quantization
def test_w4_g128_fp16_scales_is_4_125_bits_per_weight():
    # 4 bits + one 16-bit scale per 128 weights = 4 + 16/128 = 4.125
    s = QuantScheme.of(get_dtype("int4"), 128, "fp16")
    assert s.bits_per_element(8192) == pytest.approx(4.125)


def test_block_scaled_fp8_counts_one_scale_per_128x128_block():
    # DeepSeek-V3: 7168 x 7168 weight, 128 x 128 blocks of FP32 scales -> 56 x 56 = 3,136 scales
    s = QuantScheme.of(get_dtype("fp8"), 128, "fp32", granularity="block")
    assert s.n_groups(7168, 7168) == 56 * 56
    assert s.matrix_bytes(7168, 7168) == 7168 * 7168 * 1 + 3136 * 4
    dep = rl.Deployment(tp=8, weight_dtype="fp8", activation_dtype="fp8", weight_group_size=128, weight_scale_granularity="block")
    per_tensor = rl.Deployment(tp=8, weight_dtype="fp8", activation_dtype="fp8")
    p_block, p_tensor = rl.predict(M70, H100, WL, dep), rl.predict(M70, H100, WL, per_tensor)
    assert p_block.weight_bytes > p_tensor.weight_bytes  # more scales
    assert p_block.weight_bytes < p_tensor.weight_bytes * 1.001  # but only 32/16384 bits more per weight


def test_fp8_moves_the_compute_ceiling_and_the_ridge_point_on_h100():
    bf16, fp8 = P(tp=4), P(tp=4, weight_dtype="fp8", activation_dtype="fp8")
    assert bf16.peak_flops_per_s == pytest.approx(989.4e12)
    assert fp8.peak_flops_per_s == pytest.approx(1978.9e12)
    assert bf16.ridge_point_flops_per_byte == pytest.approx(989.4e12 / 3.35e12)  # 295 FLOP/byte
    assert fp8.ridge_point_flops_per_byte == pytest.approx(1978.9e12 / 3.35e12)  # 591 FLOP/byte
    assert fp8.ttft_s < bf16.ttft_s  # compute-bound prefill runs on the doubled ceiling


def test_fp8_on_a100_is_an_error_naming_the_fallback():
    with pytest.raises(rl.SpecError, match="activation_dtype.*no fp8.*on_unsupported_dtype='fallback'"):
        P(hw=A100, tp=4, weight_dtype="fp8", activation_dtype="fp8")


def test_fp8_on_a100_falls_back_explicitly_to_weight_only_and_says_so():
    p = P(hw=A100, tp=4, weight_dtype="fp8", activation_dtype="fp8", on_unsupported_dtype="fallback")
    assert p.compute_dtype == "bf16"
    assert any("fell back to fp8_e4m3 weights with bf16 compute" in n for n in p.notes)
    w8a16 = P(hw=A100, tp=4, weight_dtype="int8")
    # fp8 per-tensor weights (one fp32 scale) vs int8 per-row fp16 scales: same 1 byte per weight, almost equal bytes
    assert p.weight_bytes == pytest.approx(w8a16.weight_bytes, rel=1e-3)


def test_dequantization_work_by_hand():
    # W4A16, an 8192 x 8192 weight, 256 tokens, tiles of 64 tokens: 3 ops x 8192^2 x ceil(256/64)=4
    rd = rl.Deployment(weight_dtype="int4").resolved(M70)
    assert rd.weight_only and rd.dequant_ops_per_weight == 3
    assert O.dequant_vector_flops(rd, 256, 8192, 8192) == 3 * 8192 * 8192 * 4
    assert O.dequant_vector_flops(rd, 1, 8192, 8192) == 3 * 8192 * 8192 * 1
    # W8A8 and FP8 read their own format: no dequantization
    for dep in (rl.Deployment(weight_dtype="int8", activation_dtype="int8"), rl.Deployment(weight_dtype="fp8", activation_dtype="fp8")):
        assert dep.resolved(M70).dequant_ops_per_weight == 0


def test_weight_only_8bit_is_slower_than_its_bytes_suggest_in_compute_bound_prefill():
    # halving the weight bytes cannot help a compute-bound prefill, and dequantizing costs vector time
    bf16, w8 = P(tp=4), P(tp=4, weight_dtype="int8")
    assert w8.weight_bytes < bf16.weight_bytes * 0.51
    assert w8.ttft_s > bf16.ttft_s
    # ... while memory-bound decode at batch 1 does gain
    one = rl.Workload(batch_size=1, prompt_tokens=512, output_tokens=64)
    assert P(wl=one, tp=4, weight_dtype="int8").tpot_s < P(wl=one, tp=4).tpot_s


@pytest.mark.parametrize("wd", ["int8", "int4", "nf4", "fp8", "fp4"])
def test_quantizing_weights_never_increases_weight_bytes(wd):
    assert P(tp=4, weight_dtype=wd).weight_bytes < P(tp=4).weight_bytes


# ------------------------------------------------------------------ sparsity
def test_2_4_storage_by_hand():
    # fp16 4096 x 4096: half the values (4096^2 x 2 / 2 bytes) + 1 metadata bit per element (4096^2 / 8)
    rd = rl.Deployment(sparsity="2:4").resolved(M70)
    got = O.stored_matrix_bytes(rd.weights, 4096, 4096, rd, sparse=True)
    assert got == 4096 * 4096 * 2 / 2 + 4096 * 4096 / 8 == 18_874_368


def test_csr_and_bitmask_storage_by_hand_and_csr_only_pays_above_half_sparsity():
    n = k = 4096
    dense = n * k * 2
    csr = lambda s: rl.Deployment(sparsity="unstructured", sparse_format="csr", sparsity_fraction=s).resolved(M70)  # noqa: E731
    rd = csr(0.7)
    # 30% non-zeros x (2 value bytes + 2 index bytes) + 4 (n + 1) row-pointer bytes
    assert O.stored_matrix_bytes(rd.weights, n, k, rd, True) == pytest.approx(0.3 * n * k * 4 + 4 * (n + 1))
    rd = csr(0.5)
    assert O.stored_matrix_bytes(rd.weights, n, k, rd, True) > dense  # index overhead eats the saving at 50%
    bm = rl.Deployment(sparsity="unstructured", sparse_format="bitmask", sparsity_fraction=0.5).resolved(M70)
    assert O.stored_matrix_bytes(bm.weights, n, k, bm, True) == pytest.approx(0.5 * dense + n * k / 8)


def test_unstructured_sparsity_with_dense_storage_changes_nothing():
    base, sparse = P(tp=4), P(tp=4, sparsity="unstructured", sparsity_fraction=0.9)
    for f in ("ttft_s", "tpot_s", "weight_bytes", "memory_required_bytes_per_gpu"):
        assert getattr(sparse, f) == getattr(base, f)


@pytest.mark.parametrize("fmt", ["dense", "bitmask", "csr"])
def test_unstructured_sparsity_never_speeds_up_a_gemm_compute_term(fmt):
    base = P(tp=4).operators
    sp = P(tp=4, sparsity="unstructured", sparsity_fraction=0.9, sparse_format=fmt).operators
    g = base["kind"] == "gemm"
    assert (sp.loc[g, "compute_s"].to_numpy() >= base.loc[g, "compute_s"].to_numpy() * (1 - 1e-12)).all()
    assert (sp.loc[g, "flops"].to_numpy() == base.loc[g, "flops"].to_numpy()).all()


def test_2_4_halves_the_compute_of_the_layers_it_applies_to_and_not_the_lm_head():
    base, sp = P(tp=4).operators, P(tp=4, sparsity="2:4").operators
    pre_b, pre_s = base[base.phase == "prefill"].set_index("op"), sp[sp.phase == "prefill"].set_index("op")
    # speed-up 2 on executed FLOPs that are half the dense count: compute time halves (up to tile padding, same both)
    assert pre_s.loc["mlp_up", "compute_s"] == pytest.approx(pre_b.loc["mlp_up", "compute_s"] / 2)
    assert pre_s.loc["lm_head", "compute_s"] == pytest.approx(pre_b.loc["lm_head", "compute_s"])
    assert pre_s.loc["attention", "compute_s"] == pytest.approx(pre_b.loc["attention", "compute_s"])


def test_2_4_on_hardware_without_sparse_tensor_cores_is_an_error():
    hw = H100.model_copy(update={"sparsity_2_4_speedup": None})
    with pytest.raises(rl.SpecError, match="sparsity: .*no 2:4 sparse tensor cores"):
        rl.predict(M70, hw, WL, rl.Deployment(tp=4, sparsity="2:4"))


def test_sparse_format_needs_unstructured():
    with pytest.raises(ValueError, match="sparse_format"):
        rl.Deployment(sparse_format="csr")


# ------------------------------------------------------------------ structured pruning and attention variants
def test_pruning_layers_by_hand():
    p = prune(M8, keep_layers=0.75)
    assert p.num_layers == 24
    per_layer = (M8.param_count - M8.embedding_params - M8.lm_head_params - M8.final_norm_params) / 32
    assert M8.param_count - p.param_count == pytest.approx(8 * per_layer)
    assert p.kv_bytes_per_token("bf16") == 24 * 2 * 8 * 128 * 2  # 98,304


def test_pruning_heads_keeps_kv_groups_and_ffn_rounds_to_128():
    p = prune(M8, keep_heads=0.5, keep_ffn=0.3)
    assert (p.num_attention_heads, p.num_kv_heads) == (16, 8)  # 8 KV groups of 4 -> 2 query heads each
    assert p.intermediate_size == round(14336 * 0.3 / 128) * 128 == 4352
    assert p.kv_bytes_per_token("bf16") == M8.kv_bytes_per_token("bf16")


def test_pruning_shrinks_weights_kv_and_flops():
    base, pr = P(tp=4), rl.predict(prune(M70, keep_layers=0.5), H100, WL, rl.Deployment(tp=4))
    assert pr.weight_bytes < base.weight_bytes and pr.kv_cache_bytes < base.kv_cache_bytes
    assert pr.prefill_flops < base.prefill_flops and pr.ttft_s < base.ttft_s


def test_attention_variants_kv_bytes_by_hand():
    # Llama-3.1-8B: 32 layers, 32 query heads of 128; bf16
    assert with_attention(M8, "mha").kv_bytes_per_token("bf16") == 32 * 2 * 32 * 128 * 2
    assert with_attention(M8, "mqa").kv_bytes_per_token("bf16") == 32 * 2 * 1 * 128 * 2
    assert with_attention(M8, "gqa", 4).kv_bytes_per_token("bf16") == 32 * 2 * 4 * 128 * 2
    # MLA: one latent of 4 x 128 + 64 RoPE dims per token and layer
    assert with_attention(M8, "mla").kv_bytes_per_token("bf16") == 32 * (512 + 64) * 2
    assert with_cla(M8, 2).kv_bytes_per_token("bf16") == M8.kv_bytes_per_token("bf16") / 2


def test_sliding_window_caps_kv_and_decode_attention():
    sw = with_sliding_window(M8, 1024)
    long = rl.Workload(batch_size=8, prompt_tokens=16384, output_tokens=128)
    full, slid = rl.predict(M8, H100, long), rl.predict(sw, H100, long)
    assert slid.kv_cache_bytes == pytest.approx(full.kv_cache_bytes * 1024 / (16384 + 128))
    assert slid.tpot_s < full.tpot_s


def test_a_bad_transform_is_a_one_line_error():
    with pytest.raises(rl.SpecError, match="keep_layers"):
        prune(M8, keep_layers=1.5)
    with pytest.raises(rl.SpecError, match="kind"):
        with_attention(M8, "linear")
    with pytest.raises(rl.SpecError, match="num_kv_heads"):
        with_attention(M8, "gqa", 5)


# ------------------------------------------------------------------ flash vs naive attention
def test_naive_attention_extra_io_grows_with_the_square_of_the_prompt():
    def extra(s):
        wl = rl.Workload(batch_size=1, prompt_tokens=s, output_tokens=1)
        f = rl.predict(M8, H100, wl).operators
        n = rl.predict(M8, H100, wl, rl.Deployment(attention_impl="naive")).operators
        pick = lambda df: float(df[(df.phase == "prefill") & (df.op == "attention")]["hbm_bytes"].iloc[0])  # noqa: E731
        return pick(n) - pick(f)

    # 4 passes (write S, read S, write P, read P) x heads x S(S+1)/2 pairs x 2 bytes x 32 layers
    assert extra(1024) == pytest.approx(4 * 32 * 1024 * 1025 / 2 * 2 * 32)
    assert extra(4096) / extra(1024) == pytest.approx(4096 * 4097 / (1024 * 1025))


# ------------------------------------------------------------------ speculative decoding
def test_expected_tokens_per_step_a_0_8_k_4_is_3_36():
    # 1 + 0.8 + 0.64 + 0.512 + 0.4096 = (1 - 0.8^5) / (1 - 0.8) = 3.3616
    assert Speculative(k=4, acceptance_rate=0.8).expected_tokens_per_step == pytest.approx(3.3616)
    assert Speculative(k=4, acceptance_rate=0.0).expected_tokens_per_step == 1.0


def test_speculative_decoding_pays_at_batch_1_and_reports_its_figures():
    one = rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=256)
    base = P(wl=one, tp=4)
    sp = P(wl=one, tp=4, speculative=Speculative(draft="llama-3.2-1b", k=4, acceptance_rate=0.8))
    assert sp.speculative_tokens_per_step == pytest.approx(3.3616)
    assert sp.tpot_without_speculation_s == pytest.approx(base.tpot_s)
    assert sp.tpot_s < base.tpot_s / 1.5
    assert sp.ttft_s > base.ttft_s  # the draft prefills the prompt too
    assert sp.weight_bytes > base.weight_bytes  # and its weights and KV take memory


def test_speculation_with_zero_acceptance_never_gains():
    one = rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=256)
    for draft in ("llama-3.2-1b", None):
        sp = P(wl=one, tp=4, speculative=Speculative(draft=draft, k=1, acceptance_rate=0.0))
        assert sp.tpot_s >= P(wl=one, tp=4).tpot_s


def test_speculation_stops_paying_at_a_large_batch():
    dep = rl.Deployment(tp=4, speculative=Speculative(draft="llama-3.2-1b", k=4, acceptance_rate=0.7))
    b = breakeven_batch(M70, H100, rl.Workload(batch_size=1, prompt_tokens=512, output_tokens=128), dep)
    assert b is not None and b > 1


@pytest.mark.parametrize("a", [1.0, -0.1, 1.5])
def test_acceptance_rate_outside_0_1_is_rejected(a):
    with pytest.raises(ValueError, match="acceptance_rate: must be in \\[0, 1\\)"):
        Speculative(acceptance_rate=a)


def test_a_draft_larger_than_the_target_is_rejected():
    with pytest.raises(rl.SpecError, match="speculative.draft: .*not smaller than the target"):
        rl.predict(M8, H100, WL, rl.Deployment(speculative=Speculative(draft="llama-3.1-70b")))


def test_a_draft_with_another_vocabulary_is_rejected():
    with pytest.raises(rl.SpecError, match="speculative.draft: .*share the target's tokenizer"):
        rl.predict(M70, H100, WL, rl.Deployment(tp=4, speculative=Speculative(draft=with_vocab(M8, 32000))))


# ------------------------------------------------------------------ KV-cache management
def test_paged_blocks_of_16_at_1000_tokens_hold_1008_slots():
    dep = rl.Deployment(kv_allocation="paged", kv_block_tokens=16)
    assert kv_allocated_tokens(dep, 1000, 131072) == 63 * 16 == 1008


def test_paged_allocation_serves_many_more_sequences_than_contiguous():
    paged = P(tp=4, kv_allocation="paged")
    contiguous = P(tp=4, kv_allocation="contiguous", kv_reserved_tokens=32768)
    # KV per sequence per GPU: tokens x 80 layers x 2 x (8/4 KV heads) x 128 x 2 bytes
    per_token = 80 * 2 * 2 * 128 * 2
    assert paged.kv_cache_bytes == pytest.approx(8 * 2304 * per_token)  # 2048 + 256 = 2304 = 144 blocks of 16
    assert contiguous.kv_cache_bytes == pytest.approx(8 * 32768 * per_token)
    assert paged.max_batch_size_fits > 5 * contiguous.max_batch_size_fits


def test_prefix_caching_cuts_ttft_and_shares_the_prefix_kv():
    base = P(tp=4)
    hit = P(tp=4, prefix_tokens=1536, prefix_hit_rate=1.0)
    half = P(tp=4, prefix_tokens=1536, prefix_hit_rate=0.5)
    assert hit.ttft_s < half.ttft_s < base.ttft_s
    assert half.ttft_s == pytest.approx((base.ttft_s + hit.ttft_s) / 2)
    per_token = 80 * 2 * 2 * 128 * 2
    # every sequence's 1,536 prefix tokens are one shared copy: 8 x (2304 - 1536) + 1536 token slots
    assert hit.kv_cache_bytes == pytest.approx((8 * (2304 - 1536) + 1536) * per_token)
    assert hit.max_batch_size_fits > base.max_batch_size_fits


def test_prefix_longer_than_the_prompt_is_rejected():
    with pytest.raises(rl.SpecError, match="prefix_tokens"):
        P(tp=4, prefix_tokens=4096, prefix_hit_rate=0.5)


def test_weight_offload_by_hand():
    one = rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=64)
    base, off = P(wl=one, tp=4), P(wl=one, tp=4, weight_offload_fraction=0.25)
    assert off.weight_bytes == pytest.approx(base.weight_bytes * 0.75)
    # decode now waits on 25% of the weights crossing PCIe Gen5 (64 GB/s x 0.82) per step
    host_s = 0.25 * base.decode_bytes_per_step / (64e9 * 0.82)
    assert off.tpot_s == pytest.approx(host_s, rel=0.1)
    assert off.tpot_s > 5 * base.tpot_s


# ------------------------------------------------------------------ parallelism
def test_pipeline_with_one_microbatch_adds_only_hops_to_tpot():
    one = rl.Workload(batch_size=4, prompt_tokens=1024, output_tokens=64)
    base = P(wl=one, tp=4)
    pp = P(wl=one, tp=4, pp=2, pp_microbatches=1)
    # two stages of half the work each, plus 2 hops of 4 tokens x 8192 x 2 bytes / tp=4 over NVLink
    hop = 1.8e-6 + 4 * 8192 * 2 / 4 / (450e9 * 0.82)
    assert pp.tpot_s == pytest.approx(base.tpot_s + 2 * hop, rel=1e-9)
    assert pp.weight_bytes == pytest.approx(base.weight_bytes / 2)
    assert pp.gpus_per_replica == 8


def test_pipeline_microbatches_raise_throughput_not_latency_in_prefill():
    big = rl.Workload(batch_size=16, prompt_tokens=2048, output_tokens=64)
    one_mb, four_mb = P(wl=big, tp=4, pp=4, pp_microbatches=1), P(wl=big, tp=4, pp=4, pp_microbatches=4)
    assert four_mb.ttft_s < one_mb.ttft_s  # bubble (pp - 1)/(mb + pp - 1) shrinks


def test_expert_parallel_all_to_all_by_hand():
    mix = rl.load_model("mixtral-8x7b")
    rd = rl.Deployment(ep=8, expert_routing_alpha=None).resolved(mix)  # balanced routing
    ops = O.forward_ops(mix, rd, 64, 1, 100, tp=1, ep=8)
    a2a = next(o for o in ops if o.name == "all_to_all")
    # 64 tokens over 8 GPUs = 8 per GPU, top-2: 16 rows, 7/8 of them to peers, dispatch + combine, 4096 x 2 bytes, 32 layers
    assert a2a.wire_bytes == pytest.approx(32 * 2 * 8 * 2 * 7 / 8 * 4096 * 2)
    assert a2a.wire_messages == 32 * 2 * 7
    # uneven routing (the default): the busiest rank gets and returns `load` times as many rows
    skewed = O.forward_ops(mix, rl.Deployment(ep=8).resolved(mix), 64, 1, 100, tp=1, ep=8)
    load = O.busiest_rank_load(64, 8, 2, 8, rl.Deployment().expert_routing_alpha)
    assert next(o for o in skewed if o.name == "all_to_all").wire_bytes == pytest.approx(load * a2a.wire_bytes)
    p = rl.predict(mix, H100, WL, rl.Deployment(ep=8))
    assert p.gpus_per_replica == 8


def test_expert_parallel_weights_per_gpu_by_hand():
    mix = rl.load_model("mixtral-8x7b")
    full = rl.predict(mix, H100, WL).weight_bytes
    ep = rl.predict(mix, H100, WL, rl.Deployment(ep=8)).weight_bytes
    experts = 32 * 8 * 3 * 4096 * 14336 * 2  # layers x experts x (gate, up, down) x h x f x 2 bytes
    assert full - ep == pytest.approx(experts * 7 / 8)


def test_bad_parallelism_is_rejected():
    with pytest.raises(rl.SpecError, match="ep: .*no experts"):
        P(ep=2)
    with pytest.raises(ValueError, match="ep=2 with tp=2"):
        rl.Deployment(tp=2, ep=2)
    with pytest.raises(rl.SpecError, match="pp: .*exceed"):
        P(pp=81)


def test_tp_across_two_nodes_runs_all_reduces_on_the_network():
    one = rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=64)
    p8, p16 = P(wl=one, tp=8), P(wl=one, tp=16)
    assert any("spans 2 nodes" in n and "InfiniBand" in n for n in p16.notes)
    ar8 = p8.operators.query("phase == 'decode' and op == 'allreduce'")["comm_s"].sum()
    ar16 = p16.operators.query("phase == 'decode' and op == 'allreduce'")["comm_s"].sum()
    assert ar16 > 3 * ar8  # 50 GB/s per GPU instead of 450, 5 us per hop instead of 1.8
    with pytest.raises(rl.SpecError, match="network: unknown network"):
        P(wl=one, tp=16, network="carrier-pigeon")


def test_more_network_bandwidth_never_slows_a_multi_node_replica():
    one = rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=64)
    slow, fast = P(wl=one, tp=16, network="eth-100"), P(wl=one, tp=16, network="ib-ndr-400")
    assert fast.tpot_s < slow.tpot_s and fast.ttft_s < slow.ttft_s


# ------------------------------------------------------------------ compare
def test_compare_rows_and_deltas():
    df = compare(M70, "h100-sxm", WL, rl.Deployment(tp=4),
                 {"int4": rl.Deployment(tp=4, weight_dtype="int4"), "student": "llama-3.1-8b",
                  "fp8-a100-style": rl.Deployment(tp=4, weight_dtype="nf4", activation_dtype="nf4")})
    assert list(df.index) == ["baseline", "int4", "student", "fp8-a100-style"]
    assert df.loc["baseline", "tpot_s_vs_baseline"] == 1.0
    assert df.loc["int4", "tpot_s_vs_baseline"] == pytest.approx(df.loc["int4", "tpot_s"] / df.loc["baseline", "tpot_s"])
    assert df.loc["student", "params"] == M8.param_count
    assert "activation_dtype" in df.loc["fp8-a100-style", "error"]  # a failing variant is a row with its error
    assert math.isnan(df.loc["fp8-a100-style", "tpot_s"])


def test_compare_tokens_per_text_scales_the_workload_and_text_tpot():
    # a tokenizer that needs 0.85 tokens per baseline token: 0.85 x 2048 = 1741 prompt, 0.85 x 256 = 218 output tokens
    big_vocab = with_vocab(M70, 256000)
    df = compare(M70, H100, WL, rl.Deployment(tp=4), {"256k": Variant(model=big_vocab, tokens_per_text=0.85)})
    row = df.loc["256k"]
    assert row["text_tpot_s"] == pytest.approx(row["tpot_s"] * 0.85)
    assert row["weight_bytes"] > df.loc["baseline", "weight_bytes"]
    p = rl.predict(big_vocab, H100, rl.Workload(batch_size=8, prompt_tokens=1741, output_tokens=218), rl.Deployment(tp=4))
    assert row["e2e_latency_s"] == pytest.approx(p.e2e_latency_s)


def test_compare_bad_input():
    with pytest.raises(rl.SpecError, match="variants"):
        compare(M70, "h100-sxm", WL, rl.Deployment(tp=4), {})
    with pytest.raises(rl.SpecError, match="variants\\['x'\\]"):
        compare(M70, "h100-sxm", WL, rl.Deployment(tp=4), {"x": 3})
    with pytest.raises(rl.SpecError, match="tokens_per_text"):
        Variant(tokens_per_text=0)


def test_parse_variant_keys():
    name, v = parse_variant("s:speculative.draft=llama-3.2-1b,speculative.k=3,tp=4,keep_layers=0.5", M70, rl.Deployment())
    assert name == "s" and v.deployment.speculative.k == 3 and v.deployment.tp == 4
    assert v.model.num_layers == 40
    with pytest.raises(rl.SpecError, match="--variant x: unknown key 'nope'"):
        parse_variant("x:nope=1", M70, rl.Deployment())


def test_a_variant_takes_none_as_everywhere_else():
    """`engine=none` is the bare roofline (as `--engine none` on predict, serve, plan and report; it was an 'unknown
    engine' error that listed none among the choices), `weight_dtype=None` the native format; a field that cannot be
    None keeps its error."""
    _, v = parse_variant("bare:engine=none,weight_dtype=None", M70, rl.Deployment(tp=4, weight_dtype="fp8", engine="sglang"))
    assert (v.deployment.engine, v.deployment.weight_dtype, v.deployment.tp) == (None, None, 4)
    p = rl.predict(M70, "h100-sxm", WL, v.deployment)
    assert p.model_dump() == rl.predict(M70, "h100-sxm", WL, rl.Deployment(tp=4, engine=None)).model_dump()
    with pytest.raises(rl.SpecError, match="^--variant x: tp: "):
        parse_variant("x:tp=none", M70, rl.Deployment())


def test_cli_compare(capsys):
    from roofline.cli import main

    rc = main(["compare", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--baseline", "tp=4",
               "--variant", "int4:weight_dtype=int4", "--variant", "spec:speculative.acceptance_rate=0.8"])
    out = capsys.readouterr().out
    assert rc == 0 and "TPOT vs baseline" in out and "3.36 tokens per target step" in out
    rc = main(["compare", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--variant", "x:speculative.acceptance_rate=1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "acceptance_rate" in err


def test_sweep_refuses_what_it_does_not_model():
    with pytest.raises(rl.SpecError, match="deployment: sweep takes"):
        rl.sweep("llama-3.1-8b", "h100-sxm", deployment=rl.Deployment(speculative=Speculative()))


@pytest.mark.parametrize("analytical", [True, False])
def test_sweep_row_equals_predict_for_pipeline_and_sparsity(analytical):
    hw = rl.load_hardware("h100-sxm", analytical=analytical)  # calibrated: measured curves along the sweep's device axis
    dep = rl.Deployment(pp=2, sparsity="2:4", kv_allocation="paged")
    df = rl.sweep("llama-3.1-8b", hw, batch_size=[1, 8], prompt_tokens=512, output_tokens=32, deployment=dep)
    for b in (1, 8):
        p = rl.predict(M8, hw, rl.Workload(batch_size=b, prompt_tokens=512, output_tokens=32), dep)
        row = df[df.batch_size == b].iloc[0]
        for f in ("ttft_s", "tpot_s", "memory_required_bytes_per_gpu", "usd_per_million_output_tokens"):
            assert row[f] == pytest.approx(getattr(p, f), rel=1e-12)


def test_op_table_has_the_new_columns_zero_by_default():
    t = OpTable.of(O.forward_ops(M8, rl.Deployment().resolved(M8), 1, 1, 10), ())
    for f in ("vector_flops", "wire_bytes", "wire_messages", "host_bytes", "sparse_2_4"):
        assert np.all(t.f[f] == 0)
