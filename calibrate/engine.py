"""What the measured engine does, so that a prediction is compared with the same engine (like with like).

The roofline counts the kernels of an ideal engine (`roofline.ops`): per Llama layer two fused
norms, four GEMMs, RoPE + KV write and attention, the activation: 9 launches, each paid at
`kernel_overhead_s`, plus the embedding, the final norm and the LM head. A real engine runs
more kernels (unfused elementwise ops, quantize kernels, the argmax) and pays a different cost
per kernel depending on how it launches them: about 4-6 us eagerly from Python, about 1 us
replayed from a CUDA graph. `ENGINES` below describes each engine `roofline validate`
measures (how it launches prefill and decode, which attention kernels run);
the device run counts each one's kernels per step (`count_kernels`) and `adjust` replaces the
roofline's overhead term by the engine's:

    work = T_roofline - Σ_ops launches · t_k              (the prediction without its overhead term)
    graph-replayed pass:  T_engine = work + K(L) · t_graph
    eagerly launched pass: T_engine = max(work, K(L) · t_eager)

where Σ launches · t_k is the overhead the prediction already holds (read from its operator
table, so whatever cost per kernel it used; the overhead term is additive per operator,
t = max(compute, memory, comm) + overhead, so removing it is exact) and K(L) = K_rest + L · K_layer
are the engine's counted kernels per pass of an L-layer model. A graph replays its kernels back to
back on the GPU, each paying the calibration's graph cost t_graph in series. Eager launches are
asynchronous: the CPU issues kernel i + 1 while the GPU runs kernel i, so a pass takes the longer
of the GPU's work and the CPU's K · t_eager (t_eager, the calibration's eager cost, is measured as
the wall-clock rate of a chain of tiny launches, i.e. the CPU's issue rate): launch-bound for small
decode steps, GPU-bound for large prefills. Only launches change: bytes and FLOPs stay the
roofline's, so any remaining error is physics.

Counting: on CUDA, `torch.profiler` device events (kernels, memsets, memcpys) of one pass; on
the CPU, the aten operators that do work (views excluded) seen by a `TorchDispatchMode`. K_layer
is the difference between the counts of a 2-layer and a 1-layer copy of the model, K_rest what a
1-layer copy runs besides its layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


# The engines `roofline validate` measures, described so that a prediction is made for the same engine. The
# device run adds each one's counted kernels (results folder: engines.json). Later these become roofline/
# engine profiles (issue 12, item 3); until then `adjust` swaps the roofline's overhead term for the engine's.
#   decode_launch / prefill_launch: cuda_graph (a step is one graph replay; per-kernel cost = the calibration's
#       kernel_overhead_graph_s) or eager (every kernel launched from Python; kernel_overhead_s)
#   attention_prefill / attention_decode: the kernels that run (the device environment's attention_backends
#       lists what the profiler saw for each path)
#   grouped_kv_copies: a decode step copies the grouped K/V cache to H_q heads (the roofline assumes not)
#   kv_read_tokens: what a decode step reads of the cache (the roofline assumes the context)
ENGINES: dict[str, dict] = {
    "fast": {
        "label": "reference (gpt-fast style): static KV cache, fused QKV and gate-up, decode replayed from CUDA graphs",
        "code": "calibrate/fast.py",
        "decode_launch": "cuda_graph",  # one torch.cuda.CUDAGraph per KV bucket, explicit capture; CPU: eager, labelled
        "prefill_launch": "eager",  # prefill shapes change per workload: eager, as gpt-fast's prefill
        "attention_prefill": "SDPA enable_gqa=True inside sdpa_kernel(FLASH_ATTENTION): flash or an error",
        "attention_decode": "grouped: baddbmm (mask and 1/sqrt(d) fused) + softmax + bmm on the cached K/V, no copies",
        "grouped_kv_copies": False,
        "kv_read_tokens": "context rounded up to kv_bucket_tokens: at most bucket - 1 masked tokens more",
        "kv_bucket_tokens": 32,
        "fusion": "no inductor (its compile time does not fit a 9-minute device run): torch's rms_norm, RoPE in 3 "
                  "kernels, SiLU-mul in 2, each FP8 GEMM adds a scale-clamp-cast of its input (3)",
    },
    "hf": {
        "label": "eager HF: transformers LlamaForCausalLM (SDPA), StaticCache, no graphs, no compile",
        "code": "calibrate/hf.py",
        "decode_launch": "eager",
        "prefill_launch": "eager",
        "attention_prefill": "SDPA with an explicit mask (a mask rules out flash: efficient or math)",
        "attention_decode": "SDPA with a mask over the whole static cache",
        "grouped_kv_copies": True,  # repeat_kv expands K/V to H_q heads every step
        "kv_read_tokens": "the whole static cache (prompt + output), masked",
    },
    "own": {
        "label": "eager own: calibrate/llama.py, fused projections, repeat_interleave of K/V, no graphs",
        "code": "calibrate/llama.py",
        "decode_launch": "eager",
        "prefill_launch": "eager",
        "attention_prefill": "SDPA on K/V repeated to H_q heads",
        "attention_decode": "SDPA on K/V repeated to H_q heads",
        "grouped_kv_copies": True,
        "kv_read_tokens": "the context",
    },
}

# aten operators that launch nothing: they only re-describe a tensor
VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "slice", "select", "split",
    "split_with_sizes", "chunk", "unsqueeze", "squeeze", "as_strided", "alias", "detach", "view_as_real",
    "view_as_complex", "_reshape_alias", "unbind", "narrow", "lift_fresh", "empty", "empty_like", "empty_strided",
    "_to_copy_noop", "numpy_T", "unflatten", "flatten", "contiguous_noop", "_local_scalar_dense", "is_same_size",
})


@dataclass(frozen=True)
class KernelCount:
    """Kernels per pass of an L-layer model: rest + L · per_layer, counted on `device`."""

    per_layer: int
    rest: int
    device: str
    method: str  # "cuda profiler kernels" or "cpu aten dispatch"

    def total(self, layers: int) -> int:
        return self.rest + layers * self.per_layer

    def as_dict(self) -> dict:
        return asdict(self)


def _count_cpu(fn) -> int:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__.rstrip("_")
            if name not in VIEW_OPS:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Count():
        fn()
    return Count.n


def _count_cuda(fn) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if getattr(e.device_type, "name", str(e.device_type)).upper().endswith("CUDA"))


def count_pass(fn, device: str) -> int:
    """Kernels one call of `fn` runs (device events on CUDA, working aten ops on the CPU)."""
    return _count_cuda(fn) if device == "cuda" else _count_cpu(fn)


def count_kernels(make_pass, device: str) -> tuple[KernelCount, KernelCount]:
    """(prefill, decode) counts from `make_pass(layers) -> ((setup, prefill_fn), (setup, decode_fn))` at 1 and 2 layers.

    Before each call its `setup` runs uncounted (a cache reset, the prefill a decode step follows); each fn
    runs once uncounted first (lazy initialisation, library handles), then once counted.
    """
    counts = {}
    for layers in (1, 2):
        phases = make_pass(layers)
        got = []
        for setup, fn in phases:
            for counted in (False, True):
                if setup is not None:
                    setup()
                if counted:
                    got.append(count_pass(fn, device))
                else:
                    fn()
        counts[layers] = got
    method = "cuda profiler device events" if device == "cuda" else "cpu aten ops dispatched (views excluded)"
    out = []
    for j in (0, 1):
        per_layer = counts[2][j] - counts[1][j]
        out.append(KernelCount(per_layer=per_layer, rest=counts[1][j] - per_layer, device=device, method=method))
    return out[0], out[1]


def roofline_launches(pred) -> dict:
    """The launches per pass and the overhead seconds per pass that a prediction holds (prefill, one decode step)."""
    ops = pred.operators
    out = {}
    for phase in ("prefill", "decode"):
        rows = ops[ops["phase"] == phase]
        out[phase] = (float(rows["launches"].sum()), float(rows["overhead_s"].sum()))
    return out


def adjust(pred, layers: int, engine: dict, prefill: KernelCount, decode: KernelCount, eager_s: float,
           graph_s: float | None) -> dict:
    """TTFT and TPOT of `pred` with its overhead term replaced by the engine's (module docstring), and the terms."""
    held = roofline_launches(pred)
    k_pre, k_dec = prefill.total(layers), decode.total(layers)

    def phase(total_s, held_s, kernels, how):
        work = total_s - held_s
        if how == "cuda_graph" and graph_s is not None:
            return work + kernels * graph_s, graph_s
        return max(work, kernels * eager_s), eager_s  # eager, or a graph whose replay cost was not measured

    ttft, t_prefill = phase(pred.ttft_s, held["prefill"][1], k_pre, engine["prefill_launch"])
    tpot, t_decode = phase(pred.tpot_s, held["decode"][1], k_dec, engine["decode_launch"])
    steps = max(pred.workload.output_tokens - 1, 0)
    tput = pred.workload.batch_size * pred.workload.output_tokens / (ttft + steps * tpot)
    return {"ttft_s": ttft, "tpot_s": tpot if pred.workload.output_tokens > 1 else None, "output_tokens_per_s": tput,
            "engine_prefill_kernels": k_pre, "engine_decode_kernels": k_dec,
            "roofline_prefill_launches": held["prefill"][0], "roofline_decode_launches": held["decode"][0],
            "per_kernel_decode_s": t_decode, "per_kernel_prefill_s": t_prefill}
