"""The batch limit `trtllm-bench throughput` gives the engine when the command line sets none.

A published TensorRT-LLM offline run (`trtllm-bench ... throughput` without --max_batch_size / --max_num_tokens,
as the perf-overview pages run it) does not run at the engine's default max_batch_size: trtllm-bench computes one
from the model, the checkpoint's format, the GPUs and the dataset's mean lengths, and passes it to the LLM API
(`tensorrt_llm/bench/benchmark/utils/general.py` get_settings -> `bench/build/build.py`
get_benchmark_engine_settings -> `bench/build/tuning.py` calc_engine_setting and finetune_setting; NVIDIA/TensorRT-LLM,
read at commit 04cba88). The estimate, in GiB (2^30 bytes), for a run of tp x pp GPUs with --tp, --pp:

    engine_GiB    = param_count · bytes_per_param / 2^30     (param_count: the checkpoint's safetensors element count;
                                                             bytes_per_param 2 unquantized, 1 FP8, 0.5 NVFP4)
    KV_GiB/token  = 2 · L · max(tp, n_kv) · d_head · kv_bytes / 2^30   (d_head: config.json head_dim, else h / n_heads)
    requests      = f · (tp · pp · M_GiB - engine_GiB) / (KV_GiB/token · (S + O))   (f: --kv_cache_free_gpu_mem_fraction)
    raw           = min(requests, 4096) / pp
    max_batch     = max(64, 32·ceil(raw/32)) below 256; 128·ceil(raw/128) below 1024; else 256·ceil(raw/256)

Formats outside NVFP4, FP8 (per-tensor or block) and unquantized (MXFP4 gpt-oss, INT4 AWQ) get the engine's default
(`tuning_bytes_per_param` is None). The estimate is the harness's, not the engine's memory: its KV term counts
n_kv heads of head_dim for every model, so a model whose config.json states neither (DeepSeek's MLA: 128 KV heads,
no head_dim, 7168 / 128 = 56) is charged 2 · 128 · 56 = 14,336 elements per token and layer where the engine stores
a 576-wide latent, and gets a batch 25x smaller than its KV cache holds.

With attention data parallelism the LLM API's max_batch_size is per rank (`EngineProfile.seqs_per_attention_rank`),
so a replica of ep ranks runs up to ep · max_batch.

TensorRT engines, `trtllm-bench build` of 0.15 - 0.16 (`build_engine_limits`): before the PyTorch backend, the limits
were fixed in the engine when `trtllm-bench build --dataset` built it (no --max_batch_size / --max_num_tokens), from the
dataset's mean lengths, and `trtllm-bench throughput --engine_dir` ran at the engine's own limits. The estimate of that
generation (tensorrt_llm/bench/build/tuning.py calc_engine_setting and finetune_setting as the LLM-API build.py of 0.15
calls them, FP8 and unquantized builds only; read from the stored versions of that generation, id 5900118795 and
6212504592 of the file index: build.py imports ModelConfig from bench/build/dataclasses.py, which NVIDIA/TensorRT-LLM
8f91cff, the v0.15.0 commit that triton-inference-server/tensorrtllm_backend v0.15.0 pins, holds "for the engine
setting calculation"; at v0.14.0, b0880169, build.py still read the per-model table benchmark_config.yml) differs
from the later one above in four ways: the KV share is the build's default 0.95, the weights are counted in decimal
GB (param_count / 1000^3, param_count the checkpoint's BF16/FP16 safetensors count, times 1 byte for FP8 or 2), the
KV cache is FP8 whenever the build quantizes to FP8 (build.py forces kv_cache_quant_algo = FP8), and it also sets
max_num_tokens:

    requests      = 0.95 · (tp · pp · M_GiB - params / 10^9 · bytes) / (KV_GiB/token · (S + O))
    raw_tokens    = min(min(requests, 4096) / pp · (1 + S / O), 32768)
    max_tokens    = max(2048, 256·ceil(raw/256)) below 4096; 512·ceil(raw/512) below 8192; else 1024·ceil(raw/1024)

Worked number (DeepSeek-R1-0528 NVFP4, B200 DEP4, 1000/1000): param_count ≈ 378e9 elements (`checkpoint_elements`),
engine 0.5 · 378e9 / 2^30 = 176 GiB; 4 · 179.06 - 176 = 540 GiB; KV 2 · 61 · 128 · 56 · 1 B = 874,496 B per token,
1.629 GiB per 2000-token request; f = 0.9: 0.9 · 540 / 1.629 = 298 requests -> max_batch 384 per rank, 1,536 in all
(1024/8192: 7.51 GiB per request, 65 requests, 96 per rank).
"""

from __future__ import annotations

import math

import roofline as rl
from roofline import ops as O
from roofline.workload import ResolvedDeployment

