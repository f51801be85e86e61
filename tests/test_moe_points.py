"""Measured fused-MoE layer points (`calibration.MoePoints`): a layer of a stored per-GPU shape is timed as the curve's
time of that layer times the measured / curve ratio ρ, interpolated linearly in its token-expert rows R between the
stored points and held at the end values outside them (`calibration.moe_point_ratio`); any other layer by the curve
alone. Hand numbers, the split over the five ops, the fall-backs, and the one-line errors of malformed points."""

from __future__ import annotations

import json

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.calibration import MeasuredMoe, MoeCurve, MoePoints, attach_calibration, load_calibration, moe_point_ratio
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, time_ops

MIXTRAL = rl.load_model("mixtral-8x7b")  # h = 4096, E = 8 experts of F_e = 14336, k = 2, bf16
H200 = rl.load_hardware("h200")
FIVE = ("moe_permute", "experts_up", "experts_act", "experts_down", "moe_unpermute")


def _curve() -> MoeCurve:
    return MoeCurve(weight_format="bf16", compute_dtype="bf16", latency_s=20e-6, expert_latency_s=0.4e-6, compute_fraction=0.5,
                    bandwidth_fraction=0.8, peak_flops_per_s=H200.peak_flops_per_s["bf16"],
                    peak_bytes_per_s=H200.memory_bandwidth_bytes_per_s, table_dtype="bfloat16", rows=3,
                    median_abs_error=0.0, p90_abs_error=0.0)


def _points(tokens, time_s, curve_s, width=14336.0, experts=8, topk=2, ep=1) -> MoePoints:
    return MoePoints(hidden=4096, width=width, experts=experts, topk=topk, moe_tp=1, moe_ep=ep, tokens=tuple(tokens),
                     time_s=tuple(time_s), curve_s=tuple(curve_s))


def _hw(*shapes, curve=None):
    """h200 with only the bf16 curve, and `shapes` as its measured points (none: the curve alone)."""
    curve = curve or _curve()
    update = {"moe": {"bf16": curve}, "moe_points": {}}
    if shapes:
        update["moe_points"] = {"bf16": MeasuredMoe(source="hand", curve=_curve(), shapes=tuple(shapes))}
    return attach_calibration(rl.load_hardware("h200", analytical=True), H200.calibration.model_copy(update=update))


def _layer(hw, tokens):
    """Per op of one decode step of `tokens` sequences (T = tokens, R = 2T rows on one GPU): the five MoE ops' times
    (summed over Mixtral's 32 layers), their FLOPs and bytes."""
    rd = rl.Deployment().resolved(MIXTRAL)
    ops = O.forward_ops(MIXTRAL, rd, tokens, 1, 511)
    table = OpTable.of(ops, ())
    timing = time_ops(table, Ceilings.of(hw, rd.compute_key), 1)
    rows = [i for i, op in enumerate(ops) if op.name in FIVE]
    assert [ops[i].name for i in rows] == list(FIVE)
    return np.asarray(timing.time_s)[rows], [(ops[i].flops, ops[i].bytes) for i in rows]


def test_ratio_by_hand():
    # points R = (4096, 8192) rows with ρ = 0.30 / 0.25 = 1.2 and 0.44 / 0.40 = 1.1
    rows, ratio = np.array([4096.0, 8192.0]), np.array([0.30 / 0.25, 0.44 / 0.40])
    assert moe_point_ratio(6144.0, rows, ratio) == pytest.approx((1.2 + 1.1) / 2)  # halfway: 1.15
    assert moe_point_ratio(16384.0, rows, ratio) == pytest.approx(1.1)  # beyond the last: held, t_n · c(R) / c(R_n)
    assert moe_point_ratio(1000.0, rows, ratio) == pytest.approx(1.2)  # below the first: held
    p = _points((1024, 2048), (0.30e-3, 0.44e-3), (0.25e-3, 0.40e-3))
    assert list(p.rows) == [1024 * 2, 2048 * 2]  # R = T · k / ep
    p4 = _points((1024, 2048), (0.30e-3, 0.44e-3), (0.25e-3, 0.40e-3), ep=4)
    assert list(p4.rows) == [1024 * 2 / 4, 2048 * 2 / 4]


