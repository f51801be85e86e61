"""Attention by shape (`roofline.attention_shapes`): causal tiles, waves and decode units by hand, the attention op that
carries them, and how a calibrated profile times by them (or, without the fields, exactly as before)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import roofline as rl
from roofline import ops as O
from roofline.attention_shapes import TILE, executed_pairs, prefill_query_tiles, query_tiles, wave_efficiency
from roofline.calibration import CalibratedCurves, Calibration, load_calibration
from roofline.engine import decode_ceilings
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, time_ops

M8 = rl.load_model("llama-3.1-8b")  # 32 layers, 32 query heads, 8 KV heads, d = 128
DSV3 = rl.load_model("deepseek-v3")  # 61 layers, 128 heads, MLA: latent 512 + rope 64, d_qk 192, d_v 128
PUBLIC = Path(__file__).resolve().parent.parent / "calibrate" / "public"


def _attention(model, batch, new, past, tp=1):
    """The attention ops of one pass, summed: (layers, flops, executed_flops, attention_tiles, kv_units)."""
    ops = [op for op in O.forward_ops(model, rl.Deployment().resolved(model), batch, new, past, tp) if op.kind == O.OpKind.ATTENTION]
    return tuple(sum(getattr(op, f) for op in ops) for f in ("layers", "flops", "executed_flops", "attention_tiles", "kv_units"))


def test_short_prompts_execute_whole_diagonal_tiles():
    """S = 256: q = 2 query tiles read 1 and 2 key tiles, 3 tiles of 128² = 49,152 pairs for 256 · 257 / 2 = 32,896
    useful (67%); S = 8192: q = 64, 64 · 65 / 2 = 2,080 tiles = 34,078,720 pairs for 33,558,528 (98.5%)."""
    assert executed_pairs(256, 0) == 3 * 128 * 128 == 49_152
    assert 256 * 257 / 2 / executed_pairs(256, 0) == pytest.approx(0.669, abs=1e-3)
    assert executed_pairs(8192, 0) == 2080 * 128 * 128 == 34_078_720
    assert 8192 * 8193 / 2 / executed_pairs(8192, 0) == pytest.approx(0.985, abs=1e-3)
    # S = 129 spills one row into a second query tile, which still runs 128 rows against 2 key tiles
    assert executed_pairs(129, 0) == 3 * 128 * 128 and query_tiles(129) == 2


def test_a_chunk_after_cached_tokens_reads_the_cached_key_tiles():
    """n = 200 after p = 300: a = ceil(300 / 128) = 3 cached key tiles, q = 2 query tiles read 3 + 1 and 3 + 2:
    9 tiles = 147,456 pairs for Σ_{i=1..200} (300 + i) = 80,100 useful."""
    assert executed_pairs(200, 300) == (4 + 5) * TILE * TILE == 147_456
    assert O.attended_keys(200, 300) == 300 * 200 + 200 * 201 / 2 == 80_100


def test_a_sliding_window_caps_the_key_tiles_per_query_tile():
    """n = 1024, window 256: each query tile reads at most ceil(256 / 128) + 1 = 3 key tiles; q = 8 tiles read
    1, 2, 3, 3, 3, 3, 3, 3 = 21 tiles."""
    assert executed_pairs(1024, 0, 256) == 21 * TILE * TILE
    assert executed_pairs(1024, 0, 1e9) == executed_pairs(1024, 0)  # a window past the prompt changes nothing


def test_a_decode_step_executes_only_its_visible_keys():
    """n = 1: the split-KV decode kernel streams the keys it needs, min(p + 1, w), the useful pairs."""
    for past, window in ((0, math.inf), (4095, math.inf), (4095, 1024)):
        assert executed_pairs(1, past, window) == O.attended_keys(1, past, window) == min(past + 1, window)
    assert prefill_query_tiles(64, 32, 1) == 0.0  # no query-tile waves to quantize


def test_executed_pairs_never_undercount_and_agree_on_grids():
    """Executed ≥ useful for every (n, p, window); the array path gives the scalar path's numbers."""
    import numpy as np

    n = np.array([2, 100, 128, 129, 1000, 4096, 333])
    p = np.array([0, 0, 50, 128, 900, 0, 4000])
    for w in (math.inf, 200, 4096):
        grid = executed_pairs(n, p, w)
        for i in range(len(n)):
            assert grid[i] == executed_pairs(int(n[i]), int(p[i]), w)
            assert grid[i] >= O.attended_keys(int(n[i]), int(p[i]), w)


def test_waves_over_the_sms():
    """132 SMs: 128 blocks in one wave, 128 / 132 = 0.970 busy; 200 blocks in 2 waves, 200 / 264 = 0.758;
    1 block, 1 / 132; no blocks (a decode step) or no SM count: 1."""
    assert wave_efficiency(128, 132) == pytest.approx(128 / 132)
    assert wave_efficiency(200, 132) == pytest.approx(200 / 264)
    assert wave_efficiency(1, 132) == pytest.approx(1 / 132)
    assert wave_efficiency(0, 132) == 1.0 and wave_efficiency(128, 0) == 1.0


