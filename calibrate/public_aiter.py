"""MI300X's FP8 GEMM table (`calibrate/public/mi300x.json`) from AMD's own tuned-kernel timings in ROCm/aiter.

NVIDIA's aiconfigurator tables (`calibrate/public.py`) have no AMD system, so the MI300X profile had only a
large-GEMM fraction (hipBLASLt at 8192^3) for every FP8 GEMM, decode's few-token GEMMs included. AMD's
aiter library ships the timings its GEMM tuner measured on the device: each row of a `*_tuned_gemm*.csv`
is one (M, N, K) shape on a device with `cu_num` compute units, the best kernel found and its time `us`
in microseconds. The rows read here (`calibrate/public/aiter/mi300x-fp8-gemm.csv`, copied verbatim with
their commit) are aiter's FP8 GEMM with pre-shuffled weights (per-token activation scales, per-channel
weight scales, fp16 out) at cu_num 304 = MI300X: six weight shapes, N·K from 1.8 M to 33 M elements,
each at M = 1, 2, 4, ..., 32768 tokens, so they cover a decode step's few-token GEMMs and a prefill's
large ones.

Fit. Exactly the aiconfigurator GEMM fit (`public.fit_gemm`): per row the fraction of the FP8 dense peak
on tile-padded FLOPs, f = 2 · pad(M) · N · K / (t · peak), pooled by median in half-octave N·K bins.
Worked number (the row M = 1, N = 4608, K = 7168, t = 12.5055 us; MI300X FP8 peak 2,614.9 TFLOP/s, 16-token
MFMA tiles): 2 · 16 · 4608 · 7168 / (12.5055e-6 · 2.6149e15) = 0.03232; the roofline times that GEMM back
as 2 · 16 · N · K / (0.03232 · peak) = 12.5 us, i.e. its 33 MB of FP8 weights at 2.64 TB/s (0.50 of the
5.3 TB/s datasheet bandwidth), where the STREAM fraction (0.77) gave 8.1 us.

Only the FP8 table: no attention, all-reduce or copy timings come from this source, so those keep the
profile's sourced fractions (the file leaves them out; `Calibration` reads an absent curve as "not
measured"), and the kernel overhead stays the profile's. Caveat recorded in the file: vLLM's per-tensor
FP8 path on ROCm runs hipBLASLt (`torch._scaled_mm`) or a skinny-GEMM kernel at one token, not this aiter
kernel; the table is the device's measured FP8 GEMM at these sizes, the nearest public kernel data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

import roofline as rl
from roofline.calibration import SCHEMA_VERSION, Calibration

from .public import PUBLIC_DIR, fit_gemm, write_calibration

CSV = PUBLIC_DIR / "aiter" / "mi300x-fp8-gemm.csv"
OUT = PUBLIC_DIR / "mi300x.json"
HW_ID = "mi300x"
CU_NUM = 304  # MI300X's compute units: the tuner's key for the device (MI308X rows carry 80, MI355X 256)
REPO = "ROCm/aiter"
COMMIT = "7873c000131c1169819041704ecf756d999a4fa4"
TABLE = "aiter/configs/a8w8_bpreshuffle_tuned_gemm_300.csv"
COMMIT_DATE = "2025-09-28"
US = 1e-6  # the tuner's time unit (column `us`)


def read_rows(path: Path = CSV) -> pd.DataFrame:
    """The CSV's rows of the MI300X (cu_num 304) as columns m, n, k, latency_s; '#' lines are provenance."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    df = pd.DataFrame(rows)
    missing = {"cu_num", "M", "N", "K", "us"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; expected aiter's tuned-GEMM header")
    df = df[df["cu_num"].astype(int) == CU_NUM]
    return pd.DataFrame({"m": df["M"].astype(int).to_numpy(), "n": df["N"].astype(int).to_numpy(),
                         "k": df["K"].astype(int).to_numpy(), "latency_s": df["us"].astype(float).to_numpy() * US})


def build(path: Path = CSV, date: str | None = None) -> Calibration:
    """The MI300X calibration: the FP8 GEMM table fitted from the aiter rows, nothing else."""
    hw = rl.load_hardware(HW_ID, analytical=True)
    rows = read_rows(path)
    notes = [f"FP8 GEMM only, fitted from {len(rows)} MI300X rows (cu_num {CU_NUM}) of {REPO} {TABLE} at {COMMIT[:10]} "
             f"({COMMIT_DATE}, MIT): aiter's CK FP8 GEMM, pre-shuffled weights, per-token / per-channel scales; "
             "attention, all-reduce, copies and kernel overhead stay the profile's",
             "vLLM's per-tensor FP8 linear on ROCm runs hipBLASLt (torch._scaled_mm) or a skinny GEMM at one token, "
             "not this kernel: the table is the device's measured FP8 GEMM at these sizes, the nearest public data"]
    # fit_gemm reads latency in the aiconfigurator tables' milliseconds
    table = fit_gemm(rows.assign(latency=rows["latency_s"] / 1e-3), "fp8", hw.peak_flops("fp8"), hw.gemm_tile_tokens, notes)
    return Calibration(
        schema_version=SCHEMA_VERSION,
        id=f"public-aiter-mi300x-{COMMIT[:10]}",
        provenance={
            "device_name": "AMD Instinct MI300X (gfx942, 304 CUs)", "device_kind": "cuda", "base_profile": HW_ID,
            "profile_match": True, "profile_match_note": f"aiter tuner rows keyed cu_num {CU_NUM} on gfx942 are the MI300X",
            "torch_version": "unknown", "date": date or f"{COMMIT_DATE}T00:00:00+00:00",
            "command": "python -m calibrate.public_aiter",
            "public_source": {"package": REPO, "package_version": COMMIT, "license": "MIT", "system": "gfx942 cu_num 304",
                              "framework": "aiter", "framework_version": COMMIT[:10], "tables": (TABLE,),
                              "collected_at": COMMIT_DATE},
        },
        gemm={"fp8": table},
        kernel_overhead_s=hw.efficiency.kernel_overhead_s,
        notes=tuple(notes),
    )


if __name__ == "__main__":
    print(write_calibration(build(), OUT))
