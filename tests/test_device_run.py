"""The one-command GPU run (calibrate/device_run.sh), dry-run on the CPU: the same phases on tiny-llama in seconds.

What the device brings back is checked here: at most 8 files, none deeper than the output folder, a summary
CSV with the measured and predicted columns for both precisions of the reference engine, a summary with the
error tables, the environment with the attention kernel of each path, and a tarball holding the calibration
and the validation report.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "calibrate" / "device_run.sh"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(SCRIPT), str(out), "240", "--dry-run"], capture_output=True, text=True, env=env,
                         timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res.stdout


@pytest.mark.slow
def test_dry_run_brings_back_at_most_eight_flat_files(dry_run):
    out, _ = dry_run
    every = list(out.rglob("*"))
    files = [p for p in every if p.is_file()]
    assert all(p.parent == out for p in every), every  # nothing in sub-folders: the device returns 2 levels at most
    assert 1 <= len(files) <= 8
    assert {p.name for p in files} == {"results.tar.gz", "summary.csv", "summary.md", "environment.json", "device_run.log"}
    assert all(p.stat().st_size < 16 * 2**20 for p in files)


@pytest.mark.slow
def test_dry_run_summary_has_measured_and_predicted_columns(dry_run):
    out, _ = dry_run
    rows = list(csv.DictReader((out / "summary.csv").open()))
    for col in ("model", "impl", "dtype", "batch", "prompt", "output", "decode_mode", "measured_ttft_s", "measured_tpot_s",
                "datasheet_tpot_s", "calibrated_tpot_s", "engine_tpot_s", "calibrated_tpot_s_error", "engine_ttft_s_error"):
        assert col in rows[0], col
    fast = {(r["impl"], r["dtype"]) for r in rows}
    assert {("fast", "bf16"), ("fast", "fp8"), ("hf", "fp32")} <= fast
    for r in rows:
        assert float(r["measured_ttft_s"]) > 0 and float(r["measured_tpot_s"]) > 0
        assert float(r["calibrated_tpot_s"]) > 0 and r["decode_mode"] in ("eager (cpu)", "")
    md = (out / "summary.md").read_text()
    assert "Dry run on the CPU" in md and "| fast | tiny-llama | fp8 | TPOT | calibrated |" in md
    assert "## Attention kernels" in md and "## Calibration" in md


@pytest.mark.slow
def test_dry_run_environment_and_tarball(dry_run):
    out, log = dry_run
    env = json.loads((out / "environment.json").read_text())
    assert env["dry_run"] is True and env["kind"] == "cpu" and env["profile_used"] == "h200"
    assert env["attention_backends"]["fast prefill (SDPA enable_gqa, flash asserted)"]["backend"] != "refused"
    assert set(env["precisions"]) == {"bf16", "fp8", "int8"} and env["versions"]["torch"]
    assert set(env["phases_s"]) >= {"environment", "calibration", "validation"}
    checks = env["self_checks"]  # bf16 operands: 1e-3..1e-2 of the fp32 textbook pass; fp8 several times that
    assert checks["bf16_logits_rel_error"] < 3e-2 and 1e-3 < checks["fp8_logits_rel_error"] < 0.25, checks
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"results/calibration/calibration.json", "results/validation/validation.md", "results/validation/validation.csv"} <= names
    assert "wrote " in log and "device_run:" in (out / "device_run.log").read_text()


def test_missing_pydantic_without_wheels_is_one_clear_error(tmp_path):
    """On the bare image: no pydantic and no carried wheels stops at once and says how to prepare them."""
    bare = "/usr/bin/python3"
    if not Path(bare).exists() or subprocess.run([bare, "-c", "import pydantic"], capture_output=True).returncode == 0:
        pytest.skip("needs a python3 without pydantic at /usr/bin/python3")
    env = {**os.environ, "PYTHON": bare, "DEVICE_WHEELS": str(tmp_path / "none")}
    res = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "o"), "60", "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 3
    assert "pydantic is missing" in res.stdout and "calibrate/README.md" in res.stdout


def test_usage_without_arguments():
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "usage:" in res.stderr


def test_attention_kernel_names_are_classified():
    from calibrate.device_run import _classify

    assert _classify(["void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128>>"]) == "flash"
    assert _classify(["fmha_cutlassF_bf16_aligned_64x64_rf_sm80"]) == "efficient"
    assert _classify(["cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16"]) == "cudnn"
    assert _classify(["ampere_bf16_s16816gemm", "softmax_warp_forward"]).startswith("math")
