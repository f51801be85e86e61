"""roofline dashboard: `streamlit run app.py`.

A thin shell: the sidebar's widgets become a `Workload` and a `Deployment`, the library
predicts (`roofline.predict` / `predict_fitting`), `roofline.views` shapes the chart data and
`roofline.fmt` writes every number. The scenario lives in the URL's query string, so a link
reproduces it. Bad input (a tp that does not divide the heads, FP8 on an A100, a broken
config.json) is shown as the library's one-line error; the page keeps running.
"""

from __future__ import annotations

import copy
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass

import altair as alt
import pandas as pd
import streamlit as st
from pydantic import ValidationError

import roofline as rl
from roofline import fmt, views
from roofline.files import decode, parse_mapping
from roofline.registry import validation_message

DTYPE_CHOICES = ["native", *sorted({rl.get_dtype(n).name for n in rl.dtype_names()})]
ATTENTION_CHOICES = list(typing.get_args(rl.Deployment.model_fields["attention_impl"].annotation))
DEFAULTS: dict[str, typing.Any] = {
    "model": "llama-3.1-70b", "hw": ["h100-sxm"], "wdtype": "native", "adtype": "native", "kvdtype": "native",
    "gs": 0, "tp": "auto", "attn": "flash", "batch": 8, "prompt": 2048, "output": 256,
}
INT_KEYS = {"batch": 1, "prompt": 1, "output": 1, "gs": 0}  # key -> smallest accepted value


# ------------------------------------------------------------------ URL state
def parse_query(params: Mapping[str, str]) -> tuple[dict[str, typing.Any], list[str]]:
    """Widget values from the query string; a bad value falls back to its default with a warning."""
    values, problems = dict(DEFAULTS), []

    def reject(key, raw, why):
        problems.append(f"URL parameter {key}={raw!r}: {why}; using {DEFAULTS[key]!r}")

    for key in DEFAULTS:
        if key not in params:
            continue
        raw = str(params[key])
        if key == "model":
            ok = raw in rl.list_models()
            values[key] = raw if ok else values[key]
            if not ok:
                reject(key, raw, "not a shipped model id")
        elif key == "hw":
            ids = [x.strip() for x in raw.split(",") if x.strip()]
            known = [x for x in ids if x in rl.list_hardware()]
            if known:
                values[key] = known
            if len(known) < len(ids) or not ids:
                bad = ", ".join(x for x in ids if x not in known) or "(empty)"
                problems.append(f"URL parameter hw: unknown hardware {bad}" + ("; ignored" if known else f"; using {DEFAULTS[key]!r}"))
        elif key in ("wdtype", "adtype", "kvdtype"):
            if raw in DTYPE_CHOICES:
                values[key] = raw
            else:
                reject(key, raw, f"choose one of {', '.join(DTYPE_CHOICES)}")
        elif key == "attn":
            if raw in ATTENTION_CHOICES:
                values[key] = raw
            else:
                reject(key, raw, f"choose one of {', '.join(ATTENTION_CHOICES)}")
        elif key == "tp":
            if raw == "auto" or _positive_int(raw) is not None:
                values[key] = raw
            else:
                reject(key, raw, "expected a positive integer or auto")
        else:
            lowest = INT_KEYS[key]
            if _positive_int(raw, lowest) is not None:
                values[key] = int(raw)
            else:
                reject(key, raw, f"expected an integer from {lowest} to {1 << 30:,}")
    return values, problems


def _positive_int(text: str, lowest: int = 1, highest: int = 1 << 30) -> int | None:
    """The integer an ASCII-digit string spells when it is in [lowest, highest], else None
    ("²" passes str.isdigit but is no number; a 40-digit tp is no deployment)."""
    text = text.strip()
    if not re.fullmatch(r"[0-9]{1,12}", text) or not lowest <= int(text) <= highest:
        return None
    return int(text)


