"""The published end-to-end corpus: the project's test set, run through the public API.

`calibrate/published/e2e/<source>.csv` holds measurements transcribed from public sources (engine
performance pages, MLPerf, vendor blogs, papers), one CSV per source with the columns `COLUMNS`; the
notes beside each CSV say where every number is on the page. Nothing in the predictor is fitted to
these rows: they only measure it.

Each row is one published number. It is predicted the way it was measured:

* `static`: a fixed batch run to completion, `roofline.predict` with `Workload(batch, S, O)`; on an engine that
  holds back what its KV pool does not hold (`HELD_BACK_ENGINES`), a batch that does not fit is the engine's run
  of N client threads sending their rounds one after the other (`roofline.block_queue.run`);
* `rate`: Poisson arrivals at λ requests/s, `roofline.steady_state`; a finite run of n requests offered above the
  replica is stepped through the serving model's scheduler as the queue builds and drains (`serving.overload_run`);
* `concurrency`: a closed loop of N clients, `roofline.closed_loop` (the response-time law
  N = λ·(TTFT + E[O-1]·TPOT) on the open-loop steady state);
* `offline`: every request submitted at once, the replica's capacity λ_max from the steady state
  (throughput = λ_max·E[O] output tokens/s, λ_max·(E[S]+E[O]) total tokens/s); a stated number n of
  fixed-length requests on a tp replica runs in synchronized waves of what the replica admits at once, the last
  one partial (`roofline.offline_run_s`: n·O / T output tokens/s), and a share of other lengths that fits one
  batch is that static batch. A TensorRT-LLM run by
  `trtllm-bench throughput` runs at the batch limit trtllm-bench computes for it, or a TensorRT engine at the
  limits its `trtllm-bench build` fixed (`harness_limits`).

A run on G GPUs of replicas of tp·pp·ep GPUs is G/(tp·pp·ep) independent replicas: throughputs scale
by that count, latencies do not, and a closed loop of N clients gives each replica N/replicas.

The error of a row is e = predicted / measured - 1 (both in the published unit), its absolute
percentage error 100·|e|, and its log-error ln(measured / predicted), which the error bands use. A family
(`family_of`) groups rows that measure the same kind of figure under the same workload semantics:
TTFT of a static batch, TPOT under a closed loop, offline throughput, and so on.

Rows that cannot be predicted (a GPU with no profile, a metric the model does not give, a
deployment the predictor refuses) are counted and listed with their reason, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import roofline as rl
from roofline.bands import entry_key, hardware_class, log_limits, precision_class
from roofline.dtypes import get_dtype
from roofline.errors import SpecError
from roofline import block_queue
from roofline.serving import (
    OverloadRun,
    capacity_requests_per_s,
    closed_loop,
    finite_run_duration_s,
    offline_run_s,
    run_above_capacity,
    steady_state,
)

from . import trtllm_bench

CORPUS_DIR = Path(__file__).resolve().parent / "published"
BASELINE_PATH = CORPUS_DIR / "baseline.json"
REPORT_DIR = CORPUS_DIR / "report"

COLUMNS = (
    "id", "source", "url", "source_ref", "framework", "framework_version", "gpu", "num_gpus", "tp", "pp", "ep", "model",
    "weight_dtype", "activation_dtype", "kv_dtype", "weight_group_size", "workload", "batch_size", "concurrency",
    "request_rate_per_s", "num_requests", "prompt_tokens", "output_tokens", "lengths", "metric", "statistic", "value",
    "unit", "trust", "note",
)
WORKLOADS = ("static", "concurrency", "rate", "offline")
METRICS = ("ttft", "tpot", "itl", "e2e_latency", "output_throughput", "total_throughput", "request_throughput",
           "user_throughput")
STATISTICS = ("mean", "median", "p50", "p90", "p99", "single", "max")
TRUST = ("high", "medium", "low")

# unit -> (dimension, factor to SI); SI is seconds, tokens/s, requests/s
UNITS: dict[str, tuple[str, float]] = {
    "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6), "ns": ("time", 1e-9),
    "tokens/s": ("tokens_rate", 1.0), "tokens/s/gpu": ("tokens_rate_per_gpu", 1.0), "tokens/s/user": ("user_rate", 1.0),
    "requests/s": ("request_rate", 1.0), "queries/s": ("request_rate", 1.0), "samples/s": ("request_rate", 1.0),
}
METRIC_DIMENSIONS = {
    "ttft": {"time"}, "tpot": {"time"}, "itl": {"time"}, "e2e_latency": {"time"},
    "output_throughput": {"tokens_rate", "tokens_rate_per_gpu"}, "total_throughput": {"tokens_rate", "tokens_rate_per_gpu"},
    "request_throughput": {"request_rate"}, "user_throughput": {"user_rate", "tokens_rate"},
}

FAMILIES = ("ttft_static", "tpot_static", "e2e_static", "throughput_static", "ttft_serving", "tpot_serving",
            "e2e_serving", "throughput_serving", "throughput_offline")
FAMILY_TITLES = {
    "ttft_static": "TTFT, static batch", "tpot_static": "TPOT / ITL, static batch", "e2e_static": "end-to-end latency, static batch",
    "throughput_static": "throughput, static batch", "ttft_serving": "TTFT, serving (concurrency or rate)",
    "tpot_serving": "TPOT / ITL, serving", "e2e_serving": "end-to-end latency, serving",
    "throughput_serving": "throughput, serving", "throughput_offline": "offline max throughput",
}


def family_of(workload: str, metric: str) -> str:
    """The error family of a row: the metric's kind under the workload's semantics."""
    kind = ("ttft" if metric == "ttft" else "tpot" if metric in ("tpot", "itl", "user_throughput")
            else "e2e" if metric == "e2e_latency" else "throughput")
    regime = "static" if workload == "static" else "offline" if workload == "offline" else "serving"
    return f"{kind}_{regime}"


# ------------------------------------------------------------ loading
@dataclass(frozen=True)
class Row:
    """One published number with everything needed to predict it (CSV columns, typed)."""

    id: str
    source: str
    url: str
    framework: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    ep: int
    model: str
    weight_dtype: str | None
    activation_dtype: str | None
    kv_dtype: str | None
    weight_group_size: int | None
    workload: str
    batch_size: int | None
    concurrency: float | None
    request_rate_per_s: float | None
    num_requests: int | None
    prompt_tokens: int | None
    output_tokens: int | None
    metric: str
    statistic: str
    value: float
    unit: str
    trust: str
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def family(self) -> str:
        return family_of(self.workload, self.metric)

    @property
    def replica_gpus(self) -> int:
        """GPUs of one replica: tp·pp·ep, or tp·pp where ep runs inside the tp group (`deployment_of`)."""
        inside = self.ep > 1 and self.tp * self.pp == self.num_gpus and self.tp % self.ep == 0
        return self.tp * self.pp * (1 if inside else self.ep)

    @property
    def replicas(self) -> int:
        """Independent replicas in the measured run."""
        return max(1, self.num_gpus // self.replica_gpus)


def _cell(raw: dict, key: str) -> str | None:
    value = (raw.get(key) or "").strip()
    return value or None


def _number(raw: dict, key: str, where: str, kind=float, required: bool = False):
    text = _cell(raw, key)
    if text is None:
        if required:
            raise SpecError(f"{where}: {key}", "is required")
        return None
    try:
        value = float(text.replace(",", "")) if kind is float else int(text)
    except ValueError:
        raise SpecError(f"{where}: {key}", f"must be {'a number' if kind is float else 'an integer'}, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{where}: {key}", f"must be a positive finite number, got {text!r}")
    return value


def _choice(raw: dict, key: str, choices: Iterable[str], where: str) -> str:
    value = _cell(raw, key)
    if value not in choices:
        raise SpecError(f"{where}: {key}", f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse_row(raw: dict, where: str) -> Row:
    """A CSV record as a typed `Row`; a malformed cell is a one-line SpecError naming file, line and column."""
    workload = _choice(raw, "workload", WORKLOADS, where)
    metric = _choice(raw, "metric", METRICS, where)
    unit = _choice(raw, "unit", UNITS, where)
    if UNITS[unit][0] not in METRIC_DIMENSIONS[metric]:
        raise SpecError(f"{where}: unit", f"{unit!r} is not a unit of {metric}")
    need = {"static": "batch_size", "concurrency": "concurrency", "rate": "request_rate_per_s"}.get(workload)
    tp = _number(raw, "tp", where, int) or 1
    pp = _number(raw, "pp", where, int) or 1
    ep = _number(raw, "ep", where, int) or 1
    return Row(
        id=_cell(raw, "id") or where, source=_cell(raw, "source") or "", url=_cell(raw, "url") or "",
        framework=_cell(raw, "framework") or "", gpu=_cell(raw, "gpu") or "",
        num_gpus=_number(raw, "num_gpus", where, int) or tp * pp * ep, tp=tp, pp=pp, ep=ep,
        model=_cell(raw, "model") or "", weight_dtype=_cell(raw, "weight_dtype"), activation_dtype=_cell(raw, "activation_dtype"),
        kv_dtype=_cell(raw, "kv_dtype"), weight_group_size=_number(raw, "weight_group_size", where, int),
        workload=workload, batch_size=_number(raw, "batch_size", where, int, required=need == "batch_size"),
        concurrency=_number(raw, "concurrency", where, float, required=need == "concurrency"),
        request_rate_per_s=_number(raw, "request_rate_per_s", where, float, required=need == "request_rate_per_s"),
        num_requests=_number(raw, "num_requests", where, int),
        prompt_tokens=_number(raw, "prompt_tokens", where, int), output_tokens=_number(raw, "output_tokens", where, int),
        metric=metric, statistic=_choice(raw, "statistic", STATISTICS, where),
        value=_number(raw, "value", where, float, required=True), unit=unit, trust=_choice(raw, "trust", TRUST, where),
        extra={k: raw.get(k, "") for k in ("source_ref", "framework_version", "lengths", "note")},
    )


def load_corpus(folder: Path | str = CORPUS_DIR) -> list[Row]:
    """Every row of every `e2e/*.csv` under `folder`, in file then line order. Ids must be unique."""
    folder = Path(folder)
    files = sorted((folder / "e2e").glob("*.csv"))
    if not files:
        raise SpecError(str(folder / "e2e"), "holds no corpus CSV files")
    rows, seen = [], {}
    for path in files:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise SpecError(path.name, f"lacks the columns {', '.join(missing)}")
            for line, raw in enumerate(reader, start=2):
                row = parse_row(raw, f"{path.name}:{line}")
                if row.id in seen:
                    raise SpecError(f"{path.name}:{line}: id", f"{row.id!r} repeats {seen[row.id]}")
                seen[row.id] = f"{path.name}:{line}"
                rows.append(row)
    return rows


# ------------------------------------------------------------ predicting one row
class Unsupported(Exception):
    """A row the predictor cannot reproduce, with the reason (counted and listed, not an error).

    `infeasible`: the predictor ran and called the measured setup impossible (out of memory, or a request
    rate above its capacity). Such a row is a miss of the model, counted per family as `infeasible`,
    not an input the corpus lacks."""

    def __init__(self, reason: str, infeasible: bool = False):
        super().__init__(reason)
        self.infeasible = infeasible


def _spec(name: str, folder: Path):
    if name.endswith(".json"):
        path = folder / name
        if not path.is_file():
            raise Unsupported(f"model config {name} is not in the corpus")
        return rl.ModelSpec.from_hf_config(path)
    try:
        return rl.load_model(name)
    except SpecError:
        raise Unsupported(f"no model spec {name!r}") from None


def _hardware(name: str, load_hardware: Callable):
    try:
        return load_hardware(name)
    except SpecError:
        raise Unsupported(f"no hardware profile for {name!r}") from None


# the engine profile (`roofline engines`) each framework of the corpus runs as; a framework without a profile
# (gpt-fast, TGI, MLC, HF transformers, ...; LMDeploy outside `LMDEPLOY_TURBOMIND`) runs as the bare roofline (engine None)
ENGINE_OF_FRAMEWORK = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "nim": "trtllm"}
# TensorRT-LLM releases before the PyTorch backend (0.17) ran TensorRT engines in the C++ runtime / executor, without
# an overlap scheduler and without CUDA graphs by default: their rows run as `trtllm-cpp` (its `versions:`)
TRTLLM_CPP_BEFORE = (0, 17, 0)
# Within them, the generation (decode) kernel of a GQA layer: no XQA before 0.7 (`trtllm-cpp-0.5`: masked MHA, one read
# of a KV head per query head), XQA for head 128 / 256 at 8 query heads per KV head in 0.7 - 0.9 (`trtllm-cpp-0.7`,
# read at 0.9.0); 0.10 - 0.16 keep `trtllm-cpp` (their XQA tables not audited). Sources: each profile's grouped_decode_kernel
TRTLLM_CPP_NO_XQA = ((0, 5, 0), (0, 7, 0))
TRTLLM_CPP_XQA_GROUP8 = ((0, 7, 0), (0, 10, 0))
# TensorRT-LLM 0.17, the PyTorch backend's first release, served by trtllm-serve without CUDA graphs (PyTorchConfig's
# use_cuda_graph default): its rows run as `trtllm-eager`
TRTLLM_EAGER = ((0, 17, 0), (0, 18, 0))
# vLLM 0.7 ran the V0 engine by default (V1 from 0.8) and was the first to run MLA as MLA (0.7.1); V0 serving an MLA
# model has chunked prefill off and schedules prefill-first: those rows run as `vllm-v0-mla` (its `sources:`)
VLLM_V0_MLA = ((0, 7, 0), (0, 8, 0))
# LMDeploy 0.1.0 - 0.2.1 with TurboMind: cache_max_entry_count a share of the whole device (0.5), no CUDA graphs, NCCL
# all-reduce; 0.2.2 made it a share of the free memory (0.8): those rows, and rows of no stated version, keep the bare roofline
LMDEPLOY_TURBOMIND = ((0, 1, 0), (0, 2, 2))
# SGLang 0.4.0 and 0.4.0.post1 (December 2024) set mem_fraction_static by tp (0.85 at tp 4, 0.81 at tp 8); their rows
# run as `sglang-0.4.0` (its `sources:`). Later 0.4.x releases keep `sglang`: their defaults were not read.
SGLANG_0_4_0 = re.compile(r"\s*0\.4\.0(\.post1)?\s*$")
# Engines whose scheduler admits a request when its KV blocks are there and holds the rest back (first come, first
# served, the latest arrivals preempted for blocks): a static batch that does not fit their pool still ran.
# TurboMind 0.1 - 0.2.1: src/turbomind/models/llama/SequenceManager.cc Materialize (v0.1.0 477f2db8ab)
HELD_BACK_ENGINES = ("lmdeploy-turbomind",)
# The static rows of lmdeploy-a100-fp16 come from benchmark/benchmark.sh at 379a2d5a68 (the page's commit):
# profile_generation.py --concurrency 1 16 32 64 --warmup-round 1 --test-round 3 (each client thread sends 3 requests,
# the next when the last has finished), on a converted model whose config.ini cache_max_entry_count the script sets
# from benchmark/config/llama_7b.ini (1000), llama_13b.ini (500), llama_70b.ini (4000): a block count (>= 1), not the
# default share of the device. (source, model) -> blocks of 128 tokens per GPU
CLIENT_ROUNDS = {"lmdeploy-a100-fp16": 3}
BENCHMARK_KV_BLOCKS = {("lmdeploy-a100-fp16", "llama-2-7b"): 1000, ("lmdeploy-a100-fp16", "llama-2-13b"): 500,
                       ("lmdeploy-a100-fp16", "llama-2-70b"): 4000}
_VERSION = re.compile(r"\s*[vV]?(\d+)\.(\d+)(?:\.(\d+))?")


def _version(row: Row) -> tuple[int, int, int] | None:
    """(major, minor, patch) of the row's framework_version (a leading "v" allowed, patch 0 when not given: "v0.2.1"
    is (0, 2, 1), "0.17.post1" (0, 17, 0)), or None when unstated or unparsable."""
    m = _VERSION.match(row.extra.get("framework_version", "") or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def engine_of(row: Row, model: rl.ModelSpec | None = None) -> str | None:
    """The engine profile a row runs as: its framework's (`ENGINE_OF_FRAMEWORK`), except TensorRT-LLM rows whose
    framework_version is stated and older than `TRTLLM_CPP_BEFORE`, which run as `trtllm-cpp` (0.5 - 0.6 as
    `trtllm-cpp-0.5` and 0.7 - 0.9 as `trtllm-cpp-0.7`, by the GQA decode kernel they had), TensorRT-LLM 0.17 rows
    (`TRTLLM_EAGER`: the PyTorch backend served without CUDA graphs), which run as `trtllm-eager`, and vLLM 0.7 rows
    (`VLLM_V0_MLA`: the V0 engine) whose `model` has MLA attention, which run as `vllm-v0-mla`, LMDeploy rows of
    0.1.0 - 0.2.1 (`LMDEPLOY_TURBOMIND`), which run as `lmdeploy-turbomind`, and SGLang 0.4.0 / 0.4.0.post1 rows
    (`SGLANG_0_4_0`), which run as `sglang-0.4.0`. An unstated or unparsable version keeps the framework's profile
    (none for LMDeploy: the bare roofline); so does a 0.7 row whose model is not given."""
    engine = ENGINE_OF_FRAMEWORK.get(row.framework)
    version = _version(row)
    if version is None:
        return engine
    if row.framework == "trtllm" and TRTLLM_CPP_NO_XQA[0] <= version < TRTLLM_CPP_NO_XQA[1]:
        return "trtllm-cpp-0.5"
    if row.framework == "trtllm" and TRTLLM_CPP_XQA_GROUP8[0] <= version < TRTLLM_CPP_XQA_GROUP8[1]:
        return "trtllm-cpp-0.7"
    if row.framework == "trtllm" and version < TRTLLM_CPP_BEFORE:
        return "trtllm-cpp"
    if row.framework == "trtllm" and TRTLLM_EAGER[0] <= version < TRTLLM_EAGER[1]:
        return "trtllm-eager"
    if row.framework == "vllm" and VLLM_V0_MLA[0] <= version < VLLM_V0_MLA[1] and model is not None and model.mla is not None:
        return "vllm-v0-mla"
    if row.framework == "lmdeploy" and LMDEPLOY_TURBOMIND[0] <= version < LMDEPLOY_TURBOMIND[1]:
        return "lmdeploy-turbomind"
    if row.framework == "sglang" and SGLANG_0_4_0.match(row.extra.get("framework_version", "") or ""):
        return "sglang-0.4.0"
    return engine


def deployment_of(row: Row, model: rl.ModelSpec | None = None) -> rl.Deployment:
    """The row's deployment. FP8 on a GPU without FP8 tensor cores runs weight-only, as engines do (FP8 Marlin).

    A row whose weight format is the checkpoint's own (`model.native_weight_dtype`: DeepSeek-V3's block-scaled
    FP8, gpt-oss's MXFP4 experts) runs the checkpoint's weights as stored (`Deployment.weight_dtype` unset, so
    `ModelSpec.checkpoint_quant` applies: its scale layout and the groups it keeps in BF16), not a re-quantized copy.

    Engines that state "tp n, ep n" on n GPUs (TensorRT-LLM's DEPn, SGLang's --enable-dp-attention) run the MoE
    layers expert-parallel inside the tp group; the predictor's expert parallelism is attention data-parallel
    plus experts over ep GPUs, so such a row runs as tp=1, ep=n (`Row.replica_gpus` counts it as one replica of n).
    A tp-n row (ep 1) whose note states SGLang's `--enable-dp-attention` (dstack's SGLang 0.4.3 DeepSeek-R1 runs on
    H200) runs attention data-parallel over the n GPUs with the MoE tensor-parallel (`Deployment.attention_dp`)."""
    tp, ep = row.tp, row.ep
    if ep > 1 and tp * row.pp == row.num_gpus and tp % ep == 0:
        tp, ep = 1, tp
    attention_dp = ep == 1 and tp > 1 and bool(ATTENTION_DP_NOTE.search(row.extra.get("note", "")))
    weight_dtype = row.weight_dtype
    if model is not None and model.native_weight_dtype is not None and weight_dtype is not None and \
            get_dtype(weight_dtype).name == get_dtype(model.native_weight_dtype).name and row.weight_group_size is None:
        weight_dtype = None
    return rl.Deployment(tp=tp, pp=row.pp, ep=ep, attention_dp=attention_dp, weight_dtype=weight_dtype,
                         activation_dtype=row.activation_dtype, kv_dtype=row.kv_dtype,
                         weight_group_size=row.weight_group_size, on_unsupported_dtype="fallback",
                         engine=engine_of(row, model))


# SGLang's attention data parallelism stated in a row's note (the launch flag, or its server_args name)
ATTENTION_DP_NOTE = re.compile(r"--enable-dp-attention|enable_dp_attention")

# `trtllm-bench build --dataset ISL/OSL` in a row's note: the dataset (fixed lengths) a TensorRT engine was built from
BUILD_DATASET = re.compile(r"trtllm-bench build [^;]*--dataset (\d+)/(\d+)")
# TensorRT-LLM releases whose `trtllm-bench build` sized the engine with the tuning estimate (`trtllm_bench.
# build_engine_limits`): 0.15 (NVIDIA/TensorRT-LLM 8f91cff) until the PyTorch backend's 0.17; 0.14 read a table
TRTLLM_BENCH_TUNED_BUILD = ((0, 15, 0), (0, 17, 0))


def _build_dataset(row: Row) -> tuple[int, int] | None:
    """(ISL, OSL) of the dataset the row's note says `trtllm-bench build` built its engine from, or None."""
    m = BUILD_DATASET.search(row.extra.get("note", ""))
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def harness_limits(model: rl.ModelSpec, hw: rl.HardwareProfile, row: Row, dep: rl.Deployment) -> tuple[int | None, int | None]:
    """(running-sequence cap of the replica, prefill tokens per step) that the row's benchmark harness set; None for
    either where the engine's own applies (`steady_state`'s `max_batch_size` and `chunk_tokens`).

    * `trtllm-bench throughput` on the PyTorch backend (engine `trtllm`, the harness named in the row's note) sizes
      max_batch_size itself when its command line gives none (`trtllm_bench.max_batch_size`, with the engine's KV
      fraction, trtllm-bench's --kv_cache_free_gpu_mem_fraction default 0.90); it applies per attention-DP rank, so
      the replica's cap is ep times it; the engine's token budget.
    * A TensorRT engine (`trtllm-cpp`, framework_version 0.15 - 0.16) that `trtllm-bench build` built from the dataset
      named in the note ("trtllm-bench build ... --dataset ISL/OSL"): the engine's max_batch_size and max_num_tokens
      of `trtllm_bench.build_engine_limits` at that dataset's lengths, which `trtllm-bench throughput --engine_dir`
      runs with (get_settings_from_engine: executor max_batch_size and max_num_tokens from the engine's
      config.json build_config, in every stored TensorRT-engine version of tensorrt_llm/bench/benchmark/utils.py),
      and its prompts chunked to max_num_tokens a step: that release's trtllm-bench throughput passes
      ExecutorSettingsConfig.chunking (default True) as the executor's enable_chunked_context
      (tensorrt_llm/bench/benchmark/dataclasses.py, NVIDIA/TensorRT-LLM 04a2cac). The dataset is the build's, not the
      row's: the Azure guide builds one engine per model, from its largest ISL+OSL dataset, and runs every length on it.
    """
    if row.workload != "offline" or "trtllm-bench" not in row.extra.get("note", ""):
        return None, None
    engine = engine_of(row)
    rd = dep.resolved(model)
    if engine == "trtllm":
        per_rank = trtllm_bench.max_batch_size(model, hw, rd, row.tp, row.pp, row.prompt_tokens, row.output_tokens,
                                               rd.engine.gpu_memory_fraction)
        return (None if per_rank is None else per_rank * dep.ep), None
    version, built = _version(row), _build_dataset(row)
    if engine != "trtllm-cpp" or built is None or version is None or \
            not TRTLLM_BENCH_TUNED_BUILD[0] <= version < TRTLLM_BENCH_TUNED_BUILD[1]:
        return None, None
    limits = trtllm_bench.build_engine_limits(model, hw, rd, row.tp, row.pp, *built)
    return (None, None) if limits is None else limits


