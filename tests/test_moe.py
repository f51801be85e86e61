"""The fused MoE layer: its token permute / unpermute ops (hand arithmetic), the `grouped` code of its kernels,
the calibration's `moe` curve (schema, timing by hand, absence changes nothing) and the fit from
aiconfigurator-core's moe_perf table (synthetic rows recovered; the real table within its stated error)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.calibration import MOE_FORMATS, Calibration, MoeCurve, attach_calibration, load_calibration, moe_key, moe_touched_experts
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, time_ops

pd = pytest.importorskip("pandas")

MIXTRAL = rl.load_model("mixtral-8x7b")  # h = 4096, E = 8, k = 2, F_e = 14336, bf16
H200 = rl.load_hardware("h200")  # carries the shipped public calibration (vLLM tables) with its moe section
PEAK = H200.peak_flops_per_s["bf16"]
BW = H200.memory_bandwidth_bytes_per_s


def _curve(fmt="bf16", compute="bf16", t0=20e-6, eta_c=0.5, eta_m=0.8, t_e=0.0) -> MoeCurve:
    return MoeCurve(weight_format=fmt, compute_dtype=compute, latency_s=t0, expert_latency_s=t_e, compute_fraction=eta_c,
                    bandwidth_fraction=eta_m,
                    peak_flops_per_s=PEAK, peak_bytes_per_s=BW, table_dtype="bfloat16", rows=3, median_abs_error=0.0,
                    p90_abs_error=0.0)


def _hw_with(moe: dict):
    cal = H200.calibration.model_copy(update={"moe": moe})
    return attach_calibration(rl.load_hardware("h200", analytical=True), cal)


def _timed(hw, batch=8, new=1, past=511, dep=None):
    rd = (dep or rl.Deployment()).resolved(MIXTRAL)
    ops = O.forward_ops(MIXTRAL, rd, batch, new, past)
    table = OpTable.of(ops, ())
    return ops, time_ops(table, Ceilings.of(hw, rd.compute_key), 1)


# ------------------------------------------------------------------ the ops, by hand
def test_permute_bytes_by_hand():
    # 8 tokens of h = 4096 in bf16, k = 2: read each token once (8·4096·2) and 16 int32 indices, write 16 rows
    op = O.moe_permute("g", 1, 8, 2, 4096, 2)
    assert op.act_read_bytes == 8 * 4096 * 2 + 16 * 4 == 65_600
    assert op.act_write_bytes == 16 * 4096 * 2 == 131_072
    assert op.flops == 0 and op.weight_bytes == 0 and op.launches == 1


def test_unpermute_bytes_and_flops_by_hand():
    # read the 16 expert rows, their indices and fp32 gate weights; write 8 summed tokens; a multiply-add per element
    op = O.moe_unpermute("g", 3, 8, 2, 4096, 2)
    assert op.act_read_bytes == 3 * (16 * 4096 * 2 + 16 * (4 + 4))
    assert op.act_write_bytes == 3 * 8 * 4096 * 2
    assert op.flops == 3 * 2 * 16 * 4096
    assert op.launches == 3
    one = O.moe_unpermute("g", 1, 8, 2, 4096, 2)  # the docstring's worked number
    assert (one.act_read_bytes, one.act_write_bytes, one.flops) == (131_200, 65_536, 131_072)


def test_forward_pass_marks_the_five_fused_kernels_with_the_format_code():
    ops = O.forward_ops(MIXTRAL, rl.Deployment().resolved(MIXTRAL), 4, 1, 99)
    fused = [op.name for op in ops if op.grouped]
    assert fused == ["moe_permute", "experts_up", "experts_act", "experts_down", "moe_unpermute"]
    assert {op.grouped for op in ops if op.grouped} == {1 + MOE_FORMATS.index("bf16")}
    # the permute reads the layer's own T = 4 tokens, 32 layers
    permute = next(op for op in ops if op.name == "moe_permute")
    assert permute.act_write_bytes == 32 * 4 * 2 * 4096 * 2


@pytest.mark.parametrize("dtype,granularity,expected", [
    ("bf16", None, "bf16"), ("fp8", None, "fp8"), ("fp8", "block", "fp8_block"), ("fp4", None, "fp4"), ("fp32", None, None)])
def test_moe_format_by_bits_and_scale_granularity(dtype, granularity, expected):
    scheme = rl.QuantScheme.of(rl.get_dtype(dtype), 128 if granularity else None, granularity=granularity)
    assert O.moe_format(scheme) == expected
    code = O.moe_format_code(scheme)
    assert code == (1 + MOE_FORMATS.index(expected) if expected else len(MOE_FORMATS) + 1) and code > 0


# ------------------------------------------------------------------ the schema
def test_moe_section_round_trips_and_keys_must_match(tmp_path):
    cal = H200.calibration.model_copy(update={"moe": {"bf16": _curve()}})
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(cal.model_dump(mode="json")))
    assert load_calibration(path).moe == cal.moe == Calibration.model_validate(cal.model_dump(mode="json")).moe
    path.write_text(json.dumps({**cal.model_dump(mode="json"), "moe": {"fp8": _curve().model_dump()}}))
    with pytest.raises(SpecError, match="moe.fp8") as err:
        load_calibration(path)
    assert "\n" not in str(err.value)  # one line naming the field


def test_moe_key_is_the_format_at_its_default_compute_dtype_else_format_dash_dtype():
    assert [moe_key("bf16", "bf16"), moe_key("fp8", "fp8"), moe_key("fp8_block", "fp8")] == ["bf16", "fp8", "fp8_block"]
    assert moe_key("fp4", "bf16") == "fp4"  # W4A16 MXFP4 (gpt-oss on Hopper): the key every older file uses
    assert (moe_key("fp4", "fp8"), moe_key("fp4", "fp4")) == ("fp4-fp8", "fp4-fp4")  # W4A8 MXFP4, NVFP4 W4A4


def test_several_fp4_curves_load_one_per_compute_dtype_and_a_pair_only_once(tmp_path):
    doc = H200.calibration.model_dump(mode="json")
    three = {"fp4": _curve("fp4", "bf16"), "fp4-fp8": _curve("fp4", "fp8"), "fp4-fp4": _curve("fp4", "fp4")}
    assert set(Calibration.model_validate({**doc, "moe": {k: c.model_dump() for k, c in three.items()}}).moe) == set(three)
    # a file written before the "-<dtype>" keys (format name as key) still loads
    assert Calibration.model_validate({**doc, "moe": {"fp4": _curve("fp4", "fp4").model_dump()}}).moe["fp4"].compute_dtype == "fp4"
    path = tmp_path / "cal.json"
    for moe, field in (({"fp4-fp8": _curve("fp4", "fp4").model_dump()}, "moe.fp4-fp8"),  # key names another dtype
                       ({"fp4": _curve("fp4", "fp4").model_dump(), "fp4-fp4": _curve("fp4", "fp4").model_dump()}, "moe.fp4-fp4")):
        path.write_text(json.dumps({**doc, "moe": moe}))
        with pytest.raises(SpecError, match=field) as err:
            load_calibration(path)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ timing with and without a curve
def test_without_a_curve_the_grouped_code_changes_nothing():
    hw = _hw_with({})
    ops, timing = _timed(hw)
    plain = [dataclasses.replace(op, grouped=0.0) for op in ops]
    t2 = time_ops(OpTable.of(plain, ()), Ceilings.of(hw, "bf16"), 1)
    np.testing.assert_array_equal(timing.time_s, t2.time_s)


def test_a_curve_of_another_compute_dtype_does_not_apply():
    _, without = _timed(_hw_with({}))
    _, other = _timed(_hw_with({"bf16": _curve(compute="fp8")}))
    np.testing.assert_array_equal(without.time_s, other.time_s)


def test_grouped_timing_by_hand():
    t0, eta_c, eta_m = 20e-6, 0.5, 0.8
    hw = _hw_with({"bf16": _curve(t0=t0, eta_c=eta_c, eta_m=eta_m)})
    ops, timing = _timed(hw, batch=8)
    tile = hw.gemm_tile_tokens
    vector = hw.peak_flops_per_s["fp32"] * hw.efficiency.flops_fraction["fp32"]
    layer = 0.0
    for i, op in enumerate(ops):
        if not op.grouped:
            continue
        if op.kind == O.OpKind.GEMM:
            pad = math.ceil(op.gemm_m / tile) * tile / op.gemm_m
            expected = max(op.flops * pad / (eta_c * PEAK), op.bytes / (eta_m * BW)) + op.layers * t0 / 2
        else:
            expected = max(op.flops / vector, op.bytes / (eta_m * BW))  # no launch overhead: t0 holds it
        assert timing.time_s[i] == pytest.approx(expected, rel=1e-9)
        layer += timing.time_s[i] / op.layers
    # one MoE layer: t0 + Σ max(compute, memory), and t0 is paid once per layer
    assert layer > t0


def test_decode_moe_layer_slows_with_a_larger_fixed_time():
    _, fast = _timed(_hw_with({"bf16": _curve(t0=0.0)}))
    _, slow = _timed(_hw_with({"bf16": _curve(t0=50e-6)}))
    assert float(slow.time_s.sum() - fast.time_s.sum()) == pytest.approx(32 * 50e-6, rel=1e-9)  # 32 MoE layers


def test_expert_time_is_paid_per_touched_expert_by_hand():
    # Mixtral (E = 8, k = 2), decode of 8 sequences: T = 8 tokens touch 8·(1 - (1 - 2/8)^8) = 8·(1 - 0.100113) = 7.19910
    # experts per layer (`ops.expected_experts_touched`); at t_e = 1 µs the layer pays 7.19910 µs more, half on each
    # grouped GEMM's launch, over 32 MoE layers: 230.37 µs per forward pass
    touched = 8 * (1 - 0.75**8)
    assert touched == pytest.approx(7.19910, abs=1e-5)
    ops, base = _timed(_hw_with({"bf16": _curve(t0=20e-6)}))
    _, slow = _timed(_hw_with({"bf16": _curve(t0=20e-6, t_e=1e-6)}))
    assert float(slow.time_s.sum() - base.time_s.sum()) == pytest.approx(32 * touched * 1e-6, rel=1e-9)
    for i, op in enumerate(ops):
        extra = slow.time_s[i] - base.time_s[i]
        assert extra == pytest.approx(op.layers * touched * 1e-6 / 2 if op.grouped and op.kind == O.OpKind.GEMM else 0.0, abs=1e-15)
    # one token touches its k = 2 experts: 2 µs per layer
    rd = rl.Deployment().resolved(MIXTRAL)
    table = OpTable.of(O.forward_ops(MIXTRAL, rd, 1, 1, 99), ())
    n = moe_touched_experts(table)
    assert sorted(set(n[n > 0].tolist())) == [pytest.approx(2.0)]
    assert [table.names[i] for i in np.flatnonzero(n)] == ["experts_up", "experts_down"]
    # over a grid of batches (one decode step of 1 and of 8 sequences): per scenario, 2 and 7.19910
    grid = moe_touched_experts(OpTable.of(O.forward_ops(MIXTRAL, rd, np.array([1.0, 8.0]), 1, 99)))
    up = table.names.index("experts_up")
    np.testing.assert_allclose(grid[up], [2.0, touched], rtol=1e-9)


def test_touched_experts_per_ep_rank_and_under_2_4_sparsity():
    # the touched count of the op's weight read: E·(1 - (1 - k/E)^T) / ep. DeepSeek-V3-like shape (E = 256, k = 8),
    # T = 64 tokens over ep = 4: 256·(1 - 0.96875^64) / 4 = 256·(1 - 0.13109) / 4 = 55.61 experts per GPU
    rd = rl.Deployment().resolved(MIXTRAL)
    expected = 256 * (1 - (248 / 256) ** 64) / 4
    ops = O.fused_moe_ops(rd, "moe", 3, 16.0, 64 * 8 / 4, expected, 7168.0, (4096.0, 7168.0), (7168.0, 2048.0), 8, True)
    n = moe_touched_experts(OpTable.of(ops, ()))
    assert n[1] == pytest.approx(expected, rel=1e-12) == pytest.approx(55.61, abs=0.01) and n[3] == pytest.approx(expected)
    assert n[0] == n[2] == n[4] == 0  # permute, activation, unpermute: no experts of their own
    sparse = O.fused_moe_ops(rl.Deployment(sparsity="2:4").resolved(MIXTRAL), "moe", 3, 16.0, 128.0, expected, 7168.0,
                             (4096.0, 7168.0), (7168.0, 2048.0), 8, True, sparse=True)
    assert sparse[1].sparse_2_4 == 1.0
    assert moe_touched_experts(OpTable.of(sparse, ()))[1] == pytest.approx(expected, rel=1e-12)  # F counts half the MACs


def test_a_file_without_expert_latency_loads_with_none_and_a_negative_one_is_refused(tmp_path):
    doc = _curve().model_dump()
    del doc["expert_latency_s"]
    assert MoeCurve.model_validate(doc).expert_latency_s == 0.0
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({**H200.calibration.model_dump(mode="json"), "moe": {"bf16": {**doc, "expert_latency_s": -1e-6}}}))
    with pytest.raises(SpecError, match="expert_latency_s") as err:
        load_calibration(path)
    assert "\n" not in str(err.value)


def test_best_fixed_times_by_hand():
    from calibrate.public_moe import _best_fixed

    # rows of 2 and 3 µs, nothing else, touching 1 and 2 experts: exactly t0 = 1 µs, t_e = 1 µs
    err, t0, te = _best_fixed(np.zeros(2), np.array([1.0, 2.0]), np.array([2e-6, 3e-6]))
    assert (t0, te) == (pytest.approx(1e-6), pytest.approx(1e-6)) and err == pytest.approx(0.0, abs=1e-20)
    # rows 3 and 2 µs touching 1 and 2 experts want t_e < 0: the edge t_e = 0, t0 alone in closed form,
    # Σ (y - s) / y² / Σ 1 / y² = (1/3 + 1/2) / (1/9 + 1/4) µs = 2.3077 µs
    err, t0, te = _best_fixed(np.zeros(2), np.array([1.0, 2.0]), np.array([3e-6, 2e-6]))
    assert te == 0.0 and t0 == pytest.approx((1 / 3 + 1 / 2) / (1 / 9 + 1 / 4) * 1e-6)


def test_an_fp4_pass_takes_the_curve_of_its_own_compute_dtype():
    # B200 (fp4 peak): NVFP4 W4A4 computes at fp4, W4A16 at bf16; only the curve of the pass's dtype adds its t0,
    # once per MoE layer (32 in Mixtral): 50 µs -> 32 · 50 µs more per forward pass, the other pass unchanged
    b200 = rl.load_hardware("b200")

    def timed(dep, t0_fp4, t0_bf16):
        cal = b200.calibration.model_copy(update={"moe": {"fp4": _curve("fp4", "bf16", t0=t0_bf16),
                                                          "fp4-fp4": _curve("fp4", "fp4", t0=t0_fp4)}})
        return float(_timed(attach_calibration(rl.load_hardware("b200", analytical=True), cal), dep=dep)[1].time_s.sum())

    w4a4, w4a16 = rl.Deployment(weight_dtype="fp4", activation_dtype="fp4"), rl.Deployment(weight_dtype="fp4")
    assert timed(w4a4, 50e-6, 0.0) - timed(w4a4, 0.0, 0.0) == pytest.approx(32 * 50e-6, rel=1e-9)
    assert timed(w4a4, 0.0, 50e-6) == timed(w4a4, 0.0, 0.0)
    assert timed(w4a16, 0.0, 50e-6) - timed(w4a16, 0.0, 0.0) == pytest.approx(32 * 50e-6, rel=1e-9)
    assert timed(w4a16, 50e-6, 0.0) == timed(w4a16, 0.0, 0.0)


# ------------------------------------------------------------------ the fit
def _synthetic_table(hw, t0, eta_c, eta_m, t_e=0.0):
    """Rows of one bf16 shape lying exactly on the curve (the fit's own model), as the package ships them."""
    from calibrate.public_moe import TABLE_TIME_S, unit_terms

    tokens = [1, 2, 4, 8, 16, 64, 256, 1024, 4096, 16384]
    df = pd.DataFrame({"moe_dtype": "bfloat16", "distribution": "balanced", "moe_ep_size": 1, "moe_tp_size": 1,
                       "num_tokens": tokens, "hidden_size": 2048, "inter_size": 768, "num_experts": 128, "topk": 8,
                       "kernel_source": "k", "latency": 1.0})
    cg, cv, mem, n = unit_terms(df, hw, "bf16", "bf16")
    # balanced routing: min(E, T·k) = min(128, 8T) touched experts
    np.testing.assert_allclose(n, np.minimum(128, 8 * np.array(tokens, float)), rtol=1e-12)
    df["latency"] = (t0 + n * t_e + np.maximum(cg / eta_c + cv, mem / eta_m).sum(axis=0)) / TABLE_TIME_S
    return df


def test_fit_recovers_a_synthetic_curve():
    from calibrate.public_moe import fit_moe

    hw = rl.load_hardware("h200", analytical=True)
    notes = []
    curve = fit_moe(_synthetic_table(hw, 30e-6, 0.6, 0.85), hw, notes)["bf16"]
    assert curve.latency_s == pytest.approx(30e-6, rel=0.05)
    assert curve.compute_fraction == pytest.approx(0.6, rel=0.02)
    assert curve.bandwidth_fraction == pytest.approx(0.85, rel=0.02)
    assert curve.median_abs_error < 0.01 and notes
    assert curve.expert_latency_s < 1e-9  # no per-expert time in the rows, none found


def test_fit_recovers_a_synthetic_per_expert_time():
    from calibrate.public_moe import fit_moe

    hw = rl.load_hardware("h200", analytical=True)
    curve = fit_moe(_synthetic_table(hw, 30e-6, 0.6, 0.85, t_e=0.5e-6), hw, [])["bf16"]
    assert curve.expert_latency_s == pytest.approx(0.5e-6, rel=0.05)
    assert curve.latency_s == pytest.approx(30e-6, rel=0.05)
    assert curve.compute_fraction == pytest.approx(0.6, rel=0.02) and curve.bandwidth_fraction == pytest.approx(0.85, rel=0.02)
    assert curve.median_abs_error < 0.01


@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator_core") is None,
                    reason="aiconfigurator-core not installed (pip install roofline[public-data])")
