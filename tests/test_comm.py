"""Issue 12: what an all-reduce, a launch and a weight-only decode GEMM cost as engines run them. Hand arithmetic."""

from __future__ import annotations

import pandas as pd
import pytest

import roofline as rl
from calibrate import public
from roofline import ops as O
from roofline.calibration import Calibration, gemv_line, weight_bits
from roofline.engines import EngineProfile, load_engine, nccl_allreduce, with_nccl_allreduce
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


# ------------------------------------------------------------ NCCL where the engine has no custom all-reduce
def test_the_bare_roofline_all_reduces_with_nccl():
    """Analytical H100 SXM at tp 8, no engine (torch.distributed): no custom kernel, so NCCL's ring.
    80 layers · 2 all-reduces of 8 · 8192 · 2 = 131,072 bytes: 160 · (1.75 · 131,072 / 369e9 + 14 · 1.8 us) = 4.131 ms."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    assert nccl_allreduce(None) and not nccl_allreduce(load_engine("vllm"))
    p = rl.predict("llama-3.1-70b", hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(tp=8, engine=None))
    ar = p.operators[(p.operators["op"] == "allreduce") & (p.operators["phase"] == "decode")]
    assert float(ar["comm_s"].iloc[0]) == pytest.approx(160 * (1.75 * 131072 / 369e9 + 14 * 1.8e-6))
    assert float(ar["comm_s"].iloc[0]) == pytest.approx(4.131e-3, rel=1e-3)


def test_a_calibrated_decode_step_charges_layers_x_2_interpolated_allreduces():
    """H200 (calibrated by default), llama-3.1-70b at tp 8, batch 12: a decode step's 80 layers · 2 = 160 all-reduces
    of 12 · 8192 · 2 = 196,608 bytes, halfway between the measured 131,072 and 262,144 B
    ((196,608 - 131,072) / (262,144 - 131,072) = 0.5), timed through calibrate/public/h200.json's points:
    vLLM's custom kernel (tp8: 7.943 us, 10.06 us) 7.943 + 0.5 · (10.06 - 7.943) = 9.0015 us, · 160 = 1.4402 ms;
    the bare roofline's NCCL (21.45 us, 20.80 us) 21.45 + 0.5 · (20.80 - 21.45) = 21.125 us, · 160 = 3.380 ms."""
    hw = rl.load_hardware("h200")
    wl = rl.Workload(batch_size=12, prompt_tokens=512, output_tokens=64)

    def decode_allreduce_s(engine):
        ops = rl.predict("llama-3.1-70b", hw, wl, rl.Deployment(tp=8, engine=engine)).operators
        return float(ops[(ops["op"] == "allreduce") & (ops["phase"] == "decode")]["comm_s"].iloc[0])

    for engine, points in ((None, hw.calibration.nccl_allreduce_points), ("vllm", hw.calibration.allreduce_points)):
        x, t = points.groups["8"].message_bytes, points.groups["8"].time_s
        i = x.index(131072.0)
        assert x[i + 1] == 262144.0
        assert decode_allreduce_s(engine) == pytest.approx(80 * 2 * (t[i] + 0.5 * (t[i + 1] - t[i])))
    assert decode_allreduce_s("vllm") == pytest.approx(160 * (7.943e-6 + 0.5 * (10.06e-6 - 7.943e-6)))
    assert decode_allreduce_s("vllm") == pytest.approx(1.44024e-3)
    assert decode_allreduce_s(None) == pytest.approx(160 * (21.45e-6 + 0.5 * (20.80e-6 - 21.45e-6)))
    assert decode_allreduce_s(None) == pytest.approx(3.380e-3)


def test_with_nccl_allreduce_drops_the_custom_step_and_a_pcie_file_keeps_none():
    hw = rl.load_hardware("h200")
    n = with_nccl_allreduce(hw)
    assert n.interconnect.custom_allreduce_latency_s is None and n.interconnect.nvls_bandwidth_fraction is None
    assert n.calibration.allreduce == hw.calibration.nccl_allreduce
    assert n.calibration.allreduce_points == hw.calibration.nccl_allreduce_points is not None
    l40s = rl.load_hardware("l40s")  # PCIe: the collection host's NCCL figures are dropped like its custom ones
    assert l40s.calibration.nccl_allreduce == {} and l40s.calibration.allreduce == {}


def test_an_engine_must_source_custom_allreduce():
    e = load_engine("vllm")
    data = e.model_dump()
    data["sources"] = {k: v for k, v in data["sources"].items() if k != "custom_allreduce"}
    with pytest.raises(ValueError, match="no source for custom_allreduce"):  # SpecError, wrapped by pydantic
        EngineProfile.model_validate(data)


# ------------------------------------------------------------ weight-only decode GEMMs
def test_gemv_line_by_hand():
    """A100 int4 line (TensorRT-LLM 1.0.0 rows): t0 12.84 us, R 1.330e12 B/s. llama-2-7b's QKV at one token:
    N = 12,288, K = 4,096, 25,165,824 bytes of int4: 12.84 us + 25,165,824 / 1.33e12 = 31.76 us; 32 layers 32 · t0 more."""
    assert float(gemv_line((12.84e-6, 1.33e12), 1, 25_165_824)) == pytest.approx(12.84e-6 + 25_165_824 / 1.33e12)
    assert float(gemv_line((12.84e-6, 1.33e12), 1, 25_165_824)) == pytest.approx(31.76e-6, rel=1e-3)
    assert float(gemv_line((12.84e-6, 1.33e12), 32, 32 * 25_165_824)) == pytest.approx(32 * 31.76e-6, rel=1e-3)


