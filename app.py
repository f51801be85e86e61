"""roofline dashboard: `streamlit run app.py`.

A thin shell over the library, in four pages (the sidebar's "Page" choice, kept in the link):

* **Predict**: one scenario on one or more devices (`roofline.predict` / `predict_fitting`), its sweeps, the
  roofline, the operator table and the math;
* **Plan**: traffic and SLOs -> the cheapest fleet per device (`roofline.plan`), each option's
  latency-throughput frontier (`views.plan_frontiers`) and what tightening an SLO costs (`views.slo_tightening`);
* **Compare**: a baseline and what-if variants side by side (`roofline.compare`);
* **Accuracy**: predicted against published measurements (the committed run of `roofline validate --published`).

`roofline.views` shapes the chart data and `roofline.fmt` writes every number. Each page's inputs live in the
URL's query string, so a link reproduces the page. Bad input (a tp that does not divide the heads, FP8 on an
A100, a broken config.json, an unknown price override) is shown as the library's one-line error; the page
keeps running.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pyarrow as pa
import streamlit as st
from pydantic import ValidationError

import roofline as rl
from roofline import fmt, views
from roofline.cli.compare import DESCRIPTION as COMPARE_DESCRIPTION
from roofline.cli.plan import PLAN_ATTENTION_DP
from roofline.compare import deployment_from_pairs, parse_pairs, parse_variant
from roofline.files import decode, parse_mapping
from roofline.hardware import parse_prices
from roofline.plan import PRECISIONS
from roofline.predict import fitting_tps
from roofline.registry import validation_message
from roofline.serving import TTFT_PERCENTILES

DTYPE_CHOICES = ["native", *sorted({rl.get_dtype(n).name for n in rl.dtype_names()})]
ATTENTION_CHOICES = list(typing.get_args(rl.Deployment.model_fields["attention_impl"].annotation))
PAGES = {"predict": "Predict", "plan": "Plan", "compare": "Compare", "accuracy": "Accuracy"}
SWEEPS = {"batch": "TPOT and throughput vs batch", "prompt": "TTFT vs prompt", "frontier": "Latency-throughput frontier",
          "memory": "Memory vs context"}
PLAN_HARDWARE = ["h100-sxm", "h200", "a100-sxm-80gb", "mi300x", "b200", "l40s"]  # the default report's six
PLAN_LAYOUTS = {"both": "try both layouts", "on": "on (attention data-parallel only)", "off": "off (tensor-parallel attention)"}
COMPARE_VARIANTS = "\n".join([
    "int4 weights:weight_dtype=int4,weight_group_size=128",
    "fp8 KV cache:kv_dtype=fp8_e4m3",
    "speculative:speculative.draft=llama-3.2-1b,speculative.k=4",
    "pruned 25% layers:keep_layers=0.75",
    "MQA:attention=mqa",
    "student 8B:model=llama-3.1-8b",
])

# Every widget's key, its default and the page it belongs to; the key is also its name in the query string.
DEFAULTS: dict[str, typing.Any] = {
    "model": "llama-3.1-70b", "hw": ["h100-sxm"], "wdtype": "native", "adtype": "native", "kvdtype": "native",
    "gs": 0, "tp": "auto", "adp": False, "attn": "flash", "batch": 8, "prompt": 2048, "output": 256, "sweep": "batch", "allceil": False,
}
PLAN_DEFAULTS: dict[str, typing.Any] = {
    "pl_model": "llama-3.1-70b", "pl_rate": 10.0, "pl_prompt": "2048", "pl_output": "256", "pl_ttft": 2.0, "pl_pct": 0.9,
    "pl_tpot_ms": 50.0, "pl_hw": PLAN_HARDWARE, "pl_prec": list(PRECISIONS), "pl_chunk": 0, "pl_maxbatch": 0, "pl_price": "",
    "pl_all": False, "pl_tight": False, "pl_adp": "both",
}
COMPARE_DEFAULTS: dict[str, typing.Any] = {
    "cp_model": "llama-3.1-70b", "cp_hw": "h100-sxm", "cp_batch": 8, "cp_prompt": 2048, "cp_output": 256,
    "cp_base": "tp=2", "cp_variants": COMPARE_VARIANTS,
}
ACCURACY_DEFAULTS: dict[str, typing.Any] = {"ac_gpu": "all", "ac_family": "all"}
PAGE_KEYS = {"predict": DEFAULTS, "plan": PLAN_DEFAULTS, "compare": COMPARE_DEFAULTS, "accuracy": ACCURACY_DEFAULTS}
ALL_DEFAULTS: dict[str, typing.Any] = {"page": "predict", **DEFAULTS, **PLAN_DEFAULTS, **COMPARE_DEFAULTS, **ACCURACY_DEFAULTS}


# ------------------------------------------------------------------ URL state
def _choice(options: Callable[[], list] | list, label: str = "") -> Callable[[str], typing.Any]:
    def parse(raw: str):
        opts = options() if callable(options) else options
        for o in opts:
            if raw == str(o):
                return o
        raise ValueError(label or f"choose one of {', '.join(map(str, opts))}")
    return parse


def _positive_int(text: str, lowest: int = 1, highest: int = 1 << 30) -> int | None:
    """The integer an ASCII-digit string spells when it is in [lowest, highest], else None
    ("²" passes str.isdigit but is no number; a 40-digit tp is no deployment)."""
    text = str(text).strip()
    if not re.fullmatch(r"[0-9]{1,12}", text) or not lowest <= int(text) <= highest:
        return None
    return int(text)


def _integer(lowest: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = _positive_int(raw, lowest)
        if value is None:
            raise ValueError(f"expected an integer from {lowest} to {1 << 30:,}")
        return value
    return parse


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if value > 0 and math.isfinite(value):
        return value
    raise ValueError("expected a positive number")


def _tp_text(raw: str) -> str:
    if raw == "auto" or _positive_int(raw) is not None:
        return raw
    raise ValueError("expected a positive integer or auto")


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "0", "false"):
        return raw.lower() in ("1", "true")
    raise ValueError("expected true or false")


def _text(raw: str) -> str:
    return raw


_LISTS = {"hw": rl.list_hardware, "pl_hw": rl.list_hardware, "pl_prec": lambda: list(PRECISIONS)}  # comma-separated ids
PARSERS: dict[str, Callable[[str], typing.Any]] = {
    "page": _choice(list(PAGES)),
    "model": _choice(rl.list_models, "not a shipped model id"), "wdtype": _choice(DTYPE_CHOICES), "adtype": _choice(DTYPE_CHOICES),
    "kvdtype": _choice(DTYPE_CHOICES), "gs": _integer(0), "tp": _tp_text, "adp": _flag, "attn": _choice(ATTENTION_CHOICES),
    "batch": _integer(1), "prompt": _integer(1), "output": _integer(1), "sweep": _choice(list(SWEEPS)), "allceil": _flag,
    "pl_model": _choice(rl.list_models, "not a shipped model id"), "pl_rate": _positive, "pl_prompt": _text, "pl_output": _text,
    "pl_ttft": _positive, "pl_pct": _choice(list(TTFT_PERCENTILES)), "pl_tpot_ms": _positive, "pl_chunk": _integer(0),
    "pl_maxbatch": _integer(0), "pl_price": _text, "pl_all": _flag, "pl_tight": _flag, "pl_adp": _choice(list(PLAN_ATTENTION_DP)),
    "cp_model": _choice(rl.list_models, "not a shipped model id"), "cp_hw": _choice(rl.list_hardware, "not a shipped hardware id"),
    "cp_batch": _integer(1), "cp_prompt": _integer(1), "cp_output": _integer(1), "cp_base": _text, "cp_variants": _text,
    "ac_gpu": _text, "ac_family": _text,
}


def parse_query(params: Mapping[str, str]) -> tuple[dict[str, typing.Any], list[str]]:
    """Widget values of every page from the query string; a bad value falls back to its default with a warning."""
    values, problems = copy.deepcopy(ALL_DEFAULTS), []
    for key in ALL_DEFAULTS:
        if key not in params:
            continue
        raw = str(params[key])
        if key in _LISTS:
            ids = [x.strip() for x in raw.split(",") if x.strip()]
            known = [x for x in ids if x in _LISTS[key]()]
            if known:
                values[key] = known
            if len(known) < len(ids) or not ids:
                bad = ", ".join(x for x in ids if x not in known) or "(empty)"
                what = "hardware" if key.endswith("hw") else "precision"
                problems.append(f"URL parameter {key}: unknown {what} {bad}" + ("; ignored" if known else f"; using {ALL_DEFAULTS[key]!r}"))
            continue
        try:
            values[key] = PARSERS[key](raw)
        except ValueError as why:
            problems.append(f"URL parameter {key}={raw!r}: {why}; using {ALL_DEFAULTS[key]!r}")
    return values, problems


def init_state() -> list[str]:
    """On a session's first run, seed every page's widgets from the URL; return the warnings of that parse.

    Streamlit forgets a widget's value on a run that does not draw it, so the values of the pages not shown are
    written back into the session state on every run (the documented way to keep them across pages)."""
    ss = st.session_state
    if "_seeded" not in ss:
        values, problems = parse_query({k: st.query_params.get(k) for k in st.query_params})
        for key, value in values.items():
            ss[key] = value
        ss["_seeded"] = True
        ss["_url_warnings"] = problems
    for key in ALL_DEFAULTS:
        if key in ss:
            ss[key] = ss[key]
    return ss["_url_warnings"]


def _encode(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def write_query(page: str) -> None:
    """The query string of the page shown: its name and every input of that page."""
    st.query_params.from_dict({"page": page, **{k: _encode(st.session_state[k]) for k in PAGE_KEYS[page]}})


# ------------------------------------------------------------------ cached library calls
# Streamlit executes app.py afresh on every rerun, and st.cache_resource / st.cache_data read and hash a
# function's source each time it is decorated: about 2 ms a function, 20 ms a rerun for the ten below, a tenth
# of what a widget change may take. `kept` decorates each function once per version of this file and keeps the
# wrapper in a module that lives as long as the process, so a rerun reuses it (the caches are Streamlit's own,
# process-wide, either way).
_KEPT: dict = sys.modules.setdefault("_roofline_app_kept", types.ModuleType("_roofline_app_kept")).__dict__
_VERSION = Path(__file__).stat().st_mtime_ns


def kept(decorator: Callable, **options) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        key = (_VERSION, fn.__qualname__, decorator.__name__ if hasattr(decorator, "__name__") else repr(decorator))
        if key not in _KEPT:
            _KEPT[key] = decorator(**options)(fn)
        return _KEPT[key]
    return wrap


@kept(st.cache_resource, show_spinner=False)
def load_spec(kind: str, value: str) -> rl.ModelSpec:
    """A shipped id, or the text of a Hugging Face config.json."""
    if kind == "id":
        return rl.load_model(value)
    return rl.ModelSpec.from_hf_config(parse_mapping(value, "config.json", "json"))


# Cached calls pass their arguments by keyword: for each positional one Streamlit inspects the function's
# signature to see whether the name starts with "_", a few hundred microseconds a call.
def spec_of(model_src: tuple[str, str]) -> rl.ModelSpec:
    return load_spec(kind=model_src[0], value=model_src[1])


def prediction_of(model_src, hw_id: str, wl_json: str, dep_json: str, auto_tp: bool) -> rl.Prediction:
    return cached_prediction(model_src=model_src, hw_id=hw_id, wl_json=wl_json, dep_json=dep_json, auto_tp=auto_tp)


def frames_of(what: str, model_src, hw_id: str, wl_json: str, dep_json: str):
    return cached_frames(what=what, model_src=model_src, hw_id=hw_id, wl_json=wl_json, dep_json=dep_json)


@kept(st.cache_resource, show_spinner=False, max_entries=512)
def cached_prediction(model_src: tuple[str, str], hw_id: str, wl_json: str, dep_json: str, auto_tp: bool) -> rl.Prediction:
    """`rl.predict`, or with `auto_tp` `rl.predict_fitting`'s search (the smallest valid tp that fits, else the
    largest) run over this cache's fixed-tp entries, so the details of the chosen tp find it computed."""
    model, hw = spec_of(model_src), rl.load_hardware(hw_id)
    wl, dep = rl.Workload.model_validate_json(wl_json), rl.Deployment.model_validate_json(dep_json)
    if not auto_tp:
        return rl.predict(model, hw, wl, dep)
    p = None
    for tp in fitting_tps(model, hw, dep):  # predict_fitting's: with attention_dp from tp 2
        p = prediction_of(model_src, hw_id, wl_json, dep.model_copy(update={"tp": tp}).model_dump_json(), False)
        if p.fits:
            break
    return p


