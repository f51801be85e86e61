"""Calibration and validation end to end on the CPU: quick sizes, the same code paths as on a GPU."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import roofline as rl  # noqa: E402
from calibrate import device as D  # noqa: E402
from calibrate import microbench as MB  # noqa: E402
from calibrate.fit import fit_affine, gemm_table, padded_gemm_flops  # noqa: E402
from calibrate.runner import run_calibration  # noqa: E402
from calibrate.timing import Timer  # noqa: E402
from calibrate.validate import load_spec, run_validation  # noqa: E402
from roofline.cli import main  # noqa: E402
from roofline.errors import SpecError  # noqa: E402

H100 = rl.load_hardware("h100-sxm")


@pytest.fixture(scope="module")
def cal_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal")
    run = run_calibration(out=out, profile="h100-sxm", quick=True, command="pytest")
    assert run.calibration_path is not None and not run.failed
    return out


# ------------------------------------------------------------ device
def test_cpu_device_has_no_profile_and_says_why():
    info = D.detect()
    if info.kind == "cuda":
        pytest.skip("a CUDA device is present")
    assert "no CUDA device" in info.nvml_note and "\n" not in info.nvml_note
    pid, note = D.match_profile(info)
    assert pid is None and "no shipped hardware profile" in note


def test_without_nvml_a_clear_message():
    try:
        D.nvml_facts(0)
    except RuntimeError as exc:
        assert "\n" not in str(exc) and ("NVML" in str(exc) or "pynvml" in str(exc))
    else:
        pytest.skip("NVML works here")
    assert D.throttle_reasons() is None


def test_profile_matching_by_name_and_memory():
    gpu = D.DeviceInfo(kind="cuda", name="NVIDIA H100 80GB HBM3", memory_bytes=85_520_809_984)
    assert D.match_profile(gpu)[0] == "h100-sxm"
    assert D.match_profile(D.DeviceInfo(kind="cuda", name="NVIDIA H200", memory_bytes=150_754_820_096))[0] == "h200"
    assert D.match_profile(D.DeviceInfo(kind="cuda", name="NVIDIA GeForce GTX 1080", memory_bytes=8 * 2**30))[0] is None


# ------------------------------------------------------------ microbenchmarks
@pytest.mark.parametrize("name", ["bandwidth_copy", "bandwidth_read", "bandwidth_write", "gemm_fp32", "gemm_bf16",
                                  "attention_prefill", "attention_decode", "launch_overhead"])
def test_each_benchmark_returns_medians_spreads_and_samples(name):
    grid = MB.Grid.quick("cpu")
    ctx = MB.Context(torch=torch, device="cpu", timer=Timer("cpu", warmup_s=0.001, rep_s=0.003, min_reps=3, max_reps=5), grid=grid)
    rows = list(MB.benchmarks(grid)[name](ctx))
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, rows
    for r in ok:
        assert len(r["samples_s"]) == r["reps"] >= 3
        assert r["p10_s"] <= r["median_s"] <= r["p90_s"] and r["median_s"] > 0


def test_unsupported_dtypes_and_one_gpu_allreduce_are_recorded_skips():
    ctx = MB.Context(torch=torch, device="cpu", timer=Timer("cpu"), grid=MB.Grid.quick("cpu"), gpu_count=0)
    fp8 = list(MB.gemm(ctx, "fp8"))
    assert fp8[0]["status"] == "skipped" and "CUDA" in fp8[0]["reason"]
    ctx.device, ctx.compute_capability = "cuda", (8, 0)
    assert "8.9" in MB.gemm_support(ctx, "fp8")
    ctx.device = "cpu"
    ar = list(MB.allreduce(ctx))
    assert ar[0]["status"] == "skipped" and "at least two" in ar[0]["reason"]


def test_full_grid_fits_the_ten_minute_budget_on_an_h100():
    est = MB.estimate_run_s(MB.Grid.full(), H100, Timer("cpu"))
    assert sum(est.values()) < 600, est


# ------------------------------------------------------------ fitting, by hand
def test_affine_fit_recovers_a_line():
    # copies on t = 5 us + x / 2e12: 1 MB -> 5.5 us, 100 MB -> 55 us, 1 GB -> 505 us
    xs = [1e6, 1e8, 1e9]
    ts = [5e-6 + x / 2e12 for x in xs]
    c = fit_affine(xs, ts, 3.35e12, "bytes", [], "copy")
    assert math.isclose(c.latency_s, 5e-6, rel_tol=1e-6) and math.isclose(c.rate_per_s, 2e12, rel_tol=1e-6)
    assert math.isclose(c.fraction, 2 / 3.35, rel_tol=1e-6)  # 0.597


def test_affine_fit_clamps_faster_than_light():
    notes = []
    c = fit_affine([1e6, 1e9], [1e6 / 5e12, 1e9 / 5e12], 3.35e12, "bytes", notes, "copy")
    assert c.rate_per_s == 3.35e12 and "clamped" in notes[0]


def test_gemm_fraction_is_of_padded_flops():
    # M = 8 on a 16-token tile: padded FLOPs 2 * 16 * 4096 * 4096 = 536,870,912; in 1 ms at 989.4e12 peak:
    # 5.369e8 / (1e-3 * 9.894e11 * 1e3) = 0.000543
    row = {"status": "ok", "m": 8, "n": 4096, "k": 4096, "median_s": 1e-3}
    big = {"status": "ok", "m": 4096, "n": 4096, "k": 4096, "median_s": 2 * 4096**3 / (0.8 * 989.4e12)}
    t = gemm_table([row, big], "bf16", 989.4e12, 16, [])
    assert padded_gemm_flops(8, 4096, 4096, 16) == 536_870_912
    assert math.isclose(t.fraction[0][0], 536_870_912 / (1e-3 * 989.4e12))
    assert math.isclose(t.fraction[1][0], 0.8)
    # the calibrated compute term of that shape is its measured time: F·pad / (peak · fraction)
    assert math.isclose(2 * 8 * 4096 * 4096 * 2 / (989.4e12 * t.fraction[0][0]), 1e-3)


# ------------------------------------------------------------ runs, files, resumption
def test_quick_calibration_writes_a_valid_profile(cal_dir):
    cal = rl.load_calibration(cal_dir / "calibration.json")
    assert cal.provenance.device_kind in ("cpu", "cuda") and cal.provenance.base_profile == "h100-sxm"
    assert cal.provenance.quick and "fp32" in cal.gemm
    for f in ("environment.json", "calibration.md", "bandwidth.svg", "gemm.svg"):
        assert (cal_dir / f).stat().st_size > 0
    assert (cal_dir / "bandwidth.svg").read_text().startswith("<svg")
    with pytest.warns(rl.CalibrationMismatchWarning):
        hw = rl.load_hardware("h100-sxm", calibration=cal_dir / "calibration.json")
    p = rl.predict(rl.load_model("llama-3.1-8b"), hw, rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16))
    assert p.mode == "calibrated" and p.tpot_s > p.tpot_floor_s


def test_no_profile_means_measurements_only(tmp_path):
    if D.detect().kind == "cuda":
        pytest.skip("a GPU may match a profile")
    run = run_calibration(out=tmp_path, quick=True, only=["bandwidth_copy"])
    assert run.calibration_path is None and not (tmp_path / "calibration.json").exists()
    assert json.loads((tmp_path / "bench" / "bandwidth_copy.json").read_text())["complete"] is True
    assert "measurements only" in run.summary()


def test_interrupted_run_keeps_valid_files_and_resume_skips_them(tmp_path):
    grid = MB.Grid.quick("cpu")
    real = MB.benchmarks(grid)
    names = list(real)[:4]
    calls = []

    def boom(ctx):
        yield {"kernel": "x", "status": "ok", "median_s": 1.0}
        raise KeyboardInterrupt

    benches = {n: real[n] for n in names[:2]} | {names[2]: boom} | {names[3]: real[names[3]]}
    with pytest.raises(KeyboardInterrupt):
        run_calibration(out=tmp_path, quick=True, benches=benches)
    for n in names[:2]:
        assert json.loads((tmp_path / "bench" / f"{n}.json").read_text())["complete"] is True
    partial = json.loads((tmp_path / "bench" / f"{names[2]}.json").read_text())
    assert partial["complete"] is False and len(partial["rows"]) == 1 and partial["error"] == "interrupted"
    assert not (tmp_path / "bench" / f"{names[3]}.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written files

    def counted(name):
        def bench(ctx):
            calls.append(name)
            yield from real[name](ctx)
        return bench

    run = run_calibration(out=tmp_path, quick=True, benches={n: counted(n) for n in names})
    assert run.reused == names[:2] and calls == names[2:]
    calls.clear()
    run = run_calibration(out=tmp_path, quick=True, overwrite=True, benches={n: counted(n) for n in names})
    assert calls == names and run.reused == []


def test_a_failing_benchmark_is_recorded_and_the_run_goes_on(tmp_path):
    grid = MB.Grid.quick("cpu")

    def broken(ctx):
        yield {"kernel": "x", "status": "ok", "median_s": 1.0}
        raise RuntimeError("CUDA error: an illegal memory access\nmore lines")

    run = run_calibration(out=tmp_path, quick=True, benches={"broken": broken, "bandwidth_copy": MB.benchmarks(grid)["bandwidth_copy"]})
    assert run.failed == {"broken": "RuntimeError: CUDA error: an illegal memory access"}
    assert run.ran == ["broken", "bandwidth_copy"]
    assert json.loads((tmp_path / "bench" / "broken.json").read_text())["complete"] is False


# ------------------------------------------------------------ models match the spec
def test_own_llama_parameter_count_equals_the_spec():
    from calibrate import llama

    for spec in (load_spec("tiny-llama"), load_spec("llama-3.2-1b", layers=1)):
        with torch.device("meta"):
            model = llama.build(spec, torch.float32, "meta")
        assert llama.param_count(model) == spec.param_count


def test_hf_parameter_count_equals_the_spec():
    pytest.importorskip("transformers")
    from calibrate import hf

    for spec in (load_spec("tiny-llama"), load_spec("llama-3.2-1b", layers=1)):  # 1B ties its embeddings
        with torch.device("meta"):
            model = hf.build(spec, torch.float32, "meta")
        assert sum(p.numel() for p in model.parameters()) == spec.param_count


def test_unsupported_spec_is_one_line():
    from calibrate import llama

    with pytest.raises(SpecError) as err:
        llama.check_supported(rl.load_model("mixtral-8x7b"))
    assert "MoE" in str(err.value) and "\n" not in str(err.value)


def test_layers_truncation_is_what_the_prediction_uses():
    full = rl.load_model("llama-3.1-8b")
    one, two = load_spec("llama-3.1-8b", layers=1), load_spec("llama-3.1-8b", layers=2)
    per_layer = two.param_count - one.param_count  # 218,112,000 for Llama-3.1-8B
    assert two.num_layers == 2 and per_layer == 218_112_000
    assert full.param_count == one.param_count + 31 * per_layer


def test_missing_torch_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    assert main(["calibrate", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "roofline: error: torch: is not installed; pip install roofline[calibrate] (or pip install torch)"


# ------------------------------------------------------------ validation end to end
def test_validation_own_and_hf_writes_report_with_errors(cal_dir, tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "val"
    run = run_validation(["tiny-llama"], ["own", "hf"], [1, 2], [16], [4], out=out,
                         calibration=cal_dir / "calibration.json", reps=1, command="pytest")
    assert run.ran == 4 and len(run.rows) == 4
    csv = (out / "validation.csv").read_text().splitlines()
    header = csv[0].split(",")
    for col in ("measured_ttft_s", "datasheet_ttft_s", "calibrated_ttft_s", "datasheet_tpot_s_error", "calibrated_output_tokens_per_s_error"):
        assert col in header
    assert len(csv) == 5
    md = (out / "validation.md").read_text()
    if run.rows[0]["dtype"] == "fp32":
        assert "This run was on a CPU" in md
    dt = run.rows[0]["dtype"]
    # errors are summarised per implementation and precision, never pooled across them
    assert f"| own | {dt} | TTFT | calibrated | 2 |" in md and f"| hf | {dt} | TTFT | calibrated | 2 |" in md
    assert "median abs. error" in md
    for svg in ("ttft.svg", "tpot.svg", "throughput.svg"):
        assert (out / svg).read_text().startswith("<svg")
    again = run_validation(["tiny-llama"], ["own", "hf"], [1, 2], [16], [4], out=out,
                           calibration=cal_dir / "calibration.json", reps=1)
    assert again.ran == 0 and again.reused == 4  # resumed: nothing measured twice


# ------------------------------------------------------------ CLI
def test_cli_calibrate_and_validate(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["calibrate", "--quick", "--profile", "h100-sxm", "--out", str(out), "--only", "bandwidth_copy,gemm_fp32,launch_overhead"]) == 0
    assert (out / "calibration.json").exists()
    assert main(["validate", "--quick", "--impl", "own", "--calibration", str(out / "calibration.json"),
                 "--batch-sizes", "1", "--prompt-tokens", "8", "--output-tokens", "3"]) == 0
    text = capsys.readouterr().out
    assert "calibrated profile:" in text and "median |error|" in text
    assert (out / "validation" / "validation.md").exists()


@pytest.mark.parametrize("argv, field", [
    (["validate", "--quick", "--impl", "tensorrt"], "impl"),
    (["validate", "--quick", "--calibration", "/nonexistent/cal.json"], "calibration"),
    (["validate", "--quick", "--model", "mixtral-8x7b", "--impl", "own", "--profile", "h100-sxm"], "model"),
    (["calibrate", "--quick", "--only", "nonsense"], "only"),
    (["calibrate", "--quick", "--profile", "h999"], "hardware"),
])
def test_cli_errors_exit_2_with_one_line(argv, field, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"roofline: error: {field}") and "\n" not in err, err