GIB = 2**30  # trtllm-bench reads NVML's total memory in GiB and sizes everything in GiB
MAX_REQUESTS = 4096  # "Cap total batch size to avoid decoder buffer size becoming too large" (finetune_setting)
MIN_BATCH = 64  # "Set min BS to be 64" (finetune_setting)
MAX_TOKENS = 32768  # "Cap num tokens to avoid TRT activation buffer becoming too large" (finetune_setting)
MIN_TOKENS = 2048  # "Set min to 2048 to ensure Ctx/Gen overlap efficiency" (finetune_setting)
BUILD_KV_FRACTION = 0.95  # calc_engine_setting's kv_cache_gpu_mem_fraction default, which build.py does not override
# NVFP4 storage: two 4-bit values per uint8 element plus one FP8 (E4M3) scale per 16 values
# (NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision inference", 16-value micro-blocks)
NVFP4_BLOCK = 16
NVFP4_ELEMENTS_PER_PARAM = 1 / 2 + 1 / NVFP4_BLOCK


def tuning_bytes_per_param(rd: ResolvedDeployment, model: rl.ModelSpec) -> float | None:
    """BYTES_PER_ELEM of trtllm-bench's tuning for the checkpoint's quant_algo, or None when the algorithm is not
    one it tunes (TUNED_QUANTS: NVFP4, FP8, FP8_BLOCK_SCALES, no quantization) and the engine default applies.

    A 4-bit float format is NVFP4 when the deployment re-quantizes the model (NVIDIA's ModelOpt *-FP4 checkpoints);
    a model whose own checkpoint is 4-bit (gpt-oss, MXFP4) is not tuned."""
    w = rd.weights.dtype
    if w.bits >= 16:
        return 2.0
    if w.bits == 8 and w.kind == "float":
        return 1.0
    if w.name == "fp4" and rd.dep.weight_dtype is not None:
        return 0.5
    return None


def checkpoint_elements(model: rl.ModelSpec, rd: ResolvedDeployment) -> float:
    """The safetensors element count of a checkpoint trtllm-bench tunes for (what huggingface_hub's parameter_count
    sums): one element per parameter of a 16-bit or FP8 tensor (per-tensor or 128 x 128 block scales add < 0.01%);
    an NVFP4 tensor of n·k parameters is n·k/2 uint8 elements (two values packed per byte) and n·k/16 FP8 scales
    (one per 16-value block), 0.5625 elements per parameter. Embeddings and norms count as the model stores them.
    DeepSeek-R1-0528 as the B200 rows run it (every matrix NVFP4 but the router): 378e9 (Hugging Face counts
    393.6e9 for nvidia/DeepSeek-R1-0528-NVFP4-v2 with its MTP module, which the spec leaves out)."""
    def elements(scheme, n, k):
        return n * k * (NVFP4_ELEMENTS_PER_PARAM if scheme.dtype.bits == 4 else 1)

    total = 0.0
    for g in model.layer_groups():
        per_layer = model.norm_params_per_layer()
        for m in model.layer_matrices(g.moe):
            per_layer += m.copies * (elements(O.matrix_scheme(m.name, rd), m.n, m.k) + (m.n if m.bias else 0))
        total += g.count * per_layer
    h, v = model.hidden_size, model.vocab_size
    total += elements(O.embedding_scheme(model, rd), v, h) + (model.embedding_params - v * h)
    if not model.tied_embeddings:
        total += elements(O.matrix_scheme("lm_head", rd), v, h)
    return total + model.final_norm_params


def config_head_size(model: rl.ModelSpec) -> int:
    """trtllm-bench's head_size: config.json's head_dim, else hidden_size // num_attention_heads. DeepSeek's
    config.json (MLA) has no head_dim; every other shipped spec's head_dim is the config's (or equals h / n_heads)."""
    return model.hidden_size // model.num_attention_heads if model.mla is not None else model.head_dim


def kv_gib_per_token(model: rl.ModelSpec, tp: int, kv_bytes: float) -> float:
    """The tuning's KV cache per token, GiB: 2 · L · max(tp, KV heads) · head_size · bytes / 2^30 (K and V of every
    layer, a KV head counted once per tp rank where tp exceeds the KV heads). Llama-3.1-8B, tp 1, FP8 KV:
    2 · 32 · 8 · 128 · 1 B = 65,536 B = 6.10e-5 GiB."""
    return 2 * model.num_layers * max(tp, model.num_kv_heads) * config_head_size(model) * kv_bytes / GIB


def kv_requests(kv_fraction: float, hw: rl.HardwareProfile, tp: int, pp: int, engine_size: float, kv_per_token_gib: float,
                prompt_tokens: float, output_tokens: float) -> float:
    """The requests of S + O tokens the tuning's KV estimate holds: f · (tp · pp · M_GiB − engine) / (KV_GiB/token ·
    (S + O)), the engine's size subtracted as the tuning counts it (GiB in the PyTorch-backend tuning, decimal GB in
    the 0.15 build's: the module docstring)."""
    return kv_fraction * (tp * pp * hw.memory_bytes / GIB - engine_size) / (kv_per_token_gib * (prompt_tokens + output_tokens))


