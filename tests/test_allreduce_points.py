"""A calibrated all-reduce timed through its measured (bytes, seconds) points (`calibration.MeasuredAllreduce`,
`interpolated_message_s`): piecewise-linear between measured sizes, the smallest point's time below them, the last
segment's rate beyond them. Every expected value is worked by hand in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.calibration import AllreducePoints, CalibratedCurves, MeasuredAllreduce, allreduce_points, interpolated_message_s, switched_allreduce_points
from roofline.engines import EngineProfile, engine_tables, load_engine, with_custom_allreduce_limit, with_nccl_allreduce
from roofline.errors import SpecError
from roofline.roofline import Ceilings, OpTable, stacked, time_ops

PUBLIC = Path(__file__).resolve().parents[1] / "calibrate" / "public"
US = 1e-6


def _points(x, t, peak=1e15):
    return AllreducePoints(message_bytes=tuple(x), time_s=tuple(t), peak_per_s=peak)


def test_a_two_point_table_between_below_and_beyond():
    """Points (1 MB, 10 us), (3 MB, 20 us): slope 10 us / 2 MB = 5 ps/B.
    2 MB: 10 + (2 - 1) / (3 - 1) · 10 = 15 us; 1.5 MB: 10 + 0.25 · 10 = 12.5 us;
    0.5 MB (below the smallest): 10 us; 5 MB (beyond): 20 + 2e6 · 5e-12 = 30 us; a group not measured: NaN."""
    m = MeasuredAllreduce(source="hand", groups={"2": _points((1e6, 3e6), (10 * US, 20 * US))})
    assert m.time_s(2e6, 2) == pytest.approx(15 * US)
    assert m.time_s(1.5e6, 2) == pytest.approx(12.5 * US)
    assert m.time_s(0.5e6, 2) == pytest.approx(10 * US)
    assert m.time_s(5e6, 2) == pytest.approx(30 * US)
    assert m.time_s(1e6, 2) == pytest.approx(10 * US) and m.time_s(3e6, 2) == pytest.approx(20 * US)  # the points
    assert np.isnan(m.time_s(2e6, 4))


def test_a_three_point_table_follows_the_kink():
    """(1 MiB, 13.8 us), (2 MiB, 18.2 us), (4 MiB, 28.4 us): a kernel changing algorithm at 2 MiB (slopes 4.4 us and
    10.2 us per segment). 1.5 MiB: 13.8 + 0.5 · 4.4 = 16.0 us; 3 MiB: 18.2 + 0.5 · 10.2 = 23.3 us; 8 MiB, beyond:
    28.4 + (8 - 4) MiB · 10.2 us / 2 MiB = 28.4 + 20.4 = 48.8 us. The one line through the end points,
    13.8 + (S - 1 MiB) · 14.6 us / 3 MiB, would give 1.5 MiB 16.23 us and 3 MiB 23.53 us: through neither middle."""
    mib = 2.0**20
    p = _points((mib, 2 * mib, 4 * mib), (13.8 * US, 18.2 * US, 28.4 * US))
    assert p.time_at_s(1.5 * mib) == pytest.approx(16.0 * US)
    assert p.time_at_s(3 * mib) == pytest.approx(23.3 * US)
    assert p.time_at_s(8 * mib) == pytest.approx(48.8 * US)
    assert p.time_at_s(0.25 * mib) == pytest.approx(13.8 * US)
    grid = np.array([[0.25, 1.5], [3.0, 8.0]]) * mib  # an array: each entry as its own call
    assert np.allclose(p.time_at_s(grid), [[p.time_at_s(s) for s in row] for row in grid], rtol=0, atol=0)


def test_interpolated_message_s_is_the_one_formula():
    """The module function on raw arrays is what the validated record times with (one home for the formula)."""
    x, t = np.array([1e6, 3e6]), np.array([10 * US, 20 * US])
    assert interpolated_message_s(2e6, x, t) == pytest.approx(15 * US)
    assert interpolated_message_s(np.array([0.0, 5e6]), x, t) == pytest.approx([10 * US, 30 * US])


@pytest.mark.parametrize("update, field", [
    ({"message_bytes": (2e6, 1e6)}, "message_bytes"),
    ({"message_bytes": (1e6, 1e6)}, "message_bytes"),
    ({"message_bytes": (0.0, 1e6)}, "message_bytes"),
    ({"time_s": (10 * US,)}, "time_s"),
    ({"time_s": (20 * US, 20 * US)}, "time_s"),  # flat last segment: no rate to extend
    ({"time_s": (10 * US, 10.001 * US), "peak_per_s": 1e12}, "time_s"),  # 2e6 B in 1 ns: 2e15 B/s above 1e12
])
def test_bad_points_are_one_line_errors_naming_the_field(update, field):
    base = {"message_bytes": (1e6, 3e6), "time_s": (10 * US, 20 * US), "peak_per_s": 1e15}
    with pytest.raises((SpecError, ValueError), match=field):
        AllreducePoints.model_validate({**base, **update})
    with pytest.raises((SpecError, ValueError), match="groups"):
        MeasuredAllreduce(source="hand", groups={"1": _points((1e6, 3e6), (10 * US, 20 * US))})


def test_shipped_files_store_every_measured_size_once_sorted():
    """calibrate/public/h200.json: vLLM 0.24.0's custom all-reduce table has 23 sizes, 256 B to 1 GiB (128 to 2^29
    elements · 2 bytes), one row each; peak_per_s of tp8 is 450e9 · 8 / 7 = 514.3e9 B/s."""
    raw = json.loads((PUBLIC / "h200.json").read_text())
    cal = rl.load_hardware("h200").calibration
    g = cal.allreduce_points.groups["8"]
    assert len(g.message_bytes) == 23 and g.message_bytes[0] == 256.0 and g.message_bytes[-1] == 2.0**30
    assert g.peak_per_s == pytest.approx(450e9 * 8 / 7)
    assert list(g.message_bytes) == sorted(set(g.message_bytes))
    assert "custom_allreduce_perf.parquet" in raw["allreduce_points"]["source"]
    assert "nccl_perf.parquet" in raw["nccl_allreduce_points"]["source"]


def test_grids_of_size_and_tp_equal_scalar_calls():
    """`CalibratedCurves.allreduce_message_s` over a grid of message sizes and tp (2, 3, 4, 8; tp 3 not measured: 0)
    gives each entry's scalar call exactly."""
    hw = rl.load_hardware("h200")
    curves = CalibratedCurves(hw.calibration, hw, "bf16")
    sizes = np.array([100.0, 65536.0, 196608.0, 3e6, 1.2e8, 4e9]).reshape(-1, 1)
    tps = np.array([2, 3, 4, 8]).reshape(1, -1)
    grid = curves.allreduce_message_s(sizes, tps)
    scalar = np.array([[float(curves.allreduce_message_s(float(s), int(p))) for p in tps[0]] for s in sizes[:, 0]])
    assert grid.shape == (6, 4) and np.array_equal(grid, scalar)
    assert np.all(grid[:, 1] == 0) and np.all(grid[:, [0, 2, 3]] > 0)