@kept(st.cache_resource, show_spinner=False, max_entries=512)  # shared, not copied: callers never modify the frames
def cached_frames(what: str, model_src: tuple[str, str], hw_id: str, wl_json: str, dep_json: str):
    """Chart data of one scenario at a fixed tp: 'roofline', 'unplotted', 'math', 'batch_sweep' (over powers of
    two: callers pass batch 1 in `wl_json`, so it is computed once whatever the batch), 'prompt_sweep',
    'operators' (the operator table as text: formatting its few hundred cells is the largest cost of a rerun
    otherwise) or 'csv' (the operator table's download, SI units)."""
    model, hw = spec_of(model_src), rl.load_hardware(hw_id)
    wl, dep = rl.Workload.model_validate_json(wl_json), rl.Deployment.model_validate_json(dep_json)
    if what in ("roofline", "unplotted", "math", "operators", "csv"):
        p = prediction_of(model_src, hw_id, wl_json, dep_json, False)
        if what == "csv":
            return p.operators.to_csv(index=False).encode()
        if what == "operators":
            return operator_table(p, frames_of("roofline", model_src, hw_id, wl_json, dep_json)[1])
        if what == "roofline":
            return views.roofline_chart_data(p, hw)
        return views.unplotted_operators(p) if what == "unplotted" else views.math_lines(p, model, hw)
    if what == "batch_sweep":
        return views.batch_sweep(model, hw, wl, dep)
    assert what == "prompt_sweep"
    return views.prompt_sweep(model, hw, wl, dep)


def _one_line(exc: Exception, where: str = "config.json") -> str:
    text = str(validation_message(exc, where)) if isinstance(exc, ValidationError) else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# ------------------------------------------------------------------ charts
# Charts are written in altair once per shape (`chart_spec`, cached) against named datasets; each
# run only attaches its DataFrames. Building and validating altair objects on every rerun would
# cost most of the 200 ms an interaction may take. Axes carry their unit in the title (ms or s,
# GB, TFLOP/s) and plain numbers on the ticks; SI suffixes are kept for token counts only.
def _roofline_spec(bottom: float, top: float) -> alt.LayerChart:
    x = alt.X("intensity_flops_per_byte:Q", scale=alt.Scale(type="log"), title="arithmetic intensity (FLOP/byte)",
              axis=alt.Axis(format="~g", labelOverlap="greedy"))
    y_scale = alt.Scale(type="log", domain=[bottom, top])
    lines = alt.Chart(alt.NamedData("ceilings")).mark_line(clip=True).encode(
        x=x, y=alt.Y("tflops_per_s:Q", scale=y_scale, title="TFLOP/s per GPU", axis=alt.Axis(format=",~g")),
        color=alt.Color("ceiling:N", title="ceiling", scale=alt.Scale(scheme="dark2"), legend=alt.Legend(orient="top")),
        strokeDash=alt.StrokeDash("level:N", title="level", legend=alt.Legend(orient="top")),
        detail="line:N", tooltip=[alt.Tooltip("line:N", title="ceiling")])
    dots = alt.Chart(alt.NamedData("points")).mark_point(filled=True, size=90, stroke="black", strokeWidth=0.6).encode(
        x=x, y=alt.Y("achieved_tflops_per_s:Q", scale=y_scale),
        fill=alt.Fill("op:N", title="operator", scale=alt.Scale(scheme="category10"),
                      legend=alt.Legend(orient="bottom", columns=6, symbolLimit=0)),
        shape=alt.Shape("phase:N", title="phase", legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip(f"{c}:N") for c in ("op", "phase", "bound", "layers_group", "intensity", "achieved", "of_ceiling", "time")])
    return alt.layer(lines, dots).resolve_scale(color="independent").properties(height=440)


def _line_spec(x: str, y: str, x_title: str, y_title: str, log_x: bool, log_y: bool, order: str, tooltip: tuple[str, ...],
               x_format: str = "~s") -> alt.LayerChart:
    base = alt.Chart(alt.NamedData("sweep")).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log" if log_x else "linear"), title=x_title,
                axis=alt.Axis(format=x_format, labelOverlap="greedy") if log_x else alt.Axis(labelOverlap="greedy")),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(type="log" if log_y else "linear"), title=y_title,
                axis=alt.Axis(format=",~g", labelOverlap="greedy") if log_y else alt.Axis(labelOverlap="greedy")),
        color=alt.Color("hardware:N", title="hardware", legend=alt.Legend(orient="bottom", columns=2)))
    line = base.mark_line().encode(order=alt.Order(f"{order}:Q")) if order else base.mark_line()
    dots = base.mark_point(filled=True, size=50).encode(
        shape=alt.Shape("fits:N", title="fits in memory", scale=alt.Scale(domain=[True, False], range=["circle", "cross"])),
        tooltip=[alt.Tooltip(f"{c}:N") for c in tooltip])
    return alt.layer(line, dots).properties(height=320)