def test_measured_point_gives_the_measured_time_and_between_the_ratio_interpolates():
    curve_only = {t: _layer(_hw(), t)[0].sum() for t in (1024, 1536, 2048)}
    # the points hold the curve's own times at T = 1024 and 2048 (what `calibrate.public_moe.moe_points` stores) and
    # measured times 1.3 and 0.9 of them
    c1, c2 = curve_only[1024] / 32, curve_only[2048] / 32  # one layer of Mixtral's 32
    t1, t2 = 1.3 * c1, 0.9 * c2
    hw = _hw(_points((1024, 2048), (t1, t2), (c1, c2)))
    assert _layer(hw, 1024)[0].sum() / 32 == pytest.approx(t1, rel=1e-12)  # exactly the measured time
    assert _layer(hw, 2048)[0].sum() / 32 == pytest.approx(t2, rel=1e-12)
    # T = 1536 (R = 3072, halfway between 2048 and 4096 rows): the curve's time there times (1.3 + 0.9) / 2 = 1.1
    assert _layer(hw, 1536)[0].sum() == pytest.approx(curve_only[1536] * (t1 / c1 + t2 / c2) / 2, rel=1e-12)
    assert _layer(hw, 1536)[0].sum() == pytest.approx(curve_only[1536] * 1.1, rel=1e-12)
    # outside: T = 4096 takes the last point scaled by the curve's ratio, t2 · c(4096) / c(2048) = 0.9 · c(4096)
    assert _layer(hw, 4096)[0].sum() == pytest.approx(_layer(_hw(), 4096)[0].sum() * 0.9, rel=1e-12)


def test_ops_split_in_proportion_and_sum_to_the_layer_with_flops_and_bytes_unchanged():
    hw = _hw(_points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3)))  # ρ = 1.25 at both points
    base, work = _layer(_hw(), 1536)
    timed, work_points = _layer(hw, 1536)
    assert np.allclose(timed / base, 1.25, rtol=1e-12)  # every op 1.25 x its curve time
    assert timed.sum() == pytest.approx(1.25 * base.sum(), rel=1e-12)  # so the ops sum to the layer
    assert work_points == work


def test_a_shape_not_stored_and_a_stale_curve_fall_back_to_the_curve_exactly():
    base = _layer(_hw(), 1536)[0]
    for other in (_points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3), width=7168.0),  # tp 2's width, run at tp 1
                  _points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3), experts=4),  # ep 2's experts, run at ep 1
                  _points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3), topk=1)):
        assert np.array_equal(_layer(_hw(other), 1536)[0], base)
    stale = _curve().model_copy(update={"latency_s": 30e-6})  # `moe` holds another curve than the points were taken on
    stored = _points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3))
    assert np.array_equal(_layer(_hw(stored, curve=stale), 1536)[0], _layer(_hw(curve=stale), 1536)[0])


def test_the_shipped_gpt_oss_points_give_the_table_times():
    # gb200-trtllm.json, W4A8 MXFP4 x MXFP8 (`fp4-fp8`), gpt-oss-120b at moe_tp 1, moe_ep 1: the stored T = 1024 point
    hw = rl.load_hardware("gb200", framework="trtllm")
    points = hw.calibration.moe_points["fp4-fp8"]
    p = next(s for s in points.shapes if (s.hidden, s.width, s.experts, s.topk) == (2880, 2880.0, 128, 4))
    assert points.curve == hw.calibration.moe["fp4-fp8"]  # taken against the shipped curve, so they apply
    i = p.tokens.index(1024)
    model = rl.load_model("gpt-oss-120b")
    rd = rl.Deployment(activation_dtype="fp8").resolved(model)
    ops = O.forward_ops(model, rd, 1024, 1, 15)
    timing = time_ops(OpTable.of(ops, ()), Ceilings.of(hw, rd.compute_key), 1)
    rows = [j for j, op in enumerate(ops) if op.name in FIVE and op.group == ops[[o.name for o in ops].index("experts_up")].group]
    layers = ops[rows[0]].layers
    # T = 1024 tokens touch 128 · (1 - (1 - 4/128)^1024) = 128 experts (to 1e-12), as the table's balanced rows: the
    # layer is the curve's time times t / c of the point, i.e. the point's own time up to the curve's rounding
    assert np.asarray(timing.time_s)[rows].sum() / layers == pytest.approx(p.time_s[i], rel=2e-3)


@pytest.mark.parametrize("change, field", [({"tokens": (2048, 1024)}, "tokens"),
                                           ({"tokens": (1024, 1024)}, "tokens"),
                                           ({"tokens": (0, 1024)}, "tokens"),
                                           ({"time_s": (-1e-3, 2e-3)}, "time_s"),
                                           ({"curve_s": (1e-3,)}, "curve_s"),
                                           ({"time_s": (1e-3, 2e-3, 3e-3)}, "time_s")])
def test_malformed_points_are_one_line_errors_naming_the_field(tmp_path, change, field):
    good = _points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3)).model_dump(mode="json")
    doc = H200.calibration.model_copy(update={"moe": {"bf16": _curve()}, "moe_points": {}}).model_dump(mode="json")
    measured = {"source": "hand", "curve": _curve().model_dump(mode="json"), "shapes": [{**good, **change}]}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({**doc, "moe_points": {"bf16": measured}}))
    with pytest.raises(SpecError, match=field) as err:
        load_calibration(path)
    assert "\n" not in str(err.value)


