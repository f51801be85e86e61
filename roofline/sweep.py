"""`sweep`: a grid of scenarios evaluated at once with numpy, returned as a DataFrame.

The grid is the Cartesian product of every argument. Models and number formats
change the operator list, so they are looped over; hardware, batch size, prompt
and output lengths and tp are flattened into arrays and pushed through the very
same `evaluate` that `predict` uses (one derivation: a sweep row equals the
`predict` of the same scenario).

Scenarios that break a rule (tp not dividing the heads, a context beyond the
model's maximum, a dtype the hardware lacks, tp beyond the interconnect domain)
are left out of the frame and listed, with the reason, in `df.attrs["skipped"]`.
Scenarios that do not fit in memory stay in, with `fits == False`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from . import fmt
from . import ops as O
from .engine import derived, evaluate
from .engines import engine_tables
from .errors import SpecError
from .hardware import HardwareProfile, hardware_labels
from .memo import Memo
from .parallelism import engine_limits, engine_memory_bytes, tp_widths
from .registry import load_hardware, load_model
from .roofline import BOUNDS, Ceilings, stacked
from .specs import MAX_CONTEXT, ModelSpec
from .workload import MAX_BATCH, MAX_GPUS, Deployment

METRICS = (
    "ttft_s", "ttft_floor_s", "tpot_s", "tpot_floor_s", "e2e_latency_s", "e2e_latency_floor_s",
    "output_tokens_per_s", "output_tokens_per_s_per_gpu", "mbu_prefill", "mfu_prefill", "mbu_decode", "mfu_decode",
    "weight_bytes", "kv_cache_bytes", "activation_workspace_bytes", "memory_required_bytes_per_gpu", "memory_available_bytes_per_gpu",
    "fits", "max_batch_size_fits", "usd_per_hour", "usd_per_million_output_tokens",
)


def _as_list(x) -> list:
    if x is None:
        return [None]
    if isinstance(x, (str, ModelSpec, HardwareProfile)) or not isinstance(x, Iterable):
        return [x]
    out = list(x)
    if not out:
        raise SpecError("sweep", "every grid axis needs at least one value")
    return out


# What one scenario of the grid costs in memory while it is evaluated, per operator: each operator's FLOPs,
# bytes and time terms for prefill and both decode probes, real and floor, in float64. Measured: a sweep of
# 100,000 batch sizes of Llama-3.1-8B (11 operators) on one device peaks 740 MB above the baseline, 670 bytes
# per operator and scenario; 1 kB leaves headroom for temporaries.
BYTES_PER_OP_PER_SCENARIO = 1000
SWEEP_MEMORY_BUDGET_BYTES = 2 * 1024**3
_FLOAT_METRICS = tuple(k for k in METRICS if k not in ("fits", "max_batch_size_fits"))
_LABELS = ("model", "weight_dtype", "activation_dtype", "kv_dtype")  # the label columns each (model, dtypes) pass adds
_AXIS_LIMITS = {"batch_size": MAX_BATCH, "prompt_tokens": MAX_CONTEXT, "output_tokens": MAX_CONTEXT, "tp": MAX_GPUS}


def _ints(name: str, values) -> np.ndarray:
    vals = _as_list(values)
    hi = _AXIS_LIMITS[name]
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= hi]
    if bad:
        raise SpecError(name, f"needs integers from 1 to {hi:,}, got {bad[0]!r}")
    return np.asarray(vals, dtype=np.int64)


def _id(field: str, x):
    if not isinstance(x, (str, Path)):
        raise SpecError(field, f"expected an id, a path or a loaded spec, got {type(x).__name__}")
    return x


def sweep(
    model, hardware, batch_size=1, prompt_tokens=1024, output_tokens=256, tp=1,
    weight_dtype=None, activation_dtype=None, kv_dtype=None, deployment: Deployment | None = None,
) -> pd.DataFrame:
    """Evaluate every combination of the given values; each argument takes one value or a list.

    `model` and `hardware` take ids or loaded specs. dtypes of None mean the model's native
    dtype. `deployment` supplies the remaining options (attention kernel, group size, reserve).

    The frame has one row per valid scenario, row-major over (model and dtypes, hardware, batch_size,
    prompt_tokens, output_tokens, tp). The label columns (model, hardware, the three dtypes, prefill_bound,
    decode_bound) are categorical; the axes and `max_batch_size_fits` are int64, `fits` bool, the figures
    float64. How it is fast (issue 11), none of it changing a figure: the rules are decided on the
    (device, tp) pairs they depend on; the grid is evaluated with its axes ordered (device, batch, tp, prompt,
    output) so that numpy's inner loops run along the prompt x output plane (`_EVAL_AXES`); the float figures
    are copied once into one block allocated up front, and the frame is built once from its blocks
    (`_one_frame`), no column copied or inserted one at a time.
    """
    import pandas as pd

    models = [m if isinstance(m, ModelSpec) else load_model(_id("model", m)) for m in _as_list(model)]
    hws = [h if isinstance(h, HardwareProfile) else load_hardware(_id("hardware", h)) for h in _as_list(hardware)]
    axes = {name: _ints(name, v) for name, v in
            (("batch_size", batch_size), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens), ("tp", tp))}
    n_scenarios = len(hws) * math.prod(len(a) for a in axes.values())
    n_ops = max(len(O.forward_ops(m, Deployment().resolved(m), 1, 1, 0)) for m in models)
    need = n_scenarios * n_ops * BYTES_PER_OP_PER_SCENARIO
    if need > SWEEP_MEMORY_BUDGET_BYTES:
        raise SpecError("sweep", f"a grid of {n_scenarios:,} scenarios needs about {fmt.gigabytes(need)} while evaluated, over the "
                                 f"budget of {fmt.gigabytes(SWEEP_MEMORY_BUDGET_BYTES)} (sweep.SWEEP_MEMORY_BUDGET_BYTES); "
                                 "split it into smaller sweeps")
    base = deployment or Deployment()
    hws = [engine_tables(h, base.engine) for h in hws]  # timed with the kernel tables of the engine's framework, where shipped
    if base.speculative is not None or base.on_unsupported_dtype == "fallback" or base.network is not None:
        raise SpecError("deployment", "sweep takes single-node deployments without speculative decoding or dtype fallback; "
                                      "use predict() or compare() for those")
    # one grid axis per argument: every quantity is computed over the axes it depends on, then broadcast. The frame
    # lists the scenarios row-major over (device, batch, prompt, output, tp); the arithmetic runs over the same axes in
    # the order `_EVAL_AXES`, the prompt and output last, so that a figure of the device, batch and tp meets the step
    # counts of the prompt and output lengths over their contiguous product (512 elements in the benchmark's grid),
    # not over tp's few (numpy's inner loop); the frame's block is filled one tp at a time (`_into_frame`)
    values = {"h": np.arange(len(hws)), **axes}
    shape = tuple(len(a) for a in values.values())  # the frame's grid
    evaluated = tuple(len(values[name]) for name in _EVAL_AXES)  # the same grid in the evaluation's axis order
    to_frame = tuple(_EVAL_AXES.index(name) for name in values)  # evaluated -> frame axes
    grid_axis = lambda name, order: np.asarray(values[name]).reshape([-1 if a == name else 1 for a in order])  # noqa: E731
    hi, b, s, o, t = (grid_axis(name, _EVAL_AXES) for name in values)
    flat = {name: np.broadcast_to(grid_axis(name, tuple(values)), shape).ravel() for name in values}
    parts, skipped = [], []
    labels: dict[str, dict[str, int]] = {name: {} for name in _LABELS}  # categories of each label column, by first use
    for m, wd, ad, kd in itertools.product(models, _as_list(weight_dtype), _as_list(activation_dtype), _as_list(kv_dtype)):
        dep = base.model_copy(update={"weight_dtype": wd, "activation_dtype": ad, "kv_dtype": kd})
        resolved = dep.resolved(m)
        # a block-scaled pair some devices multiply as stored (`ResolvedDeployment.on`) is timed on them by its own
        # operator table: one evaluation per resolution, its rows merged back into the frame's order (`_merged`)
        variants: dict = {}
        for i, h in enumerate(hws):
            variants.setdefault(resolved.on(h), []).append(i)
        valid = _valid(m, hws, resolved.compute_key, grid_axis("h", tuple(values)), grid_axis("tp", tuple(values)), shape,
                       skipped, dep)
        pieces = []
        for rd, members in variants.items():
            key = rd.compute_key  # a native pair computes at its peak_key, the activation's (`BlockScaledMma`)
            ok = valid if len(variants) == 1 else valid & np.isin(flat["h"], members)  # this resolution's devices only
            if not ok.any():
                continue
            every = bool(ok.all())
            n_ok = ok.size if every else int(ok.sum())
            # the frame's float block is allocated before the evaluation's temporaries, so it lies below them in the heap
            # and the allocator keeps reusing the same memory from one sweep to the next instead of handing it back to the
            # system and faulting it in again (minor page faults of a benchmark chunk: ~4,600 -> ~110 per sweep)
            block = np.empty((len(_FLOAT_METRICS), n_ok))
            has_key = [h for h in hws if key in h.peak_flops_per_s]
            stand_in = has_key[0] if has_key else None  # rows of hardware without this dtype are masked out below
            usable = [h if key in h.peak_flops_per_s else stand_in for h in hws]
            # the axes as floats (exact for these integers): numpy would otherwise cast the small integer axes afresh
            # for every element of each grid-sized result they broadcast into
            bf, sf, of, tpf = (a.astype(float) for a in (b, s, o, t))
            real = stacked([Ceilings.of(h, key) for h in usable], hi)
            floor = stacked([Ceilings.of(h, key, floor=True) for h in usable], hi)
            lim = engine_limits(rd, usable)
            ev = evaluate(m, rd, real, floor, bf, sf, of, tpf, limits=None if lim is None else (lim[0][hi], lim[1][hi]))
            prop = lambda f: np.array([f(h) for h in usable], dtype=float)[hi]  # noqa: E731
            fixed = ev.weight_bytes + ev.runtime_reserve_bytes + ev.workspace_fixed_bytes  # loaded before the KV pool is sized
            d = derived(ev, bf, of, tpf * base.pp * base.ep, engine_memory_bytes(rd, prop(lambda h: h.memory_bytes), fixed, tpf),
                        prop(lambda h: h.memory_bandwidth_bytes_per_s),
                        prop(lambda h: h.peak_flops_per_s[key]), prop(lambda h: h.price_usd_per_gpu_hour))
            r = {**ev.figures(), **d.figures()}
            del ev, d  # the operator tables and timings go before the frame is filled: less memory held at once

            def pick(a, ok=ok, every=every):
                """The grid's values of `a` (broadcast over the evaluated grid), row-major in the frame's order, of the valid
                scenarios only."""
                whole = np.empty(shape, dtype=np.asarray(a).dtype)
                _into_frame(whole, a, evaluated, to_frame)
                return whole.reshape(-1) if every else whole.reshape(-1)[ok]

            # the float figures go straight into the frame's one float block (figures x scenarios); each figure is let
            # go once copied, so the grid's figures and the frame are not all held at once
            for i, k in enumerate(_FLOAT_METRICS):
                if every:
                    _into_frame(block[i].reshape(shape), r.pop(k), evaluated, to_frame)
                else:
                    block[i] = pick(r.pop(k))
            # label columns as category codes: one frame is built at the end, with categorical labels
            names = {"model": m.name, "weight_dtype": rd.weights.dtype.name, "activation_dtype": rd.act.name, "kv_dtype": rd.kv.dtype.name}
            part = {name: np.full(n_ok, labels[name].setdefault(value, len(labels[name])), dtype=np.int32) for name, value in names.items()}
            part["hardware"] = flat["h"] if every else flat["h"][ok]
            part.update({name: flat[name] if every else flat[name][ok] for name in axes})
            part.update({"fits": pick(r["fits"]), "max_batch_size_fits": pick(r["max_batch_size_fits"]), "_floats": block})
            part.update({f"{phase}_bound": pick(r[f"{phase}_bound_index"]) for phase in ("prefill", "decode")})
            if len(variants) > 1:
                part["_position"] = np.flatnonzero(ok)
            pieces.append(part)
        if pieces:
            parts.append(pieces[0] if len(pieces) == 1 else _merged(pieces))
    columns = ["model", "hardware", *axes, "weight_dtype", "activation_dtype", "kv_dtype", *METRICS, "prefill_bound", "decode_bound"]
    if not parts:
        df = pd.DataFrame(columns=columns)  # every column, even with no row
        df.attrs["skipped"] = skipped
        return df
    join = lambda name, axis=0: parts[0][name] if len(parts) == 1 else np.concatenate([p[name] for p in parts], axis=axis)  # noqa: E731
    categories = {**{name: tuple(seen) for name, seen in labels.items()}, "hardware": tuple(hardware_labels(hws)),
                  "prefill_bound": _BOUND_LABELS, "decode_bound": _BOUND_LABELS}
    cols = {name: _categorical(join(name), categories[name]) if name in categories else join(name)
            for name in columns if name not in _FLOAT_METRICS}
    cols["fits"] = cols["fits"].astype(bool, copy=False)
    cols["max_batch_size_fits"] = cols["max_batch_size_fits"].astype(np.int64)
    df = _one_frame(columns, join("_floats", axis=1), cols)
    df.attrs["skipped"] = skipped
    return df


def _merged(pieces: list[dict]) -> dict:
    """The parts of one (model, dtypes) evaluated apart (devices that take a block-scaled pair natively, and the others)
    as one part, its rows back in the frame's row-major order (by each row's `_position` in the grid)."""
    order = np.argsort(np.concatenate([p["_position"] for p in pieces]), kind="stable")
    out = {name: np.concatenate([p[name] for p in pieces])[order] for name in pieces[0] if name not in ("_floats", "_position")}
    out["_floats"] = np.concatenate([p["_floats"] for p in pieces], axis=1)[:, order]
    return out


_BOUND_LABELS = tuple(x.value for x in BOUNDS)
_EVAL_AXES = ("h", "batch_size", "tp", "prompt_tokens", "output_tokens")  # the evaluation's axis order (see `sweep`)


def _into_frame(out: np.ndarray, a, evaluated: tuple, to_frame: tuple) -> None:
    """Write `a` (broadcast over the evaluated grid, axes `_EVAL_AXES`) into `out` (the frame's grid, tp last), one tp at
    a time: each copy then runs along the prompt and output lengths, contiguous in both grids, instead of along tp."""
    src = np.broadcast_to(a, evaluated).transpose(to_frame)
    for j in range(out.shape[-1]):
        np.copyto(out[..., j], src[..., j])


def _categorical(codes: np.ndarray, categories: tuple[str, ...]):
    """A categorical column from its codes; the dtype (its categories validated once) is reused across sweeps."""
    import pandas as pd

    dtype = _CATEGORY_DTYPES.get(categories, lambda: pd.CategoricalDtype(list(categories)))
    return pd.Categorical.from_codes(codes, dtype=dtype)


_CATEGORY_DTYPES = Memo("sweep.category_dtypes", maxsize=64)  # categories (a tuple of labels) -> CategoricalDtype


def _one_frame(columns: list[str], floats: np.ndarray, others: dict):
    """The sweep's DataFrame, built once from its blocks: `floats` (figures x rows, in `_FLOAT_METRICS` order) is the
    frame's float block as it is, every other column (numpy or categorical) its own block: no column is copied
    (`pandas.api.internals.create_dataframe_from_blocks`, pandas >= 2.3; older pandas builds it column by column)."""
    import pandas as pd

    n = floats.shape[1]
    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:  # pragma: no cover - pandas before 2.3
        df = pd.DataFrame(floats.T, columns=list(_FLOAT_METRICS))
        for i, name in enumerate(columns):
            if name not in _FLOAT_METRICS:
                df.insert(i, name, others[name])
        return df
    at = {name: i for i, name in enumerate(columns)}
    blocks = [(floats, np.array([at[k] for k in _FLOAT_METRICS]))]
    blocks += [(a if isinstance(a, pd.Categorical) else a.reshape(1, n), np.array([at[name]])) for name, a in others.items()]
    return create_dataframe_from_blocks(blocks, pd.RangeIndex(n), pd.Index(columns))


def _valid(m: ModelSpec, hws, key, h_idx, tp, shape: tuple, skipped: list, dep: Deployment) -> np.ndarray:
    """Mask of the grid's scenarios (row-major over `shape`) meeting `predict.check`'s rules; the others are recorded with
    the reason. The rules depend on the device and tp alone: each is decided on their (device, tp) pairs, each pair
    standing for every batch, prompt and output length of the grid."""
    ok = np.ones(np.broadcast_shapes(h_idx.shape, tp.shape), bool)
    per_pair = math.prod(shape) // ok.size  # scenarios of the grid with one (device, tp) pair
    # under attention_dp the heads run whole on every rank: tp divides the FFN widths alone (`parallelism.check`)
    widths = [w for k, w in tp_widths(m).items() if not (dep.attention_dp and k == "num_attention_heads")]
    rules = [
        (np.logical_and.reduce([w % tp == 0 for w in widths]), "tp does not divide the heads or FFN width"),
        ((tp == 1) | (dep.ep == 1), f"ep={dep.ep} runs with tp = 1 (attention data-parallel over the ep GPUs)"),
        ((tp > 1) | (not dep.attention_dp), "attention_dp needs tp > 1"),
        (np.full(tp.shape, not (dep.attention_dp and m.parallel_blocks)),
         "attention_dp with parallel blocks (attention and MLP on the same input) is not modelled"),
        (tp <= np.array([h.interconnect.max_gpus for h in hws])[h_idx], "tp exceeds the interconnect domain"),
        (np.array([key in h.peak_flops_per_s for h in hws])[h_idx], f"hardware lacks {key} compute"),
    ]
    for mask, why in rules:
        bad = ok & ~mask
        if bad.any():
            skipped.append({"model": m.name, "weight_dtype": dep.weight_dtype, "activation_dtype": dep.activation_dtype,
                            "kv_dtype": dep.kv_dtype, "scenarios": int(bad.sum()) * per_pair, "reason": why})
        ok &= mask
    return np.broadcast_to(ok, shape).reshape(-1)