def _memory_spec(parts: tuple[str, ...]) -> alt.LayerChart:
    area = alt.Chart(alt.NamedData("memory")).mark_area(opacity=0.8).encode(
        x=alt.X("context_tokens:Q", scale=alt.Scale(type="log"), title="context tokens (prompt + output)",
                axis=alt.Axis(format="~s", labelOverlap="greedy", tickCount=5)),
        y=alt.Y("gb:Q", stack="zero", title="memory per GPU (GB)"),
        color=alt.Color("part:N", sort=list(parts), title="memory", legend=alt.Legend(orient="bottom", columns=2)),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("context_tokens:Q"), alt.Tooltip("part:N"), alt.Tooltip("amount:N")])
    cap = alt.Chart(alt.NamedData("capacity")).mark_rule(strokeDash=[6, 3], color="red").encode(
        y="gb:Q", tooltip=[alt.Tooltip("capacity:N")])
    return alt.layer(area, cap).properties(height=300)


def _frontier_spec(x_title: str, y_title: str) -> alt.LayerChart:
    """Plan page: one frontier per option, its operating point, and the TPOT SLO as a floor on tokens/s per user."""
    x = alt.X("output_tokens_per_s_per_gpu:Q", title=x_title)
    y = alt.Y("output_tokens_per_s_per_user:Q", title=y_title, scale=alt.Scale(type="log"), axis=alt.Axis(format=",~g"))
    color = alt.Color("label:N", title="option", legend=alt.Legend(orient="bottom", columns=2, labelLimit=400))
    line = alt.Chart(alt.NamedData("frontier")).mark_line(point=True).encode(
        x=x, y=y, color=color, order="batch_size:Q",
        tooltip=[alt.Tooltip(f"{c}:N") for c in ("label", "batch", "rate", "TPOT", "per_gpu")])
    here = alt.Chart(alt.NamedData("chosen")).mark_point(shape="diamond", size=260, filled=True, stroke="black").encode(
        x=x, y=y, color=color, tooltip=[alt.Tooltip("label:N"), alt.Tooltip("what:N")])
    slo = alt.Chart(alt.NamedData("slo")).mark_rule(strokeDash=[6, 3], color="red").encode(
        y="output_tokens_per_s_per_user:Q", tooltip=[alt.Tooltip("what:N")])
    return alt.layer(line, here, slo).properties(height=380)


def _scatter_spec(lo: float, hi: float, unit: str) -> alt.LayerChart:
    """Accuracy page: predicted against measured, log-log, with the y = x line."""
    scale = alt.Scale(type="log", domain=[lo, hi])
    dots = alt.Chart(alt.NamedData("points")).mark_point(filled=True, size=70).encode(
        x=alt.X("measured:Q", scale=scale, title=f"measured ({unit})", axis=alt.Axis(format=",~g")),
        y=alt.Y("predicted:Q", scale=scale, title=f"predicted ({unit})", axis=alt.Axis(format=",~g")),
        color=alt.Color("family:N", title="family"), shape=alt.Shape("gpu:N", title="GPU"),
        tooltip=[alt.Tooltip(f"{c}:N") for c in ("model", "gpu", "family", "error")])
    diagonal = alt.Chart(alt.NamedData("diagonal")).mark_line(color="grey", strokeDash=[4, 4]).encode(x="measured:Q", y="predicted:Q")
    return alt.layer(diagonal, dots).properties(height=420)