def test_a_stacked_grid_times_each_device_as_predict_does():
    """A tp grid over stacked ceilings (calibrated H200, H100 SXM; analytical A100): each device's all-reduce row is
    its own scalar timing at each tp (`StackedCurves.with_allreduce` places each device's measured times)."""
    m = rl.load_model("llama-3.1-70b")
    rd = rl.Deployment().resolved(m)  # as `sweep` builds its tables: tp passed on its own
    tp = np.array([2.0, 4.0, 8.0]).reshape(1, 1, 3)
    t = OpTable.of(O.forward_ops(m, rd, 12, 1, 512, tp), (1, 1, 3))
    hws = [rl.load_hardware("h200"), rl.load_hardware("h100-sxm"), rl.load_hardware("a100-sxm-80gb", analytical=True)]
    grid = time_ops(t, stacked([Ceilings.of(h, rd.compute_key) for h in hws], np.arange(3).reshape(1, 3, 1)), tp).comm_s
    per_device_tp = grid[list(t.names).index("allreduce")].reshape(3, 3)  # (device, tp)
    for d, h in enumerate(hws):
        for j, p in enumerate((2, 4, 8)):
            one = OpTable.of(O.forward_ops(m, rd, 12, 1, 512, p), ())
            scalar = time_ops(one, Ceilings.of(h, rd.compute_key), p).comm_s[list(one.names).index("allreduce")]
            assert per_device_tp[d, j] == pytest.approx(float(scalar), rel=1e-12), (h.name, p)


