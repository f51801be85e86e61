"""The calibrated-profile schema, the fit arithmetic and how the curves enter the roofline (no torch needed)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

import roofline as rl
from roofline.calibration import AffineCurve, Calibration, GemmTable, attach_calibration, load_calibration
from roofline.errors import SpecError

H100 = rl.load_hardware("h100-sxm", analytical=True)  # the datasheet model the test curves are compared with
BW = H100.memory_bandwidth_bytes_per_s  # 3.35e12
BF16 = H100.peak_flops_per_s["bf16"]  # 989.4e12


def _doc(**over):
    """A calibration equal to the datasheet: zero latencies, the default fractions as asymptotes."""
    e = H100.efficiency
    mem = {"x_unit": "bytes", "latency_s": 0.0, "rate_per_s": BW * e.memory_bandwidth_fraction, "peak_per_s": BW,
           "points_x": [1e6, 1e9], "points_s": [1e6 / (BW * 0.89), 1e9 / (BW * 0.89)]}
    doc = {
        "schema_version": 1, "id": "h100-test",
        "provenance": {"device_name": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "base_profile": "h100-sxm",
                       "profile_match": True, "torch_version": "2.13.0", "date": "2026-05-10T12:00:00+00:00",
                       "command": "roofline calibrate"},
        "memory": mem,
        "gemm": {"bf16": {"dtype": "bf16", "peak_per_s": BF16, "m_tokens": [1, 8192], "nk_elements": [1e6, 1e9],
                          "fraction": [[e.flops_fraction["bf16"]] * 2] * 2}},
        "attention_prefill": {"x_unit": "flops", "latency_s": 0.0, "rate_per_s": BF16 * e.attention_flops_fraction,
                              "peak_per_s": BF16, "points_x": [1e9, 1e12], "points_s": [1e-5, 1e-2]},
        "kernel_overhead_s": e.kernel_overhead_s,
    }
    doc.update(over)
    return doc


def _write(tmp_path, doc, name="cal.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


WL = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
MODEL = rl.load_model("llama-3.1-8b")


def test_round_trip_through_the_schema(tmp_path):
    cal = Calibration.model_validate(_doc())
    again = load_calibration(_write(tmp_path, cal.model_dump(mode="json")))
    assert again == cal
    yaml = pytest.importorskip("yaml")
    p = tmp_path / "cal.yaml"
    p.write_text(yaml.safe_dump(cal.model_dump(mode="json")))
    assert load_calibration(p) == cal


def test_calibration_equal_to_the_datasheet_predicts_the_same(tmp_path):
    """Curves equal to the datasheet fractions give the analytical rates; only the launch overhead differs.

    Llama-3.1-8B prefill: per layer 4 GEMMs (QKV, O, up, down) and 2 attention ops (RoPE/KV write, attention)
    are timed by a measured curve, plus the LM head: 32 · 6 + 1 = 193 ops whose table latency already holds
    their fixed time, so none pays the eager 4 us: TTFT is 193 · 4 us shorter. Decode is replayed from a CUDA
    graph: all 291 launches (test_calibrated_decode_pays_the_graph_replay_cost_per_launch) pay the profile's
    0.5 us instead of 4 us: TPOT is 291 · 3.5 us shorter. The floor is the datasheet in both.
    """
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc()))
    assert hw.mode == "calibrated" and H100.mode == "analytical"
    # a measured GEMM table replaces the analytical GEMM model whole; a flat table at the datasheet fraction is the
    # analytical model without its shape terms (gemm_shapes: no SM count, the 16-token padding alone)
    flat = H100.model_copy(update={"sm_count": None, "gemm_tile_m": None, "gemm_tile_n": None})
    a, c = rl.predict(MODEL, flat, WL), rl.predict(MODEL, hw, WL)
    assert (a.mode, c.mode, a.calibration_id, c.calibration_id) == ("analytical", "calibrated", None, "h100-test")
    assert H100.efficiency.kernel_overhead_s == 4e-6 and H100.efficiency.kernel_overhead_graph_s == 0.5e-6
    assert math.isclose(a.ttft_s - c.ttft_s, 193 * 4e-6, rel_tol=1e-9)
    assert math.isclose(a.tpot_s - c.tpot_s, 291 * 3.5e-6, rel_tol=1e-9)
    for f in ("ttft_floor_s", "tpot_floor_s"):
        assert math.isclose(getattr(a, f), getattr(c, f), rel_tol=1e-12), f


def test_slower_measured_bandwidth_gives_slower_decode(tmp_path):
    doc = _doc()
    doc["memory"] = {**doc["memory"], "rate_per_s": BW * 0.5}  # half the datasheet's 0.89 x peak
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    bare = rl.Deployment(engine=None)  # no engine CPU time per step diluting the ratio
    a, c = rl.predict(MODEL, H100, WL, bare), rl.predict(MODEL, hw, WL, bare)
    # decode is memory-bound: TPOT grows by nearly 0.89 / 0.5 = 1.78 (kernel overhead and attention stay)
    assert a.decode_bound == "memory"
    assert 1.5 < c.tpot_s / a.tpot_s < 0.89 / 0.5 + 1e-9
    assert c.tpot_floor_s == a.tpot_floor_s  # the floor is always the datasheet


def test_latency_makes_small_kernels_slower_and_stays_affine(tmp_path):
    doc = _doc()
    doc["memory"] = {**doc["memory"], "latency_s": 5e-6}
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    a, c = rl.predict(MODEL, H100, WL), rl.predict(MODEL, hw, WL)
    assert c.tpot_s > a.tpot_s
    # the closed-form sum over decode steps is exact only when each term is affine in the context:
    # the mean of the per-step times must equal TPOT
    steps = [c.tpot_at(ctx) for ctx in range(2049, 2049 + 255)]
    assert math.isclose(sum(steps) / len(steps), c.tpot_s, rel_tol=1e-9)


def test_gemm_table_lower_fraction_slows_prefill(tmp_path):
    doc = _doc()
    doc["gemm"]["bf16"]["fraction"] = [[0.4, 0.4], [0.4, 0.4]]  # half the datasheet's 0.80
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    a, c = rl.predict(MODEL, H100, WL), rl.predict(MODEL, hw, WL)
    assert a.prefill_bound == "compute" and c.ttft_s > 1.5 * a.ttft_s


def test_gemm_table_interpolates_in_log_space():
    t = GemmTable(dtype="bf16", peak_per_s=BF16, m_tokens=(1, 100), nk_elements=(1e6, 1e8), fraction=((0.1, 0.3), (0.5, 0.7)))
    # M = 10 is halfway between 1 and 100 in log M; N·K = 1e7 halfway between 1e6 and 1e8
    assert math.isclose(float(t.at(10, 1e7)), (0.1 + 0.3 + 0.5 + 0.7) / 4)
    assert math.isclose(float(t.at(1e4, 1e9)), 0.7) and math.isclose(float(t.at(0.5, 1e3)), 0.1)  # held at the edges


def test_affine_curve_fraction_at_a_size():
    c = AffineCurve(x_unit="bytes", latency_s=5e-6, rate_per_s=2.9e12, peak_per_s=BW, points_x=(1, 2), points_s=(1, 2))
    # 1 MB: 1e6 / (5e-6 + 1e6 / 2.9e12) = 1.87e11 B/s = 0.0558 of 3.35e12
    assert math.isclose(float(c.fraction_at(1e6)), 1e6 / (5e-6 + 1e6 / 2.9e12) / BW)
    assert 0.055 < float(c.fraction_at(1e6)) < 0.057


@pytest.mark.parametrize("patch, field", [
    ({"schema_version": 2}, "schema_version"),
    ({"memory": {"x_unit": "bytes", "latency_s": 0, "rate_per_s": 4e12, "peak_per_s": BW, "points_x": [1, 2], "points_s": [1, 2]}}, "rate_per_s"),
    ({"kernel_overhead_s": -1}, "kernel_overhead_s"),
    ({"memroy": {}}, "memroy"),
    ({"gemm": {"bf16": {"dtype": "bf16", "peak_per_s": BF16, "m_tokens": [1, 8], "nk_elements": [1e6], "fraction": [[0.5], [1.5]]}}}, "fraction[1][0]"),
    ({"gemm": {"bf16": {"dtype": "bf16", "peak_per_s": BF16, "m_tokens": [8, 1], "nk_elements": [1e6], "fraction": [[0.5], [0.5]]}}}, "m_tokens"),
])
def test_bad_files_give_one_line_naming_the_field(tmp_path, patch, field):
    with pytest.raises(SpecError) as err:
        load_calibration(_write(tmp_path, _doc(**patch)))
    msg = str(err.value)
    assert "\n" not in msg and field in msg, msg


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(SpecError, match="no file"):
        load_calibration(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON") as err:
        load_calibration(bad)
    assert "\n" not in str(err.value)


def test_mismatched_device_warns(tmp_path):
    doc = _doc()
    doc["provenance"] = {**doc["provenance"], "device_name": "x86_64", "device_kind": "cpu", "profile_match": False}
    p = _write(tmp_path, doc)
    with pytest.warns(rl.CalibrationMismatchWarning, match="not h100-sxm"):
        rl.load_hardware("h100-sxm", calibration=p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rl.load_hardware("h200", calibration=_write(tmp_path, _doc(), "ok.json"))
    assert any("attached to 'h200'" in str(w.message) for w in caught)


def test_calibrated_profile_in_a_sweep_times_every_op_with_its_curves(tmp_path):
    """With a 5 us copy latency and a GEMM table that depends on M, no scalar summary reproduces the curves;
    the sweep (ceilings stacked over a device axis, `calibration.StackedCurves`) still gives predict's figures."""
    doc = _doc()
    doc["memory"] = {**doc["memory"], "latency_s": 5e-6}
    doc["gemm"]["bf16"]["fraction"] = [[0.05, 0.05], [0.8, 0.8]]
    hw = attach_calibration(H100, Calibration.model_validate(doc))
    df = rl.sweep(model="llama-3.1-8b", hardware=[hw, H100], batch_size=[1, 8], prompt_tokens=512, output_tokens=64)
    for row in df.itertuples():
        p = rl.predict(MODEL, hw if row.Index < 2 else H100, rl.Workload(batch_size=row.batch_size, prompt_tokens=512, output_tokens=64))
        assert math.isclose(row.tpot_s, p.tpot_s, rel_tol=1e-9) and math.isclose(row.ttft_s, p.ttft_s, rel_tol=1e-9)
    assert df["tpot_s"].iloc[0] != df["tpot_s"].iloc[2]  # and the calibrated device differs from the analytical one


