"""Calibrated profiles by default (issue 12 item 1): which file `load_hardware` attaches, the analytical switch
(API and CLI), the engine selector, and that `sweep` and the planner time operators as `predict` does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.calibration import load_calibration
from roofline.cli import main
from roofline.registry import public_calibration_path
from roofline.roofline import Ceilings, OpTable, time_ops

PUBLIC = Path(__file__).resolve().parent.parent / "calibrate" / "public"
MODEL = rl.load_model("llama-3.1-8b")


def test_a_shipped_id_with_a_public_file_loads_calibrated():
    hw = rl.load_hardware("h200")
    assert hw.mode == "calibrated" and hw.calibration.id == "public-h200_sxm-vllm-0.24.0"
    assert public_calibration_path("h200") == PUBLIC / "h200.json"
    p = rl.predict(MODEL, hw, rl.Workload(batch_size=4, prompt_tokens=512, output_tokens=32))
    assert (p.mode, p.calibration_id) == ("calibrated", "public-h200_sxm-vllm-0.24.0")
    # one file per covered device (MI300X: its FP8 GEMM table from AMD's aiter tuner rows); a device without one stays analytical
    covered = {f.stem for f in PUBLIC.glob("*.json") if f.stem in rl.list_hardware()}
    assert {"a100-sxm-80gb", "h100-sxm", "h200", "b200", "gb200", "l40s", "mi300x"} <= covered
    assert all(rl.load_hardware(h).mode == "calibrated" for h in covered)
    uncovered = sorted(set(rl.list_hardware()) - covered)
    assert uncovered and all(rl.load_hardware(h).mode == "analytical" and public_calibration_path(h) is None for h in uncovered)


def test_the_analytical_switch_gives_the_datasheet_model_and_the_floor_never_moves():
    """`analytical=True`: no calibration, the YAML's fractions (H200: bf16 0.80, HBM 0.86); the floor (datasheet
    peaks, no overhead) is the same number in both modes."""
    a, c = rl.load_hardware("h200", analytical=True), rl.load_hardware("h200")
    assert a.mode == "analytical" and a.calibration is None
    assert a.efficiency.flops_fraction["bf16"] == 0.80 and a.efficiency.memory_bandwidth_fraction == 0.86
    wl = rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=64)
    pa, pc = rl.predict(MODEL, a, wl), rl.predict(MODEL, c, wl)
    assert pa.mode == "analytical" and pa.calibration_id is None
    assert pa.ttft_floor_s == pc.ttft_floor_s and pa.tpot_floor_s == pc.tpot_floor_s
    assert pa.ttft_s != pc.ttft_s
    with pytest.raises(rl.SpecError, match="calibration"):
        rl.load_hardware("h200", analytical=True, calibration=PUBLIC / "h200.json")


def test_the_framework_selector_picks_that_engines_tables():
    """`framework="trtllm"` attaches `<id>-trtllm.json` where shipped (H200, H100 SXM), else the device's default
    file; an unknown engine is one line naming the field."""
    trt = rl.load_hardware("h200", framework="trtllm")
    assert trt.calibration.provenance.public_source.framework == "trtllm"
    assert public_calibration_path("h200", "TRTLLM") == PUBLIC / "h200-trtllm.json"
    assert rl.load_hardware("h100-sxm", framework="trtllm").calibration.provenance.public_source.framework == "trtllm"
    assert rl.load_hardware("a100-sxm-80gb", framework="sglang").calibration.id == rl.load_hardware("a100-sxm-80gb").calibration.id
    assert rl.load_hardware("h200", framework="vllm").calibration.provenance.public_source.framework == "vllm"
    with pytest.raises(rl.SpecError, match="framework") as err:
        rl.load_hardware("h200", framework="tgi")
    assert "\n" not in str(err.value)


def test_a_default_loaded_pcie_device_keeps_the_datasheet_collectives():
    """The L40S file's all-reduce (interconnect_fraction 0.061: the collection host's PCIe) does not reach a default
    prediction: the profile's sourced 0.44 stays, and a tp2 all-reduce is timed exactly as analytically."""
    assert load_calibration(PUBLIC / "l40s.json").interconnect_fraction == pytest.approx(0.061, abs=1e-3)
    hw, ana = rl.load_hardware("l40s"), rl.load_hardware("l40s", analytical=True)
    assert hw.mode == "calibrated" and hw.calibration.allreduce == {} and hw.calibration.interconnect_fraction is None
    assert hw.efficiency.interconnect_bandwidth_fraction == ana.efficiency.interconnect_bandwidth_fraction == 0.44
    rd = rl.Deployment(tp=2).resolved(MODEL)
    t = OpTable.of(O.forward_ops(MODEL, rd, 8, 1024, 0, 2), ())
    comm_c = time_ops(t, Ceilings.of(hw, "bf16"), 2).comm_s
    comm_a = time_ops(t, Ceilings.of(ana, "bf16"), 2).comm_s
    assert np.array_equal(comm_c, comm_a) and comm_a.sum() > 0