def tiered_ceil(raw: float, tiers: tuple[tuple[float, int], ...], least: int) -> int:
    """finetune_setting's rounding: `raw` rounded up to a multiple of its tier's step, at least `least`. `tiers` are
    (below, step) pairs in increasing order, the last one's bound infinite: e.g. ((256, 32), (1024, 128), (inf, 256))
    rounds 200 up to 224, 300 to 384 and 1100 to 1280."""
    step = next(st for below, st in tiers if raw < below)
    return max(least, step * math.ceil(raw / step))


def finetune_batch(requests: float, pp: int) -> int:
    """finetune_setting's max_batch_size from the requests the KV estimate holds (optimistic tuning on)."""
    return tiered_ceil(min(requests, MAX_REQUESTS) / pp, ((256, 32), (1024, 128), (math.inf, 256)), MIN_BATCH)


def max_batch_size(model: rl.ModelSpec, hw: rl.HardwareProfile, rd: ResolvedDeployment, tp: int, pp: int,
                   prompt_tokens: float, output_tokens: float, kv_fraction: float) -> int | None:
    """Sequences per attention rank trtllm-bench lets the engine run (module docstring), or None for the engine's
    default. `tp`, `pp`: the run's --tp and --pp (a DEPn run passes --tp n); `kv_fraction`: its
    --kv_cache_free_gpu_mem_fraction."""
    per_param = tuning_bytes_per_param(rd, model)
    if per_param is None:
        return None
    engine_gib = checkpoint_elements(model, rd) * per_param / GIB
    requests = kv_requests(kv_fraction, hw, tp, pp, engine_gib, kv_gib_per_token(model, tp, rd.kv.dtype.bits / 8),
                           prompt_tokens, output_tokens)
    if requests < 1:
        return None  # trtllm-bench refuses the run ("KV cache memory is insufficient"); the prediction says so itself
    return finetune_batch(requests, pp)


def finetune_tokens(requests: float, pp: int, prompt_tokens: float, output_tokens: float) -> int:
    """finetune_setting's max_num_tokens: the tokens of the batch's prompts in the ratio of a request's prompt to its
    output (raw_bs · (1 + S/O), capped at 32768), rounded up in steps of 256, 512 or 1024 and at least 2048."""
    raw = min(min(requests, MAX_REQUESTS) / pp * (1 + prompt_tokens / output_tokens), MAX_TOKENS)
    return tiered_ceil(raw, ((4096, 256), (8192, 512), (math.inf, 1024)), MIN_TOKENS)


def build_engine_limits(model: rl.ModelSpec, hw: rl.HardwareProfile, rd: ResolvedDeployment, tp: int, pp: int,
                        prompt_tokens: float, output_tokens: float) -> tuple[int, int] | None:
    """(max_batch_size, max_num_tokens) that `trtllm-bench build --dataset` of 0.15 - 0.16 fixes in a TensorRT engine
    for a dataset of mean lengths `prompt_tokens` / `output_tokens` (module docstring), or None where that build did
    not tune (a format other than FP8 or 16-bit: its benchmark_config.yml table, not transcribed here).

    Worked number (Llama-3.1-8B, --quantization FP8, one H100, the 2048/2048 dataset): 8,030,261,248 BF16
    parameters = 8.030 GB at 1 byte; NVML total 85,520,809,984 B = 79.647 GiB; 0.95 · 71.617 = 68.036 GiB of KV;
    2 · 32 · 8 · 128 · 1 B = 65,536 B a token, 4096 tokens (0.25 GiB) a request: 272.1 requests -> 128 · ceil(2.13)
    = 384 sequences; 272.1 · (1 + 1) = 544.3 tokens -> max(2048, 768) = 2048 tokens a step."""
    w = rd.weights.dtype
    if w.bits == 8 and w.kind == "float":
        per_param = 1
    elif w.bits >= 16:
        per_param = 2
    else:
        return None
    kv_bytes = 1 if rd.kv.dtype.bits == 8 and rd.kv.dtype.kind == "float" else 2
    engine_gb = checkpoint_elements(model, rd) / 1e9 * per_param
    requests = kv_requests(BUILD_KV_FRACTION, hw, tp, pp, engine_gb, kv_gib_per_token(model, tp, kv_bytes),
                           prompt_tokens, output_tokens)
    if requests < 1:
        return None  # the build refuses ("The amount of KV cache memory is insufficient"); the prediction says so itself
    return finetune_batch(requests, pp), finetune_tokens(requests, pp, prompt_tokens, output_tokens)
