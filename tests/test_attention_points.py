"""Measured prefill attention points (`calibration.AttentionPoints`): a prefill attention kernel of a stored per-GPU shape
(query heads, KV heads, head dim on one GPU) is timed as the calibration's line times the measured / line ratio ρ,
bilinear in log batch and isl between the stored cells and held at the grid's edges
(`calibration.attention_point_ratio`); any other kernel by the line alone. Hand numbers, the fall-backs, the floor, the
one-line errors of malformed points, and sweep = predict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.calibration import AttentionPoints, MeasuredAttention, attach_calibration, attention_point_ratio, load_calibration
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, time_ops

LLAMA70 = rl.load_model("llama-3.1-70b")  # 64 query heads, 8 KV heads, d 128, 80 layers: at tp 8, (8, 1, 128) per GPU
H200 = rl.load_hardware("h200")
LINE = H200.calibration.attention_prefill  # the vLLM 0.24 H200 file's line, t0 + x / R over executed FLOPs / wave efficiency


def _points(heads=8, kv_heads=1, head_dim=128, batch=(4, 8), isl=(512, 1024), ratio=((1.17, 1.35), (1.37, 1.44))):
    return AttentionPoints(heads=heads, kv_heads=kv_heads, head_dim=head_dim, batch=batch, isl=isl, ratio=ratio)


def _hw(*shapes, line=LINE):
    """h200 with the shipped line and `shapes` as its only points (none: the line alone); the points taken against
    the shipped line (a `line` other than it makes them stale)."""
    points = None if not shapes else MeasuredAttention(source="hand", line_latency_s=LINE.latency_s,
                                                       line_rate_per_s=LINE.rate_per_s, shapes=tuple(shapes))
    cal = H200.calibration.model_copy(update={"attention_prefill": line, "attention_prefill_points": points})
    return attach_calibration(rl.load_hardware("h200", analytical=True), cal)


def _attention(hw, batch, new, past=0, tp=8, **dep):
    """The attention op of one prefill pass of Llama-3.1-70B at `tp` (all 80 layers): its time and the op."""
    rd = rl.Deployment(tp=tp, **dep).resolved(LLAMA70)
    ops = O.forward_ops(LLAMA70, rd, batch, new, past, tp=tp)
    i = [o.name for o in ops].index("attention")
    timing = time_ops(OpTable.of(ops, ()), Ceilings.of(hw, rd.compute_key), tp)
    return float(np.asarray(timing.time_s)[i]), ops[i]


def _line_s(batch, isl, heads=8, d=128, layers=80):
    """The line's time of `layers` kernels of `batch` sequences of `isl` tokens: x = executed FLOPs / wave efficiency
    (132 SMs on the H200), t = layers · (t0 + x / R)."""
    q = math.ceil(isl / 128)
    executed = batch * heads * 128 * 128 * q * (q + 1) / 2 * 4 * d  # causal 128 x 128 tiles, 4d FLOPs per pair
    blocks = batch * heads * q
    wave = blocks / (math.ceil(blocks / 132) * 132)
    return layers * (LINE.latency_s + executed / wave / LINE.rate_per_s)


def test_ratio_by_hand():
    b, s, r = np.array([4.0, 8.0]), np.array([512.0, 1024.0]), np.array([[1.17, 1.35], [1.37, 1.44]])
    assert attention_point_ratio(4.0, 512.0, b, s, r) == pytest.approx(1.17)  # a measured cell: its own ratio
    assert attention_point_ratio(4.0, 768.0, b, s, r) == pytest.approx((1.17 + 1.35) / 2)  # halfway in isl: 1.26
    assert attention_point_ratio(8.0, 768.0, b, s, r) == pytest.approx((1.37 + 1.44) / 2)  # 1.405
    # b = √32 = 5.657 is halfway between 4 and 8 in log b: (1.26 + 1.405) / 2 = 1.3325
    assert attention_point_ratio(math.sqrt(32), 768.0, b, s, r) == pytest.approx(1.3325)
    # a quarter of the way in isl (640) at b = 4: 1.17 + (1.35 - 1.17) / 4 = 1.215
    assert attention_point_ratio(4.0, 640.0, b, s, r) == pytest.approx(1.215)
    # held at the edges: below the first / past the last batch and length, the nearest cell
    assert attention_point_ratio(1.0, 16.0, b, s, r) == pytest.approx(1.17)
    assert attention_point_ratio(256.0, 16384.0, b, s, r) == pytest.approx(1.44)
    assert attention_point_ratio(2.0, 768.0, b, s, r) == pytest.approx(1.26)


def test_a_row_past_its_last_measured_length_holds_that_value():
    # batch 8 measured at 512 only (the tables cap batch · isl): its row continues at 1.37
    p = _points(ratio=((1.17, 1.35), (1.37,)))
    assert p.matrix.tolist() == [[1.17, 1.35], [1.37, 1.37]]
    b, s = np.array([4.0, 8.0]), np.array([512.0, 1024.0])
    assert attention_point_ratio(8.0, 1024.0, b, s, p.matrix) == pytest.approx(1.37)
    assert attention_point_ratio(math.sqrt(32), 1024.0, b, s, p.matrix) == pytest.approx((1.35 + 1.37) / 2)


def test_a_measured_cell_times_the_kernel_as_line_times_ratio():
    # Llama-3.1-70B at tp 8 is (8, 1, 128) per GPU. b = 4, S = 512: the line's time x 1.17; between the cells the
    # ratio interpolated, b = 4, S = 768: x 1.26
    line_only = _hw()
    stored = _hw(_points())
    for batch, isl, rho in ((4, 512, 1.17), (8, 1024, 1.44), (4, 768, 1.26), (math.sqrt(32), 768, 1.3325)):
        if batch != int(batch):
            continue  # a batch is whole: the log-halfway case is the ratio test's
        t_line, op = _attention(line_only, batch, isl)
        t_points, op2 = _attention(stored, batch, isl)
        assert t_line == pytest.approx(_line_s(batch, isl), rel=1e-9)  # the line as written out, compute-bound
        assert t_points == pytest.approx(rho * t_line, rel=1e-9)
        assert (op.flops, op.bytes) == (op2.flops, op2.bytes)  # per-op FLOPs and bytes unchanged
    # the worked number: 4 sequences of 512 tokens, 8 heads, 4 query tiles: 4 · 8 · 4 = 128 blocks, one wave of 132 SMs
    assert _line_s(4, 512) == pytest.approx(80 * (LINE.latency_s + 4 * 8 * 128**2 * 10 * 512 / (128 / 132) / LINE.rate_per_s))


def test_a_shape_not_stored_a_stale_line_a_chunk_and_an_fp8_cache_keep_the_line_exactly():
    stored = _points()
    # tp 4: 16 query heads, 2 KV heads per GPU, not stored
    assert _attention(_hw(stored), 4, 512, tp=4)[0] == _attention(_hw(), 4, 512, tp=4)[0]
    # a line other than the one the ratios were taken against
    stale = LINE.model_copy(update={"latency_s": 2 * LINE.latency_s})
    assert _attention(_hw(stored, line=stale), 4, 512)[0] == _attention(_hw(line=stale), 4, 512)[0]
    # a chunk of 512 after 512 cached tokens: not the table's kernel (its FLOPs are not b · H · n(n+1)/2 · 4d)
    assert _attention(_hw(stored), 4, 512, past=512)[0] == _attention(_hw(), 4, 512, past=512)[0]
    # an FP8 KV cache: the table's rows are bf16-KV
    assert _attention(_hw(stored), 4, 512, kv_dtype="fp8")[0] == _attention(_hw(), 4, 512, kv_dtype="fp8")[0]
    # a decode step (one new token): the decode line
    assert _attention(_hw(stored), 4, 1, past=511)[0] == _attention(_hw(), 4, 1, past=511)[0]


def test_a_ratio_below_one_never_takes_the_kernel_below_its_floor():
    # ρ = 0.01: the attention FLOP rate is held at the datasheet's dense bf16 peak and its bytes at the HBM bandwidth
    hw = _hw(_points(ratio=((0.01, 0.01), (0.01, 0.01))))
    t, op = _attention(hw, 4, 512)
    floor_compute_s = op.flops / H200.peak_flops_per_s["bf16"]
    floor_memory_s = op.bytes / H200.memory_bandwidth_bytes_per_s
    assert t >= max(floor_compute_s, floor_memory_s) * (1 - 1e-12)
    assert t > 0.01 * _attention(_hw(), 4, 512)[0]


def test_the_shipped_h200_points_give_the_table_ratio():
    # h200.json stores (8, 1, 128): its cell b = 8, S = 512 (the module's worked number, 1.37) times the line
    points = H200.calibration.attention_prefill_points
    assert (points.line_latency_s, points.line_rate_per_s) == (LINE.latency_s, LINE.rate_per_s)
    p = next(s for s in points.shapes if s.key == (8.0, 1.0, 128.0))
    rho = p.ratio[p.batch.index(8)][p.isl.index(512)]
    assert rho == pytest.approx(1.37, abs=0.01)
    assert _attention(H200, 8, 512)[0] == pytest.approx(rho * _line_s(8, 512), rel=1e-9)


def _doc_with(shape_change=None, points_change=None, drop_line=False):
    good = _points().model_dump(mode="json")
    measured = {"source": "hand", "line_latency_s": LINE.latency_s, "line_rate_per_s": LINE.rate_per_s,
                "shapes": [{**good, **(shape_change or {})}], **(points_change or {})}
    doc = H200.calibration.model_dump(mode="json", exclude_none=True)
    doc["attention_prefill_points"] = measured
    if drop_line:
        del doc["attention_prefill"]
    return doc


@pytest.mark.parametrize("doc, field", [(_doc_with({"batch": [8, 4]}), "batch"),
                                        (_doc_with({"isl": [512, 512]}), "isl"),
                                        (_doc_with({"isl": [0, 512]}), "isl"),
                                        (_doc_with({"ratio": [[1.17, 1.35]]}), "ratio"),
                                        (_doc_with({"ratio": [[1.17, 1.35, 1.4], [1.37]]}), "ratio.0"),
                                        (_doc_with({"ratio": [[1.17, -1.0], [1.37]]}), "ratio.0"),
                                        (_doc_with({"ratio": [[1.17], []]}), "ratio.1"),
                                        (_doc_with({"ratio": [[1.17, True], [1.37]]}), "ratio"),
                                        (_doc_with(points_change={"line_rate_per_s": 0}), "line_rate_per_s"),
                                        (_doc_with(drop_line=True), "attention_prefill_points")])
def test_malformed_points_are_one_line_errors_naming_the_field(tmp_path, doc, field):
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=field) as err:
        load_calibration(path)
    assert "\n" not in str(err.value)


def test_a_shape_stored_twice_is_an_error():
    with pytest.raises(ValueError, match="shapes.1: a second entry"):  # pydantic wraps the SpecError; load_calibration unwraps it
        MeasuredAttention(source="hand", line_latency_s=LINE.latency_s, line_rate_per_s=LINE.rate_per_s,
                          shapes=(_points(), _points()))


def test_sweep_gives_predicts_figures_where_the_points_apply():
    """Llama-3.1-70B at tp 8 on the shipped H200 file (its (8, 1, 128) points) beside the analytical H200: the sweep's
    TTFT of every cell equals `predict` of that scenario alone to 1e-9, so the points reach the sweep's stacked curves
    as they reach `predict`; and they move the figure."""
    hws = [H200, rl.load_hardware("h200", analytical=True)]
    dep = rl.Deployment(tp=8)
    df = rl.sweep(model=LLAMA70, hardware=hws, tp=8, batch_size=[1, 16], prompt_tokens=[512, 3000], output_tokens=8)
    assert len(df) == 2 * 2 * 2
    for row in df.itertuples():
        hw = hws[0] if "calibrated" in row.hardware else hws[1]
        p = rl.predict(LLAMA70, hw, rl.Workload(batch_size=row.batch_size, prompt_tokens=row.prompt_tokens, output_tokens=8), dep)
        assert math.isclose(row.ttft_s, p.ttft_s, rel_tol=1e-9), (hw.id, row)
    line_only = attach_calibration(rl.load_hardware("h200", analytical=True),
                                   H200.calibration.model_copy(update={"attention_prefill_points": None}))
    # 16 sequences of 512 tokens: the attention kernels take the stored cell's ratio times the line, the rest unchanged
    p = next(s for s in H200.calibration.attention_prefill_points.shapes if s.key == (8.0, 1.0, 128.0))
    rho = p.ratio[p.batch.index(16)][p.isl.index(512)]  # 1.47
    w = rl.Workload(batch_size=16, prompt_tokens=512, output_tokens=8)
    moved_s = rl.predict(LLAMA70, H200, w, dep).ttft_s - rl.predict(LLAMA70, line_only, w, dep).ttft_s
    assert moved_s == pytest.approx((rho - 1) * _line_s(16, 512), rel=1e-6)


def test_the_builder_stores_measured_over_line_per_cell_and_drops_the_least_run_shapes_for_size():
    """`calibrate.public_attention.attention_points` over a hand-made table: every cell of shape (8, 1, 128) measured at
    1.25x the line (b = 4) and 0.8x (b = 8), isl 512 and 1,024, plus an isl-1 row (a decode step: left out) and a shape
    the corpus does not run (3 heads: left out). `within_budget` then drops the shape the fewest corpus rows run."""
    import pandas as pd

    from calibrate.public_attention import attention_points, line_s, within_budget

    rows, x = [], []
    for heads, kv in ((8, 1), (3, 1)):
        for batch, factor in ((4, 1.25), (8, 0.8)):
            for isl in (1, 512, 1024):
                xi = 1e9 * batch * isl
                x.append(xi)
                rows.append({"num_heads": heads, "num_key_value_heads": kv, "head_dim": 128, "batch_size": batch, "isl": isl,
                             "latency": 1e3 * factor * (LINE.latency_s + xi / LINE.rate_per_s)})
    df = pd.DataFrame(rows)
    points = attention_points(df, np.array(x), LINE, "ctx.parquet", shapes={(8, 1, 128): 5, (16, 2, 128): 1})
    assert [p.key for p in points.shapes] == [(8.0, 1.0, 128.0)]
    p = points.shapes[0]
    assert (p.batch, p.isl, p.ratio) == ((4, 8), (512, 1024), ((1.25, 1.25), (0.8, 0.8)))
    assert line_s(LINE, 1e9) == pytest.approx(LINE.latency_s + 1e9 / LINE.rate_per_s)
    # two shapes, room for one: the one 1 corpus row runs goes, counted in `source`; no room at all: None
    two = points.model_copy(update={"shapes": (p, p.model_copy(update={"heads": 16, "kv_heads": 2}))})
    two_size = len(two.model_dump_json(exclude_none=True)) + len('"attention_prefill_points":,')
    kept = within_budget(two, two_size - 1, {(8, 1, 128): 5, (16, 2, 128): 1})
    assert [s.key for s in kept.shapes] == [(8.0, 1.0, 128.0)] and "1 more left out" in kept.source
    assert len(kept.model_dump_json(exclude_none=True)) + len('"attention_prefill_points":,') <= two_size - 1  # its note too
    assert within_budget(two, 10_000_000, {}) is two
    assert within_budget(two, 10, {}) is None
