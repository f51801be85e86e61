"""The shape-aware GEMM model (`roofline.gemm_shapes`): efficiency by hand, its use in `time_ops`, and where it is off."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import roofline as rl
from roofline import ops as O
from roofline.gemm_shapes import K_FILL, GemmShapeParams, gemm_efficiency, gemm_time_s
from roofline.roofline import Ceilings, OpTable, time_ops

PUBLIC = Path(__file__).resolve().parent.parent / "calibrate" / "public"


def test_a_large_square_gemm_loses_only_the_last_wave_and_the_k_fill():
    """M = N = K = 4096 on 132 SMs, 128 x 128 tiles, k_fill 180: 1024 tiles in ceil(1024 / 132) = 8 waves,
    1024 / 1056 = 0.9697 of the SMs busy, and 4096 / 4276 = 0.9579 of each tile's time computing: 0.9289.
    Smaller tiles waste the same last wave; splitting K only adds fill."""
    eff = float(gemm_efficiency(4096, 4096, 4096, 1.0, 180, 132, 128, 128))
    assert eff == pytest.approx((1024 / 1056) * (4096 / 4276))
    assert eff == pytest.approx(0.9289, abs=1e-4)


def test_a_decode_gemm_pads_its_rows_to_the_small_tile():
    """M = 8 tokens, N = K = 8192: a small-M kernel pads 8 rows to the profile's 16-token granularity and pays nothing
    else: 8 / 16 = 0.5 (the roofline's `pad`). Without it the 64-row tile pads 8 rows to 64, 1 · 128 tiles in one wave
    on 132 SMs: (8 / 64) · (128 / 132) · (8192 / 8372) = 0.1186."""
    eff = float(gemm_efficiency(8, 8192, 8192, 1.0, 180, 132, 128, 128, 16))
    assert eff == pytest.approx(8 / 16)
    assert float(gemm_efficiency(8, 8192, 8192, 1.0, 180, 132, 128, 128)) == pytest.approx((8 / 64) * (128 / 132) * (8192 / 8372))
    # a large GEMM never picks the thin tile: M = 4096 gives the same as without it
    assert float(gemm_efficiency(4096, 4096, 4096, 1.0, 180, 132, 128, 128, 16)) == pytest.approx((1024 / 1056) * (4096 / 4276))


def test_few_tiles_and_a_deep_k_split_k():
    """M = 64, N = 1024, K = 8192: 16 tiles of 64 x 64 fill 16 of 132 SMs; split 8 ways (1,024 of K each) they
    make 128 units in one wave: (128 / 132) · (1024 / 1204) = 0.8247 (split 4: 0.4457, split 16: two waves, 0.717)."""
    eff = float(gemm_efficiency(64, 1024, 8192, 1.0, 180, 132, 128, 128))
    assert eff == pytest.approx((128 / 132) * (1024 / 1204))


def test_gemm_time_is_the_larger_of_compute_and_the_operand_read():
    """M = 8, N = K = 8192 bf16 on an H100 at eta 0.8: compute 2 · 8 · 8192² / (989.4e12 · 0.8 · 0.5) = 2.71 us;
    reading the 134 MB weight at 2.98e12 B/s takes 45.0 us: memory-bound."""
    bytes_ = 8 * 8192 * 2 + 8192 * 8192 * 2 + 8 * 8192 * 2
    t = float(gemm_time_s(8, 8192, 8192, 989.4e12, 0.8, 180, 132, 128, 128, bytes_, 3.35e12 * 0.89, 16))
    assert t == pytest.approx(bytes_ / (3.35e12 * 0.89))
    compute = 2 * 8 * 8192**2 / (989.4e12 * 0.8 * float(gemm_efficiency(8, 8192, 8192, 1.0, 180, 132, 128, 128, 16)))
    assert compute == pytest.approx(2.71e-6, rel=0.01) and compute < t


def test_params_pick_the_eight_bit_asymptote_for_eight_and_four_bit_keys():
    p = GemmShapeParams(eta_bf16=0.8, eta_fp8=0.6, k_fill=180, fixed_s=3e-6)
    assert (p.eta("bf16"), p.eta("fp16"), p.eta("fp8"), p.eta("int4")) == (0.8, 0.8, 0.6, 0.6)


def _gemm(m, n, k):
    return O.Op("proj", "layer", O.OpKind.GEMM, 1, launches=1, flops=2.0 * m * n * k, weight_bytes=n * k * 2.0,
                act_read_bytes=m * k * 2.0, act_write_bytes=m * n * 2.0, gemm_m=m, gemm_n=n, gemm_k=k)


def test_time_ops_charges_the_shape_on_top_of_the_large_gemm_fraction():
    """H100 SXM (132 SMs, 128 x 128): a 4096³ bf16 GEMM computes at 989.4e12 · 0.80 · eff(4096³); the floor
    (datasheet peak, no shape) at 989.4e12; a profile without sm_count keeps the 16-token padding (none here)."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    t = OpTable.of([_gemm(4096, 4096, 4096)], ())
    real = time_ops(t, Ceilings.of(hw, "bf16"), 1)
    eff = float(gemm_efficiency(4096, 4096, 4096, 1.0, K_FILL, 132, 128, 128, 16))
    assert float(real.compute_s[0]) == pytest.approx(2 * 4096**3 / (989.4e12 * 0.80 * eff))
    floor = time_ops(t, Ceilings.of(hw, "bf16", floor=True), 1)
    assert float(floor.compute_s[0]) == pytest.approx(2 * 4096**3 / 989.4e12)
    plain = hw.model_copy(update={"sm_count": None})
    assert float(time_ops(t, Ceilings.of(plain, "bf16"), 1).compute_s[0]) == pytest.approx(2 * 4096**3 / (989.4e12 * 0.80))


def test_a_measured_gemm_table_is_not_charged_the_shape_twice():
    """With calibrate/public/h100-sxm.json attached the GEMM rate is the table's fraction at (M, N·K) alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hw = rl.load_hardware("h100-sxm", calibration=str(PUBLIC / "h100-sxm.json"))
    t = OpTable.of([_gemm(4096, 4096, 4096)], ())
    frac = float(hw.calibration.gemm["bf16"].at(4096, 4096 * 4096))
    got = float(time_ops(t, Ceilings.of(hw, "bf16"), 1).compute_s[0])
    assert got == pytest.approx(2 * 4096**3 / (989.4e12 * frac))


def test_forward_ops_record_each_gemms_weight_shape():
    """llama-3.1-8b at tp 2: mlp_down is [T, 14336 / 2] x [7168, 4096]: n = 4096, k = 7168."""
    model = rl.load_model("llama-3.1-8b")
    rd = rl.Deployment(tp=2).resolved(model)
    ops = {o.name: o for o in O.forward_ops(model, rd, 1, 16, 0, tp=2)}
    assert (ops["mlp_down"].gemm_n, ops["mlp_down"].gemm_k) == (4096, 7168)