def test_the_weight_format_is_read_off_the_bytes():
    """int4 with a bf16 scale and zero per 32 weights: (0.5 + 4/32) bytes = 5 bits per weight -> int4; int8 with one
    bf16 scale per output row of 4,096: 8.004 bits -> int8; 16-bit weights -> 8 too (never asked: not weight-only)."""
    nk = 4096 * 4096
    assert int(weight_bits(nk * (0.5 + 4 / 32), 1, nk)) == 4
    assert int(weight_bits(2 * (nk + 4096 * 2), 2, nk)) == 8  # two layers: bytes and launches both doubled
    assert int(weight_bits(2 * nk, 1, nk)) == 8


def _decode_op(p, name):
    ops = p.operators
    return ops[(ops["op"] == name) & (ops["phase"] == "decode")].iloc[0]


def test_a_weight_only_decode_gemm_reads_at_the_measured_line():
    """llama-2-7b, int4 weights (W4A16, group 32) on the A100 at batch 1: each decode GEMM's memory term is
    32 launches · t0 + its HBM bytes / R of the file's int4 line (not bytes / (2.039e12 · 0.83)); at batch 32
    (past the 16 rows the line was fitted on) the datasheet fraction again."""
    hw = rl.load_hardware("a100-sxm-80gb")
    t0, rate = hw.calibration.gemv["int4"].latency_s, hw.calibration.gemv["int4"].rate_per_s
    dep = rl.Deployment(weight_dtype="int4", activation_dtype="bf16", weight_group_size=32, engine=None)
    p = rl.predict("llama-2-7b", hw, rl.Workload(batch_size=1, prompt_tokens=8, output_tokens=32), dep)
    for name in ("qkv_proj", "o_proj", "mlp_up", "mlp_down"):
        op = _decode_op(p, name)
        assert float(op["memory_s"]) == pytest.approx(op["launches"] * t0 + op["hbm_bytes"] / rate, rel=1e-9)
    big = _decode_op(rl.predict("llama-2-7b", hw, rl.Workload(batch_size=32, prompt_tokens=8, output_tokens=32), dep), "qkv_proj")
    assert float(big["memory_s"]) == pytest.approx(big["hbm_bytes"] / (2.039e12 * 0.83), rel=1e-9)
    # 16-bit weights are not weight-only: the table's memory-bound time, unchanged by the line
    bf16 = _decode_op(rl.predict("llama-2-7b", hw, rl.Workload(batch_size=1, prompt_tokens=8, output_tokens=32),
                                 rl.Deployment(engine=None)), "qkv_proj")
    assert float(bf16["memory_s"]) != pytest.approx(bf16["launches"] * t0 + bf16["hbm_bytes"] / rate, rel=1e-3)


def test_the_gemv_line_is_fitted_by_hand():
    """Rows made from t = 10 us + W / 1e12 at M = 1..16 (and M = 64 rows that must be ignored): the fit recovers both."""
    rows = []
    for m in (1, 2, 4, 8, 16, 64):
        for n, k in ((4096, 4096), (8192, 8192), (28672, 8192), (8192, 28672)):
            w = n * k / 2
            rows.append({"gemm_dtype": "int4_wo", "m": m, "n": n, "k": k,
                         "latency": (10e-6 + w / 1e12 + (1e-3 if m == 64 else 0)) / public.TABLE_TIME_S})
    fit = public.fit_gemv(pd.DataFrame(rows), 2.039e12, [])
    assert set(fit) == {"int4"}
    assert fit["int4"].latency_s == pytest.approx(10e-6, rel=1e-3) and fit["int4"].rate_per_s == pytest.approx(1e12, rel=1e-3)


@pytest.mark.parametrize("field, key", [("gemv", "int3"), ("nccl_allreduce", "1")])
def test_bad_gemv_and_nccl_keys_are_one_line_errors(field, key):
    cal = rl.load_hardware("a100-sxm-80gb").calibration
    data = {**cal.model_dump(), field: {key: cal.gemv["int4"].model_dump()}}
    with pytest.raises(ValueError, match=rf"{field}\.{key}: "):  # SpecError naming the field, wrapped by pydantic
        Calibration.model_validate(data)


def test_sweep_times_nccl_and_the_gemv_line_as_predict_does():
    """llama-2-7b, int4 weights, tp 2 on the A100 with no engine (NCCL line, int4 GEMV line): a one-point sweep gives
    predict's TTFT and TPOT."""
    dep = rl.Deployment(tp=2, weight_dtype="int4", activation_dtype="bf16", weight_group_size=32, engine=None)
    p = rl.predict("llama-2-7b", "a100-sxm-80gb", rl.Workload(batch_size=4, prompt_tokens=128, output_tokens=64), dep)
    df = rl.sweep("llama-2-7b", "a100-sxm-80gb", batch_size=4, prompt_tokens=128, output_tokens=64, tp=2,
                  weight_dtype="int4", activation_dtype="bf16", deployment=dep)
    assert df.ttft_s.iloc[0] == pytest.approx(p.ttft_s, rel=1e-9) and df.tpot_s.iloc[0] == pytest.approx(p.tpot_s, rel=1e-9)
