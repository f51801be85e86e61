"""How good are the calibrations fitted from public kernel tables? Three measurements, none fitted to.

(a) **Fit residuals**: every table row a device's curves were fitted on, timed by those curves
    (GEMM: tile-padded FLOPs / (peak · fraction(M, N·K)); attention: t0 + x / R, x the prefill's executed FLOPs
    over its wave efficiency or the decode's bytes, + batch · kv_heads · t_kvh for decode; all-reduce per
    group size: through the stored points, `calibration.interpolated_message_s`, so only their rounding to four
    digits is left; the fused MoE layer at the shapes a file stores points of: "moe curve", the `MoeCurve` alone, and
    "moe points", the curve times the stored measured / curve ratio, `calibration.moe_point_ratio`, as the runtime
    times those layers before it holds each op at its floor; prefill attention at the shapes a file stores points of
    (isl > 1): "attention prefill line", the line alone, and "attention prefill points", the line times the stored
    measured / line ratio, `calibration.attention_point_ratio`), as |predicted / measured - 1|, median per kernel family.
(b) **Held-out devices**: the curves of a source device attached to a target device the way
    `load_hardware(target, calibration=source_file)` attaches them (fractions rescaled to the
    target's datasheet peaks, `CalibratedCurves`), timed against the target's own tables. The
    target's tables take no part in the source's fit.
(c) **The published corpus** (`calibrate/corpus.py`) run twice: every row's hardware analytical,
    then loaded with the committed `calibrate/public/<id>.json` where one exists.

    python -m calibrate.public_check            # needs roofline[public-data] for (a) and (b)
    python -m calibrate.public_check --corpus   # (c) only, from the committed files
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import roofline as rl
from roofline.calibration import CalibratedCurves, Calibration, load_calibration

from . import corpus
from .public_attention import stored_shape_errors as stored_attention_errors
from .public_moe import stored_shape_errors
from .public import (PUBLIC_DIR, SYSTEMS, TABLE_TIME_S, GEMM_DTYPES, HALF_BYTES, allreduce_rows,
                     attention_rows, decode_units, decode_x, elementwise_rows, fit_public, gemm_fractions, gemm_rows, median_abs_pct, prefill_executed_x, prefill_x,
                     rel_error)

MODEL_SIZED = 1024  # fused projections of 1B-405B models have N and K of about 1024 or more; the tables go down to 32
HELD_OUT = (("h100-sxm", "h200"), ("h200", "h100-sxm"), ("a100-sxm-80gb", "h200"), ("b200", "gb200"), ("gb200", "b200"))


def kernel_errors(cal: Calibration, hw, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per table row: family, predicted and measured seconds, error; `cal` timed on `hw`'s peaks."""
    parts = []
    g = tables.get("gemm")
    for table_dtype, key in GEMM_DTYPES.items():
        if g is None or key not in cal.gemm or key not in hw.peak_flops_per_s:
            continue
        rows = gemm_rows(g, table_dtype)
        if rows.empty:
            continue
        curves = CalibratedCurves(cal, hw, key)
        measured = rows["latency"].to_numpy(float) * TABLE_TIME_S
        frac_measured = gemm_fractions(rows, curves.gemm_peak, hw.gemm_tile_tokens)
        nk = rows["n"].to_numpy(float) * rows["k"].to_numpy(float)
        predicted = measured * frac_measured / curves.gemm.at(rows["m"].to_numpy(float), nk)
        parts.append(pd.DataFrame({"family": f"gemm {key}", "predicted_s": predicted, "measured_s": measured}))
        model_sized = ((rows["n"] >= MODEL_SIZED) & (rows["k"] >= MODEL_SIZED)).to_numpy()
        parts.append(pd.DataFrame({"family": f"gemm {key} N,K>={MODEL_SIZED}", "predicted_s": predicted[model_sized],
                                   "measured_s": measured[model_sized]}))
    curves = CalibratedCurves(cal, hw, "bf16")
    if "context_attention" in tables and cal.attention_prefill is not None:
        rows = attention_rows(tables["context_attention"])
        x = prefill_executed_x(rows, hw.sm_count or 0) if curves.att_pre_executed else prefill_x(rows)
        predicted = curves.att_pre_latency_s + x / curves.att_pre_rate
        parts.append(pd.DataFrame({"family": "attention prefill", "predicted_s": predicted,
                                   "measured_s": rows["latency"].to_numpy(float) * TABLE_TIME_S}))
        if curves.attention_points:  # the stored shapes: the line alone, and through the points
            parts.append(stored_attention_errors(cal.attention_prefill_points, rows, predicted))
    if "generation_attention" in tables and cal.attention_decode is not None:
        rows = attention_rows(tables["generation_attention"])
        predicted = curves.att_dec_latency_s + decode_x(rows) / curves.att_dec_rate + decode_units(rows) * curves.att_kv_head_s
        parts.append(pd.DataFrame({"family": "attention decode", "predicted_s": predicted,
                                   "measured_s": rows["latency"].to_numpy(float) * TABLE_TIME_S}))
    if "allreduce" in tables and (curves.allreduce or cal.allreduce_points is not None):
        for p, rows in allreduce_rows(tables["allreduce"]).groupby("num_gpus"):
            size = rows["message_size"].to_numpy(float) * HALF_BYTES
            if int(p) in curves.allreduce:  # as a prediction times it on `hw` (points rescaled to its link)
                predicted = curves.allreduce_message_s(size, int(p))
            elif cal.allreduce_points is not None and str(int(p)) in cal.allreduce_points.groups:
                predicted = cal.allreduce_points.time_s(size, int(p))  # a PCIe host's points, as measured
            else:
                continue
            parts.append(pd.DataFrame({"family": "all-reduce", "predicted_s": predicted,
                                       "measured_s": rows["latency"].to_numpy(float) * TABLE_TIME_S}))
    if "elementwise" in tables and curves.elementwise is not None:
        x, measured = elementwise_rows(tables["elementwise"], hw.l2_bytes)
        t0, rate = curves.elementwise
        parts.append(pd.DataFrame({"family": "elementwise", "predicted_s": t0 + x / rate, "measured_s": measured}))
    if "moe" in tables and cal.moe_points:  # the stored MoE shapes: the curve alone, and through the points
        parts.append(stored_shape_errors(cal, hw, tables["moe"]))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["family", "predicted_s", "measured_s"])
    df["error"] = rel_error(df["predicted_s"], df["measured_s"])
    return df


