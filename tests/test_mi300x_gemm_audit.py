"""The MI300X Llama GEMM audit (calibrate/mi300x_gemm_audit.py): shapes, the aiter rows it reads, its sums."""

import pytest

import roofline as rl

pd = pytest.importorskip("pandas")

from calibrate import mi300x_gemm_audit as audit  # noqa: E402


def test_llama_70b_tp8_weight_slices():
    # qkv: (64 + 2·8) heads · 128 / 8 = 1,280 by hidden 8,192; o_proj: 8,192 by 64 · 128 / 8 = 1,024;
    # gate + up merged: 2 · 28,672 / 8 = 7,168 by 8,192; down: 8,192 by 28,672 / 8 = 3,584
    shapes = audit.gemm_shapes(rl.load_model("llama-3.1-70b"), 8)
    assert shapes == {"qkv_proj": (1280, 8192), "o_proj": (8192, 1024), "mlp_up": (7168, 8192), "mlp_down": (8192, 3584)}


def test_llama_405b_tp8_weight_slices():
    # (128 + 2·8) · 128 / 8 = 2,304; 128 · 128 / 8 = 2,048; 2 · 53,248 / 8 = 13,312; 53,248 / 8 = 6,656
    shapes = audit.gemm_shapes(rl.load_model("llama-3.1-405b"), 8)
    assert shapes == {"qkv_proj": (2304, 16384), "o_proj": (16384, 2048), "mlp_up": (13312, 16384), "mlp_down": (16384, 6656)}


def test_the_committed_rows_are_aiters_mi300x_ones_at_the_llama_shapes():
    rows = audit.read_rows()
    assert len(rows) == 427  # every cu_num 304 row of aiter commit fbb52ddfad's a8w8_tuned_gemm.csv
    t, m = audit.measured_s(rows, 1280, 8192, 1)
    assert (t, m) == (pytest.approx(15.9787e-6), 1)
    # nearest tabulated M by log distance: M = 3 lies nearer 1 than 16 (log 3 = 1.10 < log 16/3 = 1.67)
    assert audit.measured_s(rows, 1280, 8192, 3)[1] == 1
    assert audit.measured_s(rows, 1280, 8192, 5)[1] == 16
    assert audit.measured_s(rows, 1281, 8192, 1)[0] != audit.measured_s(rows, 1281, 8192, 1)[0]  # NaN: not tabulated


def test_a_layers_gemms_at_one_token_by_hand():
    rows = audit.read_rows()
    df = audit.audit("llama-3.1-70b", 1, rows)
    # the CSV's M = 1 rows: 15.9787 + 6.1655 + 26.3577 + 12.0983 = 60.6002 us
    assert df.aiter_us.sum() == pytest.approx(60.6002, abs=1e-3)
    # a narrow N leaves CUs idle: qkv's 10.5 MB take 2.6x o_proj's 8.4 MB (15.9787 / 6.1655 = 2.59)
    by = df.set_index("gemm")
    assert by.loc["qkv_proj", "aiter_us"] / by.loc["o_proj", "aiter_us"] == pytest.approx(2.59, abs=0.01)
    # bandwidth column: N·K FP8 bytes over the time, 1280 · 8192 / 15.9787e-6 = 0.656 TB/s
    assert by.loc["qkv_proj", "aiter_tb_per_s"] == pytest.approx(0.656, abs=0.001)
    assert (df.layers == 80).all()
    big = audit.audit("llama-3.1-405b", 1, rows)
    # 28.6795 + 12.3237 + 71.7882 + 31.3479 = 144.1393 us
    assert big.aiter_us.sum() == pytest.approx(144.1393, abs=1e-3)


def test_the_report_names_both_models_and_a_bad_batch_is_refused(capsys):
    text = audit.main(["--batch", "1"])
    assert "llama-3.1-70b tp 8, M = 1" in text and "llama-3.1-405b tp 8, M = 1" in text
    with pytest.raises(SystemExit):
        audit.main(["--batch", "0"])
    err = capsys.readouterr().err
    assert "--batch must be at least 1" in err
