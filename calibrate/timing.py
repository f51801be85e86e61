"""Timing one kernel the way `triton.testing.do_bench` does: warm-up, L2 flush, one CUDA event pair per call.

On a GPU, each timed call is preceded by zeroing a buffer twice the size of L2 (so the call
starts with a cold cache, as a kernel that streams weights from HBM does), and bracketed by
its own pair of CUDA events; the flush is outside the events. Events are read after one
`torch.cuda.synchronize()` at the end. Budgets are in seconds of kernel time: a 5 ms GEMM
gets `rep_s / 5 ms` repetitions, clamped to [min_reps, max_reps].

On the CPU the same function runs the callable between two `time.perf_counter_ns()` reads;
there is no flush (the quick-mode sizes fit in cache anyway), so CPU numbers prove the
pipeline, not the speed of memory.

A `Samples` keeps every raw time, the median and the spread (10th and 90th percentiles).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Samples:
    """Raw per-call times in seconds, with their median and spread."""

    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    def percentile(self, q: float) -> float:
        xs = sorted(self.samples_s)
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    def as_dict(self) -> dict:
        return {"median_s": self.median_s, "p10_s": self.percentile(0.1), "p90_s": self.percentile(0.9),
                "spread": (self.percentile(0.9) - self.percentile(0.1)) / self.median_s if self.median_s > 0 else 0.0,
                "reps": len(self.samples_s), "samples_s": list(self.samples_s)}


class Timer:
    """Times callables on one device ('cuda' or 'cpu') within a warm-up and repetition budget."""

    def __init__(self, device: str, warmup_s: float = 0.025, rep_s: float = 0.1, min_reps: int = 5, max_reps: int = 100,
                 l2_bytes: int | None = None):
        self.device = device
        self.warmup_s, self.rep_s, self.min_reps, self.max_reps = warmup_s, rep_s, min_reps, max_reps
        self._flush = None
        if device == "cuda":
            import torch

            size = max(2 * (l2_bytes or 0), 256 * 2**20)  # twice L2, at least 256 MiB
            self._flush = torch.empty(size // 4, dtype=torch.int32, device="cuda")

    def _reps(self, one_s: float, budget_s: float) -> int:
        return int(min(self.max_reps, max(self.min_reps, budget_s / max(one_s, 1e-9))))

    def time(self, fn: Callable[[], object]) -> Samples:
        """Warm up, then time each call of `fn` separately."""
        return self._time_cuda(fn) if self.device == "cuda" else self._time_cpu(fn)

    def _time_cpu(self, fn) -> Samples:
        t0 = time.perf_counter_ns()
        fn()
        one = (time.perf_counter_ns() - t0) * 1e-9
        for _ in range(max(0, self._reps(one, self.warmup_s) - 1)):
            fn()
        out = []
        for _ in range(self._reps(one, self.rep_s)):
            t0 = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t0) * 1e-9)
        return Samples(tuple(out))

    def _time_cuda(self, fn) -> Samples:
        import torch

        fn()  # compile/autotune outside the estimate
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(3):
            fn()
        end.record()
        torch.cuda.synchronize()
        one = start.elapsed_time(end) * 1e-3 / 3
        for _ in range(self._reps(one, self.warmup_s)):
            fn()
        n = self._reps(one, self.rep_s)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for s, e in zip(starts, ends):
            self._flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return Samples(tuple(s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)))

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