def init_state() -> list[str]:
    """On a session's first run, seed the widgets from the URL; return the warnings of that parse."""
    if "_seeded" not in st.session_state:
        values, problems = parse_query({k: st.query_params.get(k) for k in st.query_params})
        for key, value in values.items():
            st.session_state[key] = value
        st.session_state["_seeded"] = True
        st.session_state["_url_warnings"] = problems
    return st.session_state["_url_warnings"]


def write_query(state: Mapping[str, typing.Any]) -> None:
    st.query_params.from_dict({k: ",".join(state[k]) if k == "hw" else str(state[k]) for k in DEFAULTS})


# ------------------------------------------------------------------ cached library calls
@st.cache_resource(show_spinner=False)
def load_spec(kind: str, value: str) -> rl.ModelSpec:
    """A shipped id, or the text of a Hugging Face config.json."""
    if kind == "id":
        return rl.load_model(value)
    return rl.ModelSpec.from_hf_config(parse_mapping(value, "config.json", "json"))


@st.cache_resource(show_spinner=False, max_entries=512)
def cached_prediction(model_src: tuple[str, str], hw_id: str, wl_json: str, dep_json: str, auto_tp: bool) -> rl.Prediction:
    model, hw = load_spec(*model_src), rl.load_hardware(hw_id)
    wl, dep = rl.Workload.model_validate_json(wl_json), rl.Deployment.model_validate_json(dep_json)
    return (rl.predict_fitting if auto_tp else rl.predict)(model, hw, wl, dep)


@st.cache_resource(show_spinner=False, max_entries=512)  # shared, not copied: callers never modify the frames
def cached_frames(what: str, model_src: tuple[str, str], hw_id: str, wl_json: str, dep_json: str):
    """Chart data of one scenario at a fixed tp: 'roofline', 'unplotted', 'math' or 'sweeps'."""
    model, hw = load_spec(*model_src), rl.load_hardware(hw_id)
    wl, dep = rl.Workload.model_validate_json(wl_json), rl.Deployment.model_validate_json(dep_json)
    if what in ("roofline", "unplotted", "math"):
        p = cached_prediction(model_src, hw_id, wl_json, dep_json, False)
        if what == "roofline":
            return views.roofline_chart_data(p, hw)
        return views.unplotted_operators(p) if what == "unplotted" else views.math_lines(p, model, hw)
    assert what == "sweeps"
    return views.scenario_sweeps(model, hw, wl, dep)


# ------------------------------------------------------------------ sidebar
@dataclass(frozen=True)
class Scenario:
    model_src: tuple[str, str]
    hardware: tuple[str, ...]
    workload: rl.Workload
    deployment: rl.Deployment
    auto_tp: bool


def _optional(choice: str) -> str | None:
    return None if choice == "native" else choice


def sidebar() -> Scenario | None:
    """Widgets -> a Scenario; None (after st.error) when the input cannot make one."""
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
    sb.selectbox("Attention", ATTENTION_CHOICES, key="attn")
    sb.subheader("Workload")
    sb.number_input("Batch size", min_value=1, step=1, key="batch")
    sb.number_input("Prompt tokens", min_value=1, step=128, key="prompt")
    sb.number_input("Output tokens", min_value=1, step=64, key="output")

    state = st.session_state
    write_query(state)
    try:
        text = decode(upload.getvalue(), "config.json") if upload is not None else (pasted or "").strip()  # UTF-16: one line
        model_src = ("hf", text) if text else ("id", state["model"])
        load_spec(*model_src)
    except (rl.SpecError, ValidationError) as exc:
        message = _one_line(exc)
        st.error(message if message.startswith("config.json") else f"config.json: {message}")
        return None
    if not state["hw"]:
        st.info("Pick at least one hardware profile in the sidebar.")
        return None
    tp_text = str(state["tp"]).strip().lower()
    auto = tp_text == "auto"
    if not auto and _positive_int(tp_text) is None:
        st.error(f"tp: expected a positive integer or auto, got {state['tp']!r}")
        return None
    try:
        wl = rl.Workload(batch_size=state["batch"], prompt_tokens=state["prompt"], output_tokens=state["output"])
        dep = rl.Deployment(tp=1 if auto else int(tp_text), weight_dtype=_optional(state["wdtype"]),
                            activation_dtype=_optional(state["adtype"]), kv_dtype=_optional(state["kvdtype"]),
                            weight_group_size=state["gs"] or None, attention_impl=state["attn"])
    except ValidationError as exc:
        st.error(str(validation_message(exc, "input")))
        return None
    return Scenario(model_src, tuple(state["hw"]), wl, dep, auto)