def _figures_static(model, hw, row: Row, dep) -> dict[str, float]:
    p = rl.predict(model, hw, rl.Workload(batch_size=row.batch_size, prompt_tokens=row.prompt_tokens,
                                          output_tokens=row.output_tokens), dep)
    if not p.fits:
        if dep.engine in HELD_BACK_ENGINES and row.source in CLIENT_ROUNDS and row.output_tokens >= 2:
            return _figures_held_back(model, hw, row, dep)
        raise Unsupported(f"predicted infeasible: {p.fit_message}", infeasible=True)
    return {"ttft_s": p.ttft_s, "tpot_s": p.tpot_s, "e2e_s": p.e2e_latency_s,
            **_batch_rates(row.batch_size, row.prompt_tokens, row.output_tokens, p.e2e_latency_s)}


def _figures_held_back(model, hw, row: Row, dep) -> dict[str, float]:
    """A static batch of N that does not fit the engine's KV pool, as the engine ran it: N client threads each sending
    `CLIENT_ROUNDS` requests one after the other, the engine holding back what its pool does not hold
    (`block_queue.run`, the pool of `BENCHMARK_KV_BLOCKS` where the benchmark set one). The published figures are
    the mean first-token latency (waiting included), the median gap between tokens and output tokens over the run's
    wall time (profile_generation.py), so `ttft_s` is the mean, `tpot_s` the median gap."""
    s, o = row.prompt_tokens, row.output_tokens
    q = block_queue.run(model, hw, row.batch_size, CLIENT_ROUNDS[row.source], s, o, dep,
                        kv_blocks=BENCHMARK_KV_BLOCKS.get((row.source, row.model)))
    rate = q.output_tokens_per_s
    e2e = float(np.mean(q.ttft_s)) + (o - 1) * float(np.mean(q.itl_s))
    return {"ttft_s": float(np.mean(q.ttft_s)), "tpot_s": float(np.median(q.itl_s)), "e2e_s": e2e,
            "output_tokens_per_s": rate, "total_tokens_per_s": rate * (s + o) / o, "requests_per_s": rate / o}