def test_points_scale_with_the_link_of_a_what_if_profile():
    """h200.json on an H200 whose NVLink is twice as fast: the time above the smallest size's is bytes over the link,
    so it halves: t'(S) = t(S_0) + (t(S) - t(S_0)) / 2. tp8 custom points: S_0 = 256 B at 6.5xx us; 1 GiB measured
    t_n: t' = t_0 + (t_n - t_0) / 2."""
    hw = rl.load_hardware("h200")
    ic = hw.interconnect
    fast = hw.model_copy(update={"interconnect": ic.model_copy(update={"bytes_per_s_per_direction": 2 * ic.bytes_per_s_per_direction})})
    g = hw.calibration.allreduce_points.groups["8"]
    x, t = allreduce_points(hw.calibration, fast)[8]
    assert np.array_equal(x, g.message_bytes)
    assert t[0] == g.time_s[0]
    assert t[-1] == pytest.approx(g.time_s[0] + (g.time_s[-1] - g.time_s[0]) / 2)
    x_same, t_same = allreduce_points(hw.calibration, hw)[8]
    assert np.array_equal(t_same, g.time_s)


def test_a_file_without_points_keeps_its_line():
    """A calibration written before the points (allreduce_points None) times a message by its line t0 + S / R, exactly
    as before: the line as the two points (0, t0), (1 MB, t0 + 1e6 / R), extended beyond at rate R. h200.json's tp8
    line at 196,608 B: t0 + 196,608 / R."""
    hw = rl.load_hardware("h200")
    cal = hw.calibration.model_copy(update={"allreduce_points": None})
    line = cal.allreduce["8"]
    curves = CalibratedCurves(cal, hw, "bf16")
    for s in (196608.0, 5e8):
        assert float(curves.allreduce_message_s(s, 8)) == pytest.approx(line.latency_s + s / line.rate_per_s, rel=1e-12)


def test_the_points_match_the_table_closer_than_the_line_at_decode_sizes():
    """Why the points: at 1 MiB, tp8 on H200 (vLLM 0.24.0), the table takes 14.07 us; the points give it exactly and
    the fitted line t0 + S / R gives less (the line was 29% fast there before this change)."""
    hw = rl.load_hardware("h200")
    curves = CalibratedCurves(hw.calibration, hw, "bf16")
    line = hw.calibration.allreduce["8"]
    s = 2.0**20
    assert float(curves.allreduce_message_s(s, 8)) == pytest.approx(14.07 * US)
    assert line.latency_s + s / line.rate_per_s < 0.8 * 14.07 * US


def test_the_engine_tables_already_hold_the_switch_to_nccl():
    """The custom all-reduce tables time the engine's whole all-reduce call (aiconfigurator's collector calls vLLM's
    tensor_model_parallel_all_reduce), so a message above the engine's custom-kernel limit is already timed as the
    engine runs it. A100 (vLLM 0.14.0 table; sm80 has no per-size table in vLLM, so the custom kernel's max_size is its
    8 MiB default and pynccl takes 8 MiB and more), tp8, Llama-70B (hidden 8192, bf16):
    * a prefill of 2,048 tokens all-reduces S = 2,048 · 8,192 · 2 = 33,554,432 B = 32 MiB >= 8 MiB: NCCL's side. Both
      tables measured 32 MiB: the vLLM table 364.3 us, NCCL's 367.0 us, 0.7% apart;
    * 1,536 tokens, S = 24 MiB, between the measured 16 and 32 MiB: vLLM 214.2 + (24 - 16) / (32 - 16) · (364.3 - 214.2)
      = 289.25 us; NCCL 216.5 + 0.5 · (367.0 - 216.5) = 291.75 us;
    * 256 tokens, S = 4 MiB < 8 MiB: the custom kernel runs, 45.37 us against NCCL's 77.31 us.
    The vLLM engine (its custom table) and the NCCL-timed profile (`engines.with_nccl_allreduce`) therefore agree above
    8 MiB and differ below it, with no switch modelled on top."""
    hw = rl.load_hardware("a100-sxm-80gb")
    vllm = CalibratedCurves(engine_tables(hw, "vllm").calibration, hw, "bf16")
    nccl = CalibratedCurves(with_nccl_allreduce(hw).calibration, hw, "bf16")
    mib = 2.0**20
    assert 2048 * 8192 * 2 == 32 * mib
    assert float(vllm.allreduce_message_s(32 * mib, 8)) == pytest.approx(364.3 * US)
    assert float(nccl.allreduce_message_s(32 * mib, 8)) == pytest.approx(367.0 * US)
    assert float(vllm.allreduce_message_s(24 * mib, 8)) == pytest.approx(289.25 * US)
    assert float(nccl.allreduce_message_s(24 * mib, 8)) == pytest.approx(291.75 * US)
    assert float(vllm.allreduce_message_s(4 * mib, 8)) == pytest.approx(45.37 * US)
    assert float(nccl.allreduce_message_s(4 * mib, 8)) == pytest.approx(77.31 * US)
    for p in (2, 4, 8):  # every measured size from 16 MiB up: the two tables within 3% (the switch is in the points)
        sizes = np.array([16, 32, 64, 128, 256, 512]) * mib
        assert np.allclose(vllm.allreduce_message_s(sizes, p), nccl.allreduce_message_s(sizes, p), rtol=0.03, atol=0)