def _one_line(exc: Exception) -> str:
    text = str(validation_message(exc, "config.json")) if isinstance(exc, ValidationError) else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# ------------------------------------------------------------------ main page
def predictions(sc: Scenario) -> list[tuple[str, rl.Prediction]]:
    """(hardware id, prediction) for each hardware that accepts the scenario; errors shown one line each."""
    out = []
    wl_json, dep_json = sc.workload.model_dump_json(), sc.deployment.model_dump_json()
    for hw_id in sc.hardware:
        try:
            out.append((hw_id, cached_prediction(sc.model_src, hw_id, wl_json, dep_json, sc.auto_tp)))
        except (rl.SpecError, ValidationError) as exc:
            st.error(f"{rl.load_hardware(hw_id).name}: {_one_line(exc)}")
    return out


def show_headlines(preds: list[tuple[str, rl.Prediction]]) -> None:
    cols = st.columns(len(preds))
    for col, (_, p) in zip(cols, preds):
        with col:
            st.markdown(f"**{p.hardware}** × {p.num_gpus}")
            a, b = st.columns(2)
            a.metric("TTFT", fmt.seconds(p.ttft_s), help=f"floor {fmt.seconds(p.ttft_floor_s)}")
            b.metric("TPOT", fmt.seconds(p.tpot_s), help=f"floor {fmt.seconds(p.tpot_floor_s)}")
            a.metric("Output tokens/s", fmt.count(p.output_tokens_per_s))
            b.metric("per GPU", fmt.count(p.output_tokens_per_s_per_gpu))
            a.metric("MBU decode", fmt.fraction(p.mbu_decode))
            b.metric("MFU prefill", fmt.fraction(p.mfu_prefill))
            a.metric("$/hour", fmt.usd(p.cost_per_hour_usd))
            b.metric("$/M tokens", fmt.usd(p.cost_per_million_output_tokens_usd) if p.fits else "n/a")
            if not p.fits:
                st.warning(f"{p.fit_message}. Latency and throughput are what-ifs; try tp auto or a smaller weight dtype.")
    table = pd.DataFrame({p.hardware: dict(fmt.headline_rows(p)) for _, p in preds})
    st.dataframe(table, width="stretch", height=36 * (len(table) + 1))


# ------------------------------------------------------------------ charts
# Charts are written in altair once per shape (`chart_spec`, cached) against named datasets; each
# run only attaches its DataFrames. Building and validating altair objects on every rerun would
# cost most of the 200 ms an interaction may take.
def _roofline_spec(bottom: float, top: float) -> alt.LayerChart:
    x = alt.X("intensity_flops_per_byte:Q", scale=alt.Scale(type="log"), title="arithmetic intensity (FLOP/byte)")
    y_scale = alt.Scale(type="log", domain=[bottom, top])
    lines = alt.Chart(alt.NamedData("ceilings")).mark_line(clip=True).encode(
        x=x, y=alt.Y("flops_per_s:Q", scale=y_scale, title="FLOP/s per GPU", axis=alt.Axis(format="~s")),
        color=alt.Color("ceiling:N", title="ceiling"), strokeDash=alt.StrokeDash("level:N", title="level"),
        opacity=alt.condition("datum.is_compute_dtype || datum.kind == 'bandwidth'", alt.value(0.95), alt.value(0.3)),
        detail="line:N", tooltip=[alt.Tooltip("line:N", title="ceiling")])
    dots = alt.Chart(alt.NamedData("points")).mark_point(filled=True, size=70, stroke="black", strokeWidth=0.5).encode(
        x=x, y=alt.Y("achieved_flops_per_s:Q", scale=y_scale),
        shape=alt.Shape("phase:N", title="phase"), fill=alt.Fill("phase:N", title="phase"),
        tooltip=[alt.Tooltip(f"{c}:N") for c in ("op", "phase", "bound", "layers_group", "intensity", "achieved", "of_ceiling", "time")])
    return alt.layer(lines, dots).resolve_scale(color="independent").properties(height=420)