def _batch_rates(batch: int, prompt: int, output: int, e2e_s: float) -> dict[str, float]:
    """A batch run from prefill to its last token in e2e_s: B·O output tokens, B·(S+O) tokens and B requests per e2e_s."""
    return {"output_tokens_per_s": batch * output / e2e_s, "total_tokens_per_s": batch * (prompt + output) / e2e_s,
            "requests_per_s": batch / e2e_s}


def _figures_serving(model, hw, row: Row, dep) -> dict[str, float]:
    s, o = row.prompt_tokens, row.output_tokens
    if o < 2:
        raise Unsupported("serving rows need at least 2 output tokens (a decode step)")
    if row.workload == "rate":
        sp = steady_state(model, hw, row.request_rate_per_s / row.replicas, s, o, dep)
    elif row.workload == "concurrency":
        # clients at a fixed concurrency with fixed lengths start together and finish together: waves of N (`serving.wave`)
        waves = row.extra.get("lengths", "").startswith("fixed") and dep.is_tp_group
        sp = closed_loop(model, hw, row.concurrency / row.replicas, s, o, dep, synchronized=waves)
    else:
        cap, chunk = harness_limits(model, hw, row, dep)
        share = None if row.num_requests is None else math.ceil(row.num_requests / row.replicas)
        if share is not None and row.extra.get("lengths", "").startswith("fixed") and dep.is_tp_replica:
            # a finite set of fixed-length requests submitted at once: synchronized waves (`serving.offline_run_s`)
            run_s = offline_run_s(model, hw, share, s, o, dep, chunk_tokens=chunk, max_batch_size=cap)
            if not math.isfinite(run_s):
                raise Unsupported("predicted infeasible: does not fit at batch 1", infeasible=True)
            return _batch_rates(share, s, o, run_s)
        lam = capacity_requests_per_s(model, hw, s, o, dep, chunk_tokens=chunk, max_batch_size=cap)
        if lam <= 0:
            raise Unsupported("predicted infeasible: does not fit at batch 1", infeasible=True)
        if share is not None:
            # a finite set of requests submitted at once: if one replica's share fits in one batch, the run is that
            # static batch (every prompt prefilled, then decoded together), not the steady state of an endless stream
            p = rl.predict(model, hw, rl.Workload(batch_size=share, prompt_tokens=s, output_tokens=o), dep)
            if p.fits and share <= p.max_batch_size_fits and (cap is None or share <= cap):
                return _batch_rates(share, s, o, p.e2e_latency_s)
        return {"output_tokens_per_s": lam * o, "total_tokens_per_s": lam * (s + o), "requests_per_s": lam}
    if row.workload == "rate" and not sp.stable and row.num_requests is not None and sp.requests_per_s > sp.capacity_requests_per_s > 0:
        return _figures_overload(model, hw, row, dep)
    if not sp.stable:
        raise Unsupported(f"predicted infeasible: {sp.reason}", infeasible=True)
    lam = sp.requests_per_s
    e2e = sp.ttft_mean_s + (o - 1) * sp.tpot_s
    if row.workload == "rate" and row.num_requests is not None:  # a finite run: its tokens over its wall time
        share = row.num_requests / row.replicas
        lam = share / float(finite_run_duration_s(share, lam, e2e))
    return {"ttft_s": sp.ttft_mean_s, "ttft_p50_s": sp.ttft_p50_s, "ttft_p90_s": sp.ttft_p90_s, "ttft_p99_s": sp.ttft_p99_s,
            "tpot_s": sp.tpot_s, "e2e_s": e2e, "output_tokens_per_s": lam * o,
            "total_tokens_per_s": lam * (s + o), "requests_per_s": lam}