def test_a_newer_engine_table_switches_where_its_own_version_does():
    """H200, vLLM 0.24.0 table (h200.json): that release dispatches tp8 messages from 256 KiB to below 64 MiB to its
    symmetric-memory all-reduce (vllm/distributed/device_communicators/all_reduce_utils.py, SYMM_MEM_ALL_REDUCE_MAX_SIZES
    sm 9.0, tp8: 64 MiB) and larger ones to NCCL. Its points: 16 MiB 87.17 us against NCCL's 121.7 us (28% faster), but
    64 MiB 323.3 us against 319.6 us and 128 MiB 562.4 against 564.5 us: NCCL's time, within 1.2%, from 64 MiB."""
    hw = rl.load_hardware("h200")
    vllm = CalibratedCurves(engine_tables(hw, "vllm").calibration, hw, "bf16")
    nccl = CalibratedCurves(with_nccl_allreduce(hw).calibration, hw, "bf16")
    mib = 2.0**20
    assert float(vllm.allreduce_message_s(16 * mib, 8)) == pytest.approx(87.17 * US)
    assert float(nccl.allreduce_message_s(16 * mib, 8)) == pytest.approx(121.7 * US)
    assert float(vllm.allreduce_message_s(64 * mib, 8)) == pytest.approx(323.3 * US)
    assert float(nccl.allreduce_message_s(64 * mib, 8)) == pytest.approx(319.6 * US)
    assert float(vllm.allreduce_message_s(128 * mib, 8)) == pytest.approx(nccl.allreduce_message_s(128 * mib, 8), rel=0.012)


# ------------------------------------------------- a release older than the table: custom kernel below 8 MiB, NCCL above

MIB = 2.0**20


def test_switched_points_take_the_custom_side_below_the_limit_and_nccl_from_it():
    """Hand points: custom (4 MiB, 40 us), (16 MiB, 100 us); NCCL (4 MiB, 70 us), (16 MiB, 130 us); limit L = 8 MiB.
    Both sides rise 60 us over 12 MiB, i.e. 5 us per MiB.
    * the custom side at L - 1 byte: 40 + (4 MiB - 1) / 12 MiB · 60 = 60 - 60 / 12,582,912 us;
    * NCCL at L: 70 + 4 / 12 · 60 = 90 us;
    * 6 MiB (custom): 40 + 2 · 5 = 50 us; 12 MiB (NCCL): 70 + 8 · 5 = 110 us; 20 MiB (beyond, NCCL's last rate):
      130 + 4 · 5 = 150 us; 2 MiB (below every point): the custom 40 us."""
    custom = _points((4 * MIB, 16 * MIB), (40 * US, 100 * US))
    nccl = _points((4 * MIB, 16 * MIB), (70 * US, 130 * US))
    s = switched_allreduce_points(custom, nccl, 8 * MIB)
    assert s.message_bytes == (4 * MIB, 8 * MIB - 1, 8 * MIB, 16 * MIB)
    assert s.time_s[1] == pytest.approx((60 - 60 / 12_582_912) * US, rel=1e-12)
    assert s.time_s[2] == pytest.approx(90 * US, rel=1e-12)
    for size_mib, want_us in ((6, 50), (12, 110), (20, 150), (2, 40), (4, 40), (16, 130)):
        assert float(s.time_at_s(size_mib * MIB)) == pytest.approx(want_us * US, rel=1e-12)
    # an NCCL table that ends at the limit: its time at 2L (its last segment's rate, 5 us per MiB, carried on) closes
    # the points: 16 MiB takes 70 + 12 · 5 = 130 us
    short = switched_allreduce_points(custom, _points((2 * MIB, 8 * MIB), (60 * US, 90 * US)), 8 * MIB)
    assert short.message_bytes[-2:] == (8 * MIB, 16 * MIB)
    assert float(short.time_at_s(16 * MIB)) == pytest.approx(130 * US, rel=1e-12)
    with pytest.raises(SpecError, match="custom_allreduce_max_bytes"):
        switched_allreduce_points(custom, nccl, 1.0)