def test_a_shape_stored_twice_is_an_error():
    p = _points((1024, 2048), (1.25e-3, 2.5e-3), (1e-3, 2e-3))
    with pytest.raises(ValueError, match="shapes.1: a second entry"):  # pydantic wraps the SpecError; load_calibration unwraps it
        MeasuredMoe(source="hand", curve=_curve(), shapes=(p, p))


def test_a_shape_faster_than_its_bytes_at_the_datasheet_bandwidth_is_left_out():
    # DeepSeek-V3 at tp 8 (h 7,168, 256 experts of 2,048 / 8 = 256, k 8) in vLLM 0.24's H200 fp8_block table: at T = 64
    # every expert is touched (64 · 8 = 512 rows over 256 experts) and its fp8 weights alone are 256 · 3 · 7,168 · 256 B
    # = 1.41 GB, 0.294 ms at the H200's 4.8 TB/s; the table's row takes 0.271 ms (5.2 TB/s), a speed of light broken:
    # the file keeps no points of the shape, names it, and the curve times it
    weight_bytes = 256 * 3 * 7168 * 256
    assert weight_bytes == 1_409_286_144 and weight_bytes / 4.8e12 == pytest.approx(0.2936e-3, rel=1e-3)
    assert weight_bytes / 4.8e12 > 0.271e-3
    measured = H200.calibration.moe_points["fp8_block"]
    assert (7168, 256.0, 256, 8) not in {(p.hidden, p.width, p.experts, p.topk) for p in measured.shapes}
    assert "(7168, 256.0, 256, 8)" in measured.source


def test_sweep_gives_predicts_figures_where_the_points_apply():
    """gpt-oss-120b computing at fp8 on the GB200 TensorRT-LLM file (its W4A8 `fp4-fp8` curve holds points of the tp 1
    layer) beside the analytical GB200: the sweep's TTFT of every cell and TPOT of the batch-1,024 cells equal `predict`
    of that scenario alone to 1e-9, so the points reach the sweep's stacked curves (`StackedCurves`) as they reach
    `predict`; and they move the figures. (The batch-64 TPOT cells differ from `predict` by 0.125 ms with or without
    the points, on the curve alone as before them: not this path.)"""
    import math

    model = rl.load_model("gpt-oss-120b")
    hws = [rl.load_hardware("gb200", framework="trtllm"), rl.load_hardware("gb200", analytical=True)]
    dep = rl.Deployment(activation_dtype="fp8")
    df = rl.sweep(model=model, hardware=hws, batch_size=[64, 1024], prompt_tokens=[1024, 4096], output_tokens=32,
                  activation_dtype="fp8")
    assert len(df) == 2 * 2 * 2
    for h, row in zip(np.repeat(np.arange(2), 4), df.itertuples()):
        p = rl.predict(model, hws[h], rl.Workload(batch_size=row.batch_size, prompt_tokens=row.prompt_tokens,
                                                  output_tokens=32), dep)
        assert math.isclose(row.ttft_s, p.ttft_s, rel_tol=1e-9), (hws[h].id, row)
        if row.batch_size == 1024:
            assert math.isclose(row.tpot_s, p.tpot_s, rel_tol=1e-9), (hws[h].id, row)
    stripped = hws[0].calibration.model_copy(update={"moe_points": {}})
    curve_only = attach_calibration(rl.load_hardware("gb200", analytical=True), stripped)
    w = rl.Workload(batch_size=1024, prompt_tokens=1024, output_tokens=32)
    assert rl.predict(model, hws[0], w, dep).tpot_s > 1.05 * rl.predict(model, curve_only, w, dep).tpot_s  # table slower at R = 4,096


def test_a_ratio_below_one_never_takes_an_op_below_its_floor():
    # ρ = 0.1 (a table ten times faster than the curve): each op's rates are held at the datasheet's (dense peak, HBM
    # bandwidth, vector rate), so every op is at or above its floor, the speed of light `predict` reports
    hw = _hw(_points((1024, 2048), (1e-4, 2e-4), (1e-3, 2e-3)))
    rd = rl.Deployment().resolved(MIXTRAL)
    ops = O.forward_ops(MIXTRAL, rd, 1536, 1, 511)
    table = OpTable.of(ops, ())
    timed = np.asarray(time_ops(table, Ceilings.of(hw, rd.compute_key), 1).time_s)
    floor = np.asarray(time_ops(table, Ceilings.of(hw, rd.compute_key, floor=True), 1).time_s)
    rows = [i for i, op in enumerate(ops) if op.name in FIVE]
    assert (timed[rows] >= floor[rows] * (1 - 1e-12)).all()
    assert timed[rows].sum() > 0.1 * _layer(_hw(), 1536)[0].sum()  # so above ρ x the curve's layer
