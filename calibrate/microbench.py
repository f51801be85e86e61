"""The microbenchmarks: HBM bandwidth, GEMMs per dtype, attention, launch overhead, all-reduce.

Each benchmark is a generator of self-describing rows (one per measured point): what was
run (kernel, shape, dtype), the bytes or FLOPs it moves or computes, the median, 10th and
90th percentile times, every raw sample, and a `status` (`ok`, `oom`, `skipped`, `error`)
with a `reason` when not ok. An out-of-memory shape or an unsupported dtype is a row, not a
crash: the rows measured so far are kept. Sizes come from `Grid`: `Grid.full()` for a GPU,
`Grid.quick()` for the CPU and tests (tiny sizes, same code paths).

What each one measures (counting conventions match roofline/ops.py):

* `bandwidth_copy` / `_read` / `_write`: `dst.copy_(src)` moves 2·S bytes (read S, write S);
  `src.sum()` reads S; `dst.fill_(1)` writes S; S from 1 MiB (inside L2) to 8 GiB.
* `gemm_<dtype>`: y = x · Wᵀ, x of M x K, W of N x K: 2·M·N·K FLOPs, for M from 1 to 8,192
  tokens and the N x K of the shipped Llama-3.2-1B/3B and Llama-3.1-8B/70B projections, MLPs and LM head.
  tf32/bf16/fp16 through `torch.nn.functional.linear`; fp8 (e4m3) through `torch._scaled_mm`
  with per-tensor scales and fast accumulation (compute capability >= 8.9, M, N, K multiples of 16: M is padded and
  the padded M is recorded); int8 through `torch._int_mm` (M > 16: padded likewise).
* `attention_prefill`: causal `scaled_dot_product_attention`, MHA and GQA, head dim 128,
  S(S+1)/2 (query, key) pairs per head at 4·d FLOPs each (2·d for QKᵀ, 2·d for PV).
* `attention_decode`: one query per sequence against a KV cache of L tokens: reads
  2·B·H_kv·L·d elements of K and V.
* `launch_overhead`: a chain of 200 one-element adds, timed by wall clock (the launch rate
  the CPU sustains), eagerly and replayed from one CUDA graph.
* `allreduce`: NCCL ring all-reduce bus bandwidth over sizes, one process per GPU; skipped,
  with the reason, on one GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .timing import Samples, Timer

TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def _model_shapes(ids: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(label, N, K) of every GEMM weight of the given shipped models (QKV, O, MLP up/down, LM head)."""
    from roofline.registry import load_model

    shapes, seen = [], set()
    for mid in ids:
        spec = load_model(mid)
        mats = [*spec.attention_matrices(), *spec.mlp_matrices(False)]
        for m in mats:
            if (m.n, m.k) not in seen:
                seen.add((m.n, m.k))
                shapes.append((f"{mid}:{m.name}", m.n, m.k))
        if (spec.vocab_size, spec.hidden_size) not in seen:
            seen.add((spec.vocab_size, spec.hidden_size))
            shapes.append((f"{mid}:lm_head", spec.vocab_size, spec.hidden_size))
    return shapes


# The models whose projections (QKV, O, gate+up, down, LM head) the full GEMM grid measures: the 1B and 3B
# shapes (N·K from 4.2e6) as well as the 8B and 70B ones (to 1.1e9), so validation's small models are looked up
# on measured cells, not extrapolated.
GEMM_MODELS = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b")