def test_sglang_0_4_0_takes_nccl_from_8_mib_on_the_h200():
    """SGLang 0.4.0.post1 ran vLLM 0.6's all-reduce (custom kernel for S < 8 MiB, then pynccl); the SGLang 0.5.14 table
    (h200-sglang.json) keeps its custom kernel to 32 MiB. Llama-3.3-70B (hidden 8,192, bf16) at tp4, table points
    (us): custom 4 / 8 / 16 MiB 24.55 / 43.41 / 83.56; NCCL 8 / 16 MiB 60.08 / 98.77.
    * a prefill chunk of 768 tokens all-reduces S = 768 · 8,192 · 2 = 12,582,912 B = 12 MiB >= 8 MiB: NCCL,
      60.08 + (12 - 8) / (16 - 8) · (98.77 - 60.08) = 79.425 us under sglang-0.4.0, where `sglang` (the table's own
      switch) takes the custom 43.41 + 0.5 · (83.56 - 43.41) = 63.485 us;
    * a decode step of 64 sequences, S = 64 · 8,192 · 2 = 1 MiB < 8 MiB: the custom kernel's 10.37 us under both;
      384 tokens, S = 6 MiB: 24.55 + 0.5 · (43.41 - 24.55) = 33.98 us under both;
    * at the limit: the custom side at 8 MiB - 1 B, 24.55 + (4 MiB - 1) / 4 MiB · 18.86 = 43.41 - 18.86 / 4,194,304
      us; NCCL's measured 60.08 us at 8 MiB itself."""
    hw = rl.load_hardware("h200")
    old = engine_tables(hw, "sglang-0.4.0")
    new = engine_tables(hw, "sglang")
    assert load_engine("sglang-0.4.0").custom_allreduce_max_bytes == 8 * MIB and load_engine("sglang").custom_allreduce_max_bytes is None
    c_old, c_new = CalibratedCurves(old.calibration, hw, "bf16"), CalibratedCurves(new.calibration, hw, "bf16")
    assert 768 * 8192 * 2 == 12 * MIB and 64 * 8192 * 2 == MIB and 384 * 8192 * 2 == 6 * MIB
    assert float(c_old.allreduce_message_s(12 * MIB, 4)) == pytest.approx(79.425 * US, rel=1e-4)
    assert float(c_new.allreduce_message_s(12 * MIB, 4)) == pytest.approx(63.485 * US, rel=1e-4)
    for size, want_us in ((MIB, 10.37), (6 * MIB, 33.98)):
        assert float(c_old.allreduce_message_s(size, 4)) == pytest.approx(want_us * US, rel=1e-4)
        assert float(c_new.allreduce_message_s(size, 4)) == pytest.approx(want_us * US, rel=1e-4)
    g = old.calibration.allreduce_points.groups["4"]
    at = g.message_bytes.index(8 * MIB)
    assert g.message_bytes[at - 1] == 8 * MIB - 1
    assert g.time_s[at - 1] == pytest.approx((43.41 - 18.86 / 4_194_304) * US, rel=1e-4)
    assert g.time_s[at] == pytest.approx(60.08 * US, rel=1e-4)
    # every group NCCL measured is switched; the same profile object each time (memoized by identity)
    assert set(old.calibration.allreduce_points.groups) == set(new.calibration.allreduce_points.groups) == {"2", "4", "8"}
    assert engine_tables(hw, "sglang-0.4.0") is old