def _figures_overload(model, hw, row: Row, dep) -> dict[str, float]:
    """A finite rate run above the replica's capacity: n/replicas requests at λ/replicas each, stepped through the
    serving model's scheduler (`serving.overload_run`: the queue that builds while they arrive and drains after);
    a replica of pp or ep > 1 as the fluid D/D/c queue on the saturated steady state (`serving.finite_overload`).
    Throughput is the run's output tokens over its makespan; TTFT, ITL and e2e statistics are over its requests
    (ITL over its tokens)."""
    s, o = row.prompt_tokens, row.output_tokens
    share = math.ceil(row.num_requests / row.replicas)
    lam = row.request_rate_per_s / row.replicas
    try:
        run = run_above_capacity(model, hw, share, lam, s, o, dep)
    except SpecError as exc:  # a run the model cannot step or that never fills the batch: still a miss of the model
        raise Unsupported(f"predicted infeasible: {exc}", infeasible=True) from None
    rate = run.achieved_requests_per_s
    figures = {"ttft_s": run.ttft_mean_s, "ttft_p50_s": run.ttft_p50_s, "ttft_p90_s": run.ttft_p90_s,
               "ttft_p99_s": run.ttft_p99_s, "tpot_s": run.itl_mean_s, "e2e_s": run.e2e_mean_s,
               "output_tokens_per_s": rate * o, "total_tokens_per_s": rate * (s + o), "requests_per_s": rate}
    if isinstance(run, OverloadRun):  # stepped: the medians of its gaps and latencies (the fluid model has means only)
        figures.update(itl_p50_s=run.itl_p50_s, e2e_p50_s=run.e2e_p50_s)
    return figures