@dataclass(frozen=True)
class Grid:
    """The sizes every benchmark sweeps. `full()` is sized to finish in minutes on an H100 (see README)."""

    bandwidth_bytes: tuple[int, ...]
    gemm_dtypes: tuple[str, ...]
    gemm_m: tuple[int, ...]
    gemm_shapes: tuple[tuple[str, int, int], ...]
    attn_heads: tuple[tuple[int, int], ...]  # (query heads, KV heads)
    attn_head_dim: int
    attn_prefill_seq: tuple[int, ...]
    attn_prefill_tokens: int  # batch = tokens // seq
    attn_decode_batch: int
    attn_decode_ctx: tuple[int, ...]
    launch_chain: int
    allreduce_bytes: tuple[int, ...]
    activation_dtype: str
    quick: bool = False
    name: str = field(default="full")

    @classmethod
    def full(cls) -> "Grid":
        return cls(
            bandwidth_bytes=tuple(2**p for p in range(20, 34)),  # 1 MiB .. 8 GiB, 14 sizes
            gemm_dtypes=("bf16", "fp16", "tf32", "fp8", "int8"),
            gemm_m=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
            gemm_shapes=tuple(_model_shapes(GEMM_MODELS)),
            attn_heads=((32, 32), (32, 8), (64, 8)),
            attn_head_dim=128,
            attn_prefill_seq=(512, 1024, 2048, 4096, 8192, 16384),
            attn_prefill_tokens=16384,
            attn_decode_batch=8,
            attn_decode_ctx=(512, 1024, 2048, 4096, 8192, 16384, 32768),
            launch_chain=200,
            allreduce_bytes=tuple(2**p for p in range(16, 31, 2)),  # 64 KiB .. 1 GiB
            activation_dtype="bf16",
            name="full",
        )

    @classmethod
    def quick(cls, device: str = "cpu") -> "Grid":
        """Tiny sizes: the same code paths in seconds (CPU tests, a GPU smoke test)."""
        return cls(
            bandwidth_bytes=tuple(2**p for p in range(12, 21, 2)),  # 4 KiB .. 1 MiB
            gemm_dtypes=("fp32", "bf16") if device == "cpu" else ("bf16", "fp8", "int8"),
            gemm_m=(1, 4, 16, 64),
            gemm_shapes=(("tiny:qkv_proj", 128, 64), ("tiny:mlp_up", 256, 64), ("tiny:mlp_down", 64, 128)),
            attn_heads=((4, 4), (4, 2)),
            attn_head_dim=16,
            attn_prefill_seq=(16, 32, 64),
            attn_prefill_tokens=64,
            attn_decode_batch=2,
            attn_decode_ctx=(16, 64, 256),
            launch_chain=50,
            allreduce_bytes=(2**12, 2**16),
            activation_dtype="fp32" if device == "cpu" else "bf16",
            quick=True,
            name="quick",
        )


@dataclass
class Context:
    """What a benchmark needs: torch, the device, a timer and the grid."""

    torch: object
    device: str
    timer: Timer
    grid: Grid
    compute_capability: tuple[int, int] | None = None
    gpu_count: int = 1


def _row(base: dict, s: Samples, amount_key: str | None = None, amount: float | None = None) -> dict:
    row = {**base, "status": "ok", **s.as_dict()}
    if amount_key:
        row[amount_key] = amount
        rate = "bytes_per_s" if amount_key == "bytes" else "flops_per_s"
        row[rate] = amount / s.median_s if s.median_s > 0 else None
    return row


