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
from roofline.calibration import MOE_FORMATS, Calibration, MoeCurve, attach_calibration, load_calibration
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, time_ops

pd = pytest.importorskip("pandas")

MIXTRAL = rl.load_model("mixtral-8x7b")  # h = 4096, E = 8, k = 2, F_e = 14336, bf16
H200 = rl.load_hardware("h200")  # carries the shipped public calibration (vLLM tables) with its moe section
PEAK = H200.peak_flops_per_s["bf16"]
BW = H200.memory_bandwidth_bytes_per_s


def _curve(fmt="bf16", compute="bf16", t0=20e-6, eta_c=0.5, eta_m=0.8) -> MoeCurve:
    return MoeCurve(weight_format=fmt, compute_dtype=compute, latency_s=t0, compute_fraction=eta_c, bandwidth_fraction=eta_m,
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


# ------------------------------------------------------------------ the fit
def _synthetic_table(hw, t0, eta_c, eta_m):
    """Rows of one bf16 shape lying exactly on the curve (the fit's own model), as the package ships them."""
    from calibrate.public_moe import TABLE_TIME_S, unit_terms

    tokens = [1, 2, 4, 8, 16, 64, 256, 1024, 4096, 16384]
    df = pd.DataFrame({"moe_dtype": "bfloat16", "distribution": "balanced", "moe_ep_size": 1, "moe_tp_size": 1,
                       "num_tokens": tokens, "hidden_size": 2048, "inter_size": 768, "num_experts": 128, "topk": 8,
                       "kernel_source": "k", "latency": 1.0})
    cg, cv, mem = unit_terms(df, hw, "bf16", "bf16")
    df["latency"] = (t0 + np.maximum(cg / eta_c + cv, mem / eta_m).sum(axis=0)) / TABLE_TIME_S
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
