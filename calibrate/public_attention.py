"""Prefill attention's measured points (`roofline.calibration.MeasuredAttention`) from `context_attention_perf.parquet`.

One affine line over executed causal-tile FLOPs / wave efficiency (`calibrate.public`, `attention_prefill`) cannot
follow the tables: a short prompt pays per-token work the line has no term for (Q, K, V read, the KV cache written,
per-sequence metadata; vLLM 0.24's H200 table at 8 heads, 1 KV head, d 128, batch 16, S 512 is 1.47x the line), and a
long one runs a little faster than the line's rate (0.77x at S 16,384). As for the fused MoE layer (`public_moe`), the
files therefore keep, at the per-GPU attention shapes the published corpus runs (`corpus_shapes`), the table's own time
of every measured (batch, isl) cell as a ratio to the file's line (`attention_points`); the runtime times a prefill of
such a shape as line x ratio (`calibration.attention_point_ratio`: bilinear in log batch and isl, held at the ends),
any other shape by the line alone.

The interpolation picked by `leave_one_out` over the interior cells of every stored shape (calibrate/public/README.md,
section (j)): the ratio linear or linear in the log between a cell's two neighbours, along isl and along batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from roofline.calibration import AffineCurve, AttentionPoints, MeasuredAttention, attention_point_ratio

TABLE_TIME_S = 1e-3  # milliseconds
RATIO_DIGITS = 3  # significant digits of a stored ratio (0.05% at most: far below the tables' run-to-run spread)


def corpus_shapes() -> dict[tuple[int, int, int], int]:
    """The per-GPU prefill attention shapes (query heads / tp, KV heads on a GPU, head dim) the published corpus runs,
    each with its number of corpus rows: every row of a shipped model spec with one head dim for queries, keys and
    values (not MLA) at its deployment's tp (`calibrate.corpus.deployment_of`; a DEPn row is tp 1). At this commit 23
    shapes, from Llama-3.1-8B at tp 8 (4, 1, 128) to Falcon-40B at tp 1 (128, 8, 64)."""
    import roofline as rl

    from . import corpus

    out: dict[tuple[int, int, int], int] = {}
    for row in corpus.load_corpus():
        try:
            m = rl.load_model(row.model)
        except Exception:  # a row of a model without a shipped spec: no shape
            continue
        if m.mla is not None or m.head_dim != m.v_head_dim:
            continue
        tp = corpus.deployment_of(row, m).tp
        key = (m.num_attention_heads // tp, m.kv_heads_per_gpu(tp), m.head_dim)
        out[key] = out.get(key, 0) + 1
    return out


def within_budget(points: MeasuredAttention, spare_bytes: int, uses: dict[tuple[int, int, int], int]) -> MeasuredAttention | None:
    """`points` with the shapes the fewest corpus rows run (`corpus_shapes`; ties: the larger shape first) left out
    until their JSON takes at most `spare_bytes` (what a file may still take under test_public_data's 100 KB), their
    number said in `source` (the shapes kept are the file's; the rest of `corpus_shapes` the table measured were left
    out); None where not even one fits."""
    def candidate(shapes: list, dropped: list) -> MeasuredAttention:
        if not dropped:
            return points
        return points.model_copy(update={"shapes": tuple(shapes), "source": points.source + f"; {len(dropped)} more left out "
                                         "to keep the file under 100 KB, those the fewest corpus rows run first"})

    def size(m: MeasuredAttention) -> int:
        return len(m.model_dump_json(exclude_none=True)) + len('"attention_prefill_points":,')

    shapes = list(points.shapes)
    order = sorted(shapes, key=lambda p: (uses.get((p.heads, p.kv_heads, p.head_dim), 0), -p.heads * p.head_dim))
    dropped: list = []
    while shapes and size(candidate(shapes, dropped)) > spare_bytes:
        p = order.pop(0)
        shapes.remove(p)
        dropped.append((p.heads, p.kv_heads, p.head_dim))
    return candidate(shapes, dropped) if shapes else None


def line_s(line: AffineCurve, x) -> np.ndarray:
    """The line's time t0 + x / R of kernels of executed-FLOPs-over-wave-efficiency x (`public.prefill_executed_x`), on
    the device it was fitted on."""
    return line.latency_s + np.asarray(x, dtype=float) / line.rate_per_s


def cell_ratios(rows: pd.DataFrame, x, line: AffineCurve) -> pd.DataFrame:
    """The table's rows (`public.attention_rows`) with their measured time (median per (shape, batch, isl) cell), the
    line's time and their ratio."""
    frame = rows[["num_heads", "num_key_value_heads", "head_dim", "batch_size", "isl"]].assign(
        time_s=rows["latency"].to_numpy(float) * TABLE_TIME_S, line_s=line_s(line, x))
    cells = frame.groupby(["num_heads", "num_key_value_heads", "head_dim", "batch_size", "isl"], as_index=False).median()
    return cells.assign(ratio=cells["time_s"] / cells["line_s"])


def attention_points(rows: pd.DataFrame, x, line: AffineCurve, table: str,
                     shapes: set[tuple[int, int, int]] | dict | None = None) -> MeasuredAttention | None:
    """The measured / line ratio of every (batch, isl > 1) cell of the kept shapes (`corpus_shapes`) as
    `calibration.AttentionPoints`, one row per batch holding its lengths from the shortest up to the last one measured
    (the tables cap batch · isl; a length missing inside a row ends the row there). isl = 1 rows are left out: a pass of
    one new token is a decode step, which the generation table times. None where the table holds none of the shapes."""
    shapes = corpus_shapes() if shapes is None else shapes
    cells = cell_ratios(rows, x, line)
    cells = cells[cells["isl"] > 1]
    kept = []
    for (h, kvh, d), part in cells.groupby(["num_heads", "num_key_value_heads", "head_dim"]):
        if (int(h), int(kvh), int(d)) not in shapes:
            continue
        grid = part.pivot(index="batch_size", columns="isl", values="ratio").sort_index().sort_index(axis=1)
        ratio = []
        for _, r in grid.iterrows():
            v = r.to_numpy(float)
            measured = np.isnan(v)
            ratio.append(tuple(float(f"{y:.{RATIO_DIGITS}g}") for y in v[:np.argmax(measured) if measured.any() else v.size]))
        keep = [i for i, r in enumerate(ratio) if r]
        if not keep:
            continue
        kept.append(AttentionPoints(heads=int(h), kv_heads=int(kvh), head_dim=int(d),
                                    batch=tuple(int(grid.index[i]) for i in keep), isl=tuple(int(s) for s in grid.columns),
                                    ratio=tuple(ratio[i] for i in keep)))
    if not kept:
        return None
    return MeasuredAttention(source=f"{table}: bf16-KV full-attention rows of the fit's kernel source, median per (batch, isl) "
                                    "cell, isl > 1; the per-GPU shapes the published corpus runs (shipped model specs at the "
                                    "corpus rows' tp, `calibrate.public_attention.corpus_shapes`)",
                             line_latency_s=line.latency_s, line_rate_per_s=line.rate_per_s, shapes=tuple(kept))


def leave_one_out(points: MeasuredAttention) -> pd.DataFrame:
    """Each interior cell of every stored shape predicted from its two neighbours, along isl at the same batch (the
    ratio linear in isl, or in log isl) and along batch at the same isl (linear in batch, or in log batch). One row per
    rule: cells, median |error|, p90, bias (of the time: the line's time is common to both sides)."""
    errs: dict[str, list] = {"isl: linear": [], "isl: log": [], "batch: linear": [], "batch: log": []}

    def interior(axis: np.ndarray, v: np.ndarray, lin: list, log: list):
        for i in range(1, len(v) - 1):
            w = (axis[i] - axis[i - 1]) / (axis[i + 1] - axis[i - 1])
            lw = np.log(axis[i] / axis[i - 1]) / np.log(axis[i + 1] / axis[i - 1])
            lin.append((v[i - 1] + w * (v[i + 1] - v[i - 1])) / v[i] - 1)
            log.append((v[i - 1] + lw * (v[i + 1] - v[i - 1])) / v[i] - 1)

    for p in points.shapes:
        s, b = np.asarray(p.isl, dtype=float), np.asarray(p.batch, dtype=float)
        for row in p.ratio:
            interior(s, np.asarray(row), errs["isl: linear"], errs["isl: log"])
        for j in range(len(s)):  # the batches that measured this length (the first rows)
            col = [row[j] for row in p.ratio if j < len(row)]
            if len(col) == sum(1 for row in p.ratio if j < len(row)):
                interior(b[:len(col)], np.asarray(col), errs["batch: linear"], errs["batch: log"])
    out = []
    for rule, e in errs.items():
        e = np.asarray(e)
        if e.size:
            out.append({"rule": rule, "cells": e.size, "median_abs": float(np.median(np.abs(e))),
                        "p90_abs": float(np.percentile(np.abs(e), 90)), "bias": float(np.median(e))})
    return pd.DataFrame(out)


def stored_shape_errors(points: MeasuredAttention, rows: pd.DataFrame, predicted_line_s) -> pd.DataFrame:
    """The table rows (isl > 1) of every shape `points` stores, timed by the line alone (`predicted_line_s`: per row, the
    line as the runtime applies it on the device the rows were measured on, `CalibratedCurves`) ("attention prefill line") and by the line times the stored ratio
    (`calibration.attention_point_ratio`; "attention prefill points"), as the runtime times such a kernel.
    The file's own device: the residual of the points (their rounding); another device: held out."""
    frame = rows.assign(line_s=np.asarray(predicted_line_s, dtype=float), time_s=rows["latency"].to_numpy(float) * TABLE_TIME_S)
    frame = frame[frame["isl"] > 1]
    parts = []
    for p in points.shapes:
        mine = frame[(frame["num_heads"] == p.heads) & (frame["num_key_value_heads"] == p.kv_heads) & (frame["head_dim"] == p.head_dim)]
        if mine.empty:
            continue
        rho = attention_point_ratio(mine["batch_size"].to_numpy(float), mine["isl"].to_numpy(float),
                                    np.asarray(p.batch, dtype=float), np.asarray(p.isl, dtype=float), p.matrix)
        parts.append(pd.DataFrame({"family": "attention prefill line", "predicted_s": mine["line_s"].to_numpy(),
                                   "measured_s": mine["time_s"].to_numpy()}))
        parts.append(pd.DataFrame({"family": "attention prefill points", "predicted_s": mine["line_s"].to_numpy() * rho,
                                   "measured_s": mine["time_s"].to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["family", "predicted_s", "measured_s"])
