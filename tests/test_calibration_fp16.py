"""FP16 and BF16 are twins on a calibrated profile (issue 12): the two 16-bit formats run the same tensor-core
instructions at one datasheet peak, so an FP16 GEMM (or fused MoE layer) takes the measured BF16 table where the file
has no FP16 one (`calibration.gemm_table_for`, `calibration.moe_curves_for`); a profile with two different peaks keeps
the datasheet fraction."""

from __future__ import annotations

import math

import pytest

import roofline as rl
from roofline.calibration import CalibratedCurves, GemmTable, attach_calibration, calibrated_efficiency, gemm_table_for, half_precision_twin, moe_curves_for

LLAMA2 = rl.load_model("llama-2-7b")  # native fp16 (torch_dtype float16)
WL = rl.Workload(batch_size=4, prompt_tokens=512, output_tokens=16)


def _constant_bf16(cal, fraction: float):
    """`cal` with its bf16 GEMM table replaced by one cell of `fraction` (constant over every M and N·K)."""
    table = GemmTable(dtype="bf16", peak_per_s=cal.gemm["bf16"].peak_per_s, m_tokens=(1,), nk_elements=(1.0,),
                      fraction=((fraction,),))
    return cal.model_copy(update={"gemm": {**cal.gemm, "bf16": table}})


def test_the_shipped_files_time_fp16_with_their_bf16_table():
    """No public file has an fp16 table (aiconfigurator-core times bfloat16), and every covered NVIDIA device lists one
    dense peak for both formats: fp16 takes the bf16 table itself."""
    for hid in ("a100-sxm-80gb", "h100-sxm", "h200", "b200", "gb200", "l40s"):
        hw = rl.load_hardware(hid)
        assert "fp16" not in hw.calibration.gemm, hid
        assert hw.peak_flops("fp16") == hw.peak_flops("bf16"), hid
        assert half_precision_twin(hw, "fp16") == "bf16" and half_precision_twin(hw, "fp8") is None
        assert gemm_table_for(hw.calibration, hw, "fp16") is hw.calibration.gemm["bf16"], hid
        assert CalibratedCurves(hw.calibration, hw, "fp16").measured_ops is not None


def test_an_fp16_model_predicts_exactly_as_the_same_model_in_bf16():
    """Llama-2-7B in its own fp16 and re-cast to bf16 on the calibrated A100 and H100: the same bytes, the same FLOPs,
    the same measured tables, so the same TTFT and TPOT to the last bit; the summary fraction is the twin's too."""
    for hid in ("a100-sxm-80gb", "h100-sxm"):
        hw = rl.load_hardware(hid)
        p16 = rl.predict(LLAMA2, hw, WL)
        pbf = rl.predict(LLAMA2, hw, WL, rl.Deployment(weight_dtype="bf16", activation_dtype="bf16", kv_dtype="bf16"))
        assert p16.mode == "calibrated"
        assert (p16.ttft_s, p16.tpot_s) == (pbf.ttft_s, pbf.tpot_s), hid
        assert hw.efficiency.flops_fraction["fp16"] == hw.efficiency.flops_fraction["bf16"], hid
    # before the twin, the A100 fp16 pass fell back to the datasheet 0.82 (bf16's datasheet value is 0.87)
    a = rl.load_hardware("a100-sxm-80gb", analytical=True)
    assert (a.efficiency.flops_fraction["fp16"], a.efficiency.flops_fraction["bf16"]) == (0.82, 0.87)


def test_an_fp16_gemm_takes_the_bf16_tables_time_by_hand():
    """A100 SXM with a constant bf16 table of 0.5: an fp16 GEMM of M = N = K = 4096 is compute-bound (its 100.7 MB of
    weight and activations read at 0.83 · 2.039 TB/s in 59.5 µs) and takes 2 · 4096³ / (0.5 · 312e12) = 881.0 µs,
    not the datasheet 2 · 4096³ / (0.82 · 312e12) = 537.2 µs."""
    from roofline import ops as O
    from roofline.roofline import Ceilings, OpTable, time_ops

    base = rl.load_hardware("a100-sxm-80gb")
    hw = base.model_copy(update={"calibration": _constant_bf16(base.calibration, 0.5)})
    flops = 2 * 4096**3
    op = O.Op("proj", "layer", O.OpKind.GEMM, 1, launches=1, flops=flops, weight_bytes=4096 * 4096 * 2,
              act_read_bytes=4096 * 4096 * 2, act_write_bytes=4096 * 4096 * 2, gemm_m=4096, gemm_n=4096, gemm_k=4096)
    assert 4096 % hw.gemm_tile_tokens == 0  # no tile padding
    t16 = time_ops(OpTable.of([op]), Ceilings.of(hw, "fp16"), 1)
    tbf = time_ops(OpTable.of([op]), Ceilings.of(hw, "bf16"), 1)
    assert math.isclose(flops / (0.5 * 312e12), 881.0e-6, rel_tol=1e-3)
    assert math.isclose(float(t16.time_s.sum()), flops / (0.5 * 312e12), rel_tol=1e-9)  # eager prefill: no launch on top
    assert float(t16.time_s.sum()) == float(tbf.time_s.sum())
    # the same file attached to a profile whose fp16 peak is not bf16's: the datasheet model, 0.82 of the peak (537.2 µs)
    # times the shape model's wave slowdown (1,024 tiles of 128 x 128 on 108 SMs: 10 waves for 9.48, x 1.055), plus a launch
    a = rl.load_hardware("a100-sxm-80gb", analytical=True)
    a = a.model_copy(update={"peak_flops_per_s": {**a.peak_flops_per_s, "fp16": a.peak_flops_per_s["bf16"] * (1 + 1e-9)}})
    apart = time_ops(OpTable.of([op]), Ceilings.of(attach_calibration(a, hw.calibration), "fp16"), 1)
    assert math.isclose(flops / (0.82 * 312e12), 537.2e-6, rel_tol=1e-3)
    assert flops / (0.82 * 312e12) < float(apart.compute_s.sum()) <= flops / (0.82 * 312e12) * 10 / (1024 / 108) * (1 + 1e-6)