def test_fit_reproduces_the_h200_table_within_its_stated_error():
    from calibrate import public
    from calibrate.public_moe import moe_rows, predicted_s, unit_terms

    cal, tables = public.fit_public("h200_sxm")
    shipped = rl.load_hardware("h200").calibration.moe
    assert set(cal.moe) == set(shipped) >= {"bf16", "fp8_block"}
    hw = rl.load_hardware("h200", analytical=True)
    for key, (weight, compute, granularity) in {"bf16": ("bf16", "bf16", None), "fp8_block": ("fp8", "fp8", "block")}.items():
        curve = shipped[key]
        rows = moe_rows(tables["moe"], curve.table_dtype)
        err = np.abs(predicted_s(curve, *unit_terms(rows, hw, weight, compute, granularity))
                     / (rows["latency"].to_numpy(float) * 1e-3) - 1)
        assert len(rows) == curve.rows
        assert np.median(err) == pytest.approx(curve.median_abs_error, abs=0.005)  # the stored error is the fit's
        assert np.median(err) < 0.15  # README: 5.5-27.5% by format on H200/H100 vLLM, bf16 and fp8_block near 10%


@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator_core") is None,
                    reason="aiconfigurator-core not installed (pip install roofline[public-data])")
def test_b200_trtllm_nvfp4_curve_is_the_fit_of_the_committed_file():
    from calibrate import public
    from calibrate.public_moe import NVFP4_BLOCK, moe_rows, predicted_s, unit_terms

    tables, _, _ = public.read_tables(public.data_root(), "b200_sxm", "trtllm", "1.3.0rc20")
    shipped = rl.load_hardware("b200", framework="trtllm").calibration.moe
    curve = shipped["fp4-fp4"]
    assert (curve.weight_format, curve.compute_dtype, curve.table_dtype) == ("fp4", "fp4", "nvfp4")
    assert shipped["fp4-fp8"].table_dtype == "w4a8_mxfp4_mxfp8" and shipped["fp4"].compute_dtype == "bf16"
    rows = moe_rows(tables["moe"], "nvfp4")
    assert len(rows) == curve.rows and set(rows["kernel_source"]) == {"moe_torch_flow_cutlass"}  # the most measured gated source
    hw = rl.load_hardware("b200", analytical=True)
    err = np.abs(predicted_s(curve, *unit_terms(rows, hw, "fp4", "fp4", None, NVFP4_BLOCK)) / (rows["latency"].to_numpy(float) * 1e-3) - 1)
    assert np.median(err) == pytest.approx(curve.median_abs_error, abs=0.005)  # the stored error is the fit's


