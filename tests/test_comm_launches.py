"""Issue 12: what an all-reduce, a launch and a weight-only decode GEMM cost as engines run them. Hand arithmetic."""

from __future__ import annotations

import pytest

import roofline as rl
from roofline import ops as O
from roofline.roofline import Ceilings, OpTable, overhead_launches, time_ops


def _allreduce_op(tokens, hidden, layers=1):
    """One layer's two all-reduces of [tokens, hidden] bf16 activations, as ops._allreduce builds them."""
    return O.Op("allreduce", "layer", O.OpKind.COMM, layers, launches=2 * layers, flops=0.0,
                comm_bytes=2 * layers * tokens * hidden * 2, messages=2 * layers)


def test_an_allreduce_pays_its_launch_once():
    """H100 SXM at tp 8, 80 layers, 8 decode tokens of hidden 8192: 160 all-reduces of 131,072 bytes, one-shot
    7 · 131,072 / 369e9 + 4.6 us = 7.086 us each. Their fixed time (4.6 us) is the kernel timed in a graph replay,
    so the op pays no eager launch (4 us) on top: 160 · 7.086 us = 1.134 ms, not 1.134 + 160 · 4 us = 1.774 ms."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    c = Ceilings.of(hw, "bf16")
    op = _allreduce_op(8, 8192, layers=80)
    t = OpTable.of([op], ())
    timing = time_ops(t, c, 8)
    one = 7 * 131072 / 369e9 + 4.6e-6
    assert float(overhead_launches(t)[0]) == 0.0
    assert float(timing.overhead_s[0]) == 0.0
    assert float(timing.time_s[0]) == pytest.approx(160 * one)


def test_other_kernels_still_pay_every_launch():
    """A GEMM of 80 layers has 80 launches and no all-reduce: 80 · 4 us = 320 us of overhead (H100 eager)."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    c = Ceilings.of(hw, "bf16")
    gemm = O.Op("qkv", "layer", O.OpKind.GEMM, 80, launches=80, flops=80 * 2 * 8 * 8192 * 10240,
                weight_bytes=80 * 8192 * 10240 * 2, gemm_m=8, gemm_n=10240, gemm_k=8192)
    t = OpTable.of([gemm, _allreduce_op(8, 8192, layers=80)], ())
    assert list(overhead_launches(t)) == [80.0, 0.0]
    assert float(time_ops(t, c, 8).overhead_s[0]) == pytest.approx(80 * hw.efficiency.kernel_overhead_s)


def test_predict_charges_the_allreduce_kernels_no_launch():
    """llama-3.1-70b at tp 8 on an H100 SXM under vLLM (its custom all-reduce), batch 8: both passes list 2 · 80 = 160 all-reduce launches with no overhead;
    the decode step's 160 all-reduces of 8 · 8192 · 2 bytes take 160 · (7 · 131,072 / 369e9 + 4.6 us) = 1.134 ms."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    model = rl.load_model("llama-3.1-70b")
    p = rl.predict(model, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(tp=8, engine="vllm"))
    ar = p.operators[p.operators["op"] == "allreduce"]
    assert list(ar["launches"]) == [2 * model.num_layers] * 2
    assert (ar["overhead_s"] == 0).all()
    decode = ar[ar["phase"] == "decode"]
    assert float(decode["comm_s"].iloc[0]) == pytest.approx(160 * (7 * 131072 / 369e9 + 4.6e-6))