def _line_spec(x: str, y: str, x_title: str, y_title: str, log_x: bool, log_y: bool, order: str, tooltip: tuple[str, ...]) -> alt.LayerChart:
    base = alt.Chart(alt.NamedData("sweep")).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log" if log_x else "linear"), title=x_title),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(type="log" if log_y else "linear"), title=y_title, axis=alt.Axis(format="~s")),
        color=alt.Color("hardware:N", title="hardware"))
    line = base.mark_line().encode(order=alt.Order(f"{order}:Q")) if order else base.mark_line()
    dots = base.mark_point(filled=True, size=50).encode(
        shape=alt.Shape("fits:N", title="fits in memory", scale=alt.Scale(domain=[True, False], range=["circle", "cross"])),
        tooltip=[alt.Tooltip(f"{c}:N") for c in tooltip])
    return alt.layer(line, dots).properties(height=300)


def _memory_spec(parts: tuple[str, ...]) -> alt.LayerChart:
    area = alt.Chart(alt.NamedData("memory")).mark_area(opacity=0.8).encode(
        x=alt.X("context_tokens:Q", scale=alt.Scale(type="log"), title="context tokens (prompt + output)"),
        y=alt.Y("bytes:Q", stack="zero", title="bytes per GPU", axis=alt.Axis(format="~s")),
        color=alt.Color("part:N", sort=list(parts), title="memory"), order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("context_tokens:Q"), alt.Tooltip("part:N"), alt.Tooltip("amount:N")])
    cap = alt.Chart(alt.NamedData("capacity")).mark_rule(strokeDash=[6, 3], color="red").encode(
        y="memory_available_bytes:Q", tooltip=[alt.Tooltip("capacity:N")])
    return alt.layer(area, cap).properties(height=260)


_SPECS = {"roofline": _roofline_spec, "line": _line_spec, "memory": _memory_spec}


@st.cache_resource(show_spinner=False, max_entries=128)
def chart_spec(kind: str, *args) -> dict:
    return _SPECS[kind](*args).to_dict()


def show_chart(where, kind: str, args: tuple, **datasets: pd.DataFrame) -> None:
    spec = copy.deepcopy(chart_spec(kind, *args))
    spec["datasets"] = datasets
    where.vega_lite_chart(spec=spec, width="stretch")


def _decade(x: float, up: bool) -> float:
    return 10.0 ** (math.ceil(math.log10(x)) if up else math.floor(math.log10(x)))


def show_roofline(ceilings: pd.DataFrame, points: pd.DataFrame) -> None:
    pts = points.assign(
        intensity=points["intensity_flops_per_byte"].map(lambda x: fmt.rate(x, "FLOP/byte")),
        achieved=points["achieved_flops_per_s"].map(lambda x: fmt.rate(x, "FLOP/s")),
        of_ceiling=points["fraction_of_ceiling"].map(fmt.fraction),
        time=points["time_s"].map(fmt.seconds),
    )
    lows = [ceilings["flops_per_s"].min(), *points["achieved_flops_per_s"]]
    top = _decade(2 * ceilings.loc[ceilings["kind"] == "compute", "flops_per_s"].max(), up=True)
    ceil = ceilings.assign(ceiling=ceilings["dtype"].where(ceilings["kind"] == "compute", "HBM"))
    show_chart(st, "roofline", (_decade(min(lows), up=False), top), ceilings=ceil, points=pts)


