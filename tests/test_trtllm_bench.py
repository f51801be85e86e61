"""trtllm-bench's own batch limit (calibrate/trtllm_bench.py) and TensorRT-LLM's per-rank limit under attention DP.

Every figure by hand from trtllm-bench's tuning code (NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py):
requests = f · (tp · pp · M_GiB - params · bytes / 2^30) / (2 · L · max(tp, n_kv) · d_head · kv_bytes / 2^30 · (S + O)).
"""

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
    assert corpus.harness_max_batch_size(model, hw, r, dep) == 4 * 96
    # the same row without trtllm-bench (another harness) keeps the engine's limit
    other = corpus.Row(**{**r.__dict__, "extra": {**r.extra, "note": "a serving benchmark"}})
    assert corpus.harness_max_batch_size(model, hw, other, dep) is None


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
    assert corpus.harness_max_batch_size(model, hw, r, dep) == 8 * 1792