def test_the_attention_op_carries_its_tiles_by_hand():
    """llama-3.1-8b, batch 2, prompt 1000, tp 1: q = ceil(1000 / 128) = 8; 32 layers · 2 · 32 heads · 8 = 16,384
    query-tile blocks; 8 · 9 / 2 = 36 tiles of 128² pairs at 4 · 128 FLOPs; 2 · 8 KV heads per layer."""
    layers, flops, executed, tiles, units = _attention(M8, 2, 1000, 0)
    assert layers == 32
    assert tiles == 32 * 2 * 32 * 8 == 16_384
    assert executed == 32 * 2 * 32 * 36 * 128 * 128 * 4 * 128
    assert flops == 32 * 2 * 32 * (1000 * 1001 / 2) * 4 * 128
    assert units == 32 * 2 * 8
    # tp 4: 8 query heads and 2 KV heads per GPU
    _, _, executed4, tiles4, units4 = _attention(M8, 2, 1000, 0, tp=4)
    assert (tiles4, units4) == (tiles / 4, 32 * 2 * 2) and executed4 == pytest.approx(executed / 4)


def test_mla_prefill_and_decode_by_hand():
    """DeepSeek-V3, tp 8 (16 heads per GPU). Prefill (K, V decompressed per head): pairs at 2 · 192 + 2 · 128 = 640 FLOPs,
    S = 1000 runs 36 tiles of 128², and every head is its own KV unit. Decode (absorbed): one latent of 512 + 64 read by
    all heads, 2 · 576 + 2 · 512 = 2,176 FLOPs per pair, one KV unit per sequence, executed = useful."""
    layers, flops, executed, tiles, units = _attention(DSV3, 1, 1000, 0, tp=8)
    assert layers == 61
    assert executed == pytest.approx(61 * 16 * 36 * 128 * 128 * 640)
    assert tiles == 61 * 16 * 8 and units == 61 * 16
    layers, flops, executed, tiles, units = _attention(DSV3, 4, 1, 4095, tp=8)
    assert flops == pytest.approx(61 * 4 * 16 * 4096 * 2176) and executed == flops
    assert tiles == 0 and units == 61 * 4


def _h100(cal: Calibration):
    return rl.load_hardware("h100-sxm", analytical=True).model_copy(update={"calibration": cal})


def _attention_times(hw, batch, new, past):
    ops = O.forward_ops(M8, rl.Deployment().resolved(M8), batch, new, past)
    t = OpTable.of(ops, ())
    c = Ceilings.of(hw, "bf16")
    if new == 1:
        c = decode_ceilings(c)
    timing = time_ops(t, c, 1)
    i = [op.kind for op in ops].index(O.OpKind.ATTENTION)
    return ops[i], float(timing.compute_s[i]), float(timing.memory_s[i])


def test_a_calibrated_prefill_times_executed_flops_over_waves_and_old_files_are_unchanged():
    """Prefill, batch 1, S = 1000 on an H100 (132 SMs): 32 heads · 8 tiles = 256 blocks, 2 waves, 256 / 264 busy.
    A line over executed FLOPs gives layers · t0 + executed / (256 / 264) / R; the same line over FLOPs (a file
    written before the field) gives layers · t0 + FLOPs / R, the timing it always had. The line alone: the file's
    measured points of this shape (32, 8, 128) are left out here (they scale the line: tests/test_attention_points.py)."""
    cal = load_calibration(PUBLIC / "h100-sxm.json").model_copy(update={"attention_prefill_points": None})
    assert cal.attention_prefill.x_unit == "executed_flops"
    curves = CalibratedCurves(cal, _h100(cal), "bf16")
    t0, rate = curves.att_pre_latency_s, curves.att_pre_rate
    op, compute, _ = _attention_times(_h100(cal), 1, 1000, 0)
    assert compute == pytest.approx(32 * t0 + op.executed_flops / (256 / 264) / rate, rel=1e-9)
    old = cal.model_copy(update={"attention_prefill": cal.attention_prefill.model_copy(update={"x_unit": "flops"}),
                                 "attention_decode_kv_head_s": None})
    op, compute, _ = _attention_times(_h100(old), 1, 1000, 0)
    assert compute == pytest.approx(32 * t0 + op.flops / rate, rel=1e-9)


def test_a_calibrated_decode_step_pays_its_kv_head_units():
    """Decode, batch 64 at context 2048: the memory term is layers · t0 + 64 · 8 KV heads · 32 layers · t_kvh + bytes / R;
    without `attention_decode_kv_head_s` the unit term goes."""
    cal = load_calibration(PUBLIC / "h100-sxm.json")
    t_kvh = cal.attention_decode_kv_head_s
    assert t_kvh is not None and 0 < t_kvh < 1e-6
    curves = CalibratedCurves(cal, _h100(cal), "bf16")
    op, _, memory = _attention_times(_h100(cal), 64, 1, 2047)
    nbytes = op.bytes
    assert op.kv_units == 32 * 64 * 8
    assert memory == pytest.approx(32 * curves.att_dec_latency_s + 32 * 64 * 8 * t_kvh + nbytes / curves.att_dec_rate, rel=1e-9)
    old = cal.model_copy(update={"attention_decode_kv_head_s": None})
    _, _, memory = _attention_times(_h100(old), 64, 1, 2047)
    assert memory == pytest.approx(32 * curves.att_dec_latency_s + nbytes / curves.att_dec_rate, rel=1e-9)


def test_schema_refuses_a_unit_cost_without_its_line_and_a_prefill_line_in_bytes(tmp_path):
    """One-line errors naming the field, through the file loader."""
    import json

    data = load_calibration(PUBLIC / "h100-sxm.json").model_dump(mode="json", exclude_none=True)
    for name, bad, field in (("orphan", {**data, "attention_decode": None}, "attention_decode_kv_head_s"),
                             ("bytes", {**data, "attention_prefill": {**data["attention_prefill"], "x_unit": "bytes"}},
                              "attention_prefill.x_unit")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({k: v for k, v in bad.items() if v is not None}))
        with pytest.raises(SpecError, match=field.replace(".", r"\.")) as err:
            load_calibration(path)
        assert "\n" not in str(err.value)