def test_unequal_peaks_keep_the_datasheet_fraction():
    """A profile whose fp16 peak differs from its bf16 one (here twice it) does not take the bf16 table: the formats
    are not twins there, and fp16 GEMMs keep peak · the datasheet fraction."""
    base = rl.load_hardware("a100-sxm-80gb")
    peaks = {**base.peak_flops_per_s, "fp16": 2 * base.peak_flops_per_s["bf16"]}
    hw = base.model_copy(update={"peak_flops_per_s": peaks})
    assert half_precision_twin(hw, "fp16") is None and gemm_table_for(hw.calibration, hw, "fp16") is None
    curves = CalibratedCurves(hw.calibration, hw, "fp16")
    assert curves.gemm is None and curves.gemm_compute is None
    eff = calibrated_efficiency(hw.calibration, hw.model_copy(update={"efficiency": rl.load_hardware(
        "a100-sxm-80gb", analytical=True).efficiency}))
    assert eff.flops_fraction["fp16"] == 0.82  # the datasheet value stays
    assert eff.flops_fraction["bf16"] != 0.87  # bf16 has its own table


def test_an_fp16_moe_pass_takes_the_bf16_moe_curve():
    """H100 SXM (vLLM tables): the curves computing at bf16 (16-bit experts, and W4A16 MXFP4 ones) also time an fp16
    pass (same peak); an fp8 pass keeps its own curves only."""
    hw = rl.load_hardware("h100-sxm")
    cal = hw.calibration
    assert "bf16" in cal.moe and cal.moe["bf16"].compute_dtype == "bf16"
    assert [m.weight_format for m in moe_curves_for(cal, hw, "fp16")] == ["bf16", "fp4"] == \
        [m.weight_format for m in moe_curves_for(cal, hw, "bf16")]
    assert CalibratedCurves(cal, hw, "fp16").moe == CalibratedCurves(cal, hw, "bf16").moe
    assert all(m.compute_dtype == "fp8" for m in moe_curves_for(cal, hw, "fp8"))


@pytest.mark.parametrize("key", ["fp16", "bf16"])
def test_a_file_with_its_own_table_keeps_it(key):
    """A GPU run writes both tables (`roofline calibrate` measures bf16 and fp16): each dtype takes its own."""
    base = rl.load_hardware("a100-sxm-80gb")
    cal = base.calibration
    own = GemmTable(dtype="fp16", peak_per_s=cal.gemm["bf16"].peak_per_s, m_tokens=(1,), nk_elements=(1.0,), fraction=((0.3,),))
    both = cal.model_copy(update={"gemm": {**cal.gemm, "fp16": own}})
    assert gemm_table_for(both, base, key) is both.gemm[key]


