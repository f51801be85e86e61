"""The small memory-bound kernels' line (`Calibration.elementwise`, `CalibratedCurves._elementwise_rates`) and its fit
from the quantize tables (`calibrate.public.fit_elementwise`): hand arithmetic and invariants."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

import roofline as rl
from calibrate import public
from calibrate.public_check import kernel_errors
from roofline.calibration import Calibration, attach_calibration, load_calibration

WORK = rl.Workload(batch_size=4, prompt_tokens=128, output_tokens=32)
DEP = rl.Deployment(engine=None)


def _op(p, name, phase):
    ops = p.operators
    return ops[(ops["op"] == name) & (ops["phase"] == phase)].iloc[0]


def _with_line(t0_s, rate_per_s, hw_id="h200"):
    """The device (its shipped file attached) with the elementwise line replaced by t0 and R (R below the stored peak)."""
    cal = rl.load_hardware(hw_id).calibration
    line = cal.elementwise.model_copy(update={"latency_s": t0_s, "rate_per_s": rate_per_s})
    return attach_calibration(rl.load_hardware(hw_id, analytical=True), cal.model_copy(update={"elementwise": line}))


def test_a_decode_norm_takes_the_line_and_no_graph_overhead_on_top():
    """llama-3.1-8b on H200 at batch 4, decode: `norms` is 64 fused residual-add + RMSNorm kernels (2 a layer, 32 layers),
    each reading x and the residual and writing both (4 · 4 · 4096 · 2 B) plus the 4096 bf16 weights:
    B = 64 · (16 · 4096 · 2 + 4096 · 2) = 64 · 139,264 = 8,912,896 B. With the line t0 = 2 µs, R = 4e12 B/s its memory
    term is 64 · 2 µs + 8,912,896 / 4e12 = 128 + 2.228224 = 130.228224 µs; the graph replay's 0.5 µs per kernel is inside
    t0 (the tables are graph replays), so no overhead is added."""
    op = _op(rl.predict("llama-3.1-8b", _with_line(2e-6, 4e12), WORK, DEP), "norms", "decode")
    assert op["launches"] == 64 and op["hbm_bytes"] == 64 * (16 * 4096 * 2 + 4096 * 2) == 8_912_896
    assert float(op["memory_s"]) == pytest.approx(64 * 2e-6 + 8_912_896 / 4e12, rel=1e-9)
    assert float(op["memory_s"]) == pytest.approx(130.228224e-6, rel=1e-9)
    assert float(op["overhead_s"]) == 0.0


@pytest.mark.parametrize("t0_s, overhead_s, time_s", [(1e-6, 1.949376e-6, 4e-6), (3.5e-6, 0.0, 4.550624e-6)])
def test_an_eager_kernel_costs_the_larger_of_its_launch_and_its_line(t0_s, overhead_s, time_s):
    """Prefill is launched eagerly at the profile's 4 µs per kernel; a kernel costs max(launch, t0 + B / (k · R)).
    llama-3.1-8b's final norm in prefill at batch 1, 128 tokens (one kernel): reads and writes x and the residual,
    4 · 128 · 4096 · 2 = 4,194,304 B, plus 8,192 B of weights: B = 4,202,496, B / 4e12 = 1.050624 µs. t0 = 1 µs: line
    2.050624 µs < 4 µs, overhead 4 - 2.050624 = 1.949376 µs, time 4 µs. t0 = 3.5 µs: line 4.550624 µs, no overhead."""
    p = rl.predict("llama-3.1-8b", _with_line(t0_s, 4e12), rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=8), DEP)
    op = _op(p, "final_norm", "prefill")
    assert op["hbm_bytes"] == 4 * 128 * 4096 * 2 + 4096 * 2 == 4_202_496
    assert float(op["memory_s"]) == pytest.approx(t0_s + 4_202_496 / 4e12, rel=1e-9)
    assert float(op["overhead_s"]) == pytest.approx(overhead_s, abs=1e-15)
    assert float(op["time_s"]) == pytest.approx(time_s, rel=1e-9)


def test_gemms_attention_and_comm_keep_their_own_timing():
    """The line times only elementwise and gather kernels: the GEMMs and attention of a file with and without it agree."""
    hw = rl.load_hardware("h200")
    plain = hw.calibration.model_copy(update={"elementwise": None})
    without = attach_calibration(rl.load_hardware("h200", analytical=True), plain)
    a = rl.predict("llama-3.1-8b", hw, WORK, DEP).operators
    b = rl.predict("llama-3.1-8b", without, WORK, DEP).operators
    keep = ~a["kind"].isin(["elementwise", "gather"])
    assert (a[keep]["time_s"].to_numpy() == pytest.approx(b[keep]["time_s"].to_numpy(), rel=1e-12))
    moved = a["kind"].isin(["elementwise", "gather"]) & (a["phase"] == "decode")
    assert (a[moved]["time_s"].to_numpy() > b[moved]["time_s"].to_numpy()).all()  # decode: t0 ~2 µs > 0.5 µs graph cost


def test_sweep_times_the_line_as_predict_does():
    p = rl.predict("llama-3.1-8b", "h200", WORK, DEP)
    df = rl.sweep("llama-3.1-8b", "h200", batch_size=4, prompt_tokens=128, output_tokens=32, deployment=DEP)
    assert df.ttft_s.iloc[0] == pytest.approx(p.ttft_s, rel=1e-9) and df.tpot_s.iloc[0] == pytest.approx(p.tpot_s, rel=1e-9)


def test_the_line_is_fitted_by_hand_and_l2_resident_rows_are_left_out():
    """Rows made from t = 2 µs + B / 4e12 with B = 3 · M · K (bf16 in, fp8 out), and rows between L2 / 256 and 2 · L2
    made 5x faster (the collector's buffers stay in L2): the fit recovers t0 and R from the other rows alone."""
    l2 = 50 * 2**20
    rows = []
    for m in (1, 4, 16, 64, 256, 1024, 4096, 16384, 32768):
        for k in (128, 1024, 4096, 7168, 16384, 65536):
            b = 3 * m * k
            t = 2e-6 + b / 4e12
            if l2 / 256 < b < 2 * l2:
                t = 2e-6 + b / 2e13
            rows.append({"m": m, "k": k, "latency": t / public.TABLE_TIME_S})
    line = public.fit_elementwise(pd.DataFrame(rows), 4.8e12, l2, [])
    assert line.latency_s == pytest.approx(2e-6, rel=1e-6) and line.rate_per_s == pytest.approx(4e12, rel=1e-6)
    x, _ = public.elementwise_rows(pd.DataFrame(rows), l2)
    assert ((x <= l2 / 256) | (x >= 2 * l2)).all()


def test_files_without_the_line_still_load_and_a_wrong_unit_is_a_one_line_error():
    old = load_calibration(public.PUBLIC_DIR / "a100-sxm-80gb.json")  # A100: no FP8 quantize table, no line
    assert old.elementwise is None
    cal = rl.load_hardware("h200").calibration
    data = {**cal.model_dump(), "elementwise": {**cal.elementwise.model_dump(), "x_unit": "flops"}}
    with pytest.raises(ValueError, match=r"elementwise\.x_unit: "):
        Calibration.model_validate(data)


@pytest.mark.parametrize("hw_id, framework, table", [("h200", None, "vllm"), ("h200", "trtllm", "trtllm"),
                                                      ("h200", "sglang", "vllm"), ("l40s", None, "vllm")])
def test_shipped_files_carry_the_line_of_a_streaming_kernel(hw_id, framework, table):
    """Each shipped file's line names its quantize table (SGLang's files take vLLM's, `public.ELEMENTWISE_FRAMEWORK`),
    has a fixed time of 1-3 µs per kernel and reaches 0.6-1 of the HBM bandwidth."""
    cal = rl.load_hardware(hw_id, framework=framework).calibration
    src = [p for p in cal.provenance.public_source.tables if "/quantize/" in p]
    assert len(src) == 1 and f"/quantize/{table}/" in src[0]
    assert 1e-6 <= cal.elementwise.latency_s <= 3e-6 and 0.6 <= cal.elementwise.fraction <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator_core") is None,
                    reason="aiconfigurator-core is not installed (pip install roofline[public-data])")
def test_round_trip_reproduces_the_committed_line_and_fits_its_rows():
    """The H200 file's line is what the fitter gives on the installed tables, and it times its fitted rows (the latency
    and HBM regimes) to within 10% median |error| (3.8% when written: calibrate/public/README.md section f)."""
    cal, tables = public.fit_public("h200")
    assert cal.elementwise == load_calibration(public.PUBLIC_DIR / "h200.json").elementwise
    df = kernel_errors(cal, rl.load_hardware("h200", analytical=True), tables)
    assert df[df["family"] == "elementwise"]["error"].abs().median() < 0.10
