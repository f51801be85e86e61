"""trtllm-bench's own batch limit (calibrate/trtllm_bench.py) and TensorRT-LLM's per-rank limit under attention DP.

Every figure by hand from trtllm-bench's tuning code (NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py):
requests = f · (tp · pp · M_GiB - params · bytes / 2^30) / (2 · L · max(tp, n_kv) · d_head · kv_bytes / 2^30 · (S + O)).
"""

import math

import pytest

import roofline as rl
from calibrate import corpus
from calibrate import trtllm_bench as T
from roofline.parallelism import engine_limits

GIB = 2**30


def test_finetune_rounds_up_in_steps_of_32_128_256_with_64_the_least():
    assert T.finetune_batch(10.0, 1) == 64  # max(64, 32 · ceil(10/32) = 32)
    assert T.finetune_batch(235.0, 1) == 256  # 32 · ceil(7.34) = 32 · 8
    assert T.finetune_batch(296.2, 1) == 384  # 128 · ceil(2.31) = 128 · 3
    assert T.finetune_batch(1100.0, 1) == 1280  # 256 · ceil(4.30) = 256 · 5
    assert T.finetune_batch(9000.0, 1) == 4096  # min(9000, 4096) = 4096 = 256 · 16
    assert T.finetune_batch(9000.0, 2) == 2048  # 4096 / pp