def _bars_spec(n_variants: int) -> alt.LayerChart:
    """Compare page: each variant's figures as a ratio to the baseline's, grouped by variant; the rule marks 1."""
    bars = alt.Chart(alt.NamedData("ratios")).mark_bar().encode(
        y=alt.Y("variant:N", title=None, sort=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("ratio:Q", title="variant / baseline (1 = the same; below 1 = faster, smaller or cheaper)"),
        yOffset=alt.YOffset("metric:N"), color=alt.Color("metric:N", title="figure", legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("metric:N"), alt.Tooltip("shown:N", title="ratio")])
    one = alt.Chart(alt.NamedData("one")).mark_rule(color="black", strokeDash=[4, 3]).encode(x="ratio:Q")
    return alt.layer(bars, one).properties(height=max(200, 70 * n_variants))


_SPECS = {"roofline": _roofline_spec, "line": _line_spec, "memory": _memory_spec, "frontier": _frontier_spec,
          "scatter": _scatter_spec, "bars": _bars_spec}


@kept(st.cache_resource, show_spinner=False, max_entries=128)
def chart_spec(kind: str, args: tuple) -> dict:
    return _SPECS[kind](*args).to_dict()


def show_chart(where, kind: str, args: tuple, **datasets: pd.DataFrame | bytes) -> None:
    """Draw a chart of `_SPECS` with its named datasets (DataFrames, or Arrow IPC bytes from `cached_chart`)."""
    spec = copy.deepcopy(chart_spec(kind=kind, args=args))
    spec["datasets"] = datasets
    where.vega_lite_chart(spec=spec, width="stretch")


def _arrow(df: pd.DataFrame) -> bytes:
    """A DataFrame as the Arrow IPC stream a chart's dataset travels in."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


ChartParts = tuple[str, tuple, dict[str, pd.DataFrame]]  # (kind of `_SPECS`, its arguments, named datasets)


@kept(st.cache_resource, show_spinner=False, max_entries=256)
def cached_chart(key: tuple, _build: Callable[[], ChartParts]) -> tuple[str, tuple, dict[str, bytes]]:
    """A chart's parts, built once per `key` (which names everything `_build` reads) and kept as Arrow bytes:
    turning DataFrames into Arrow on every rerun was most of a cached rerun's time."""
    kind, args, datasets = _build()
    return kind, args, {name: _arrow(df) for name, df in datasets.items()}


def draw(where, key: tuple, build: Callable[[], ChartParts]) -> None:
    kind, args, datasets = cached_chart(key=key, _build=build)
    show_chart(where, kind, args, **datasets)


def _decade(x: float, up: bool) -> float:
    return 10.0 ** (math.ceil(math.log10(x)) if up else math.floor(math.log10(x)))


def _time_unit(values: pd.Series) -> tuple[str, float]:
    """The unit an axis of seconds reads best in: ms below one second, else s; (unit, factor from seconds)."""
    top = float(values.max()) if len(values) else 0.0
    return ("ms", 1e3) if top < 1.0 else ("s", 1.0)


# ------------------------------------------------------------------ the Predict page
@dataclass(frozen=True)
class PredictInputs:
    model_src: tuple[str, str]
    hardware: tuple[str, ...]
    workload: rl.Workload
    deployment: rl.Deployment
    auto_tp: bool


def _optional(choice: str) -> str | None:
    return None if choice == "native" else choice


def predict_sidebar() -> PredictInputs | None:
    """Widgets -> the Predict page's inputs (`PredictInputs`); None (after st.error) when the input cannot make one."""
    sb = st.sidebar
    sb.header("Scenario")
    sb.selectbox("Model", rl.list_models(), key="model")
    with sb.expander("…or a Hugging Face config.json"):
        upload = st.file_uploader("Upload config.json", type=["json"], key="hf_file")
        pasted = st.text_area("Paste config.json", key="hf_text", height=120)
        st.caption("A config given here replaces the model above; it is not kept in the link.")
    sb.multiselect("Hardware", rl.list_hardware(), key="hw")
    sb.subheader("Precision")
    sb.selectbox("Weight dtype", DTYPE_CHOICES, key="wdtype")
    sb.selectbox("Activation (compute) dtype", DTYPE_CHOICES, key="adtype")
    sb.selectbox("KV-cache dtype", DTYPE_CHOICES, key="kvdtype")
    sb.number_input("Weight group size (0 = the dtype's default)", min_value=0, step=32, key="gs")
    sb.subheader("Parallelism and kernels")
    sb.text_input("Tensor parallel GPUs (a number, or auto)", key="tp",
                  help="auto: the fewest GPUs that hold the model (roofline.predict_fitting)")
    state = st.session_state
    tp_text = str(state["tp"]).strip().lower()
    why_not = attention_dp_refusal(int(tp_text)) if _positive_int(tp_text) is not None else None
    sb.checkbox("Attention data-parallel", key="adp", disabled=why_not is not None and not state["adp"],
                help="attention data-parallel over the tp GPUs, each with its own sequences and KV cache, the MLP/MoE "
                     "tensor-parallel (SGLang --enable-dp-attention; Deployment.attention_dp). Needs tp > 1 "
                     "(auto then starts at tp 2); the Predict page runs no expert parallelism (ep = 1)")
    if why_not is not None and not state["adp"]:
        sb.caption(f"Not at this tp: {why_not}")
    sb.selectbox("Attention", ATTENTION_CHOICES, key="attn")
    sb.subheader("Workload")
    sb.number_input("Batch size", min_value=1, step=1, key="batch")
    sb.number_input("Prompt tokens", min_value=1, step=128, key="prompt")
    sb.number_input("Output tokens", min_value=1, step=64, key="output")

    try:
        text = decode(upload.getvalue(), "config.json") if upload is not None else (pasted or "").strip()  # UTF-16: one line
        model_src = ("hf", text) if text else ("id", state["model"])
        spec_of(model_src)
    except (rl.SpecError, ValidationError) as exc:
        message = _one_line(exc)
        st.error(message if message.startswith("config.json") else f"config.json: {message}")
        return None
    if not state["hw"]:
        st.info("Pick at least one hardware profile in the sidebar.")
        return None
    auto = tp_text == "auto"
    if not auto and _positive_int(tp_text) is None:
        st.error(f"tp: expected a positive integer or auto, got {state['tp']!r}")
        return None
    try:
        wl = rl.Workload(batch_size=state["batch"], prompt_tokens=state["prompt"], output_tokens=state["output"])
        # with tp auto, a stand-in tp the other fields allow (attention_dp needs tp > 1), as the CLI's; the search picks tp
        dep = rl.Deployment(tp=(2 if state["adp"] else 1) if auto else int(tp_text), weight_dtype=_optional(state["wdtype"]),
                            activation_dtype=_optional(state["adtype"]), kv_dtype=_optional(state["kvdtype"]),
                            weight_group_size=state["gs"] or None, attention_impl=state["attn"], attention_dp=state["adp"])
    except ValidationError as exc:
        st.error(str(validation_message(exc, "input")))
        return None
    return PredictInputs(model_src, tuple(state["hw"]), wl, dep, auto)


def attention_dp_refusal(tp: int) -> str | None:
    """`Deployment`'s one-line error for attention data parallelism at this tp (ep = 1 on the Predict page), None
    where it applies: the page asks the record rather than restating its rule."""
    try:
        rl.Deployment(tp=tp, attention_dp=True)
    except ValidationError as exc:
        return str(validation_message(exc, ""))
    return None


def predictions(sc: PredictInputs) -> list[tuple[str, rl.Prediction]]:
    """(hardware id, prediction) for each hardware that accepts the scenario; errors shown one line each."""
    out = []
    wl_json, dep_json = sc.workload.model_dump_json(), sc.deployment.model_dump_json()
    for hw_id in sc.hardware:
        try:
            out.append((hw_id, prediction_of(sc.model_src, hw_id, wl_json, dep_json, sc.auto_tp)))
        except (rl.SpecError, ValidationError) as exc:
            st.error(f"{rl.load_hardware(hw_id).name}: {_one_line(exc)}")
    return out


def _grid(n: int) -> list[int]:
    """Devices per row of headline tiles: at most three (six tiles across), rows as even as they go (4 -> 2 + 2)."""
    rows = math.ceil(n / 3)
    per_row = math.ceil(n / rows)
    return [min(per_row, n - i) for i in range(0, n, per_row)]


def does_not_fit_text(p: rl.Prediction, auto_tp: bool) -> str:
    """One line for a scenario that does not fit, with the advice that applies (never 'tp auto' when it is auto)."""
    head = (f"Does not fit: needs {fmt.gigabytes(p.memory_required_bytes_per_gpu)} of {fmt.gigabytes(p.memory_available_bytes_per_gpu)} "
            f"per GPU at tp {p.gpus_per_replica}")
    if auto_tp:
        advice = "even the widest tensor-parallel split is short: try a smaller weight or KV dtype, a smaller batch or shorter sequences"
    else:
        advice = "try tp auto, a smaller weight or KV dtype, or a smaller batch"
    if p.max_batch_size_fits >= 1:
        advice = f"it holds a batch of at most {fmt.count(p.max_batch_size_fits)} at these lengths; " + advice
    return f"{head}. {advice[0].upper()}{advice[1:]}."


def show_headlines(preds: list[tuple[str, rl.Prediction]], auto_tp: bool) -> None:
    it = iter(preds)
    for width in _grid(len(preds)):
        for col, (_, p) in zip(st.columns(width), [next(it) for _ in range(width)]):
            with col:
                st.markdown(f"**{p.hardware}** × {p.gpus_per_replica}")
                if not p.fits:
                    st.error(does_not_fit_text(p, auto_tp))
                    st.markdown(
                        f"*What-if, as if the memory were there:* TTFT {fmt.seconds(p.ttft_s)}, TPOT {fmt.seconds(p.tpot_s)}, "
                        f"{fmt.count(p.output_tokens_per_s)} output tokens/s, MBU decode {fmt.fraction(p.mbu_decode)}, "
                        f"{fmt.usd(p.usd_per_hour)}/hour")
                    continue
                a, b = st.columns(2)
                a.metric("TTFT", fmt.seconds(p.ttft_s), help=f"floor {fmt.seconds(p.ttft_floor_s)}")
                b.metric("TPOT", fmt.seconds(p.tpot_s), help=f"floor {fmt.seconds(p.tpot_floor_s)}")
                a.metric("Output tokens/s", fmt.count(p.output_tokens_per_s))
                b.metric("per GPU", fmt.count(p.output_tokens_per_s_per_gpu))
                a.metric("MBU decode", fmt.fraction(p.mbu_decode))
                b.metric("MFU prefill", fmt.fraction(p.mfu_prefill))
                a.metric("$/hour", fmt.usd(p.usd_per_hour))
                b.metric("$/M tokens", fmt.usd(p.usd_per_million_output_tokens))
                bands = [f"{name} {fmt.band(p.bands.get(key))}" for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"))
                         if p.bands.get(key) is not None]
                if bands:
                    st.caption("80% band from published runs: " + "; ".join(bands))
    table = pd.DataFrame({p.hardware: dict(fmt.headline_rows(p)) for _, p in preds})
    st.dataframe(table, width="stretch", height=36 * (len(table) + 1))


def roofline_chart(ceilings: pd.DataFrame, points: pd.DataFrame, every_dtype: bool) -> ChartParts:
    """The compute dtype's ceilings and the HBM slope; every dtype's ceilings when asked. Operators by colour."""
    achieved = points["achieved_flops_per_s"].tolist()
    pts = pd.DataFrame({  # plain lists into one new frame: cheaper than assign + Series.map on string columns
        **points.to_dict("list"), "achieved_tflops_per_s": [x / 1e12 for x in achieved],
        "intensity": [fmt.rate(x, "FLOP/byte") for x in points["intensity_flops_per_byte"].tolist()],
        "achieved": [fmt.rate(x, "FLOP/s") for x in achieved],
        "of_ceiling": [fmt.fraction(x) for x in points["fraction_of_ceiling"].tolist()],
        "time": [fmt.seconds(x) for x in points["time_s"].tolist()],
    })
    kind = ceilings["kind"].to_numpy()
    shown = ceilings if every_dtype else ceilings[ceilings["is_compute_dtype"].to_numpy() | (kind == "bandwidth")]
    kind, flops = shown["kind"].to_numpy(), shown["flops_per_s"].to_numpy()
    lows = [flops.min(), *achieved]
    top = _decade(2 * flops[kind == "compute"].max(), up=True)
    ceil = shown.assign(ceiling=np.where(kind == "compute", shown["dtype"].to_numpy(), "HBM"), tflops_per_s=flops / 1e12)
    return "roofline", (_decade(min(lows), up=False) / 1e12, top / 1e12), {"ceilings": ceil, "points": pts}


_TOOLTIP_FORMATS = {  # column -> (tooltip title, formatter)
    "tpot_s": ("TPOT", fmt.seconds), "ttft_s": ("TTFT", fmt.seconds),
    "output_tokens_per_s_per_gpu": ("output tokens/s per GPU", fmt.count),
    "tokens_per_s_per_user": ("tokens/s per user", fmt.count), "mfu_prefill": ("MFU prefill", fmt.fraction),
}


def line_chart(df: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, log_x=True, log_y=False, order="") -> ChartParts:
    """A sweep as lines per device. A y column in seconds is drawn in ms or s, the unit in the title."""
    shown = df.assign(**{title: df[c].map(f) for c, (title, f) in _TOOLTIP_FORMATS.items() if c in df})
    if y.endswith("_s"):
        unit, factor = _time_unit(df[y])
        shown[f"{y}_shown"] = df[y] * factor
        y, y_title = f"{y}_shown", f"{y_title} ({unit})"
    tooltip = ("hardware", "tp", *(c for c in ("batch_size", "prompt_tokens") if c in df),
               *(title for c, (title, _) in _TOOLTIP_FORMATS.items() if c in df), "fits")
    x_format = "~s" if "tokens" in x else ",~g"
    return "line", (x, y, x_title, y_title, log_x, log_y, order, tooltip, x_format), {"sweep": shown}


MEMORY_LABELS = dict(zip(views.MEMORY_PARTS, ("weights", "KV cache", "activation workspace", "runtime reserve")))


def memory_chart(sub: pd.DataFrame) -> ChartParts:
    """One device's memory per GPU against context, stacked by part, in GB, with its capacity."""
    long = sub.melt(id_vars=["context_tokens"], value_vars=list(MEMORY_LABELS), var_name="part", value_name="bytes")
    long["order"] = long["part"].map({k: j for j, k in enumerate(MEMORY_LABELS)})
    long["part"] = long["part"].map(MEMORY_LABELS)
    long["gb"] = long["bytes"] / 1e9
    long["amount"] = long["bytes"].map(fmt.gigabytes)
    available = float(sub["memory_available_bytes_per_gpu"].iloc[0])
    cap = pd.DataFrame({"gb": [available / 1e9], "capacity": [f"capacity {fmt.gigabytes(available)}"]})
    return "memory", (tuple(MEMORY_LABELS.values()),), {"memory": long, "capacity": cap}


def show_sweeps(sc: PredictInputs, preds: list[tuple[str, rl.Prediction]]) -> None:
    """One sweep at a time (the choice is in the link): only the chart shown is built, at its full width."""
    wl_json = sc.workload.model_dump_json()
    pick = st.radio("Sweep", list(SWEEPS), format_func=SWEEPS.get, horizontal=True, key="sweep", label_visibility="collapsed")
    shapes = tuple((hw_id, p.deployment.model_dump_json()) for hw_id, p in preds)
    key = ("sweeps", sc.model_src, wl_json, shapes)
    # the power-of-two batch sweep does not depend on the scenario's batch (computed at batch 1, once); the
    # scenario's own batch is added from its prediction; the prompt sweep is computed only when it is shown
    wl_one = sc.workload.model_copy(update={"batch_size": 1}).model_dump_json()
    base = [frames_of("batch_sweep", sc.model_src, hw_id, wl_one, dep_json) for hw_id, dep_json in shapes]

    @functools.cache
    def batch_frame() -> pd.DataFrame:
        rows = [pd.concat([f, views.batch_point(p)], ignore_index=True).drop_duplicates("batch_size", keep="first")
                .sort_values("batch_size") for f, (_, p) in zip(base, preds)]
        return pd.concat(rows, ignore_index=True)

    def prompt_frame() -> pd.DataFrame:
        return pd.concat([frames_of("prompt_sweep", sc.model_src, hw_id, wl_json, dep_json) for hw_id, dep_json in shapes],
                         ignore_index=True)

    if all(f.empty for f in base):
        st.info("No sweep for this deployment: sweeps cover replicas inside one node (tp up to the NVLink domain); "
                "the figures above are for the whole deployment.")
        return

    if pick == "batch":
        a, b = st.columns(2)
        draw(a, (*key, "tpot"), lambda: line_chart(batch_frame(), "batch_size", "tpot_s", "batch size", "TPOT"))
        draw(b, (*key, "per_gpu"), lambda: line_chart(batch_frame(), "batch_size", "output_tokens_per_s_per_gpu", "batch size",
                                                       "output tokens/s per GPU"))
        st.caption("Crosses: that batch does not fit in memory (a what-if). Other settings as in the sidebar, tp as above.")
    elif pick == "prompt":
        draw(st, (*key, "ttft"), lambda: line_chart(prompt_frame(), "prompt_tokens", "ttft_s", "prompt tokens", "TTFT", log_y=True))
    elif pick == "frontier":
        draw(st, (*key, "frontier"), lambda: line_chart(batch_frame(), "tokens_per_s_per_gpu", "tokens_per_s_per_user",
                                                         "output tokens/s per GPU", "tokens/s per user (1 / TPOT)", log_x=False,
                                                         order="batch_size"))
        st.caption("One point per batch size (1, 2, 4, ...): up and to the right is better.")
    else:
        widths = _grid(len(preds))
        it = iter(zip(shapes, preds))
        for width in widths:
            for col, ((hw_id, dep_json), (_, p)) in zip(st.columns(max(widths)), [next(it) for _ in range(width)]):
                with col:
                    st.markdown(f"**{p.hardware}** (tp {p.gpus_per_replica}); dashed line: capacity")
                    draw(st, (*key, "memory", hw_id), lambda hw_id=hw_id, dep_json=dep_json: memory_chart(
                        frames_of("prompt_sweep", sc.model_src, hw_id, wl_json, dep_json)))


def operator_table(p: rl.Prediction, points: pd.DataFrame) -> pd.DataFrame:
    """The operator table for people: every number through fmt. Built from plain lists (one DataFrame at the
    end): Series.map and a merge on string keys cost more than the formatting itself."""
    ops = p.operators.to_dict("list")
    pts = points.to_dict("list")
    at = {k: (i, f) for k, i, f in zip(zip(pts["phase"], pts["op"], pts["layers_group"]), pts["intensity_flops_per_byte"],
                                       pts["fraction_of_ceiling"])}
    found = [at.get(k, (None, None)) for k in zip(ops["phase"], ops["op"], ops["layers_group"])]
    return pd.DataFrame({
        "phase": ops["phase"], "operator": ops["op"], "layers": ops["layers_group"], "kind": ops["kind"],
        "FLOPs": [fmt.rate(x, "FLOP") for x in ops["flops"]], "HBM bytes": [fmt.gigabytes(x) for x in ops["hbm_bytes"]],
        "interconnect bytes": [fmt.gigabytes(x) for x in ops["comm_bytes"]],
        "intensity": ["-" if i is None else fmt.rate(i, "FLOP/byte") for i, _ in found],
        "time": [fmt.seconds(x) for x in ops["time_s"]], "floor": [fmt.seconds(x) for x in ops["floor_s"]], "bound": ops["bound"],
        "of ceiling": ["-" if f is None else fmt.fraction(f) for _, f in found],
    })


def show_details(sc: PredictInputs, preds: list[tuple[str, rl.Prediction]]) -> None:
    """Roofline, operator table (with its CSV) and the math, for one hardware at a time."""
    names = {hw_id: p.hardware for hw_id, p in preds}
    pick = st.radio("Details for", list(names), format_func=names.get, horizontal=True, key="detail_hw") if len(preds) > 1 else preds[0][0]
    p = dict(preds)[pick]
    key = (sc.model_src, pick, sc.workload.model_dump_json(), p.deployment.model_dump_json())
    ceilings, points = frames_of("roofline", *key)
    st.markdown(f"**Roofline** of {p.model} on {p.hardware} (per GPU, compute in {p.compute_dtype}; decode points are the mean step)")
    every = st.checkbox("Show the ceilings of every dtype the device computes in", key="allceil")
    draw(st, ("roofline", *key, every), lambda: roofline_chart(ceilings, points, every))
    left = frames_of("unplotted", *key)
    if len(left):
        st.caption("Not on the plot (no FLOPs or no HBM bytes): " + "; ".join(
            f"{r.phase} {r.op} {fmt.seconds(r.time_s)} ({r.reason})" for r in left.itertuples()))
    st.markdown("**Operators** (decode rows: the mean step)")
    st.dataframe(frames_of("operators", *key), width="stretch", hide_index=True)
    st.download_button("Download operators (CSV, SI units)", frames_of("csv", *key),
                       file_name=f"operators-{pick}.csv", mime="text/csv", key="csv")
    with st.expander("Show the math"):
        st.code("\n".join(frames_of("math", *key)), language=None, wrap_lines=True)


def predict_page() -> None:
    sc = predict_sidebar()
    if sc is None:
        return
    model = spec_of(sc.model_src)
    wl, dep = sc.workload, sc.deployment
    st.title(f"{model.name}")
    st.caption(f"batch {wl.batch_size} x (prompt {wl.prompt_tokens} + output {wl.output_tokens} tokens); "
               f"weights {dep.weight_dtype or 'native'}, compute {dep.activation_dtype or 'native'}, KV {dep.kv_dtype or 'native'}; "
               f"{dep.attention_impl} attention; tp {'auto' if sc.auto_tp else dep.tp}"
               f"{', attention data-parallel over the tp GPUs' if dep.attention_dp else ''}. "
               "Calibrated where a device ships a calibration (GEMM, attention, all-reduce and MoE curves fitted to NVIDIA's "
               "public kernel tables: A100 SXM 80GB, H100 SXM, H200, B200, GB200, L40S; FP8 GEMMs from AMD's aiter tuner "
               "timings: MI300X), else analytical: datasheet peaks x sourced efficiency fractions.")
    preds = predictions(sc)
    if not preds:
        return
    show_headlines(preds, sc.auto_tp)
    st.subheader("Sweeps")
    show_sweeps(sc, preds)
    st.subheader("Roofline, operators and the math")
    show_details(sc, preds)


# ------------------------------------------------------------------ the Plan page
@dataclass(frozen=True)
class PlanInputs:
    """The Plan page's inputs, hashable: the key of its cached calls."""

    model: str
    requests_per_s: float
    prompt_tokens: str | int
    output_tokens: str | int
    ttft_slo_s: float
    ttft_percentile: float
    tpot_slo_s: float
    hardware: tuple[str, ...]
    precisions: tuple[str, ...]
    chunk_tokens: int | None
    max_batch_size: int | None
    prices: tuple[tuple[str, float], ...]
    attention_dp: tuple[bool, ...] = (False, True)  # the layouts tried (`SearchSpace.attention_dp`, the CLI's --attention-dp)

    def profiles(self) -> list[rl.HardwareProfile]:
        prices = dict(self.prices)
        return [rl.load_hardware(h).with_price(prices[h], "dashboard price override") if h in prices else rl.load_hardware(h)
                for h in self.hardware]

    def plan_kwargs(self) -> dict:
        """The arguments of `rl.plan` (hardware as profiles, prices applied)."""
        return dict(model=self.model, requests_per_s=self.requests_per_s, prompt_tokens=self.prompt_tokens,
                    output_tokens=self.output_tokens, ttft_slo_s=self.ttft_slo_s, tpot_slo_s=self.tpot_slo_s,
                    hardware=self.profiles(), ttft_percentile=self.ttft_percentile, chunk_tokens=self.chunk_tokens,
                    max_batch_size=self.max_batch_size, precisions={k: PRECISIONS[k] for k in self.precisions},
                    attention_dp=self.attention_dp)


def _with_ids(df: pd.DataFrame, inputs: PlanInputs) -> pd.DataFrame:
    """`plan` names profiles passed as objects by their name; put the ids the page was given back."""
    ids = {rl.load_hardware(h).name: h for h in inputs.hardware}
    return df.assign(hardware_id=df["hardware"].map(ids))


@kept(st.cache_resource, show_spinner="Planning…", max_entries=64)
def cached_plan(inputs: PlanInputs, best_only: bool) -> pd.DataFrame:
    return _with_ids(rl.plan(**inputs.plan_kwargs(), best_only=best_only), inputs)


@kept(st.cache_resource, show_spinner="Tracing each option's frontier…", max_entries=64)
def cached_plan_frontiers(inputs: PlanInputs) -> pd.DataFrame:
    return views.plan_frontiers(rl.load_model(inputs.model), cached_plan(inputs, True), inputs.profiles(), inputs.prompt_tokens,
                                inputs.output_tokens, inputs.chunk_tokens, inputs.max_batch_size)


@kept(st.cache_resource, show_spinner="Planning again at tighter SLOs…", max_entries=64)
def cached_slo_tightening(inputs: PlanInputs) -> pd.DataFrame:
    df = views.slo_tightening(inputs.plan_kwargs(), given=cached_plan(inputs, True))
    ids = {rl.load_hardware(h).name: h for h in inputs.hardware}
    return df.assign(hardware_id=df["hardware_id"].map(lambda x: ids.get(x, x)))


def _length(text: str) -> str | int:
    text = str(text).strip()
    return int(text) if _positive_int(text) is not None else text


def plan_sidebar() -> PlanInputs | None:
    sb = st.sidebar
    sb.header("Traffic")
    sb.selectbox("Model", rl.list_models(), key="pl_model")
    sb.number_input("Requests per second (whole fleet)", min_value=0.001, step=1.0, format="%g", key="pl_rate")
    lengths_help = "N, or a distribution: uniform:LOW:HIGH, normal:MEAN:STD, lognormal:MEDIAN:SIGMA, empirical:T1=P1,T2=P2"
    sb.text_input("Prompt tokens", key="pl_prompt", help=lengths_help)
    sb.text_input("Output tokens", key="pl_output", help=lengths_help)
    sb.header("SLOs")
    sb.number_input("TTFT limit (s)", min_value=0.001, step=0.25, format="%g", key="pl_ttft")
    sb.selectbox("…at percentile", list(TTFT_PERCENTILES), format_func=lambda q: f"p{100 * q:g}", key="pl_pct")
    sb.number_input("Mean TPOT limit (ms)", min_value=0.1, step=5.0, format="%g", key="pl_tpot_ms")
    sb.header("Options")
    sb.multiselect("Hardware", rl.list_hardware(), key="pl_hw")
    sb.multiselect("Precisions", list(PRECISIONS), key="pl_prec",
                   help="native; FP8 and INT8 W8A8 where the device computes in them; INT4 weight-only, groups of 128")
    s = st.session_state
    dense = rl.load_model(s["pl_model"]).moe is None
    sb.selectbox("Attention data-parallel", list(PLAN_ATTENTION_DP), format_func=PLAN_LAYOUTS.get, key="pl_adp",
                 disabled=dense and s["pl_adp"] != "on",
                 help="the layouts tried for a MoE model at tp > 1 with pp = ep = 1 (plan.attention_layouts): attention "
                      "data-parallel over the tp GPUs, the MoE tensor-parallel (SGLang --enable-dp-attention), or "
                      "tensor-parallel; the CLI's plan --attention-dp both|on|off")
    if dense:
        sb.caption("A dense model: the planner tries tensor-parallel attention alone (attention data parallelism is "
                   "tried for MoE models at tp > 1 with pp = ep = 1)" + ("; 'on' leaves it no shape" if s["pl_adp"] == "on" else ""))
    sb.text_input("Price overrides (DEVICE=USD per GPU-hour, comma-separated)", key="pl_price",
                  placeholder="h100-sxm=2.5, h200=3.2")
    sb.subheader("Engine")
    sb.number_input("Chunked prefill: tokens per step (0 = whole prompts)", min_value=0, step=256, key="pl_chunk")
    sb.number_input("Max running sequences per replica (0 = what memory holds)", min_value=0, step=16, key="pl_maxbatch")

    if not s["pl_hw"] or not s["pl_prec"]:
        st.info("Pick at least one hardware profile and one precision in the sidebar.")
        return None
    try:
        prices = parse_prices(s["pl_price"])
    except rl.SpecError as exc:
        st.error(str(exc))
        return None
    unknown = sorted(set(prices) - set(s["pl_hw"]))
    if unknown:
        st.error(f"price: {', '.join(unknown)} is not among the hardware picked; add it or drop its price")
        return None
    return PlanInputs(s["pl_model"], float(s["pl_rate"]), _length(s["pl_prompt"]), _length(s["pl_output"]), float(s["pl_ttft"]),
                      float(s["pl_pct"]), float(s["pl_tpot_ms"]) / 1e3, tuple(s["pl_hw"]), tuple(s["pl_prec"]),
                      int(s["pl_chunk"]) or None, int(s["pl_maxbatch"]) or None, tuple(sorted(prices.items())),
                      PLAN_ATTENTION_DP[s["pl_adp"]])


def plan_table(df: pd.DataFrame, percentile: float) -> pd.DataFrame:
    """The planner's rows for people, as `roofline plan` prints them: every number through fmt."""
    q = f"p{100 * percentile:g}"
    rows = []
    for r in df.itertuples():
        ok = bool(r.feasible)
        rows.append({
            "rank": str(r.rank) if ok else "-", "hardware": r.hardware_id, "precision": r.precision,
            "replica": fmt.replica_of(r) if r.tp else "-",
            "replicas": str(r.replicas) if ok else "-", "GPUs": str(r.gpus) if ok else "-",
            "batch": f"{r.batch_size:.1f}" if ok else "-",
            f"TTFT {q}": fmt.seconds(r.ttft_at_slo_percentile_s) if ok else "-", "TPOT": fmt.seconds(r.tpot_s) if ok else "-",
            "$/hour": fmt.usd(r.usd_per_hour) if ok else "-",
            "$/M output tokens": fmt.usd(r.usd_per_million_output_tokens) if ok else "-",
            "kWh/M output tokens": f"{r.kwh_per_million_output_tokens:.3g}" if ok else "-",
            "bound by": r.binding_constraint if ok else f"infeasible: {r.reason}",
            "$/GPU-hour": fmt.usd(r.price_usd_per_gpu_hour) + (f" ({r.price_note.removeprefix('price: ')})" if r.price_note else ""),
        })
    return pd.DataFrame(rows)


def top_option_text(df: pd.DataFrame) -> str:
    r = df.iloc[0]
    return (f"{r['gpus']} × {r['hardware_id']} ({r['precision']}, {r['replicas']} replicas of "
            f"{fmt.replica_of(r)}): {fmt.usd(r['usd_per_hour'])}/hour, "
            f"{fmt.usd(r['usd_per_million_output_tokens'])} per million output tokens; bound by {r['binding_constraint']}"
            + (f" ({r['price_note']})" if r.get("price_note") else ""))


def tightening_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in df.itertuples():
        limit = r.ttft_slo_s if r.slo == "TTFT" else r.tpot_slo_s
        rows.append({
            "SLO": r.slo, "limit": fmt.seconds(limit), "x given": f"{r.factor:g}",
            "top option": f"{r.gpus} × {r.hardware_id} ({r.precision})" if r.feasible else "none meets the SLOs",
            "$/hour": fmt.usd(r.usd_per_hour) if r.feasible else "-",
            "$/M output tokens": fmt.usd(r.usd_per_million_output_tokens) if r.feasible else "-",
            "vs as given": f"{r.usd_per_hour_vs_given:.2f}x" if r.feasible and math.isfinite(r.usd_per_hour_vs_given) else "-",
        })
    return pd.DataFrame(rows)


def show_plan_frontiers(fr: pd.DataFrame, best: pd.DataFrame, tpot_slo_s: float) -> None:
    if fr.empty:
        return
    label = fr["hardware_id"] + " (" + fr["option"] + ")"
    shown = fr.assign(label=label, batch=fr["batch_size"].map(lambda b: f"{b:g}"),
                      rate=fr["requests_per_s"].map(lambda x: f"{x:.3g} requests/s"), TPOT=fr["tpot_s"].map(fmt.seconds),
                      per_gpu=fr["output_tokens_per_s_per_gpu"].map(fmt.count))
    ok = best[best["feasible"]]
    labels = dict(zip(fr["hardware_id"], label))
    chosen = pd.DataFrame({
        "label": ok["hardware_id"].map(labels), "output_tokens_per_s_per_gpu": ok["output_tokens_per_s_per_gpu"],
        "output_tokens_per_s_per_user": 1.0 / ok["tpot_s"],
        "what": [f"the plan's operating point: batch {b:.1f}, TPOT {fmt.seconds(t)}" for b, t in zip(ok["batch_size"], ok["tpot_s"])]})
    slo = pd.DataFrame({"output_tokens_per_s_per_user": [1.0 / tpot_slo_s], "what": [f"TPOT SLO {fmt.seconds(tpot_slo_s)}"]})
    show_chart(st, "frontier", ("output tokens/s per GPU", "output tokens/s per user (1 / TPOT)"),
               frontier=shown, chosen=chosen, slo=slo)
    st.caption("One line per device at its top option's precision and replica shape; one point per decode batch "
               "(the steady state that keeps it busy). Diamonds: where the plan runs each; dashed: the TPOT SLO, "
               "below which a point misses it.")


def plan_page() -> None:
    inputs = plan_sidebar()
    if inputs is None:
        return
    st.title(f"Plan: {rl.load_model(inputs.model).name} at {inputs.requests_per_s:g} requests/s")
    q = f"p{100 * inputs.ttft_percentile:g}"
    st.caption(f"prompt {inputs.prompt_tokens}, output {inputs.output_tokens} tokens; SLOs: {q} TTFT <= "
               f"{fmt.seconds(inputs.ttft_slo_s)}, mean TPOT <= {fmt.seconds(inputs.tpot_slo_s)}; "
               f"{'chunked prefill ' + str(inputs.chunk_tokens) + ' tokens/step' if inputs.chunk_tokens else 'whole-prompt prefill'}. "
               "Continuous batching in steady state, Poisson arrivals (roofline.plan).")
    every = st.session_state["pl_all"]
    try:
        best = cached_plan(inputs, True)
        df = cached_plan(inputs, False) if every else best
    except (rl.SpecError, ValidationError) as exc:
        st.error(_one_line(exc, "input"))
        return
    if bool(best["feasible"].iloc[0]):
        st.success("Top option: " + top_option_text(best))
    else:
        st.warning(f"No option meets both SLOs on the hardware picked. Closest: {best['hardware_id'].iloc[0]}, {best['reason'].iloc[0]}")
    st.subheader("Ranked options")
    st.checkbox("Every (hardware, precision, replica shape) option, not only the cheapest per device", key="pl_all")
    table = plan_table(df, inputs.ttft_percentile)
    if every:  # hundreds of rows: a scrolling grid
        st.dataframe(table, width="stretch", hide_index=True)
    else:  # one row per device: a plain table, every cell in the page's text
        st.table(table.set_index("rank"))
    overridden = dict(inputs.prices)
    st.caption("Prices per GPU-hour: " + "; ".join(
        f"{h} {fmt.usd(hw.price_usd_per_gpu_hour)}" + (" (override)" if h in overridden else f" ({hw.price_date})")
        for h, hw in zip(inputs.hardware, inputs.profiles())) + ". $/M output tokens = $/hour / output tokens per hour x 10^6.")
    st.subheader("Latency-throughput frontier per device")
    try:
        show_plan_frontiers(cached_plan_frontiers(inputs), best, inputs.tpot_slo_s)
    except (rl.SpecError, ValidationError) as exc:
        st.error(_one_line(exc, "input"))
    st.subheader("What tightening an SLO costs")
    if not st.checkbox(f"Plan again with each SLO tightened to {' and '.join(f'{f:g}x' for f in views.SLO_STEPS if f != 1)} "
                       f"({2 * (len(views.SLO_STEPS) - 1)} more plans; a few seconds each)", key="pl_tight"):
        return
    try:
        tight = cached_slo_tightening(inputs)
    except (rl.SpecError, ValidationError) as exc:
        st.error(_one_line(exc, "input"))
        return
    st.table(tightening_table(tight).set_index("SLO"))
    st.caption("Each SLO tightened by the factor shown, the other as given; the cheapest option that still meets both.")


# ------------------------------------------------------------------ the Compare page
@kept(st.cache_resource, show_spinner=False, max_entries=64)
def cached_compare(model: str, hw: str, wl_json: str, baseline: str, lines: tuple[str, ...]) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """`rl.compare` of the baseline (KEY=VALUE,...) and the variants, one per line (NAME:KEY=VALUE,...), as
    `roofline compare` reads them; (table or None, the one-line errors of the lines that could not be read)."""
    spec = rl.load_model(model)
    errors = []
    try:
        base = deployment_from_pairs(parse_pairs(baseline, "baseline"), None, "baseline") if baseline.strip() else rl.Deployment()
    except (rl.SpecError, ValidationError) as exc:
        return None, (_one_line(exc, "baseline"),)
    variants = {}
    for line in lines:
        try:
            name, v = parse_variant(line, spec, base)
        except (rl.SpecError, ValidationError, ValueError) as exc:
            errors.append(_one_line(exc, "variant").replace("--variant ", "variant ", 1))
            continue
        if name in variants or name == "baseline":
            errors.append(f"variant {name}: the name is taken; give each variant its own name")
            continue
        variants[name] = v
    if not variants:
        return None, (*errors, "variants: none to compare; write one per line as NAME:KEY=VALUE,...")
    try:
        df = rl.compare(spec, hw, rl.Workload.model_validate_json(wl_json), base, variants)
    except (rl.SpecError, ValidationError) as exc:
        return None, (*errors, _one_line(exc, "baseline"))
    return df, tuple(errors)


COMPARE_ROWS = (  # (label, column, formatter)
    ("model", "model", str), ("weights / compute / KV", None, None), ("GPUs", "gpus_per_replica", lambda x: f"{x:g}"),
    ("TTFT", "ttft_s", fmt.seconds), ("TPOT", "tpot_s", fmt.seconds),
    ("TPOT per baseline token of text", "text_tpot_s", fmt.seconds), ("output tokens/s", "output_tokens_per_s", fmt.count),
    ("decode bound", "decode_bound", str), ("weights per GPU", "weight_bytes", fmt.gigabytes),
    ("KV cache per GPU", "kv_cache_bytes", fmt.gigabytes), ("memory per GPU", "memory_required_bytes_per_gpu", fmt.gigabytes),
    ("fits", "fits", lambda x: "yes" if x else "NO"), ("max batch", "max_batch_size_fits", fmt.count),
    ("$/M output tokens", "usd_per_million_output_tokens", fmt.usd),
    ("TPOT vs baseline", "tpot_s_vs_baseline", lambda x: f"{x:.2f}x"),
    ("$/M tokens vs baseline", "usd_per_million_output_tokens_vs_baseline", lambda x: f"{x:.2f}x"),
)
RATIO_METRICS = {"tpot_s_vs_baseline": "TPOT", "ttft_s_vs_baseline": "TTFT", "memory_required_bytes_per_gpu_vs_baseline": "memory per GPU",
                 "usd_per_million_output_tokens_vs_baseline": "$/M output tokens"}


def compare_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of figures, one column per variant (baseline first), every number through fmt; '-' where a variant failed."""
    out = {}
    for name in df.index:
        r = df.loc[name]
        cells = {}
        for label, col, f in COMPARE_ROWS:
            if col is None:
                cells[label] = f"{r['weight_dtype']} / {r.get('compute_dtype', r['activation_dtype'])} / {r['kv_dtype']}"
                continue
            v = r[col]
            cells[label] = "-" if (isinstance(v, float) and math.isnan(v)) or (r["error"] and col not in ("model",)) else f(v)
        out[name] = cells
    return pd.DataFrame(out)


def compare_page() -> None:
    sb = st.sidebar
    sb.header("Baseline")
    sb.selectbox("Model", rl.list_models(), key="cp_model")
    sb.selectbox("Hardware", rl.list_hardware(), key="cp_hw")
    sb.number_input("Batch size", min_value=1, step=1, key="cp_batch")
    sb.number_input("Prompt tokens", min_value=1, step=128, key="cp_prompt")
    sb.number_input("Output tokens", min_value=1, step=64, key="cp_output")
    sb.text_input("Baseline deployment (KEY=VALUE, comma-separated)", key="cp_base", help="e.g. tp=2,kv_dtype=fp8_e4m3; empty: native, tp=1")
    s = st.session_state
    st.title(f"Compare: {rl.load_model(s['cp_model']).name} on {rl.load_hardware(s['cp_hw']).name}")
    st.caption(f"batch {s['cp_batch']} x (prompt {s['cp_prompt']} + output {s['cp_output']} tokens). Each variant runs the same "
               "predict as the baseline (roofline.compare); ratios below 1 are faster, smaller or cheaper.")
    st.text_area("Variants, one per line: NAME:KEY=VALUE,...", key="cp_variants", height=170, help=COMPARE_DESCRIPTION)
    wl = rl.Workload(batch_size=s["cp_batch"], prompt_tokens=s["cp_prompt"], output_tokens=s["cp_output"])
    lines = tuple(x.strip() for x in s["cp_variants"].splitlines() if x.strip())
    df, errors = cached_compare(s["cp_model"], s["cp_hw"], wl.model_dump_json(), s["cp_base"], lines)
    for e in errors:
        st.error(e)
    if df is None:
        return
    st.table(compare_table(df))
    for name in df.index:
        if df.at[name, "error"]:
            st.warning(f"{name}: {df.at[name, 'error']}")
        elif df.at[name, "notes"]:
            st.caption(f"{name}: {df.at[name, 'notes']}")
    ok = df[(df["error"] == "") & (df.index != "baseline")]
    ratios = ok[list(RATIO_METRICS)].rename(columns=RATIO_METRICS).reset_index().melt(id_vars="variant", var_name="metric", value_name="ratio")
    ratios = ratios[ratios["ratio"] > 0]
    if len(ratios):
        st.markdown("**Each variant against the baseline**")
        show_chart(st, "bars", (int(ratios["variant"].nunique()),), ratios=ratios.assign(shown=ratios["ratio"].map(lambda x: f"{x:.2f}x")),
                   one=pd.DataFrame({"ratio": [1.0]}))


# ------------------------------------------------------------------ the Accuracy page
PREDICTIONS_CSV = Path(__file__).resolve().parent / "calibrate" / "published" / "report" / "predictions.csv"


@kept(st.cache_data, show_spinner=False)
def load_corpus() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(predicted-vs-measured points, error table per family) from the published corpus's committed run
    (`roofline validate --published --update` writes calibrate/published/report/predictions.csv), or None where this
    checkout has none. Points: `views.ACCURACY_POINT_COLUMNS` plus `metric` (the family and the published unit,
    one chart each); only the rows of trust high or medium with a prediction, as in the README's table."""
    if not PREDICTIONS_CSV.is_file():
        return None
    df = pd.read_csv(PREDICTIONS_CSV)
    df = df[df["headline"].astype(bool) & df["predicted"].notna()]
    points = df.assign(metric=df["family"] + " [" + df["unit"] + "]")[[*views.ACCURACY_POINT_COLUMNS, "metric"]]
    return points.reset_index(drop=True), views.error_table(points)


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "family": table["family"], "n": table["n"].map(lambda n: f"{int(n)}"),
        "median |error|": table["median_abs_pct_error"].map(lambda x: f"{x:.1f}%"),
        "p90 |error|": table["p90_abs_pct_error"].map(lambda x: f"{x:.1f}%"),
        "bias (median signed)": table["bias_pct"].map(lambda x: f"{round(x, 1) + 0.0:+.1f}%"),  # no "-0.0%"
    })


