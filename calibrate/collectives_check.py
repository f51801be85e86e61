"""The analytical all-reduce (`roofline.collectives`) against the engines' measured all-reduce kernels.

Reads the custom all-reduce tables of `aiconfigurator-core` (CUDA-graph rows, bf16, as `calibrate.public`
reads them; `pip install roofline[public-data]`) and prints, per device and group size:

* alpha: the median time of messages <= 4 KB, where every byte term is negligible: the fixed time of one
  step of the engine's one-shot all-reduce, the figure `Interconnect.custom_allreduce_latency_s` takes
  (the middle of tp 2 / 4 / 8);
* the median |error| of `collectives.allreduce_s` with the profile's own figures over every message size
  of the table, split into decode-sized messages (<= 1 MiB) and larger ones; and the larger ones again with
  NVLS switched on at the fraction nccl-tests reach on 8x H200 (0.61, the figure the profiles' sources give),
  which is why the shipped profiles leave NVLS out: the engines' kernels do not reach it;
* held out: the same with alpha taken from a sibling device's table (H100 <-> H200, B200 <-> GB200,
  A100 <- H100), which took no part in choosing it.

Nothing here is fitted to end-to-end measurements. Run: `python -m calibrate.collectives_check [--framework vllm]`.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import roofline as rl
from roofline.collectives import allreduce_s, best_algorithm
from roofline.roofline import Ceilings

from . import public as P

SMALL_BYTES = 4096  # messages this small: the fixed time alone
DECODE_BYTES = 1 << 20  # decode-sized all-reduces (batch · hidden · 2 bytes up to ~64 x 8192)
NVLS_FRACTION = 0.61  # 8x H200 NVLS all-reduce, 482 GB/s busbw / 1.75 / 450 GB/s (stas00/ml-engineering)
SIBLING = {"h100_sxm": "h200_sxm", "h200_sxm": "h100_sxm", "b200_sxm": "gb200", "gb200": "b200_sxm", "a100_sxm": "h100_sxm"}


def table(system: str, framework: str = "vllm") -> pd.DataFrame | None:
    """The newest custom all-reduce table of `framework` on `system`, its half-precision CUDA-graph rows, with
    message bytes `s_bytes` (elements · 2) and seconds `t_s`."""
    folder = P.data_root() / system / "comm" / framework
    versions = sorted((d.name for d in folder.glob("*") if (d / "custom_allreduce_perf.parquet").is_file()), key=P.version_key)
    if not versions:
        return None
    rows = P.allreduce_rows(pd.read_parquet(folder / versions[-1] / "custom_allreduce_perf.parquet")).copy()
    rows["s_bytes"] = rows["message_size"].astype(float) * P.HALF_BYTES
    rows["t_s"] = rows["latency"].astype(float) * P.TABLE_TIME_S
    rows.attrs["version"] = versions[-1]
    return rows


def alpha_s(rows: pd.DataFrame) -> dict[int, float]:
    """Per group size, the median time of the smallest messages (<= 4 KB)."""
    small = rows[rows["s_bytes"] <= SMALL_BYTES]
    return {int(p): float(g["t_s"].median()) for p, g in small.groupby("num_gpus")}


def predicted_s(rows: pd.DataFrame, hw, step_s: float | None = None, nvls_fraction: float | None = None) -> np.ndarray:
    """`collectives.allreduce_s` for every row (one all-reduce of s_bytes over num_gpus) with the profile's ceilings
    (NVLS at `nvls_fraction` of the link when given)."""
    c = Ceilings.of(hw, "bf16")
    step = c.allreduce_step_s if step_s is None else step_s
    nvls_rate = c.nvls_bytes_per_s if nvls_fraction is None else hw.interconnect.bytes_per_s_per_direction * nvls_fraction
    return allreduce_s(rows["s_bytes"].to_numpy(), 1.0, rows["num_gpus"].to_numpy(float), c.link_bytes_per_s,
                       c.pair_link_bytes_per_s, c.link_latency_s, step, nvls_rate)


def _med(e) -> str:
    e = np.asarray(e, dtype=float)
    return f"{100 * np.median(np.abs(e)):.1f}% ({e.size})" if e.size else "-"


def report(framework: str = "vllm") -> str:
    lines = [f"all-reduce kernels of {framework} (aiconfigurator-core {P.package_version()}, CUDA-graph rows): "
             "median |predicted / measured - 1| (rows)", "",
             "| device (version) | alpha tp2 / tp4 / tp8 (us) | profile alpha (us) | all sizes | <= 1 MiB | > 1 MiB "
             f"| > 1 MiB with NVLS at {NVLS_FRACTION} | held out: alpha of | all | <= 1 MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    tables = {s: table(s, framework) for s in P.SYSTEMS}
    for system, rows in tables.items():
        hw = rl.load_hardware(P.SYSTEMS[system])
        if rows is None or rows.empty or hw.interconnect.topology == "pcie":
            continue  # a PCIe host's table measures that host's bus (calibrate/public/README.md, defect 2)
        a = alpha_s(rows)
        meas = rows["t_s"].to_numpy()
        small = rows["s_bytes"].to_numpy() <= DECODE_BYTES
        e = predicted_s(rows, hw) / meas - 1
        e_nvls = predicted_s(rows, hw, nvls_fraction=NVLS_FRACTION) / meas - 1
        sib = SIBLING.get(system)
        held = "-", "-", "-"
        if sib is not None and tables.get(sib) is not None:
            sib_alpha = float(np.median(list(alpha_s(tables[sib]).values())))
            eh = predicted_s(rows, hw, step_s=sib_alpha) / meas - 1
            held = f"{P.SYSTEMS[sib]} ({1e6 * sib_alpha:.2f})", _med(eh), _med(eh[small])
        alphas = " / ".join(f"{1e6 * a[p]:.2f}" for p in sorted(a))
        step = hw.interconnect.custom_allreduce_latency_s
        lines.append(f"| {P.SYSTEMS[system]} ({rows.attrs['version']}) | {alphas} | "
                     f"{'-' if step is None else f'{1e6 * step:.2f}'} | {_med(e)} | {_med(e[small])} | {_med(e[~small])} | "
                     f"{_med(e_nvls[~small])} | {held[0]} | {held[1]} | {held[2]} |")
    lines += ["", "the fastest algorithm by message size (h200 profile, tp 8): " + ", ".join(
        f"{s // 1024} KiB {best_algorithm(s, 1, 8, *_args(rl.load_hardware('h200')))}" for s in (16 << 10, 256 << 10, 1 << 20, 16 << 20, 256 << 20))]
    return "\n".join(lines)


def _args(hw):
    c = Ceilings.of(hw, "bf16")
    return c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s, c.allreduce_step_s, c.nvls_bytes_per_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", default="vllm", choices=("vllm", "trtllm", "sglang"))
    args = ap.parse_args(argv)
    print(report(args.framework))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