def test_a_2_4_sparse_gemm_looks_up_its_dense_weight_shape(tmp_path):
    """A 2:4 GEMM's FLOPs count the executed half; its N·K for the measured table must still be the weight's own
    (2F / (2·M)), so with a table that depends only on N·K a sparse op gets the dense op's fraction."""
    import numpy as np

    from roofline import ops as O
    from roofline.roofline import Ceilings, OpTable

    doc = _doc()
    doc["gemm"]["bf16"]["fraction"] = [[0.3, 0.9], [0.3, 0.9]]  # 0.3 at N·K = 1e6, 0.9 at 1e9, whatever M
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    ceil = Ceilings.of(hw, "bf16")
    tables = [OpTable.of(O.forward_ops(MODEL, rl.Deployment(sparsity=s).resolved(MODEL), 1, 2048, 0), ())
              for s in ("dense", "2:4")]
    dense, sparse = (ceil.curves.per_op_ceilings(t, ceil).gemm_flops_per_s for t in tables)
    assert tables[1].f["sparse_2_4"].sum() > 0  # some GEMMs do run sparse
    gemm = tables[0].is_gemm
    assert np.allclose(np.asarray(dense)[gemm], np.asarray(sparse)[gemm], rtol=1e-12)


def test_calibrated_decode_pays_the_graph_replay_cost_per_launch(tmp_path):
    """A measured CUDA-graph cost per kernel replaces the eager cost in decode steps only (engine.decode_ceilings);
    without one the profile's sourced `efficiency.kernel_overhead_graph_s` (0.5 us on the H100 SXM) stands.

    Llama-3.1-8B launches per decode step (roofline.ops): embedding 1, per layer 2 norms + QKV + 2 attention
    (RoPE/KV write, attention) + O + up + activation + down = 9, final norm 1, LM head 1: 1 + 32·9 + 2 = 291.
    Measured 1 us against the profile's 0.5 us: each step is 291 · 0.5 us = 145.5 us longer; prefill (eager)
    is unchanged. Against the analytical profile (eager 4 us everywhere): 291 · 3 us shorter.
    """
    profile = rl.predict(MODEL, rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc(), "a.json")), WL)
    graph = rl.predict(MODEL, rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc(kernel_overhead_graph_s=1e-6), "b.json")), WL)
    dec = graph.operators[graph.operators["phase"] == "decode"]
    assert dec["launches"].sum() == 291
    assert math.isclose(dec["overhead_s"].sum(), 291 * 1e-6, rel_tol=1e-12)
    assert math.isclose(graph.tpot_s - profile.tpot_s, 291 * 0.5e-6, rel_tol=1e-9)
    assert graph.ttft_s == profile.ttft_s
    assert math.isclose(rl.predict(MODEL, H100, WL).tpot_s - graph.tpot_s, 291 * 3e-6, rel_tol=1e-9)