def accuracy_page() -> None:
    st.title("Accuracy: predicted against published measurements")
    corpus = load_corpus()
    if corpus is None:
        st.info("The published-measurement corpus is not available in this checkout (no calibrate/published/report/predictions.csv). "
                "Predictions are analytical until then: datasheet peaks x sourced kernel efficiencies; see the README's "
                "accuracy section.")
        return
    points, table = corpus
    gpus, families = sorted(points["gpu"].unique()), sorted(points["family"].unique())
    sb = st.sidebar
    sb.header("Filter")
    s = st.session_state
    for key, options in (("ac_gpu", gpus), ("ac_family", families)):
        if s[key] not in ("all", *options):
            st.warning(f"{key}={s[key]!r} is not in the corpus; showing all")
            s[key] = "all"
    sb.selectbox("GPU", ["all", *gpus], key="ac_gpu")
    sb.selectbox("Figure (family)", ["all", *families], key="ac_family")
    shown = points
    if s["ac_gpu"] != "all":
        shown = shown[shown["gpu"] == s["ac_gpu"]]
    if s["ac_family"] != "all":
        shown = shown[shown["family"] == s["ac_family"]]
    st.subheader("Error per family" + ("" if s["ac_gpu"] == "all" else f" on {s['ac_gpu']}"))
    st.table(accuracy_table(table if s["ac_gpu"] == "all" and s["ac_family"] == "all" else views.error_table(shown)).set_index("family"))
    st.caption("error = (predicted - measured) / measured. Nothing is fitted to these measurements: they are the test set.")
    if shown.empty:
        st.info("No measurement matches the filter.")
        return
    metrics = sorted(shown["metric"].unique()) if "metric" in shown else [None]
    for metric in metrics:
        sub = shown if metric is None else shown[shown["metric"] == metric]
        unit = "s" if metric is None or str(metric).endswith("_s") else str(metric).rsplit("[", 1)[-1].rstrip("]")
        lo = _decade(min(sub["predicted"].min(), sub["measured"].min()), up=False)
        hi = _decade(max(sub["predicted"].max(), sub["measured"].max()), up=True)
        diag = pd.DataFrame({"measured": [lo, hi], "predicted": [lo, hi]})
        data = sub.assign(error=views.pct_errors(sub).map(lambda x: f"{x:+.1f}%"))
        st.markdown(f"**Predicted vs measured{'' if metric is None else ': ' + str(metric)}** (dashed: predicted = measured)")
        show_chart(st, "scatter", (lo, hi, unit), points=data[[*views.ACCURACY_POINT_COLUMNS, "error"]], diagonal=diag)


# ------------------------------------------------------------------ main
def main() -> None:
    wall, cpu = time.perf_counter(), time.thread_time()
    st.set_page_config(page_title="roofline: LLM inference", layout="wide")
    for warning in init_state():
        st.warning(warning)
    page = st.sidebar.radio("Page", list(PAGES), format_func=PAGES.get, key="page", horizontal=True)
    write_query(page)
    try:
        {"predict": predict_page, "plan": plan_page, "compare": compare_page, "accuracy": accuracy_page}[page]()
    finally:  # this run's own seconds (wall, CPU of the script thread), read by tests/benchmarks/bench_app.py
        st.session_state["_run_seconds"] = (time.perf_counter() - wall, time.thread_time() - cpu)


main()