def show_line(where, df: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, log_x=True, log_y=False, order="") -> None:
    shown = df.assign(**{title: df[c].map(f) for c, (title, f) in _TOOLTIP_FORMATS.items() if c in df})
    tooltip = ("hardware", "tp", *(c for c in ("batch_size", "prompt_tokens") if c in df),
               *(title for c, (title, _) in _TOOLTIP_FORMATS.items() if c in df), "fits")
    show_chart(where, "line", (x, y, x_title, y_title, log_x, log_y, order, tooltip), sweep=shown)


_TOOLTIP_FORMATS = {  # column -> (tooltip title, formatter)
    "tpot_s": ("TPOT", fmt.seconds), "ttft_s": ("TTFT", fmt.seconds),
    "output_tokens_per_s_per_gpu": ("output tokens/s per GPU", fmt.count),
    "tokens_per_s_per_user": ("tokens/s per user", fmt.count), "mfu_prefill": ("MFU prefill", fmt.fraction),
}


def show_sweeps(sc: Scenario, preds: list[tuple[str, rl.Prediction]]) -> None:
    wl_json = sc.workload.model_dump_json()

    t_batch, t_prompt, t_front, t_mem = st.tabs(["TPOT and throughput vs batch", "TTFT vs prompt", "Latency-throughput frontier",
                                                 "Memory vs context"])
    pairs = [cached_frames("sweeps", sc.model_src, hw_id, wl_json, p.deployment.model_dump_json()) for hw_id, p in preds]
    batch, prompt = (pd.concat(frames, ignore_index=True) for frames in zip(*pairs))
    if batch.empty:
        st.info("No sweep for this deployment: sweeps cover replicas inside one node (tp up to the NVLink domain); "
                "the figures above are for the whole deployment.")
        return
    with t_batch:
        df = batch
        a, b = st.columns(2)
        show_line(a, df, "batch_size", "tpot_s", "batch size", "TPOT (s)")
        show_line(b, df, "batch_size", "output_tokens_per_s_per_gpu", "batch size", "output tokens/s per GPU")
        st.caption("Crosses: that batch does not fit in memory (a what-if). Other settings as in the sidebar, tp as above.")
    with t_prompt:
        show_line(st, prompt, "prompt_tokens", "ttft_s", "prompt tokens", "TTFT (s)", log_y=True)
    with t_front:
        show_line(st, batch, "tokens_per_s_per_gpu", "tokens_per_s_per_user", "output tokens/s per GPU",
                  "tokens/s per user (1 / TPOT)", log_x=False, order="batch_size")
        st.caption("One point per batch size (1, 2, 4, ...): up and to the right is better.")
    with t_mem:
        parts = dict(zip(views.MEMORY_PARTS, ("weights", "KV cache", "activation workspace", "runtime reserve")))
        cols = st.columns(min(len(preds), 3))
        for i, (name, sub) in enumerate(prompt.groupby("hardware", sort=False)):
            long = sub.melt(id_vars=["context_tokens"], value_vars=list(parts), var_name="part", value_name="bytes")
            long["order"] = long["part"].map({k: j for j, k in enumerate(parts)})
            long["part"] = long["part"].map(parts)
            long["amount"] = long["bytes"].map(fmt.gigabytes)
            cap = sub.iloc[:1][["memory_available_bytes"]].assign(capacity=fmt.gigabytes(sub["memory_available_bytes"].iloc[0]))
            with cols[i % len(cols)]:
                st.markdown(f"**{name}** (tp {int(sub['tp'].iloc[0])}); dashed line: capacity")
                show_chart(st, "memory", (tuple(parts.values()),), memory=long, capacity=cap)