def test_an_engine_without_a_limit_keeps_its_table_and_a_limit_needs_a_source():
    """`sglang`, `vllm`, `trtllm` set no limit: their calibrated all-reduce is the framework table's own points; a
    limit needs a source and a custom kernel; a device without both tables (uncalibrated) is returned as it is."""
    from roofline.registry import for_framework
    hw = rl.load_hardware("h200")
    for engine_id, framework in (("sglang", "sglang"), ("vllm", "vllm"), ("trtllm", "trtllm")):
        assert engine_tables(hw, engine_id) is for_framework(hw, framework)
    assert with_custom_allreduce_limit(hw.model_copy(update={"calibration": None}), 8 * MIB).calibration is None
    data = load_engine("sglang-0.4.0").model_dump()
    del data["sources"]["custom_allreduce_max_bytes"]
    with pytest.raises(Exception, match="sources: no source for custom_allreduce_max_bytes"):
        EngineProfile.model_validate(data)
    data = load_engine("sglang-0.4.0").model_dump()
    data["custom_allreduce"] = False
    with pytest.raises(Exception, match="custom_allreduce_max_bytes: is the custom all-reduce kernel's limit"):
        EngineProfile.model_validate(data)


def test_a_limit_past_both_tables_is_one_line_naming_the_limit():
    """custom_allreduce_max_bytes = 2^40 B, the most `EngineProfile` takes, on the H200: the custom kernel's 2-GPU points
    end at (512 MiB, 1.687 ms), (1 GiB, 3.252 ms), a last-segment rate of 2^29 B / 1.565 ms = 343 GB/s, so its time
    carried on to 2^40 - 1 B is 3.252 ms + (2^40 - 2^30) B / 343 GB/s = 3.2 s, past a kernel's 1 s: the joined points are
    no measurement. The error names the limit and the sizes both tables measured (the smaller of each group's two last
    sizes; NCCL's tables end at 512 MiB), not the joined table's `time_s`. A limit within them joins as before."""
    hw = rl.load_hardware("h200")
    custom, nccl = hw.calibration.allreduce_points.groups, hw.calibration.nccl_allreduce_points.groups
    g = custom["2"]
    assert (g.message_bytes[-2:], g.time_s[-2:]) == ((2.0**29, 2.0**30), (1.687e-3, 3.252e-3))
    assert g.time_at_s(2.0**40 - 1) == pytest.approx(3.252e-3 + (2.0**40 - 2.0**30) / (2.0**29 / 1.565e-3))
    both = min(min(custom[k].message_bytes[-1], nccl[k].message_bytes[-1]) for k in custom if k in nccl)
    assert both == 2.0**29
    with pytest.raises(SpecError) as err:
        with_custom_allreduce_limit(hw, 2.0**40)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("custom_allreduce_max_bytes: 1,099,511,627,776 B cannot join the custom all-reduce's measured "
                           "points to NCCL's on NVIDIA H200 SXM 141GB (")
    assert "time_s: every time must be in (0, 1.0] seconds" in text
    assert text.endswith("choose a limit within the sizes both tables measured, at most 536,870,912 B")
    joined = with_custom_allreduce_limit(hw, both).calibration.allreduce_points.groups["8"]
    assert joined.time_at_s(both) == pytest.approx(nccl["8"].time_at_s(both))  # NCCL's own point at the limit


def test_every_point_is_at_or_below_the_speed_of_light():
    # peak 1e11 B/s (100 GB/s). Points (1 MB, 5 us), (4 MB, 50 us), (8 MB, 90 us): the first moves
    # 1e6 / 5e-6 = 2e11 B/s, twice the peak, though the last segment's 4e6 B / 40 us = 1e11 B/s is at it.
    with pytest.raises((SpecError, ValueError), match=r"time_s: point 0 \(1e\+06 bytes in 5e-06 s\) moves 2e\+11 B/s, above peak_per_s 1e\+11"):
        _points((1e6, 4e6, 8e6), (5 * US, 50 * US, 90 * US), peak=1e11)
    # at 10 us the first point moves 1e11 B/s, exactly the peak: accepted
    assert _points((1e6, 4e6, 8e6), (10 * US, 50 * US, 90 * US), peak=1e11).time_s[0] == 10 * US
