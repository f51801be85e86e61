"""MI300X's FP8 GEMM table from AMD's aiter tuner rows (calibrate/public_aiter.py -> calibrate/public/mi300x.json)."""

import math

import pytest

import roofline as rl
from roofline.calibration import load_calibration
from roofline.errors import SpecError

pd = pytest.importorskip("pandas")

from calibrate import public_aiter  # noqa: E402

FP8_PEAK = 2614.9e12  # MI300X dense FP8, FLOP/s (data sheet)
TILE = 16  # MFMA 16x16 output tiles: M pads to a multiple of 16
BW = 5.3e12  # HBM3, B/s


def test_rows_are_the_mi300x_ones_in_seconds(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("# provenance line\ncu_num,M,N,K,kernelId,splitK,us,kernelName\n"
                   "304,1,4608,7168,0,0,12.5,a\n80,1,4608,7168,0,0,40.0,b\n")
    rows = public_aiter.read_rows(csv)
    assert len(rows) == 1  # the cu_num 80 row (MI308X) is left out
    assert rows.iloc[0].to_dict() == {"m": 1, "n": 4608, "k": 7168, "latency_s": pytest.approx(12.5e-6)}


def test_a_csv_without_the_tuner_columns_is_a_one_line_error(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("M,N,K\n1,2,3\n")
    with pytest.raises(ValueError) as exc:
        public_aiter.read_rows(csv)
    assert "cu_num" in str(exc.value) and "us" in str(exc.value) and "\n" not in str(exc.value)


def test_the_committed_file_is_the_fit_of_the_committed_rows():
    committed = load_calibration(public_aiter.OUT)
    again = public_aiter.build()
    assert again.gemm == committed.gemm and again.provenance == committed.provenance
    src = committed.provenance.public_source
    assert (src.package, src.package_version, src.license) == ("ROCm/aiter", public_aiter.COMMIT, "MIT")
    assert list(committed.gemm) == ["fp8"]  # only what the source measured
    assert committed.attention_decode is None and committed.attention_prefill is None and not committed.allreduce


def test_worked_number_one_token_through_a_4608_x_7168_weight():
    # the row M = 1, N = 4608, K = 7168 took 12.5055 us; its N·K = 33.03 M falls in the 2^25 half-octave bin alone
    f = 2 * TILE * 4608 * 7168 / (12.5055e-6 * FP8_PEAK)
    assert f == pytest.approx(0.03232, rel=1e-3)
    table = load_calibration(public_aiter.OUT).gemm["fp8"]
    assert table.at(1, 2.0**25) == pytest.approx(f, rel=1e-3)
    # timed back: pad(1)·2·N·K at that fraction is the measured 12.5 us, i.e. 33 MB of FP8 weights at ~0.50 of HBM
    t = 2 * TILE * 4608 * 7168 / (f * FP8_PEAK)
    assert t == pytest.approx(12.5055e-6, rel=1e-9)
    assert 4608 * 7168 / t / BW == pytest.approx(0.498, abs=0.002)


def test_fractions_stay_below_one_and_grow_with_the_weight_at_decode_sizes():
    table = load_calibration(public_aiter.OUT).gemm["fp8"]
    for row in table.fraction:
        assert all(0 < f <= 1 for f in row)
    one_token = table.fraction[0]
    assert list(one_token) == sorted(one_token)  # a fixed kernel time weighs less on a larger weight


def test_mi300x_loads_it_by_default_and_keeps_its_other_fractions():
    hw, flat = rl.load_hardware("mi300x"), rl.load_hardware("mi300x", analytical=True)
    assert hw.mode == "calibrated" and flat.mode == "analytical"
    assert hw.efficiency.memory_bandwidth_fraction == flat.efficiency.memory_bandwidth_fraction
    assert hw.efficiency.kernel_overhead_s == flat.efficiency.kernel_overhead_s
    assert hw.efficiency.interconnect_bandwidth_fraction == flat.efficiency.interconnect_bandwidth_fraction
    model = rl.load_model("llama-3.1-70b")
    w = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=64)
    d = rl.Deployment(tp=8, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8")
    cal, ana = rl.predict(model, hw, w, d), rl.predict(model, flat, w, d)
    # the measured few-token FP8 GEMMs reach less of HBM than STREAM's 0.77: decode steps are longer, never below the floor
    assert cal.tpot_s > ana.tpot_s and cal.tpot_s >= cal.tpot_floor_s and math.isclose(cal.tpot_floor_s, ana.tpot_floor_s)


def test_bf16_keeps_the_datasheet_fraction():
    hw = rl.load_hardware("mi300x")
    assert "bf16" not in hw.calibration.gemm
    assert hw.efficiency.flops_fraction["bf16"] == rl.load_hardware("mi300x", analytical=True).efficiency.flops_fraction["bf16"]


def test_a_tampered_source_is_a_one_line_error(tmp_path):
    import json

    doc = json.loads(public_aiter.OUT.read_text())
    doc["gemm"]["fp8"]["fraction"][0][0] = 1.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as exc:
        load_calibration(bad)
    assert "fraction" in str(exc.value) and "\n" not in str(exc.value)