def error_summary(df: pd.DataFrame) -> dict[str, float]:
    """Median |error| in percent per family."""
    return {fam: median_abs_pct(g["error"]) for fam, g in df.groupby("family")}


FAMILIES = ("gemm bf16", f"gemm bf16 N,K>={MODEL_SIZED}", "gemm fp8", f"gemm fp8 N,K>={MODEL_SIZED}", "attention prefill",
            "attention prefill line", "attention prefill points", "attention decode", "all-reduce", "moe curve", "moe points")


def _row(label: str, summary: dict[str, float], n: dict[str, int]) -> str:
    cells = [f"{summary[f]:.1f}% ({n[f]})" if f in summary else "-" for f in FAMILIES]
    return f"| {label} | " + " | ".join(cells) + " |"


def table_header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(FAMILIES) + " |", "|---" * (len(FAMILIES) + 1) + "|"]


def residual_tables(root: Path | None = None) -> tuple[str, str]:
    """(a) and (b) as markdown tables: median |error| (rows) per family."""
    fits = {}
    for system, hw_id in SYSTEMS.items():
        cal, tables = fit_public(system, root=root)
        fits[hw_id] = (cal, tables)
    a = table_header("device (framework version)")
    for hw_id, (cal, tables) in fits.items():
        df = kernel_errors(cal, rl.load_hardware(hw_id, analytical=True), tables)
        src = cal.provenance.public_source
        a.append(_row(f"{hw_id} ({src.framework} {src.framework_version})", error_summary(df), df.groupby("family").size().to_dict()))
    b = table_header("curves of -> timed on")
    for source, target in HELD_OUT:
        if source not in fits or target not in fits:
            continue
        df = kernel_errors(fits[source][0], rl.load_hardware(target, analytical=True), fits[target][1])
        b.append(_row(f"{source} -> {target}", error_summary(df), df.groupby("family").size().to_dict()))
    return "\n".join(a), "\n".join(b)


def analytical_loader(name):
    """The pure datasheet model of a profile id (`load_hardware(name, analytical=True)`)."""
    return rl.load_hardware(name, analytical=True)


def public_loader(folder: Path = PUBLIC_DIR):
    """A `load_hardware` that attaches `folder/<id>.json` where it exists (the corpus rows name profile ids).
    For the shipped folder that is `rl.load_hardware` itself, which attaches them by default."""
    if Path(folder).resolve() == PUBLIC_DIR.resolve():
        return rl.load_hardware
    cache = {}

    def load(name):
        if name not in cache:
            path = Path(folder) / f"{name}.json"
            cache[name] = rl.load_hardware(name, calibration=path) if path.is_file() else analytical_loader(name)
        return cache[name]

    return load


def corpus_table(folder: Path = PUBLIC_DIR) -> str:
    """(c): per family, median / p90 |error| and bias, analytical vs with the public calibrations attached,
    on every headline row and on the rows whose GPU has a file."""
    df_a, _, _ = corpus.run(load_hardware=analytical_loader)
    df_c, _, _ = corpus.run(load_hardware=public_loader(folder))
    covered = {p.stem for p in Path(folder).glob("*.json")}
    cols = ("median_abs_pct_error", "p90_abs_pct_error", "bias_pct")

    def cells(df, fam):
        t = corpus.family_table(corpus.headline(df))
        r = t[t["family"] == fam]
        if not len(r):
            return "0", "-"
        m, p90, bias = (float(r[c].iloc[0]) for c in cols)
        return str(int(r["n"].iloc[0])), f"{m:.1f}% / {p90:.1f}% / {bias:+.1f}%"

    lines = ["| family | n | analytical | calibrated | n on covered GPUs | analytical | calibrated |", "|---|---|---|---|---|---|---|"]
    for fam in corpus.FAMILIES:
        n, a = cells(df_a, fam)
        _, c = cells(df_c, fam)
        n_cov, a_cov = cells(df_a[df_a["gpu"].isin(covered)], fam)
        _, c_cov = cells(df_c[df_c["gpu"].isin(covered)], fam)
        lines.append(f"| {fam} | {n} | {a} | {c} | {n_cov} | {a_cov} | {c_cov} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m calibrate.public_check", description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="store_true", help="only (c), the published corpus with the committed files")
    ap.add_argument("--root", default=None, help="the tables' data folder (default: the installed aiconfigurator-core)")
    args = ap.parse_args(argv)
    if not args.corpus:
        a, b = residual_tables(Path(args.root) if args.root else None)
        print("(a) fit residuals: median |predicted / measured - 1| (rows)\n" + a)
        print("\n(b) held-out devices: median |predicted / measured - 1| (rows)\n" + b)
    print("\n(c) published corpus, headline rows: median / p90 |error| / bias\n" + corpus_table())
    for p in sorted(PUBLIC_DIR.glob("*.json")):
        load_calibration(p)  # every committed file still validates


if __name__ == "__main__":
    main()