def test_ep_rows_time_one_gpu_as_an_ep1_layer_of_its_share():
    # ep = 2 over E = 128 experts and T tokens is, per GPU, the ep = 1 layer of E / 2 = 64 experts and T / 2 tokens:
    # routed T·k/2 rows of min(E, T·k)/2 touched experts, its own T/2 tokens permuted (`unit_terms`, `ops._moe_ops`)
    from calibrate.public_moe import ep_errors, fit_moe, unit_terms

    hw = rl.load_hardware("h200", analytical=True)
    ep2 = _synthetic_table(hw, 30e-6, 0.6, 0.85).assign(moe_ep_size=2)
    ep1 = ep2.assign(moe_ep_size=1, num_experts=64, num_tokens=ep2["num_tokens"] / 2)
    for a, b in zip(unit_terms(ep2, hw, "bf16", "bf16", ep=2), unit_terms(ep1, hw, "bf16", "bf16")):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # a table on the curve at ep = 1 and its ep = 2 rows computed the same way: both held to ~0 error
    table = _synthetic_table(hw, 30e-6, 0.6, 0.85)
    curves = fit_moe(table, hw, [])
    cg, cv, mem, n = unit_terms(ep2, hw, "bf16", "bf16", ep=2)
    np.testing.assert_allclose(n, np.minimum(128, 8 * ep2["num_tokens"].to_numpy(float)) / 2, rtol=1e-12)  # min(E, T·k) / ep
    ep2["latency"] = (30e-6 + np.maximum(cg / 0.6 + cv, mem / 0.85).sum(axis=0)) / 1e-3
    res = ep_errors(pd.concat([table, ep2]), curves, hw)
    assert list(res["ep"]) == [1, 2] and (res["median_abs"] < 0.01).all()