def predicted_value(row: Row, figures: dict[str, float]) -> float:
    """The prediction in the row's published unit (the inverse of `UNITS`' factor), for the whole measured run."""
    dim, factor = UNITS[row.unit]
    m, stat = row.metric, row.statistic
    if m == "ttft":
        key = {"p50": "ttft_p50_s", "median": "ttft_p50_s", "p90": "ttft_p90_s", "p99": "ttft_p99_s"}.get(stat, "ttft_s")
        if key not in figures:
            key = "ttft_s"  # a static batch is deterministic: every statistic is the one value
        si = figures[key]
    elif m in ("tpot", "itl"):
        if stat in ("p90", "p99", "max") and row.workload != "static":
            raise Unsupported(f"{stat} {m} under load: the model gives the mean step time only")
        si = figures["itl_p50_s"] if stat in ("median", "p50") and "itl_p50_s" in figures else figures["tpot_s"]
    elif m == "user_throughput":
        si = 1 / figures["tpot_s"]
    elif m == "e2e_latency":
        if stat in ("p90", "p99", "max") and row.workload != "static":
            raise Unsupported(f"{stat} e2e latency under load: the model gives the mean only")
        si = figures["e2e_p50_s"] if stat in ("median", "p50") and "e2e_p50_s" in figures else figures["e2e_s"]
    else:
        key = {"output_throughput": "output_tokens_per_s", "total_throughput": "total_tokens_per_s",
               "request_throughput": "requests_per_s"}[m]
        si = figures[key] * row.replicas  # a replica's rate times the replicas of the run
        if dim == "tokens_rate_per_gpu":
            si /= row.num_gpus
    return si / factor


def predict_row(row: Row, load_hardware: Callable = rl.load_hardware, folder: Path = CORPUS_DIR,
                cache: dict | None = None) -> float:
    """The row's prediction in its unit. Raises `Unsupported` with the reason when it cannot be made."""
    if row.num_gpus % row.replica_gpus:
        raise Unsupported(f"{row.num_gpus} GPUs are not whole replicas of {row.replica_gpus}")
    if row.prompt_tokens is None or row.output_tokens is None:
        raise Unsupported("prompt or output length not stated")
    if row.workload == "static" and row.replicas > 1:
        raise Unsupported(f"a static batch on {row.num_gpus} GPUs in replicas of {row.replica_gpus}: how the batch splits is not stated")
    if row.workload == "offline" and row.metric not in ("output_throughput", "total_throughput", "request_throughput"):
        raise Unsupported(f"{row.metric} of an offline run")
    # everything the prediction reads from the row, the engine included (two frameworks' rows of one setup differ)
    key = (row.model, row.gpu, engine_of(row), _version(row), row.tp, row.pp, row.ep, row.weight_dtype,
           row.activation_dtype, row.kv_dtype,
           row.weight_group_size, row.workload, row.batch_size, row.concurrency, row.request_rate_per_s,
           row.num_requests, row.prompt_tokens, row.output_tokens, row.replicas, row.extra.get("lengths", "").startswith("fixed"),
           "trtllm-bench" in row.extra.get("note", ""), CLIENT_ROUNDS.get(row.source),
           BENCHMARK_KV_BLOCKS.get((row.source, row.model)), _build_dataset(row))
    if cache is not None and key in cache:
        figures = cache[key]
    else:
        try:
            model, hw = _spec(row.model, folder), _hardware(row.gpu, load_hardware)
            dep = deployment_of(row, model)
            figures = (_figures_static if row.workload == "static" else _figures_serving)(model, hw, row, dep)
        except SpecError as exc:
            figures = Unsupported(f"refused: {exc}")
        except Unsupported as exc:
            figures = exc
        except ValueError as exc:  # a pydantic ValidationError of the deployment
            figures = Unsupported(f"refused: {str(exc).splitlines()[0]}")
        if cache is not None:
            cache[key] = figures
    if isinstance(figures, Unsupported):
        raise figures
    return predicted_value(row, figures)


# ------------------------------------------------------------ the whole corpus
def run_corpus(rows: list[Row], load_hardware: Callable = rl.load_hardware, folder: Path = CORPUS_DIR) -> pd.DataFrame:
    """Every row with its prediction and error. Unsupported rows carry their reason and NaN errors."""
    cache: dict = {}
    out = []
    for r in rows:
        base = {"id": r.id, "source": r.source, "family": r.family, "headline": r.trust != "low", "gpu": r.gpu, "model": r.model,
                "precision": precision_class(r.weight_dtype, r.activation_dtype), "hardware_class": "",
                "framework": r.framework, "workload": r.workload, "metric": r.metric, "statistic": r.statistic,
                "unit": r.unit, "trust": r.trust, "tp": r.tp, "measured": r.value}
        try:
            pred = predict_row(r, load_hardware, folder, cache)
            base.update(predicted=pred, reason="", infeasible=False, hardware_class=hardware_class(load_hardware(r.gpu)))
        except Unsupported as exc:
            base.update(predicted=math.nan, reason=str(exc), infeasible=exc.infeasible)
        out.append(base)
    df = pd.DataFrame(out)
    df["error"] = df["predicted"] / df["measured"] - 1
    df["abs_pct_error"] = 100 * df["error"].abs()
    df["log_error"] = np.log(df["measured"] / df["predicted"])
    return df


