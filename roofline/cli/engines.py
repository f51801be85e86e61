"""`roofline engines`: the shipped serving-engine profiles (Deployment.engine, --engine)."""

from __future__ import annotations

import json

from .. import fmt
from ..engines import DEFAULT_ENGINE, list_engines, load_engine

HELP = "list the shipped serving-engine profiles (--engine, Deployment.engine)"
DESCRIPTION = ("What each serving engine adds to the kernels: CPU time per step (fixed and per running sequence), latency per "
               "request (fixed and tokenizing the prompt), the largest decode batch replayed from a CUDA graph, the "
               "running-sequence and per-step token limits, chunked prefill, prefill mixed with decode in one step, the memory fraction, the KV block "
               "and how often a GQA layer's decode kernel reads each KV head (once, or once per query head where the "
               "engine's GQA-aware kernel does not serve the layout) and the all-reduce (NCCL, or the engine's custom kernel with "
               "the framework table's switch to NCCL or, for an older release, its own size limit). "
               "Every figure has its source in the profile (--json). A profile that varies another (an older release of "
               "the same runtime) names it under extends (engine_base in --json) and takes every figure it does not set "
               "from it. The default is marked; --engine none is the bare roofline.")


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="every profile, as JSON (a list, SI units, sources included; "
                   "engine_base: the profile it extends, null for a base)")


OF = {"device": "of the GPU", "free": "of free (KV)", "device_for_kv": "of the GPU as KV"}


def memory_column(e) -> str:
    """The engine's memory share and what it is a share of (`EngineProfile.memory_fraction_of`): "90.0% of the GPU",
    "90.0% of free (KV)" (TensorRT-LLM's pool of what weights, workspace and reserve leave), "50.0% of the GPU as KV"
    (TurboMind's pool on top of the weights); "(by tp)" where the share depends on the tensor-parallel size."""
    return f"{fmt.fraction(e.gpu_memory_fraction)}{' (by tp)' if e.gpu_memory_fraction_by_tp else ''} {OF[e.memory_fraction_of]}"


def gqa_decode_column(e) -> str:
    """How many times a GQA layer's decode step reads each KV head (`EngineProfile.grouped_decode_kernel`,
    `ops.decode_kv_reads`): "once"; "x group" (once per query head: no GQA-aware kernel, TensorRT-LLM 0.5 - 0.6);
    "once at head 128/256, group 8; else x group" (TensorRT-LLM 0.7 - 0.9's XQA)."""
    k = e.grouped_decode_kernel
    if k is None:
        return "once"
    if not k.head_dims or not k.group_sizes:
        return "x group"
    return (f"once at head {'/'.join(map(str, k.head_dims))}, group {'/'.join(map(str, k.group_sizes))}; "
            "else x group")


def allreduce_column(e) -> str:
    """Which all-reduce the engine runs (`EngineProfile.custom_allreduce`, `custom_allreduce_max_bytes`): "NCCL";
    "custom, table's switch" (the framework's kernel table times the whole call, its switch to NCCL included);
    "custom < 8.0 MiB, then NCCL" (a release older than the table: `engines.with_custom_allreduce_limit`)."""
    if not e.custom_allreduce:
        return "NCCL"
    if e.custom_allreduce_max_bytes is None:
        return "custom, table's switch"
    return f"custom < {fmt.mebibytes(e.custom_allreduce_max_bytes)}, then NCCL"


def run(a) -> str:
    ids = list_engines()
    engines = [load_engine(i) for i in ids]
    if a.json:
        return json.dumps([{"id": i, "default": i == DEFAULT_ENGINE, **e.model_dump()} for i, e in zip(ids, engines)], indent=2)
    rows = []
    for i, e in zip(ids, engines):
        big = "" if e.large_gpu is None else f" ({e.large_gpu.max_num_seqs:,} / {e.large_gpu.max_num_batched_tokens:,} on large GPUs)"
        rows.append([i + (" (default)" if i == DEFAULT_ENGINE else ""), e.engine_base or "-", f"{e.name} {e.versions}",
                     f"{fmt.seconds(e.step_overhead_s)} + {fmt.seconds(e.step_overhead_per_sequence_s)}/seq",
                     f"{fmt.seconds(e.request_overhead_s)} + {fmt.seconds(e.tokenize_s_per_token)}/token",
                     f"{e.cuda_graph_max_batch:,}", f"{e.max_num_seqs:,} / {e.max_num_batched_tokens:,}{big}",
                     "yes" if e.chunked_prefill else "no", "yes" if e.mixed_prefill_decode else "no", memory_column(e),
                     f"{e.kv_block_tokens:,}", gqa_decode_column(e), allreduce_column(e)])
    return fmt.table(["id", "extends", "engine", "CPU per step", "per request", "graph batch", "max seqs / tokens per step",
                      "chunked", "mixed", "memory", "KV block", "GQA decode reads a KV head", "all-reduce"], rows)