def _is_oom(exc: BaseException) -> bool:
    return exc.__class__.__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _guarded(ctx: Context, base: dict, measure: Callable[[], dict]) -> dict:
    """Run one point; an out-of-memory shape or a kernel error becomes a row with the reason."""
    try:
        return measure()
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        if ctx.device == "cuda":
            ctx.torch.cuda.empty_cache()
        status = "oom" if _is_oom(exc) else "error"
        return {**base, "status": status, "reason": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"}


# ------------------------------------------------------------ HBM bandwidth
def _bandwidth(ctx: Context, kernel: str) -> Iterator[dict]:
    torch = ctx.torch
    for size in ctx.grid.bandwidth_bytes:
        base = {"kernel": kernel, "size_bytes": size}
        moved = 2 * size if kernel == "copy" else size

        def measure(size=size, moved=moved, base=base):
            n = size // 4
            src = torch.ones(n, dtype=torch.float32, device=ctx.device)
            dst = torch.empty_like(src) if kernel != "read" else None
            fn = {"copy": lambda: dst.copy_(src), "read": lambda: src.sum(), "write": lambda: dst.fill_(1.0)}[kernel]
            s = ctx.timer.time(fn)
            del src, dst
            return _row(base, s, "bytes", moved)

        yield _guarded(ctx, base, measure)


def bandwidth_copy(ctx: Context) -> Iterator[dict]:
    yield from _bandwidth(ctx, "copy")


def bandwidth_read(ctx: Context) -> Iterator[dict]:
    yield from _bandwidth(ctx, "read")


def bandwidth_write(ctx: Context) -> Iterator[dict]:
    yield from _bandwidth(ctx, "write")


# ------------------------------------------------------------ GEMM
def gemm_support(ctx: Context, dtype: str) -> str:
    """'' when `dtype` GEMMs can run here, else the reason they cannot."""
    if dtype in ("fp8", "int8") and ctx.device != "cuda":
        return f"{dtype} GEMMs are measured on CUDA only (torch._scaled_mm / torch._int_mm)"
    if dtype == "tf32" and ctx.device != "cuda":
        return "tf32 is a tensor-core mode of CUDA GPUs"
    if dtype == "fp8":
        cc = ctx.compute_capability or (0, 0)
        if cc < (8, 9):
            return f"fp8 needs compute capability >= 8.9 (Ada/Hopper); this device is {cc[0]}.{cc[1]}"
        if not hasattr(ctx.torch, "_scaled_mm"):
            return "this torch has no torch._scaled_mm"
    if dtype == "int8" and not hasattr(ctx.torch, "_int_mm"):
        return "this torch has no torch._int_mm"
    return ""


def _gemm_fn(ctx: Context, dtype: str, m: int, n: int, k: int):
    """(callable, rows actually run) for y = x · Wᵀ of M x K by N x K in `dtype`."""
    torch, dev = ctx.torch, ctx.device
    if dtype == "fp8":
        m_run = max(16, math.ceil(m / 16) * 16)  # _scaled_mm needs multiples of 16
        a = torch.randn(m_run, k, device=dev).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev, dtype=torch.float32)
        # fast accumulation (use_fast_accum: the tensor cores' own fp8 accumulation, no periodic promotion to
        # fp32), as inference engines run FP8 GEMMs
        return (lambda: torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                         use_fast_accum=True)), m_run
    if dtype == "int8":
        m_run = max(32, math.ceil(m / 8) * 8)  # _int_mm needs M > 16 and multiples of 8
        a = torch.randint(-8, 8, (m_run, k), device=dev, dtype=torch.int8)
        w = torch.randint(-8, 8, (n, k), device=dev, dtype=torch.int8)
        return (lambda: torch._int_mm(a, w.t())), m_run
    tdt = getattr(torch, TORCH_DTYPES[dtype])
    a = torch.randn(m, k, device=dev, dtype=tdt)
    w = torch.randn(n, k, device=dev, dtype=tdt)
    lin = torch.nn.functional.linear
    return (lambda: lin(a, w)), m


def gemm(ctx: Context, dtype: str) -> Iterator[dict]:
    torch = ctx.torch
    reason = gemm_support(ctx, dtype)
    if reason:
        yield {"kernel": "gemm", "dtype": dtype, "status": "skipped", "reason": reason}
        return
    tf32_before = torch.backends.cuda.matmul.allow_tf32 if ctx.device == "cuda" else None
    if ctx.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        for label, n, k in ctx.grid.gemm_shapes:
            for m in ctx.grid.gemm_m:
                base = {"kernel": "gemm", "dtype": dtype, "shape": label, "m": m, "n": n, "k": k}

                def measure(m=m, n=n, k=k, base=base):
                    fn, m_run = _gemm_fn(ctx, dtype, m, n, k)
                    s = ctx.timer.time(fn)
                    row = _row({**base, "m_run": m_run}, s, "flops", 2.0 * m * n * k)
                    return row

                yield _guarded(ctx, base, measure)
    finally:
        if ctx.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32_before


def _gemm_bench(dtype: str):
    def bench(ctx: Context) -> Iterator[dict]:
        yield from gemm(ctx, dtype)
    bench.__name__ = f"gemm_{dtype}"
    return bench


