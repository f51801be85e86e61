"""Reports of a calibration and of a validation: markdown, CSV and hand-written SVG (no matplotlib).

Error convention: for a metric with measured value y and prediction p, the signed error is
p / y - 1 (+10% = predicted 10% too high) and the absolute percentage error |p / y - 1|.
The summary gives, per metric and per mode (datasheet, calibrated), the median and the
worst absolute percentage error over every run.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from html import escape
from pathlib import Path

from .results import write_atomic

METRICS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("output_tokens_per_s", "throughput"))
MODES = ("datasheet", "calibrated", "engine")
GROUP = ("impl", "dtype")  # errors are summarised per implementation and precision, never across them
COLORS = ("#2e6fc2", "#c26a2e", "#3a9a4a", "#8a3ac2", "#c23a6a", "#6a6a6a")


# ------------------------------------------------------------ SVG
def _log_axis(values, pad=0.15):
    vals = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    return lo - pad * span, hi + pad * span


def svg_plot(title: str, series: list[tuple[str, list[tuple[float, float]], str]], x_label: str, y_label: str,
             log_x=True, log_y=True, diagonal=False, width=640, height=420) -> str:
    """A scatter/line chart: series of (label, [(x, y)], 'line' | 'points'), log axes, optional y = x line."""
    left, right, top, bottom = 70, 20, 40, 55
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    if diagonal:
        xs = ys = xs + ys
    fx = (lambda v: math.log10(v)) if log_x else float
    fy = (lambda v: math.log10(v)) if log_y else float
    x0, x1 = _log_axis(xs) if log_x else (min(xs, default=0), max(xs, default=1) or 1)
    y0, y1 = _log_axis(ys) if log_y else (0.0, max(ys, default=1) * 1.1 or 1)
    if diagonal:
        y0, y1 = x0, x1

    def px(v):
        return left + (fx(v) - x0) / (x1 - x0) * (width - left - right)

    def py(v):
        return height - bottom - (fy(v) - y0) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#999"/>']
    for lo, hi, is_x in ((x0, x1, True), (y0, y1, False)):
        log = log_x if is_x else log_y
        ticks = range(math.ceil(lo), math.floor(hi) + 1) if log else [lo + (hi - lo) * i / 4 for i in range(5)]
        for t in ticks:
            v = 10 ** t if log else t
            label = f"1e{t}" if log else f"{v:.3g}"
            if is_x:
                x = px(v)
                out.append(f'<line x1="{x:.1f}" y1="{height - bottom}" x2="{x:.1f}" y2="{height - bottom + 4}" stroke="#999"/>'
                           f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>')
            else:
                y = py(v)
                out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#999"/>'
                           f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="16" y="{height / 2}" text-anchor="middle" transform="rotate(-90 16 {height / 2})">{escape(y_label)}</text>')
    if diagonal:
        a, b = 10 ** x0, 10 ** x1
        out.append(f'<line x1="{px(a):.1f}" y1="{py(a):.1f}" x2="{px(b):.1f}" y2="{py(b):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>')
    for i, (label, pts, style) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [(x, y) for x, y in pts if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
        if style == "line" and len(pts) > 1:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        else:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in pts]
        out.append(f'<text x="{left + 8}" y="{top + 14 + 13 * i}" fill="{color}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ calibration
def write_calibration_plots(cal, out: Path) -> list[Path]:
    """bandwidth.svg (measured bytes/s vs bytes moved, with the fitted line) and gemm.svg (fraction vs M)."""
    series = []
    for name in ("memory", "memory_read", "memory_write", "attention_decode"):
        c = getattr(cal, name)
        if c is None:
            continue
        series.append((f"{name} measured", [(x, x / t) for x, t in zip(c.points_x, c.points_s)], "points"))
        series.append((f"{name} fit: t0 {c.latency_s * 1e6:.2f} us, {c.rate_per_s / 1e9:.1f} GB/s",
                       [(x, x / float(c.time_s(x))) for x in c.points_x], "line"))
    paths = [write_atomic(out / "bandwidth.svg", svg_plot(f"Memory bandwidth on {cal.provenance.device_name}", series,
                                                          "bytes moved per kernel", "bytes/s"))]
    gseries = []
    for key, t in cal.gemm.items():
        for j, nk in enumerate(t.nk_elements):
            gseries.append((f"{key} N·K={nk:.3g}", [(m, row[j]) for m, row in zip(t.m_tokens, t.fraction)], "line"))
    paths.append(write_atomic(out / "gemm.svg", svg_plot(f"GEMM fraction of {cal.provenance.base_profile} peak", gseries,
                                                         "M (tokens)", "fraction of dense peak (padded FLOPs)")))
    return paths


def calibration_markdown(cal, elapsed_s: float) -> str:
    pv = cal.provenance
    lines = [f"# Calibration {cal.id}", "",
             f"- device: {pv.device_name} ({pv.device_kind}); driver {pv.driver_version}, CUDA {pv.cuda_version}, torch {pv.torch_version}",
             f"- base profile: {pv.base_profile} ({'matches' if pv.profile_match else 'does NOT match'} the device: {pv.profile_match_note})",
             f"- date {pv.date}; took {elapsed_s:.1f} s; command `{pv.command}`",
             f"- clocks: {', '.join(f'{k} {v / 1e6:.0f} MHz' for k, v in pv.clocks_hz.items()) or 'not recorded (no NVML)'}; "
             f"throttled: {pv.throttled if pv.throttled is not None else 'unknown'}", "",
             "| curve | t0 (us) | asymptotic rate | fraction of peak |", "| --- | --- | --- | --- |"]
    for name in ("memory", "memory_read", "memory_write", "attention_decode", "attention_prefill"):
        c = getattr(cal, name)
        if c is not None:
            unit = "GB/s" if c.x_unit == "bytes" else "TFLOP/s"
            scale = 1e9 if c.x_unit == "bytes" else 1e12
            lines.append(f"| {name} | {c.latency_s * 1e6:.2f} | {c.rate_per_s / scale:.4g} {unit} | {c.fraction:.3f} |")
    lines += ["", "| GEMM dtype | M range | fraction at the largest M (per N·K) |", "| --- | --- | --- |"]
    for key, t in cal.gemm.items():
        lines.append(f"| {key} | {t.m_tokens[0]}..{t.m_tokens[-1]} | {', '.join(f'{f:.3f}' for f in t.fraction[-1])} |")
    graph = f"{cal.kernel_overhead_graph_s * 1e6:.2f} us" if cal.kernel_overhead_graph_s is not None else "not measured"
    lines += ["", f"kernel overhead: eager {cal.kernel_overhead_s * 1e6:.2f} us, CUDA graph {graph}; "
                  f"interconnect fraction: {cal.interconnect_fraction if cal.interconnect_fraction is not None else 'not measured'}"]
    if cal.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in cal.notes]]
    lines += ["", "![bandwidth](bandwidth.svg)", "![gemm](gemm.svg)", ""]
    return "\n".join(lines)


# ------------------------------------------------------------ validation
def ape(pred: float | None, meas: float | None) -> float | None:
    """|pred / meas - 1|, None when either is missing."""
    if pred is None or meas is None or not meas or not math.isfinite(pred):
        return None
    return abs(pred / meas - 1)


def error_summary(rows: list[dict], group: tuple[str, ...] = GROUP) -> list[dict]:
    """Per group (implementation, precision by default), metric and mode: runs compared, median and worst
    absolute percentage error (fractions). Modes with no prediction in a group are left out."""
    out = []
    keys = sorted({tuple(str(r.get(g)) for g in group) for r in rows})
    for k in keys:
        sub = [r for r in rows if tuple(str(r.get(g)) for g in group) == k]
        for key, label in METRICS:
            for mode in MODES:
                errs = [e for r in sub if (e := ape(r.get(f"{mode}_{key}"), r.get(f"measured_{key}"))) is not None]
                if not errs and mode == "engine":
                    continue
                out.append({**dict(zip(group, k)), "metric": label, "mode": mode, "runs": len(errs),
                            "median_ape": statistics.median(errs) if errs else None, "worst_ape": max(errs) if errs else None})
    return out


CSV_COLUMNS = ["model", "impl", "layers", "dtype", "batch", "prompt", "output", "decode_mode", "prefill_attention",
               "engine_decode_kernels_per_layer", "engine_prefill_kernels_per_layer"] + [
    f"{who}_{key}" for key, _ in METRICS for who in ("measured", *MODES)] + [
    f"{mode}_{key}_error" for key, _ in METRICS for mode in MODES]


def validation_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        full = dict(r)
        for key, _ in METRICS:
            for mode in MODES:
                p, m = r.get(f"{mode}_{key}"), r.get(f"measured_{key}")
                full[f"{mode}_{key}_error"] = (p / m - 1) if p is not None and m else None
        w.writerow(full)
    return buf.getvalue()


def _pct(x):
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _apct(x):
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _t(x, unit="ms"):
    if x is None:
        return "n/a"
    return f"{x * 1e3:.3g} ms" if unit == "ms" else f"{x:.4g}"


def validation_markdown(rows: list[dict], meta: dict) -> str:
    cpu = meta.get("device_kind") == "cpu"
    lines = [f"# Validation on {meta.get('device_name')}", ""]
    if cpu:
        lines += ["> **This run was on a CPU.** It exists to prove the pipeline (models, timing, predictions, files);",
                  "> its error figures say nothing about the accuracy of the predictions on a GPU.", ""]
    lines += [f"- device: {meta.get('device_name')} ({meta.get('device_kind')}); torch {meta.get('torch_version')}, "
              f"CUDA {meta.get('cuda_version')}, driver {meta.get('driver_version')}",
              f"- datasheet profile: {meta.get('profile')} ({'matches' if meta.get('profile_match') else 'does NOT match'} the device)",
              f"- calibration: {meta.get('calibration_id') or 'none (datasheet predictions only)'}",
              f"- date {meta.get('date')}; command `{meta.get('command')}`", "",
              "Error = predicted / measured - 1. Modes: datasheet = analytical (datasheet peaks x default fractions); "
              "calibrated = the measured microbenchmark curves; engine = the calibrated prediction with its launch overhead "
              "replaced by the measured engine's counted kernels (calibrate/engine.py). None is fitted to these runs. "
              "Implementations are summarised apart: `fast` is the reference engine the roofline describes, `hf` the eager "
              "HF reference.", "",
              "| impl | precision | metric | mode | runs | median abs. error | worst abs. error |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in error_summary(rows):
        lines.append(f"| {s['impl']} | {s['dtype']} | {s['metric']} | {s['mode']} | {s['runs']} | {_apct(s['median_ape'])} "
                     f"| {_apct(s['worst_ape'])} |")
    lines += ["", "| model | impl | precision | batch | prompt | output | TTFT measured | datasheet | calibrated | engine "
              "| TPOT measured | datasheet | calibrated | engine | tokens/s measured | datasheet | calibrated | engine |",
              "|" + " --- |" * 18]
    for r in rows:
        cells = [r["model"], r["impl"], r.get("dtype"), r["batch"], r["prompt"], r["output"]]
        for key, _ in METRICS:
            unit = "n" if key == "output_tokens_per_s" else "ms"
            m = r.get(f"measured_{key}")
            cells.append(_t(m, unit))
            for mode in MODES:
                p = r.get(f"{mode}_{key}")
                cells.append("n/a" if p is None else f"{_t(p, unit)} ({_pct(p / m - 1 if m else None)})")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "![TTFT](ttft.svg) ![TPOT](tpot.svg) ![throughput](throughput.svg)", ""]
    return "\n".join(lines)


def write_validation_report(rows: list[dict], meta: dict, out: Path) -> dict[str, Path]:
    """validation.csv, validation.md and one predicted-vs-measured SVG per metric."""
    paths = {"csv": write_atomic(out / "validation.csv", validation_csv(rows)),
             "md": write_atomic(out / "validation.md", validation_markdown(rows, meta))}
    for key, label in METRICS:
        series = [(mode, [(r[f"measured_{key}"], r[f"{mode}_{key}"]) for r in rows
                          if r.get(f"measured_{key}") and r.get(f"{mode}_{key}")], "points") for mode in MODES]
        unit = "tokens/s" if key == "output_tokens_per_s" else "s"
        name = {"ttft_s": "ttft", "tpot_s": "tpot", "output_tokens_per_s": "throughput"}[key]
        paths[name] = write_atomic(out / f"{name}.svg", svg_plot(f"{label}: predicted vs measured ({meta.get('device_name')})",
                                                                 series, f"measured ({unit})", f"predicted ({unit})", diagonal=True))
    return paths