def test_cli_analytical_flag(capsys):
    base = ["predict", "--model", "llama-3.1-8b", "--hardware", "h200", "--batch-size", "4", "--prompt-tokens", "512",
            "--output-tokens", "32", "--json"]
    assert main(base) == 0
    calibrated = json.loads(capsys.readouterr().out)[0]
    assert main([*base, "--analytical"]) == 0
    analytical = json.loads(capsys.readouterr().out)[0]
    assert (calibrated["mode"], analytical["mode"]) == ("calibrated", "analytical")
    assert analytical["ttft_s"] == pytest.approx(rl.predict(MODEL, rl.load_hardware("h200", analytical=True),
                                                            rl.Workload(batch_size=4, prompt_tokens=512, output_tokens=32)).ttft_s, rel=1e-12)
    for command in (["plan", "--model", "llama-3.1-8b", "--hardware", "h200", "--requests-per-s", "1", "--prompt-tokens", "512",
                     "--output-tokens", "64", "--ttft-slo-s", "2", "--tpot-slo-s", "0.1", "--analytical"],
                    ["compare", "--model", "llama-3.1-8b", "--hardware", "h200", "--analytical", "--variant", "fp8:weight_dtype=fp8"]):
        assert main(command) == 0, command
        capsys.readouterr()


# ------------------------------------------------------------ sweep and the planner time ops as predict does
def test_sweep_gives_predicts_figures_for_calibrated_and_analytical_devices_side_by_side():
    """A grid of a calibrated H200 (measured GEMM tables, attention latencies t0 > 0), its analytical twin and an
    MI300X: every cell equals `predict` of that scenario on that device alone, to 1e-9."""
    hws = [rl.load_hardware("h200"), rl.load_hardware("h200", analytical=True), rl.load_hardware("mi300x")]
    assert hws[0].calibration.attention_decode.latency_s > 0
    df = rl.sweep(model="llama-3.1-8b", hardware=hws, batch_size=[1, 16], prompt_tokens=[128, 2048], output_tokens=64, tp=[1, 2])
    assert len(df) == 3 * 2 * 2 * 2
    for (h, row) in zip(np.repeat(np.arange(3), 8), df.itertuples()):
        p = rl.predict(MODEL, hws[h], rl.Workload(batch_size=row.batch_size, prompt_tokens=row.prompt_tokens, output_tokens=64),
                       rl.Deployment(tp=row.tp))
        for f in ("ttft_s", "tpot_s", "e2e_latency_s"):
            assert math.isclose(getattr(row, f), getattr(p, f), rel_tol=1e-9), (hws[h].id, row, f)
    # and the calibration matters: the calibrated H200 differs from its analytical twin
    assert not np.allclose(df["ttft_s"].to_numpy()[:8], df["ttft_s"].to_numpy()[8:16])


def test_planner_curves_give_predicts_prefill_and_decode_step():
    """The planner's curves (`serving.Curves`, ceilings stacked over devices as (H, 1)) for a calibrated H200 beside an
    analytical MI300X: the prefill service time of a 1024-token prompt is `predict`'s TTFT at batch 1, and the decode
    step at batch B is `predict`'s step at the mean context, S + O/2 = 1024 + 100 (fixed lengths: E[O²] = O², so
    (E[O²] - E[O]) / (2 (E[O] - 1)) = O/2), to 1e-9; each device's row equals its curves computed alone."""
    from roofline.serving import Curves, Traffic

    hws = [rl.load_hardware("h200"), rl.load_hardware("mi300x")]
    rd = rl.Deployment().resolved(MODEL)
    traffic = Traffic.of(1.0, 1024, 200)
    grid = np.array([1.0, 8.0, 64.0])
    both = Curves(MODEL, rd, 1, hws, traffic, None, grid)
    assert both.context_s == 1124
    for h, hw in enumerate(hws):
        alone = Curves(MODEL, rd, 1, [hw], traffic, None, grid)
        assert np.allclose(both.t0[h], alone.t0[0], rtol=1e-12) and np.allclose(both.x_pre[h], alone.x_pre[0], rtol=1e-12)
        assert math.isclose(float(both.x_pre[h, 0]), rl.predict(MODEL, hw, rl.Workload(batch_size=1, prompt_tokens=1024,
                                                                                       output_tokens=2)).ttft_s, rel_tol=1e-9)
        for k, b in enumerate(grid):
            p = rl.predict(MODEL, hw, rl.Workload(batch_size=int(b), prompt_tokens=1024, output_tokens=200))
            assert math.isclose(float(both.t0[h, k]), p.tpot_at(1124), rel_tol=1e-9), (hw.id, b)