def test_llama_70b_fp8_on_two_h200_by_hand():
    # ModelOpt FP8 checkpoint: one element per parameter, 70,553,706,496 of them; FP8 KV (1 byte), 8 KV heads of 128.
    # engine 70.5537e9 / 2^30 = 65.708 GiB; H200 NVML total 150,754,820,096 B = 140.401 GiB, x 2 = 280.803 GiB;
    # KV per token 2 · 80 · max(2, 8) · 128 · 1 = 163,840 B; 2000 tokens = 0.30518 GiB;
    # requests = 0.9 · (280.803 - 65.708) / 0.30518 = 634.3 -> 128 · ceil(4.96) = 640.
    m, hw = rl.load_model("llama-3.3-70b"), rl.load_hardware("h200")
    rd = rl.Deployment(tp=2, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8").resolved(m)
    assert T.checkpoint_elements(m, rd) == pytest.approx(70_553_706_496, rel=1e-6)
    engine_gib = 70_553_706_496 / GIB
    requests = 0.9 * (2 * 150_754_820_096 / GIB - engine_gib) / (2 * 80 * 8 * 128 * 1 / GIB * 2000)
    assert requests == pytest.approx(634.3, abs=0.1)
    assert T.max_batch_size(m, hw, rd, 2, 1, 1000, 1000, 0.9) == 640


def test_deepseek_nvfp4_is_charged_as_128_heads_of_56_and_gets_a_small_batch():
    # DeepSeek's config.json has 128 KV heads and no head_dim: trtllm-bench's head size is 7168 // 128 = 56, so a
    # token costs 2 · 61 · 128 · 56 · 1 B = 874,496 B (FP8 KV) where the engine stores a 576-wide latent (35,136 B).
    m, hw = rl.load_model("deepseek-v3"), rl.load_hardware("b200")
    assert T.config_head_size(m) == 56
    rd = rl.Deployment(ep=4, weight_dtype="fp4", activation_dtype="fp4", kv_dtype="fp8").resolved(m)
    assert T.tuning_bytes_per_param(rd, m) == 0.5  # a re-quantized (ModelOpt) FP4 checkpoint: NVFP4
    elements = T.checkpoint_elements(m, rd)
    # Hugging Face counts 393.6e9 elements in nvidia/DeepSeek-R1-0528-NVFP4-v2, which also holds the MTP module (one
    # more MoE layer, about 11.7e9 parameters at 0.5625 elements each) that the spec leaves out
    assert elements == pytest.approx(393.6e9 - 11.7e9 * 0.5625, rel=0.03)
    free_gib = 4 * hw.memory_bytes / GIB - elements * 0.5 / GIB  # 4 · 179.06 - 0.5 · 378e9 / 2^30 = 540 GiB
    requests = 0.9 * free_gib / (2 * 61 * 128 * 56 * 1 / GIB * 2000)  # 0.9 · 540 / 1.629 = 298
    assert 256 <= requests < 384
    assert T.max_batch_size(m, hw, rd, 4, 1, 1000, 1000, 0.9) == 384  # 128 · ceil(298 / 128)
    # 1024 in, 8192 out: 9216 tokens, 7.51 GiB each: 0.9 · 540 / 7.51 = 64.7 -> 32 · ceil(2.02) = 96
    assert T.max_batch_size(m, hw, rd, 4, 1, 1024, 8192, 0.9) == 96


def test_formats_trtllm_bench_does_not_tune_keep_the_engine_default():
    m = rl.load_model("gpt-oss-120b")  # the released MXFP4 checkpoint (weight_dtype unset): not NVFP4
    rd = rl.Deployment(activation_dtype="bf16").resolved(m)
    assert T.tuning_bytes_per_param(rd, m) is None
    assert T.max_batch_size(m, rl.load_hardware("h200"), rd, 1, 1, 1000, 1000, 0.9) is None


def test_tensorrt_llm_schedules_each_attention_rank_on_its_own():
    # TensorRT-LLM's max_batch_size is per attention-DP rank (the DeepSeek-R1 recipe: 384 per rank, concurrency
    # 3072 on 8 ranks); vLLM's max_num_seqs (1024 on an H100) bounds the replica as before
    m, hws = rl.load_model("qwen3-30b-a3b"), [rl.load_hardware("h100-sxm")]
    seqs, _ = engine_limits(rl.Deployment(ep=4, engine="trtllm").resolved(m), hws)
    assert list(seqs) == [4 * 2048]
    seqs, _ = engine_limits(rl.Deployment(tp=4, engine="trtllm").resolved(m), hws)
    assert list(seqs) == [2048]
    seqs, _ = engine_limits(rl.Deployment(ep=4, engine="vllm").resolved(m), hws)
    assert list(seqs) == [1024]


def test_a_trtllm_bench_row_runs_at_the_harness_batch_times_its_ranks():
    rows = {r.id: r for r in corpus.load_corpus()}
    r = rows["trtllm-perf-overview-latest-7"]  # DeepSeek-R1 NVFP4, B200 DEP4, 1024/8192
    model, hw = rl.load_model("deepseek-v3"), rl.load_hardware("b200")
    dep = corpus.deployment_of(r, model)
    assert (dep.tp, dep.ep) == (1, 4)
    assert corpus.harness_limits(model, hw, r, dep)[0] == 4 * 96
    # the same row without trtllm-bench (another harness) keeps the engine's limit
    other = corpus.Row(**{**r.__dict__, "extra": {**r.extra, "note": "a serving benchmark"}})
    assert corpus.harness_limits(model, hw, other, dep)[0] is None


def test_the_v1_perf_overview_qwen3_235b_rows_run_attention_dp_over_eight_ranks():
    # The v1.0 perf-overview page runs MoE models with enable_attention_dp and --ep: the Qwen3-235B TP8 columns are
    # recorded DEP8 (tp 8, ep 8), run as tp 1, ep 8: one replica of 8 GPUs, trtllm-bench's batch per rank
    rows = [r for r in corpus.load_corpus() if r.source == "trtllm-perf-overview-v1.0" and r.model == "qwen3-235b-a22b"]
    assert len(rows) == 27 and {(r.tp, r.ep, r.num_gpus) for r in rows} == {(8, 8, 8)}
    r = next(r for r in rows if r.gpu == "b200" and (r.prompt_tokens, r.output_tokens) == (1000, 1000))
    model, hw = rl.load_model("qwen3-235b-a22b"), rl.load_hardware("b200")
    dep = corpus.deployment_of(r, model)
    assert (dep.tp, dep.ep) == (1, 8) and r.replica_gpus == 8 and r.replicas == 1
    # by hand (module docstring, --tp 8): NVFP4 checkpoint 132.53e9 elements · 0.5 B = 61.72 GiB;
    # 8 · 179.06 GiB - 61.72 = 1370.78 GiB; KV (empty kv_dtype: BF16) 2 · 94 layers · max(8, 4) · 128 · 2 B
    # = 385,024 B = 3.5858e-4 GiB a token, 2000 tokens a request: 0.9 · 1370.78 / 0.71716 = 1720.2 requests
    # -> 256 · ceil(1720.2 / 256) = 1792 per rank, 8 · 1792 in the replica
    rd = dep.resolved(model)
    assert T.checkpoint_elements(model, rd) == pytest.approx(132.53e9, rel=1e-3)
    assert T.max_batch_size(model, hw, rd, 8, 1, 1000, 1000, 0.9) == 1792
    assert corpus.harness_limits(model, hw, r, dep)[0] == 8 * 1792


# ------------------------------------------------ TensorRT engines: `trtllm-bench build --dataset` of 0.15 - 0.16
def test_finetune_tokens_scale_the_batch_by_prompt_over_output_and_round_up():
    assert T.finetune_tokens(272.1, 1, 2048, 2048) == 2048  # 272.1 · 2 = 544.3 -> max(2048, 256 · 3 = 768)
    assert T.finetune_tokens(1600.04, 1, 2048, 2048) == 3328  # 3200.1 -> 256 · ceil(12.5) = 256 · 13
    assert T.finetune_tokens(1600.04, 1, 3000, 1000) == 6656  # 1600.04 · 4 = 6400.2 -> 512 · ceil(12.5) = 512 · 13
    assert T.finetune_tokens(9000.0, 1, 8000, 1000) == 32768  # min(9000, 4096) · 9 = 36,864, capped at 32,768


def test_llama_8b_fp8_on_one_h100_by_hand():
    # the Azure guide's 8B engine: --quantization FP8 (FP8 KV forced), --dataset of 2048 + 2048 tokens, tp 1.
    # 8,030,261,248 BF16 parameters / 10^9 = 8.0303 GB at 1 byte; NVML total 85,520,809,984 B / 2^30 = 79.6475 GiB;
    # 0.95 · (79.6475 - 8.0303) = 68.0363 GiB of KV; a token 2 · 32 · max(1, 8) · 128 · 1 B = 65,536 B, a request
    # 4096 of them = 0.25 GiB: 272.15 requests -> 128 · ceil(2.13) = 384; 272.15 · (1 + 2048/2048) = 544.3 -> 2048
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    rd = rl.Deployment(tp=1, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8").resolved(m)
    assert T.checkpoint_elements(m, rd) == 8_030_261_248
    requests = 0.95 * (85_520_809_984 / GIB - 8_030_261_248 / 1e9) / (2 * 32 * 8 * 128 * 1 / GIB * 4096)
    assert requests == pytest.approx(272.15, abs=0.01)
    assert T.build_engine_limits(m, hw, rd, 1, 1, 2048, 2048) == (384, 2048)
    # with a 16-bit KV cache (not what the FP8 build makes) a token costs twice as much: 136.07 -> 32 · ceil(4.25) = 160
    rd16 = rl.Deployment(tp=1, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="bf16").resolved(m)
    assert T.build_engine_limits(m, hw, rd16, 1, 1, 2048, 2048) == (160, 2048)


def test_llama_70b_fp8_on_eight_h200_by_hand():
    # 70,553,706,496 parameters = 70.5537 GB; 8 · 150,754,820,096 B / 2^30 = 1123.2109 GiB; 0.95 · 1052.6572 =
    # 1000.0244 GiB; a token 2 · 80 · max(8, 8) · 128 · 1 B = 163,840 B, a 4096-token request 0.625 GiB: 1600.04
    # requests -> 256 · ceil(6.25) = 1792; 1600.04 · 2 = 3200.1 tokens -> 256 · ceil(12.5) = 3328
    m, hw = rl.load_model("llama-3.1-70b"), rl.load_hardware("h200")
    rd = rl.Deployment(tp=8, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8").resolved(m)
    requests = 0.95 * (8 * 150_754_820_096 / GIB - 70_553_706_496 / 1e9) / (2 * 80 * 8 * 128 / GIB * 4096)
    assert requests == pytest.approx(1600.04, abs=0.01)
    assert T.build_engine_limits(m, hw, rd, 8, 1, 2048, 2048) == (1792, 3328)


def test_the_build_tunes_fp8_and_16_bit_only():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    rd = rl.Deployment(weight_dtype="int4", weight_group_size=128, activation_dtype="bf16").resolved(m)
    assert T.build_engine_limits(m, hw, rd, 1, 1, 2048, 2048) is None  # INT4 AWQ: the benchmark_config.yml table


def test_the_azure_tensorrt_rows_run_at_the_limits_their_one_engine_was_built_with():
    rows = {r.id: r for r in corpus.load_corpus()}
    model, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    # every TensorRT-LLM row: 0.15.0 (the TensorRT engine under the C++ executor), FP8 weights and KV
    trt = [r for r in rows.values() if r.source == "azure-ai-benchmarking-guide" and r.framework == "trtllm"]
    assert len(trt) == 36 and {(r.extra["framework_version"], r.kv_dtype, corpus.engine_of(r)) for r in trt} == \
        {("0.15.0", "fp8", "trtllm-cpp")}
    # one engine per model, built from the 2048/2048 dataset: the 128/128 row runs at 2048/2048's limits
    for rid in ("azure-ai-benchmarking-guide-1", "azure-ai-benchmarking-guide-6"):
        r = rows[rid]
        assert corpus.harness_limits(model, hw, r, corpus.deployment_of(r, model)) == (384, 2048)
    # the MI300X rows (vLLM) keep the engine's own limits
    r = rows["azure-ai-benchmarking-guide-37"]
    assert corpus.harness_limits(model, rl.load_hardware("mi300x"), r, corpus.deployment_of(r, model)) == (None, None)
    # a 0.14 row (benchmark_config.yml, not transcribed) keeps the engine's limits even with the note's phrase
    r = rows["azure-ai-benchmarking-guide-6"]
    old = corpus.Row(**{**r.__dict__, "extra": {**r.extra, "framework_version": "0.14.0"}})
    assert corpus.harness_limits(model, hw, old, corpus.deployment_of(old, model)) == (None, None)


def test_an_azure_row_is_its_1000_requests_in_waves_on_the_built_engine():
    # 8B FP8 H100, 128 + 2048 tokens, 1000 requests: the engine's 384 sequences and 2048-token steps, so waves of 384,
    # 384 and 232 (memory holds more at 2176 tokens a sequence); output tokens/s = 1000 · 2048 / T
    r = {r.id: r for r in corpus.load_corpus()}["azure-ai-benchmarking-guide-3"]
    assert (r.prompt_tokens, r.output_tokens, r.num_requests, r.extra["lengths"]) == (128, 2048, 1000, "fixed")
    model, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    dep = corpus.deployment_of(r, model)
    t = rl.offline_run_s(model, hw, 1000, 128, 2048, dep, chunk_tokens=2048, max_batch_size=384)
    assert corpus.predict_row(r) == pytest.approx(1000 * 2048 / t, rel=1e-9)
    c384 = rl.wave(model, hw, 384, 128, 2048, dep, chunk_tokens=2048).cycle_s
    c232 = rl.wave(model, hw, 232, 128, 2048, dep, chunk_tokens=2048).cycle_s
    assert t == pytest.approx(2 * c384 + c232, rel=1e-9)


def test_tiered_ceil_rounds_up_to_its_tiers_step():
    # finetune_setting's batch tiers: below 256 in steps of 32 (at least 64), below 1024 in steps of 128, then 256:
    # 10 -> 64 (the floor), 200 -> 7 x 32 = 224, 256 -> 2 x 128 = 256, 300 -> 3 x 128 = 384, 1100 -> 5 x 256 = 1280
    tiers = ((256, 32), (1024, 128), (math.inf, 256))
    assert [T.tiered_ceil(r, tiers, 64) for r in (10, 200, 256, 300, 1100)] == [64, 224, 256, 384, 1280]
    # the token tiers: 3000 -> 12 x 256 = 3072; 5000 -> 10 x 512 = 5120; 9000 -> 9 x 1024 = 9216; 100 -> 2048
    tok = ((4096, 256), (8192, 512), (math.inf, 1024))
    assert [T.tiered_ceil(r, tok, 2048) for r in (3000, 5000, 9000, 100)] == [3072, 5120, 9216, 2048]