def operator_table(p: rl.Prediction, points: pd.DataFrame) -> pd.DataFrame:
    """The operator table for people: every number through fmt."""
    ops = p.operators
    merged = ops.merge(points[["phase", "op", "layers_group", "intensity_flops_per_byte", "fraction_of_ceiling"]],
                       on=["phase", "op", "layers_group"], how="left")
    def maybe(f):
        return lambda x: "-" if pd.isna(x) else f(x)
    return pd.DataFrame({
        "phase": merged["phase"], "operator": merged["op"], "layers": merged["layers_group"], "kind": merged["kind"],
        "FLOPs": merged["flops"].map(lambda x: fmt.rate(x, "FLOP")), "HBM bytes": merged["hbm_bytes"].map(fmt.gigabytes),
        "interconnect bytes": merged["comm_bytes"].map(fmt.gigabytes),
        "intensity": merged["intensity_flops_per_byte"].map(maybe(lambda x: fmt.rate(x, "FLOP/byte"))),
        "time": merged["time_s"].map(fmt.seconds), "floor": merged["floor_s"].map(fmt.seconds), "bound": merged["bound"],
        "of ceiling": merged["fraction_of_ceiling"].map(maybe(fmt.fraction)),
    })


def show_details(sc: Scenario, preds: list[tuple[str, rl.Prediction]]) -> None:
    """Roofline, operator table (with its CSV) and the math, for one hardware at a time."""
    names = {hw_id: p.hardware for hw_id, p in preds}
    pick = st.radio("Details for", list(names), format_func=names.get, horizontal=True, key="detail_hw") if len(preds) > 1 else preds[0][0]
    p = dict(preds)[pick]
    key = (sc.model_src, pick, sc.workload.model_dump_json(), p.deployment.model_dump_json())
    ceilings, points = cached_frames("roofline", *key)
    st.markdown(f"**Roofline** of {p.model} on {p.hardware} (per GPU, compute in {p.compute_dtype}; decode points are the mean step)")
    show_roofline(ceilings, points)
    left = cached_frames("unplotted", *key)
    if len(left):
        st.caption("Not on the plot (no FLOPs or no HBM bytes): " + "; ".join(
            f"{r.phase} {r.op} {fmt.seconds(r.time_s)} ({r.reason})" for r in left.itertuples()))
    st.markdown("**Operators** (decode rows: the mean step)")
    st.dataframe(operator_table(p, points), width="stretch", hide_index=True)
    st.download_button("Download operators (CSV, SI units)", p.operators.to_csv(index=False).encode(),
                       file_name=f"operators-{pick}.csv", mime="text/csv", key="csv")
    with st.expander("Show the math"):
        st.code("\n".join(cached_frames("math", *key)), language=None, wrap_lines=True)


def main() -> None:
    st.set_page_config(page_title="roofline: LLM inference", layout="wide")
    for warning in init_state():
        st.warning(warning)
    sc = sidebar()
    if sc is None:
        return
    model = load_spec(*sc.model_src)
    wl, dep = sc.workload, sc.deployment
    st.title(f"{model.name}")
    st.caption(f"batch {wl.batch_size} x (prompt {wl.prompt_tokens} + output {wl.output_tokens} tokens); "
               f"weights {dep.weight_dtype or 'native'}, compute {dep.activation_dtype or 'native'}, KV {dep.kv_dtype or 'native'}; "
               f"{dep.attention_impl} attention; tp {'auto' if sc.auto_tp else dep.tp}. "
               "Analytical: datasheet peaks x sourced efficiency fractions, not yet calibrated on a GPU.")
    preds = predictions(sc)
    if not preds:
        return
    show_headlines(preds)
    st.subheader("Sweeps")
    show_sweeps(sc, preds)
    st.subheader("Roofline, operators and the math")
    show_details(sc, preds)


main()