def test_weight_only_gemm_takes_the_tables_compute_efficiency_not_its_16_bit_weight_read(tmp_path):
    """A bf16 table whose small-M fraction (0.05 at M = 1) carries the time of reading 16-bit weights and whose
    compute-bound rows reach 0.8 (M = 8192). Decode at batch 8 (M = 8, padded to the 16-row tile: pad = 2):

    * bf16 weights: the table gives 0.05 + (0.8 - 0.05) · ln 8 / ln 8192 = 0.2231 (bilinear in log M), a
      measured time t_m = 2F / (peak · 0.2231). The datasheet model calls these GEMMs memory-bound, so t_m is
      charged to memory: compute = 2F / (peak · 0.8), memory = max(B / (0.89 · BW), t_m).
    * int4 weights (W4A16: it dequantizes, vector_flops > 0): compute = 2F / (peak · 0.8) + its dequantization
      on the vector units, memory = its own (narrower) B / (0.89 · BW); the 16-bit read time t_m is not charged
      (CalibratedCurves docstring).
    """
    import numpy as np

    from roofline import ops as O
    from roofline.roofline import Ceilings, OpTable, time_ops

    doc = _doc()
    doc["gemm"]["bf16"]["fraction"] = [[0.05, 0.05], [0.8, 0.8]]
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    ceil = Ceilings.of(hw, "bf16")
    small_m = 0.05 + 0.75 * math.log(8) / math.log(8192)
    assert math.isclose(small_m, 0.2231, abs_tol=1e-4)
    bw = BW * H100.efficiency.memory_bandwidth_fraction
    vector = H100.peak_flops_per_s["fp32"] * H100.efficiency.flops_fraction["fp32"]
    timed = {}
    for wd in ("bf16", "int4"):
        rd = rl.Deployment(weight_dtype=wd, activation_dtype="bf16").resolved(MODEL)
        t = OpTable.of(O.forward_ops(MODEL, rd, 8, 1, 2048), ())
        timed[wd] = (t, time_ops(t, ceil, 1))
    t, tm = timed["bf16"]
    g = t.is_gemm
    flops, hbm = t.f["flops"][g], t.hbm_bytes[g]
    assert np.allclose(tm.compute_s[g], 2 * flops / (BF16 * 0.8), rtol=1e-12)
    assert np.allclose(tm.memory_s[g], np.maximum(hbm / bw, 2 * flops / (BF16 * small_m)), rtol=1e-12)
    assert (tm.bound[g] == 1).all()  # memory
    t, tm = timed["int4"]
    g = t.is_gemm
    assert [n for n, w in zip(t.names, g & (t.f["vector_flops"] > 0)) if w] == ["qkv_proj", "o_proj", "mlp_up", "mlp_down", "lm_head"]
    flops, hbm = t.f["flops"][g], t.hbm_bytes[g]
    assert np.allclose(tm.compute_s[g], 2 * flops / (BF16 * 0.8) + t.f["vector_flops"][g] / vector, rtol=1e-12)
    assert np.allclose(tm.memory_s[g], hbm / bw, rtol=1e-12)


def test_a_pcie_device_drops_the_collection_hosts_all_reduce():
    """The public L40S tables' all-reduce (1.5-2 GB/s bus bandwidth at tp8: interconnect_fraction 0.061) is the
    collection host's PCIe topology; `without_host_collectives` drops it on a PCIe device and keeps an NVLink one's."""
    from roofline.calibration import without_host_collectives

    folder = Path(__file__).resolve().parent.parent / "calibrate" / "public"
    l40s = load_calibration(folder / "l40s.json")
    assert l40s.interconnect_fraction == pytest.approx(0.061, abs=1e-3) and l40s.allreduce
    dropped = without_host_collectives(l40s, rl.load_hardware("l40s"))
    assert dropped.interconnect_fraction is None and dropped.allreduce == {}
    assert dropped.gemm == l40s.gemm and dropped.attention_decode == l40s.attention_decode
    h200 = load_calibration(folder / "h200.json")
    assert without_host_collectives(h200, rl.load_hardware("h200")) is h200