# ------------------------------------------------------------ an unmeasured row count between two measured ones
def test_an_unmeasured_row_count_takes_a_time_between_its_measured_neighbours():
    """A table measured at M = 16, 32 and 64 only (as A100's vLLM 0.14.0 table is above 16), the first two rows taking
    T = 100 µs and the third 110 µs for an N·K = 4096² weight, tile 16: f(16) = 2·16·N·K / (T·peak), f(32) =
    2·32·N·K / (T·peak). M = 17 computes 32 padded rows; f interpolated linearly in log M (w = log2(17/16) = 0.0875)
    is f(16)·(1 + w), and 2·32·N·K / (peak · f(16)·(1 + w)) = 2 / 1.0875 · T = 183.9 µs, outside [T, T]: held to
    100 µs (`calibration.between_rows`). M = 40 (48 padded rows; w = log2(40/32) = 0.3219 of the way to 64): f(40) =
    f(32) + (f(64) - f(32))·w with f(64) = 2·64·N·K / (110 µs · peak), time 2·48·N·K / (peak·f(40)) = 48 / (32 +
    (64·100/110 - 32)·0.3219) · 100 µs = 118.7 µs, held to 110 µs. At a measured M the table's time; past the last
    row (M = 128) the time grows with the rows as before: 128 / 64 · 110 µs = 220 µs."""
    from roofline import ops as O
    from roofline.roofline import Ceilings, OpTable, time_ops

    base = rl.load_hardware("a100-sxm-80gb")
    peak, nk, t_row = 312e12, 4096.0 * 4096.0, 100e-6
    assert base.gemm_tile_tokens == 16 and base.peak_flops("fp16") == peak
    table = GemmTable(dtype="bf16", peak_per_s=peak, m_tokens=(16, 32, 64), nk_elements=(nk,),
                      fraction=((2 * 16 * nk / (t_row * peak),), (2 * 32 * nk / (t_row * peak),),
                                (2 * 64 * nk / (1.1 * t_row * peak),)))
    hw = base.model_copy(update={"calibration": base.calibration.model_copy(update={"gemm": {"bf16": table}})})

    def gemm_s(m):
        op = O.Op("proj", "layer", O.OpKind.GEMM, 1, launches=1, flops=2 * m * nk, weight_bytes=1.0, gemm_m=m,
                  gemm_n=4096, gemm_k=4096)  # 1 byte: the table's time binds
        return float(time_ops(OpTable.of([op]), Ceilings.of(hw, "fp16"), 1).time_s.sum())

    w17, w40 = math.log2(17 / 16), math.log2(40 / 32)
    assert math.isclose(2 / (1 + w17) * t_row, 183.9e-6, rel_tol=1e-3)  # what interpolating f alone charged
    assert math.isclose(gemm_s(17), t_row, rel_tol=1e-9)
    assert math.isclose(48 / (32 + (64 / 1.1 - 32) * w40) * t_row, 118.7e-6, rel_tol=1e-3)
    assert math.isclose(gemm_s(40), 1.1 * t_row, rel_tol=1e-9)
    for m, t in ((16, t_row), (32, t_row), (64, 1.1 * t_row), (128, 2.2 * t_row)):
        assert math.isclose(gemm_s(m), t, rel_tol=1e-9), m
    # a fused expert GEMM's 32.0000001 expected rows (eight touched experts, in floating point) pad to 48: 48 / 32 · T =
    # 150 µs at f(32), held to the 32- and 64-row times' range, at most 110 µs
    assert math.isclose(gemm_s(32.0000001), 1.1 * t_row, rel_tol=1e-6)


def test_a_decode_step_at_batch_17_on_the_a100_costs_about_what_16_and_32_cost():
    """llama-3.1-8b on the calibrated A100: the decode step at batch 17 lies between batch 16's and batch 32's (it was
    21.6 ms against 12.3 and 13.2 before `between_rows`)."""
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("a100-sxm-80gb")
    tpot = {b: rl.predict(m, hw, rl.Workload(batch_size=b, prompt_tokens=128, output_tokens=2)).tpot_s for b in (16, 17, 32)}
    assert tpot[16] <= tpot[17] <= tpot[32] * 1.01


def test_a_row_count_a_hair_above_a_whole_tile_pads_to_that_tile():
    """Mixtral's 128-token prefill routes 256 rows to 8·(1 - 0.75^128) = 8 - 1e-15 expected experts: 32.0000000000001
    rows each, which ceil padded to 48 (1.5 x the FLOPs). Within `units.TILE_SLACK` of a whole tile it is that tile:
    the same time as 32 rows exactly, analytical (shape model) and calibrated; 33 rows still pad to 48."""
    from roofline import ops as O
    from roofline.roofline import Ceilings, OpTable, time_ops
    from roofline.units import TILE_SLACK

    assert TILE_SLACK == 1e-9
    n, k = 14336, 4096

    def gemm(hw, m):
        op = O.Op("experts_up", "layer", O.OpKind.GEMM, 1, launches=1, flops=2 * m * n * k, weight_bytes=1.0, gemm_m=m,
                  gemm_n=n, gemm_k=k)
        return time_ops(OpTable.of([op]), Ceilings.of(hw, "bf16"), 1)

    hair = 256 / (8 * (1 - 0.75**128))
    assert 32 < hair < 32 * (1 + 1e-13)
    for hw in (rl.load_hardware("a100-sxm-80gb", analytical=True), rl.load_hardware("a100-sxm-80gb")):
        exact, above = gemm(hw, 32.0), gemm(hw, hair)
        assert math.isclose(float(above.compute_s[0]), float(exact.compute_s[0]) * hair / 32, rel_tol=1e-9)
        assert float(gemm(hw, 33.0).compute_s[0]) > 1.3 * float(exact.compute_s[0]) or hw.calibration is not None