def family_table(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Per family (and `by`): n predicted rows and their sources, median and p90 absolute % error, the signed
    bias (median of 100·e), and `infeasible`: measured setups the model called impossible (misses with no
    finite error)."""
    keys = ["family"] + ([by] if by else [])
    rows = []
    for k, g in df.groupby(keys, sort=False):
        k = k if isinstance(k, tuple) else (k,)
        ok = g[g["predicted"].notna()]
        bad = int(g["infeasible"].fillna(False).astype(bool).sum()) if "infeasible" in g else 0
        if not len(ok) and not bad:
            continue
        rows.append({**dict(zip(keys, k)), "n": len(ok), "sources": int(ok["source"].nunique()),
                     "median_abs_pct_error": float(ok["abs_pct_error"].median()) if len(ok) else math.nan,
                     "p90_abs_pct_error": float(ok["abs_pct_error"].quantile(0.9)) if len(ok) else math.nan,
                     "bias_pct": float(100 * ok["error"].median()) if len(ok) else math.nan, "infeasible": bad})
    table = pd.DataFrame(rows, columns=[*keys, "n", "sources", "median_abs_pct_error", "p90_abs_pct_error", "bias_pct", "infeasible"])
    order = {f: i for i, f in enumerate(FAMILIES)}
    return table.sort_values(keys, key=lambda s: s.map(order) if s.name == "family" else s).reset_index(drop=True)


def source_sensitivity(df: pd.DataFrame) -> pd.DataFrame:
    """How much of each family's figure one source carries. Per family with two or more sources:

    * `median_by_source`: the median absolute error with every source weighted equally (each row 1/n of its
      source's n rows, `_weighted_quantiles`), so a large source does not set the figure by its row count alone;
    * the source whose absence lowers the median the most (`decisive_source`; ties to the larger source), and the
      family's n / median / p90 / bias recomputed without it (`family_table` of the other rows).

    Worked case: source a with |e| 5, 10, 15 (%) and source b with |e| 80, 90: median of all five 15%; without b
    10%, without a 85%, so b is decisive and the family reads 10% without it. By source, 5, 10, 15, 80, 90 weigh
    1/3, 1/3, 1/3, 1/2, 1/2: their midpoints 1/6, 1/2, 5/6, 5/4, 7/4 rescale to 0, 4/19, 8/19, 13/19, 1, and the
    median (position 1/2 = 9.5/19) reads 15 + (9.5 - 8) / (13 - 8) × (80 - 15) = 34.5%. A family of one source has
    no row."""
    ok = df[df["predicted"].notna()]
    rows = []
    for fam, g in ok.groupby("family", sort=False):
        sources = g["source"].unique()
        if len(sources) < 2:
            continue
        best = None
        for s in sorted(sources, key=lambda s: (-int((g["source"] == s).sum()), s)):
            rest = family_table(g[g["source"] != s]).iloc[0]
            if best is None or rest["median_abs_pct_error"] < best[1]["median_abs_pct_error"] - 1e-12:
                best = (s, rest)
        s, rest = best
        weighted = _weighted_quantiles(g["abs_pct_error"].to_numpy(), g["source"].to_numpy(), [0.5])[0]
        rows.append({"family": fam, "n": len(g), "sources": len(sources),
                     "median_abs_pct_error": float(g["abs_pct_error"].median()), "median_by_source": float(weighted),
                     "decisive_source": s, "n_without": int(rest["n"]),
                     "median_without": float(rest["median_abs_pct_error"]), "p90_without": float(rest["p90_abs_pct_error"]),
                     "bias_without": float(rest["bias_pct"])})
    table = pd.DataFrame(rows, columns=["family", "n", "sources", "median_abs_pct_error", "median_by_source", "decisive_source",
                                        "n_without", "median_without", "p90_without", "bias_without"])
    order = {f: i for i, f in enumerate(FAMILIES)}
    return table.sort_values("family", key=lambda s: s.map(order)).reset_index(drop=True)


def filter_rows(rows: list[Row], source: str | None = None, gpu: str | None = None, family: str | None = None) -> list[Row]:
    """The rows of one source, GPU and/or family (comma-separated lists), each checked against the corpus."""
    def pick(rows, attr, wanted):
        if not wanted:
            return rows
        names = {w.strip() for w in wanted.split(",") if w.strip()}
        known = {getattr(r, attr) for r in rows}
        unknown = sorted(names - known)
        if unknown:
            raise SpecError(f"--{attr}", f"{', '.join(unknown)} not in the corpus; choose from {', '.join(sorted(known))}")
        return [r for r in rows if getattr(r, attr) in names]

    return pick(pick(pick(rows, "source", source), "gpu", gpu), "family", family)


# ------------------------------------------------------------ the accuracy gate
GATE_MEDIAN_POINTS = 1.0
GATE_P90_POINTS = 3.0


def gate(table: pd.DataFrame, baseline: dict) -> list[str]:
    """Families whose median absolute error worsened by more than 1 point or p90 by more than 3 points
    against the committed baseline (percentage points), each as a one-line message. Empty: the gate passes."""
    failures = []
    now = {r["family"]: r for r in table.to_dict("records")}
    for fam, base in baseline["families"].items():
        if fam not in now:
            failures.append(f"{fam}: no rows predicted now (baseline n={base['n']})")
            continue
        r = now[fam]
        if r["median_abs_pct_error"] > base["median_abs_pct_error"] + GATE_MEDIAN_POINTS + 1e-9:  # 1e-9: float noise
            failures.append(f"{fam}: median |error| {r['median_abs_pct_error']:.1f}% > baseline "
                            f"{base['median_abs_pct_error']:.1f}% + {GATE_MEDIAN_POINTS:g}")
        if r["p90_abs_pct_error"] > base["p90_abs_pct_error"] + GATE_P90_POINTS + 1e-9:
            failures.append(f"{fam}: p90 |error| {r['p90_abs_pct_error']:.1f}% > baseline "
                            f"{base['p90_abs_pct_error']:.1f}% + {GATE_P90_POINTS:g}")
        if r["infeasible"] > base.get("infeasible", 0):
            failures.append(f"{fam}: {r['infeasible']} measured setups predicted infeasible > baseline {base.get('infeasible', 0)}")
    return failures


def baseline_of(table: pd.DataFrame, df: pd.DataFrame) -> dict:
    """The committed form of a family table: per family n, median, p90 and bias; plus the row counts."""
    return {
        "rows": int(len(df)), "predicted": int(df["predicted"].notna().sum()),
        "headline_predicted": int(headline(df)["predicted"].notna().sum()),
        "families": {r["family"]: {"n": int(r["n"]), "median_abs_pct_error": round(float(r["median_abs_pct_error"]), 3),
                                   "p90_abs_pct_error": round(float(r["p90_abs_pct_error"]), 3),
                                   "bias_pct": round(float(r["bias_pct"]), 3), "infeasible": int(r["infeasible"])}
                     for r in table.to_dict("records")},
    }


# ------------------------------------------------------------ error bands
BAND_LEVEL = 0.80
BAND_MIN_ROWS_CLASS = 20  # a hardware or precision class gets its own band with at least this many rows
BAND_MIN_ROWS_FAMILY = 10  # below this a family has no band at all
BAND_MIN_SOURCES_CLASS = 3  # ... and from at least this many sources: one source's band is that source's error


def _weighted_quantiles(values: np.ndarray, sources: np.ndarray, probs) -> np.ndarray:
    """Quantiles of `values` at `probs` with every source weighted equally (each row 1/n of its source's n rows), by
    the midpoint rule on the sorted values: value k sits at the weighted position (W_<k + w_k/2) / W, the positions
    rescaled so the first is 0 and the last 1, and a quantile is read off by linear interpolation (with equal
    weights this is numpy's default linear quantile)."""
    order = np.argsort(values, kind="stable")
    x = values[order]
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    w = (1.0 / counts[inverse])[order]
    if len(x) == 1:
        return np.full(len(probs), float(x[0]))
    cum = (np.cumsum(w) - w / 2) / w.sum()  # the weighted "plotting position" of each sorted value
    cum = (cum - cum[0]) / (cum[-1] - cum[0])  # first value at 0, last at 1, as numpy's linear quantile
    return np.interp(probs, cum, x)


def _quantiles(log_errors: np.ndarray, sources: np.ndarray) -> tuple[float, float]:
    """The 10th and 90th percentiles of the log-errors with every source weighted equally (each row 1/n_source):
    the band answers "where will a new deployment's measurement fall", and a new deployment is a new source,
    not another row of the largest one."""
    lo, hi = _weighted_quantiles(log_errors, sources, [(1 - BAND_LEVEL) / 2, (1 + BAND_LEVEL) / 2])
    return float(lo), float(hi)


def _held_out_widening(log_errors: np.ndarray, sources: np.ndarray) -> float:
    """How far the in-corpus percentiles must be moved out so that they hold 80% of a NEW source's rows: a split-
    conformal correction over sources (conformalized quantiles, with leave-one-source-out in place of a held-out split).

    The percentiles [q10, q90] of all sources hold 80% of the rows they were built from, but sources differ from one
    another (engine version, harness, clocks) more than one source's rows differ among themselves, so a source that
    was not among them falls inside less often. Judge every source s by the percentiles built without it,
    [q10₋ₛ, q90₋ₛ], and score each of its rows by how far it lies outside that band:

        E_i = max(q10₋ₛ - ℓ_i, ℓ_i - q90₋ₛ)      (negative inside, by the distance to the nearer edge)

    Row i is inside the band widened by δ, [q10₋ₛ - δ, q90₋ₛ + δ], exactly when E_i <= δ. The widening δ is the 80th
    percentile of the scores, every source weighted equally: then the widened held-out bands hold 80% of the held-out
    rows, sources counted equally, which is the band's promise for a new source. The committed band is
    [q10 - δ, q90 + δ] with q10, q90 of all sources (each s has played the new source once). δ < 0 (the held-out
    sources fell inside more often than 80%) narrows the band, never below zero width. A single source cannot be
    held out against others: δ = 0, and its band says nothing about another source."""
    names = np.unique(sources)
    if len(names) < 2:
        return 0.0
    scores = np.empty(len(log_errors))
    for s in names:
        held = sources == s
        lo, hi = _quantiles(log_errors[~held], sources[~held])
        scores[held] = np.maximum(lo - log_errors[held], log_errors[held] - hi)
    lo, hi = _quantiles(log_errors, sources)
    delta = float(_weighted_quantiles(scores, sources, [BAND_LEVEL])[0])
    return max(delta, -(hi - lo) / 2)


def build_bands(df: pd.DataFrame) -> dict:
    """The 80% bands per family, and per family x hardware class / x precision class / x both where at least
    `BAND_MIN_ROWS_CLASS` rows from `BAND_MIN_SOURCES_CLASS` sources support them: the 10th and 90th percentiles of
    ln(measured / predicted) and the widening δ that makes them hold 80% of a held-out source's rows
    (`_held_out_widening`). A prediction y then has the band [y·exp(q10 - δ), y·exp(q90 + δ)] (`roofline.bands`)."""
    ok = df[df["predicted"].notna()]
    entries = {}
    for fam, g in ok.groupby("family"):
        if len(g) < BAND_MIN_ROWS_FAMILY:
            continue
        entries[fam] = _entry(g)
        for cols in (("hardware_class",), ("precision",), ("hardware_class", "precision")):
            for k, sub in g.groupby(list(cols)):
                k = k if isinstance(k, tuple) else (k,)
                if len(sub) >= BAND_MIN_ROWS_CLASS and sub["source"].nunique() >= BAND_MIN_SOURCES_CLASS:
                    entries["|".join([fam, *[f"{c}={v}" for c, v in zip(cols, k)]])] = _entry(sub)
    return entries


def _entry(g: pd.DataFrame) -> dict:
    x, s = g["log_error"].to_numpy(), g["source"].to_numpy()
    lo, hi = _quantiles(x, s)
    return {"log_q10": round(lo, 6), "log_q90": round(hi, 6), "log_widening": round(_held_out_widening(x, s), 6),
            "n": int(len(g)), "sources": int(g["source"].nunique())}


def cross_validated_coverage(df: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-source-out: bands built without a source (their widening δ included, from the remaining sources
    alone), checked on that source's rows. Per family the held-out sources and rows, the fraction of rows whose
    measured value lies inside the band (`coverage`), and the same with every source weighted equally
    (`coverage_by_source`: the mean over held-out sources of each one's fraction inside; over all families, the mean
    over family x source cells), which is what the band promises: 80% for a new source, however many rows it
    publishes. Target 75-85%."""
    ok = df[df["predicted"].notna()]
    hits = []
    for src in ok["source"].unique():
        train, test = ok[ok["source"] != src], ok[ok["source"] == src]
        entries = build_bands(train)
        for r in test.to_dict("records"):
            key = entry_key(entries, r["family"], r["hardware_class"], r["precision"])
            if key is None:
                continue
            lo, hi = log_limits(entries[key])
            hits.append({"family": r["family"], "source": src, "inside": lo <= r["log_error"] <= hi})
    h = pd.DataFrame(hits, columns=["family", "source", "inside"])

    def summary(g: pd.DataFrame) -> dict:
        by_source = g.groupby(["family", "source"])["inside"].mean()
        return {"held_out_sources": g["source"].nunique(), "held_out_rows": len(g),
                "coverage": float(g["inside"].mean()) if len(g) else math.nan,
                "coverage_by_source": float(by_source.mean()) if len(g) else math.nan}

    rows = [{"family": fam, **summary(g)} for fam, g in h.groupby("family")] + [{"family": "all", **summary(h)}]
    return pd.DataFrame(rows, columns=["family", "held_out_sources", "held_out_rows", "coverage", "coverage_by_source"])


# ------------------------------------------------------------ report
def scatter_svg(df: pd.DataFrame, panel: int = 250, cols: int = 3) -> str:
    """Predicted vs measured on log-log axes, one panel per family, in SI units (seconds for times, tokens/s or
    requests/s for rates as published). The diagonal is exact; dashed lines mark ±25% and a factor of 2. A point
    beyond a panel's range sits on its edge. Low-trust rows are hollow."""
    ok = df[df["predicted"].notna()]
    fams = [f for f in FAMILIES if f in set(ok["family"])]
    rows = max(1, math.ceil(len(fams) / cols))
    pad_l, pad_b, pad_t, gap = 46, 34, 22, 18
    w, h = cols * (panel + pad_l + gap), rows * (panel + pad_t + pad_b + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, fam in enumerate(fams):
        g = ok[ok["family"] == fam]
        si = np.array([UNITS[u][1] for u in g["unit"]])
        meas, pred = g["measured"].to_numpy() * si, g["predicted"].to_numpy() * si
        both = np.log10(np.concatenate([meas, pred]))
        lo, hi = math.floor(np.quantile(both, 0.01)), math.ceil(np.quantile(both, 0.99))
        hi = hi if hi > lo else lo + 1
        x0, y0 = (i % cols) * (panel + pad_l + gap) + pad_l, (i // cols) * (panel + pad_t + pad_b + gap) + pad_t
        to_x = lambda v: x0 + (np.clip(np.log10(v), lo, hi) - lo) / (hi - lo) * panel  # noqa: E731
        to_y = lambda v: y0 + panel - (np.clip(np.log10(v), lo, hi) - lo) / (hi - lo) * panel  # noqa: E731
        unit = "s" if fam.split("_")[0] in ("ttft", "tpot", "e2e") else "tokens/s or requests/s"
        parts.append(f'<rect x="{x0}" y="{y0}" width="{panel}" height="{panel}" fill="none" stroke="#888"/>')
        parts.append(f'<text x="{x0 + panel / 2}" y="{y0 - 6}" text-anchor="middle" font-weight="bold">'
                     f'{FAMILY_TITLES[fam]} (n={len(g)})</text>')
        for d in range(lo, hi + 1):
            tx, ty = x0 + (d - lo) / (hi - lo) * panel, y0 + panel - (d - lo) / (hi - lo) * panel
            parts.append(f'<text x="{tx:.1f}" y="{y0 + panel + 12}" text-anchor="middle">1e{d}</text>'
                         f'<text x="{x0 - 4}" y="{ty + 3:.1f}" text-anchor="end">1e{d}</text>')
        for k, dash in ((1.0, ""), (1.25, "3 3"), (0.8, "3 3"), (2.0, "6 3"), (0.5, "6 3")):
            a, b = 10.0 ** lo, 10.0 ** hi
            parts.append(f'<line x1="{to_x(a):.1f}" y1="{to_y(a * k):.1f}" x2="{to_x(b / k if k > 1 else b):.1f}" '
                         f'y2="{to_y(b if k > 1 else b * k):.1f}" stroke="{"#444" if not dash else "#bbb"}" stroke-dasharray="{dash}"/>')
        for m_, p_, trusted in zip(meas, pred, g["headline"]):
            fill = 'fill="#1f77b4" fill-opacity="0.55"' if trusted else 'fill="none" stroke="#d62728"'
            parts.append(f'<circle cx="{to_x(m_):.1f}" cy="{to_y(p_):.1f}" r="2.5" {fill}/>')
        parts.append(f'<text x="{x0 + panel / 2}" y="{y0 + panel + 26}" text-anchor="middle">measured ({unit})</text>')
        parts.append(f'<text x="{x0 - 34}" y="{y0 + panel / 2}" transform="rotate(-90 {x0 - 34} {y0 + panel / 2})" '
                     'text-anchor="middle">predicted</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _md_table(df: pd.DataFrame, pct_cols=("median_abs_pct_error", "p90_abs_pct_error", "bias_pct")) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.to_dict("records"):
        cells = []
        for c in cols:
            v = r[c]
            cells.append("n/a" if isinstance(v, float) and math.isnan(v) else f"{v:+.1f}%" if c.startswith("bias") else f"{v:.1f}%" if c in pct_cols
                         else f"{100 * v:.0f}%" if c.startswith("coverage") else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_text(table: pd.DataFrame, df: pd.DataFrame, seconds: float) -> str:
    """The per-family table (headline rows) as the CLI prints it."""
    n_ok = int(df["predicted"].notna().sum())
    n_inf = int(df["infeasible"].fillna(False).astype(bool).sum())
    head = (f"published corpus: {len(df)} rows from {df['source'].nunique()} sources; {n_ok} predicted, {n_inf} predicted "
            f"infeasible though measured, {len(df) - n_ok - n_inf} not predictable from what was published ({seconds:.1f} s)\n"
            f"table: the {int(headline(df)['predicted'].notna().sum())} predicted rows of trust high or medium "
            f"({int((~df['headline'] & df['predicted'].notna()).sum())} low-trust rows are reported apart)")
    lines = [head, "", f"{'family':<36} {'n':>5} {'sources':>7} {'median |err|':>12} {'p90 |err|':>9} {'bias':>7} {'infeasible':>10}"]
    for r in table.to_dict("records"):
        lines.append(f"{FAMILY_TITLES.get(r['family'], r['family']):<36} {r['n']:>5} {r['sources']:>7} "
                     f"{r['median_abs_pct_error']:>11.1f}% {r['p90_abs_pct_error']:>8.1f}% {r['bias_pct']:>+6.1f}% {r['infeasible']:>10}")
    lines.append("")
    lines.append("error = predicted / measured - 1; bias = its median (negative: times predicted too short, or "
                 "throughputs too low); infeasible = measured setups the model calls out of memory or unstable")
    return "\n".join(lines)


def write_report(df: pd.DataFrame, out: Path, command: str, stamp: str) -> list[Path]:
    """accuracy.md (family table, breakdowns, coverage, unsupported rows), predictions.csv and scatter.svg."""
    out.mkdir(parents=True, exist_ok=True)
    table = family_table(headline(df))
    cov = cross_validated_coverage(headline(df))
    parts = [f"# Accuracy on the published corpus\n\n{stamp}\n\nReproduce: `{command}`\n",
             "Error = predicted / measured - 1 in the published unit; |error| in percent; bias = median error "
             "(negative = predicted times too short or throughputs too low). Nothing in the predictor is fitted to "
             "these rows.\n", "## Per family\n", _md_table(table), "\n![predicted vs measured](scatter.svg)\n\nPredicted vs measured per family, log-log; the diagonal is exact, dashed lines "
             "mark ±25% and a factor of 2; hollow red points are low-trust rows (not in the figures).\n"]
    parts += ["## How much one source carries\n",
              "Per family of two or more sources: the median with every source weighted equally (`median_by_source`), "
              "and the source whose absence lowers the median the most, with the family's figures without it "
              "(`corpus.source_sensitivity`). A family whose figure falls far without one source misses mostly there: "
              "that source's own section says what it lacks.\n",
              _md_table(source_sensitivity(headline(df)),
                        pct_cols=("median_abs_pct_error", "median_by_source", "median_without", "p90_without"))]
    for by, title in (("source", "source"), ("gpu", "GPU"), ("precision", "precision class"), ("model", "model"),
                      ("framework", "engine")):
        parts += [f"## By {title}\n", _md_table(family_table(headline(df), by))]
    parts += ["## Low-trust rows (setup partly unknown; not in the figures above)\n", _md_table(family_table(df[~df["headline"]]))]
    parts += ["## 80% error bands: leave-one-source-out coverage\n",
              "Bands built from every other source, checked on the held-out source's rows: the fraction of rows inside, "
              "and the same with every source weighted equally (coverage_by_source, the bands' promise for a new source; "
              "target 75-85%).\n",
              _md_table(cov)]
    bad = df[df["predicted"].isna()]
    parts += [f"## Rows not predicted ({len(bad)})\n"]
    if len(bad):
        reasons = bad.groupby("reason").agg(rows=("id", "count"), ids=("id", lambda s: ", ".join(list(s)[:6]) + (" ..." if len(s) > 6 else "")))
        parts.append(_md_table(reasons.reset_index().sort_values("rows", ascending=False)))
    paths = [out / "accuracy.md", out / "predictions.csv", out / "scatter.svg"]
    paths[0].write_text("\n\n".join(p.strip("\n") for p in parts) + "\n", encoding="utf-8")
    df.to_csv(paths[1], index=False, float_format="%.6g")
    paths[2].write_text(scatter_svg(df), encoding="utf-8")
    return paths


def run(source: str | None = None, gpu: str | None = None, family: str | None = None, folder: Path = CORPUS_DIR,
        load_hardware: Callable = rl.load_hardware) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Load, filter and run the corpus: (rows with predictions, family table, seconds)."""
    t = time.perf_counter()
    rows = filter_rows(load_corpus(folder), source, gpu, family)
    df = run_corpus(rows, load_hardware, folder)
    return df, family_table(headline(df)), time.perf_counter() - t


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the headline figures, the gate and the bands use: trust high or medium. Low-trust rows (setup
    partly unknown) are predicted and reported apart, never mixed in."""
    return df[df["headline"]]


def write_bands(df: pd.DataFrame, path: Path) -> dict:
    """Recompute the bands from the corpus and write roofline's band file (committed; never hand-set)."""
    rows = headline(df)
    doc = {"level": BAND_LEVEL, "built_from": f"{int(rows['predicted'].notna().sum())} published rows of trust high or medium, "
                                              f"{rows['source'].nunique()} sources (calibrate/published)",
           "entries": build_bands(rows)}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return doc