# ------------------------------------------------------------ attention
def _sdpa(torch, q, k, v, causal: bool):
    hq, hkv = q.shape[1], k.shape[1]
    if hq != hkv:
        try:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        except TypeError:  # torch < 2.5: no enable_gqa
            rep = hq // hkv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def attention_prefill(ctx: Context) -> Iterator[dict]:
    torch, g = ctx.torch, ctx.grid
    tdt = getattr(torch, TORCH_DTYPES[g.activation_dtype])
    d = g.attn_head_dim
    for hq, hkv in g.attn_heads:
        for s_len in g.attn_prefill_seq:
            b = max(1, g.attn_prefill_tokens // s_len)
            pairs = s_len * (s_len + 1) / 2
            flops = b * hq * pairs * 4 * d
            base = {"kernel": "attention_prefill", "dtype": g.activation_dtype, "batch": b, "seq": s_len,
                    "q_heads": hq, "kv_heads": hkv, "head_dim": d}

            def measure(b=b, s_len=s_len, hq=hq, hkv=hkv, flops=flops, base=base):
                q = torch.randn(b, hq, s_len, d, device=ctx.device, dtype=tdt)
                k = torch.randn(b, hkv, s_len, d, device=ctx.device, dtype=tdt)
                v = torch.randn(b, hkv, s_len, d, device=ctx.device, dtype=tdt)
                s = ctx.timer.time(lambda: _sdpa(torch, q, k, v, True))
                return _row(base, s, "flops", flops)

            yield _guarded(ctx, base, measure)


def attention_decode(ctx: Context) -> Iterator[dict]:
    torch, g = ctx.torch, ctx.grid
    tdt = getattr(torch, TORCH_DTYPES[g.activation_dtype])
    ab = BYTES_PER_ELEMENT[g.activation_dtype]
    d, b = g.attn_head_dim, g.attn_decode_batch
    for hq, hkv in g.attn_heads:
        for ctx_len in g.attn_decode_ctx:
            moved = ab * (2 * b * hkv * ctx_len * d + 2 * b * hq * d)  # K and V read, q read, o written
            base = {"kernel": "attention_decode", "dtype": g.activation_dtype, "batch": b, "context": ctx_len,
                    "q_heads": hq, "kv_heads": hkv, "head_dim": d, "flops": b * hq * ctx_len * 4.0 * d}

            def measure(ctx_len=ctx_len, hq=hq, hkv=hkv, moved=moved, base=base):
                q = torch.randn(b, hq, 1, d, device=ctx.device, dtype=tdt)
                k = torch.randn(b, hkv, ctx_len, d, device=ctx.device, dtype=tdt)
                v = torch.randn(b, hkv, ctx_len, d, device=ctx.device, dtype=tdt)
                s = ctx.timer.time(lambda: _sdpa(torch, q, k, v, False))
                return _row(base, s, "bytes", moved)

            yield _guarded(ctx, base, measure)


# ------------------------------------------------------------ launch overhead
def launch_overhead(ctx: Context) -> Iterator[dict]:
    """Seconds per kernel of a chain of tiny kernels: the CPU launch cost (eager) and the graph replay cost."""
    torch, n = ctx.torch, ctx.grid.launch_chain
    x = torch.zeros(1, device=ctx.device)

    def chain():
        for _ in range(n):
            x.add_(1.0)

    def wall(fn, reps=20):
        out = []
        for _ in range(3):
            fn()
        ctx.timer.synchronize()
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            fn()
            ctx.timer.synchronize()
            out.append((time.perf_counter_ns() - t0) * 1e-9)
        return Samples(tuple(out))

    s = wall(chain)
    yield {**_row({"kernel": "launch", "mode": "eager", "kernels": n}, s), "per_kernel_s": s.median_s / n}
    if ctx.device != "cuda":
        yield {"kernel": "launch", "mode": "cuda_graph", "status": "skipped", "reason": "CUDA graphs need a CUDA device"}
        return

    def graph_row():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            chain()  # warm-up on a side stream, as torch.cuda.graphs requires
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            chain()
        sg = wall(graph.replay)
        return {**_row({"kernel": "launch", "mode": "cuda_graph", "kernels": n}, sg), "per_kernel_s": sg.median_s / n}

    yield _guarded(ctx, {"kernel": "launch", "mode": "cuda_graph", "kernels": n}, graph_row)


# ------------------------------------------------------------ all-reduce
def _allreduce_worker(rank: int, world: int, sizes: tuple[int, ...], port: int, out_path: str) -> None:  # pragma: no cover - GPU only
    import json

    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rows = []
    for size in sizes:
        x = torch.ones(size // 2, dtype=torch.bfloat16, device="cuda")
        for _ in range(5):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(20):
            dist.barrier()
            t0 = time.perf_counter_ns()
            dist.all_reduce(x)
            torch.cuda.synchronize()
            times.append((time.perf_counter_ns() - t0) * 1e-9)
        s = Samples(tuple(times))
        busbw = 2 * (world - 1) / world * size / s.median_s  # nccl-tests bus bandwidth
        rows.append({**_row({"kernel": "allreduce", "gpus": world, "size_bytes": size}, s, "bytes", size), "bus_bytes_per_s": busbw})
    if rank == 0:
        with open(out_path, "w") as fh:
            json.dump(rows, fh)
    dist.destroy_process_group()


def allreduce(ctx: Context) -> Iterator[dict]:
    if ctx.device != "cuda" or ctx.gpu_count < 2:
        yield {"kernel": "allreduce", "status": "skipped",
               "reason": f"{ctx.gpu_count if ctx.device == 'cuda' else 0} CUDA GPU(s) visible; an all-reduce needs at least two"}
        return
    import json
    import socket
    import tempfile

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/allreduce.json"
        try:
            ctx.torch.multiprocessing.spawn(_allreduce_worker, args=(ctx.gpu_count, ctx.grid.allreduce_bytes, port, out),
                                            nprocs=ctx.gpu_count, join=True)
            with open(out) as fh:
                yield from json.load(fh)
        except Exception as exc:  # noqa: BLE001  NCCL failures become a row
            yield {"kernel": "allreduce", "status": "error", "reason": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"}


def benchmarks(grid: Grid) -> dict[str, Callable[[Context], Iterator[dict]]]:
    """Every benchmark of a run, by the name of its result file, in the order they run."""
    out = {"bandwidth_copy": bandwidth_copy, "bandwidth_read": bandwidth_read, "bandwidth_write": bandwidth_write}
    out.update({f"gemm_{d}": _gemm_bench(d) for d in grid.gemm_dtypes})
    out.update({"attention_prefill": attention_prefill, "attention_decode": attention_decode,
                "launch_overhead": launch_overhead, "allreduce": allreduce})
    return out


# ------------------------------------------------------------ how long a full run takes
def estimate_run_s(grid: Grid, hw, timer: Timer | None = None, flush_bytes: int | None = None, per_call_host_s: float = 20e-6) -> dict[str, float]:
    """Seconds each benchmark should take on `hw`, from its datasheet peaks x default fractions.

    Per point: the warm-up budget plus reps x (kernel + L2 flush + a host-side cost per timed call),
    reps = clamp(rep budget / kernel, min, max), exactly as `Timer` chooses them; plus a setup
    allowance of 10 ms per point (allocating and filling the operands).
    """
    timer = timer or Timer("cpu")
    e = hw.efficiency
    bw = hw.memory_bandwidth_bytes_per_s * e.memory_bandwidth_fraction
    flush_s = (flush_bytes or max(2 * hw.l2_bytes, 256 * 2**20)) / bw

    def point(kernel_s: float) -> float:
        reps = timer._reps(kernel_s, timer.rep_s)
        warm = timer._reps(kernel_s, timer.warmup_s) + 4
        return 0.010 + warm * kernel_s + reps * (kernel_s + flush_s + per_call_host_s)

    out = {}
    for kind, mult in (("copy", 2), ("read", 1), ("write", 1)):
        out[f"bandwidth_{kind}"] = sum(point(4e-6 + mult * s / bw) for s in grid.bandwidth_bytes)
    for d in grid.gemm_dtypes:
        peak = hw.peak_flops_per_s.get(d)
        if peak is None:
            continue
        rate = peak * e.flops_fraction.get(d, 0.7)
        ab = BYTES_PER_ELEMENT[d]
        out[f"gemm_{d}"] = sum(point(max(2 * m * n * k / rate, (n * k + m * (n + k)) * ab / bw) + 5e-6)
                               for _, n, k in grid.gemm_shapes for m in grid.gemm_m)
    peak = hw.peak_flops(grid.activation_dtype) * e.attention_flops_fraction
    ab = BYTES_PER_ELEMENT[grid.activation_dtype]
    out["attention_prefill"] = sum(point(max(1, grid.attn_prefill_tokens // s) * hq * s * (s + 1) / 2 * 4 * grid.attn_head_dim / peak)
                                   for hq, _ in grid.attn_heads for s in grid.attn_prefill_seq)
    out["attention_decode"] = sum(point(2 * grid.attn_decode_batch * hkv * c * grid.attn_head_dim * ab / bw + 5e-6)
                                  for _, hkv in grid.attn_heads for c in grid.attn_decode_ctx)
    out["launch_overhead"] = 2 * 23 * grid.launch_chain * 5e-6 + 1.0
    out["allreduce"] = 0.0  # one GPU: skipped; 8 GPUs: ~20 s including process start
    return out
