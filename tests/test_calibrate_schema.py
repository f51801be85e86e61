"""The calibrated-profile schema, the fit arithmetic and how the curves enter the roofline (no torch needed)."""

from __future__ import annotations

import json
import math
import warnings

import pytest

import roofline as rl
from roofline.calibration import AffineCurve, Calibration, GemmTable, attach_calibration, load_calibration
from roofline.errors import SpecError

H100 = rl.load_hardware("h100-sxm")
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
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc()))
    assert hw.mode == "calibrated" and H100.mode == "analytical"
    # a measured GEMM table replaces the analytical GEMM model whole; a flat table at the datasheet fraction is the
    # analytical model without its shape terms (gemm_shapes: no SM count, the 16-token padding alone)
    flat = H100.model_copy(update={"sm_count": None, "gemm_tile_m": None, "gemm_tile_n": None})
    a, c = rl.predict(MODEL, flat, WL), rl.predict(MODEL, hw, WL)
    assert (a.mode, c.mode, c.calibration_id, c.source_kind) == ("analytical", "calibrated", "h100-test", "calibrated")
    for f in ("ttft_s", "tpot_s", "e2e_latency_s", "ttft_floor_s", "tpot_floor_s", "output_tokens_per_s"):
        assert math.isclose(getattr(a, f), getattr(c, f), rel_tol=1e-12), f


def test_slower_measured_bandwidth_gives_slower_decode(tmp_path):
    doc = _doc()
    doc["memory"] = {**doc["memory"], "rate_per_s": BW * 0.5}  # half the datasheet's 0.89 x peak
    hw = rl.load_hardware("h100-sxm", calibration=_write(tmp_path, doc))
    a, c = rl.predict(MODEL, H100, WL), rl.predict(MODEL, hw, WL)
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


def test_calibrated_profile_in_a_sweep_uses_the_summary(tmp_path):
    hw = attach_calibration(H100, Calibration.model_validate(_doc()))
    df = rl.sweep(model="llama-3.1-8b", hardware=[hw], batch_size=[1, 8], prompt_tokens=512, output_tokens=64)
    p = rl.predict(MODEL, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64))
    assert math.isclose(df["tpot_s"].iloc[-1], p.tpot_s, rel_tol=1e-9)  # zero latency: summary == curves


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
    """A measured CUDA-graph cost per kernel replaces the eager cost in decode steps only (predict.decode_ceilings).

    Llama-3.1-8B launches per decode step (roofline.ops): embedding 1, per layer 2 norms + QKV + 2 attention
    (RoPE/KV write, attention) + O + up + activation + down = 9, final norm 1, LM head 1: 1 + 32·9 + 2 = 291.
    Eager 4 us, graph 1 us: each step is 291 · (4 - 1) us = 873 us shorter; prefill (eager) is unchanged.
    """
    eager = H100.efficiency.kernel_overhead_s
    assert eager == 4e-6
    no_graph = rl.predict(MODEL, rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc(), "a.json")), WL)
    graph = rl.predict(MODEL, rl.load_hardware("h100-sxm", calibration=_write(tmp_path, _doc(kernel_overhead_graph_s=1e-6), "b.json")), WL)
    dec = graph.operators[graph.operators["phase"] == "decode"]
    assert dec["launches"].sum() == 291
    assert math.isclose(dec["overhead_s"].sum(), 291 * 1e-6, rel_tol=1e-12)
    assert math.isclose(no_graph.tpot_s - graph.tpot_s, 291 * 3e-6, rel_tol=1e-9)
    assert graph.ttft_s == no_graph.ttft_s
    # without a calibration the datasheet's eager cost stays everywhere
    assert math.isclose(rl.predict(MODEL, H100, WL).tpot_s, no_graph.tpot_s, rel_tol=1e-12)
