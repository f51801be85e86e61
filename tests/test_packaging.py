"""`pip install .` works outside the checkout: the specs ship as package data and load from the wheel."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import roofline as rl

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_the_specs_and_works_outside_the_checkout(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    if build.returncode and ("invalid command 'bdist_wheel'" in build.stderr or "No module named" in build.stderr):
        pytest.skip("this interpreter cannot build wheels without isolation (needs setuptools>=70.1, "
                    "which `pip install -e .[dev]` brings)")
    assert build.returncode == 0, build.stderr
    log = build.stdout + build.stderr  # -v: the build backend's own output, warnings included
    # our metadata raises no packaging warning: the license is an SPDX string and every shipped folder is listed
    assert "Deprecat" not in log and "is absent from the `packages` configuration" not in log, log[-3000:]
    wheel = next((tmp_path / "dist").glob("roofline-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"roofline/model_specs/{m}.yaml" for m in rl.list_models()} <= names
    assert {f"roofline/hardware_profiles/{h}.yaml" for h in rl.list_hardware()} <= names
    assert "roofline/scenarios/default.yaml" in names  # the procurement report's default scenario
    assert {f"roofline/hardware_profiles/networks/{n}.yaml" for n in rl.list_networks()} <= names
    shipped = {f"roofline/public_calibrations/{p.name}" for p in (ROOT / "calibrate" / "public").glob("*.json")}
    assert shipped and shipped <= names  # load_hardware attaches them by default
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    # -S: no site hooks (so no editable install of the checkout); dependencies from this interpreter's site-packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site.getsitepackages()])}
    code = ("import roofline as rl; print(rl.__file__); "
            "print(len(rl.list_models()), len(rl.list_hardware())); "
            "print(rl.predict(rl.load_model('llama-3.1-8b'), rl.load_hardware('h100-sxm'), "
            "rl.Workload(prompt_tokens=100, output_tokens=10)).fits); print(rl.load_hardware('h100-sxm').mode)")
    run = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    where, counts, fits, mode = run.stdout.split("\n")[:4]
    assert where.startswith(str(target))  # the installed copy, not the checkout
    assert counts == f"{len(rl.list_models())} {len(rl.list_hardware())}" and fits == "True"
    assert mode == "calibrated"  # the public calibration found as package data, outside the checkout
