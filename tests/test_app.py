"""The Streamlit dashboard (app.py), driven headless with streamlit.testing.v1.AppTest.

Each test starts a fresh session; the library caches (st.cache_resource) are shared across
them, so only the first run pays for building specs and chart templates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import roofline as rl
from roofline import fmt

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
DEMO = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def _metrics(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def default_app() -> AppTest:
    return _app()


def test_default_scenario_shows_the_libraries_numbers(default_app):
    at = default_app
    _ok(at)
    assert not at.error and not at.warning
    model, hw = rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm")
    p = rl.predict_fitting(model, hw, DEMO)  # tp auto: the fewest H100s that hold 70B in bf16
    assert p.gpus_per_replica == 2 and p.model_dump() == rl.predict(model, hw, DEMO, rl.Deployment(tp=2)).model_dump()
    assert _metrics(at, "TTFT") == [fmt.seconds(p.ttft_s)]  # calibrated by default (H100 SXM ships a calibration), vLLM engine
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)]
    assert _metrics(at, "Output tokens/s") == [fmt.count(p.output_tokens_per_s)]
    assert _metrics(at, "MBU decode") == [fmt.fraction(p.mbu_decode)]
    assert _metrics(at, "$/M tokens") == [fmt.usd(p.usd_per_million_output_tokens)]
    table = at.dataframe[0].value  # the CLI's rows, one column per hardware
    assert table.loc["memory per GPU: required", hw.name] == fmt.gigabytes(p.memory_required_bytes_per_gpu)
    assert table.loc["fits in memory", hw.name] == "yes"
    assert table.loc["max batch at these lengths", hw.name] == fmt.count(p.max_batch_size_fits)
    assert table.loc["GPUs (tensor parallel)", hw.name] == "2"
    assert table.index.is_unique  # two rows named alike once showed the TPOT floor as the TTFT floor
    assert table.loc["  TTFT floor (datasheet peaks)", hw.name] == fmt.seconds(p.ttft_floor_s)
    assert table.loc["  TPOT floor (datasheet peaks)", hw.name] == fmt.seconds(p.tpot_floor_s)


def test_page_parts_exist(default_app):
    at = default_app
    (button,) = at.get("download_button")
    assert button.label.startswith("Download operators (CSV")
    assert "Show the math" in [e.label for e in at.expander]
    (math,) = at.code
    assert "MBU decode = bytes per step / TPOT / HBM bandwidth" in math.value
    assert len(at.get("vega_lite_chart")) == 3  # the chosen sweep (TPOT and throughput vs batch: 2 charts) + the roofline
    ops = at.dataframe[1].value
    assert {"prefill", "decode"} == set(ops.phase) and "mlp_up" in set(ops.operator)


def test_the_scenario_is_written_to_the_url(default_app):
    qp = default_app.query_params
    assert (qp["page"], qp["model"], qp["hw"], qp["tp"], qp["batch"], qp["prompt"], qp["output"], qp["sweep"]) == (
        "predict", "llama-3.1-70b", "h100-sxm", "auto", "8", "2048", "256", "batch")
    assert not any(k.startswith(("pl_", "cp_")) for k in qp)  # only the page shown is in its link


def test_changing_widgets_changes_the_output():
    at = _app()
    before = _metrics(at, "TPOT")
    at.number_input(key="batch").set_value(32).run()
    _ok(at)
    p = rl.predict_fitting(rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm"), DEMO.model_copy(update={"batch_size": 32}))
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)] != before
    assert at.query_params["batch"] == "32"
    at.multiselect(key="hw").set_value(["h100-sxm", "a100-sxm-80gb"]).run()
    _ok(at)
    assert len(_metrics(at, "TPOT")) == 2
    a100 = rl.predict_fitting(rl.load_model("llama-3.1-70b"), rl.load_hardware("a100-sxm-80gb"), DEMO.model_copy(update={"batch_size": 32}))
    assert fmt.seconds(a100.tpot_s) in _metrics(at, "TPOT")
    assert at.radio(key="detail_hw").options == ["NVIDIA H100 SXM5 80GB", "NVIDIA A100 SXM4 80GB"]  # one at a time


def test_bad_input_is_one_error_line_and_the_app_keeps_running():
    at = _app()
    at.text_input(key="tp").input("3").run()
    _ok(at)
    (err,) = at.error
    assert err.value == ("NVIDIA H100 SXM5 80GB: tp: 3 does not divide num_attention_heads=64 of Llama 3.1 70B; "
                         "choose one of 1, 2, 4, 8")
    at.text_input(key="tp").input("auto").run()
    assert not at.error and _metrics(at, "TPOT")
    at.multiselect(key="hw").set_value(["a100-sxm-80gb"]).run()
    at.selectbox(key="wdtype").set_value("fp8_e4m3")
    at.selectbox(key="adtype").set_value("fp8_e4m3").run()
    _ok(at)
    assert [e.value for e in at.error] == [
        "NVIDIA A100 SXM4 80GB: activation_dtype: NVIDIA A100 SXM4 80GB has no fp8 tensor-core support; it computes in fp32, tf32, bf16, fp16, int8, int4; "
        "or set on_unsupported_dtype='fallback' to run fp8_e4m3 weights with bf16 compute"]
    at.text_input(key="tp").input("two").run()
    assert [e.value for e in at.error] == ["tp: expected a positive integer or auto, got 'two'"]


def test_the_url_state_is_read():
    at = _app(model="llama-3.1-8b", hw="h200,mi300x", batch="4", prompt="512", output="64", tp="1", kvdtype="fp8_e4m3")
    _ok(at)
    assert not at.warning
    assert at.selectbox(key="model").value == "llama-3.1-8b" and at.multiselect(key="hw").value == ["h200", "mi300x"]
    p = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h200"),
                   rl.Workload(batch_size=4, prompt_tokens=512, output_tokens=64), rl.Deployment(kv_dtype="fp8_e4m3"))
    assert _metrics(at, "TPOT")[0] == fmt.seconds(p.tpot_s)


def test_bad_url_values_fall_back_with_a_warning():
    at = _app(batch="lots", hw="h100-sxm,tpu-v9", tp="-2", wdtype="int3")
    _ok(at)
    warnings = " | ".join(w.value for w in at.warning)
    assert "batch='lots'" in warnings and "tpu-v9" in warnings and "tp='-2'" in warnings and "wdtype='int3'" in warnings
    assert at.number_input(key="batch").value == 8 and at.text_input(key="tp").value == "auto"
    assert at.multiselect(key="hw").value == ["h100-sxm"]
    p = rl.predict("llama-3.1-70b", "h100-sxm", DEMO, rl.Deployment(tp=2))  # the defaults the bad values fell back to
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)]


def test_a_hugging_face_config_can_be_pasted():
    at = _app(hw="h100-sxm", tp="1", batch="1")
    at.text_area(key="hf_text").input("{not json").run()
    _ok(at)
    (err,) = at.error
    assert err.value.startswith("config.json: is not valid JSON") and "\n" not in err.value
    text = (Path(__file__).parent / "hf_configs" / "llama-3.1-8b.json").read_text()
    at.text_area(key="hf_text").input(text).run()
    _ok(at)
    assert not at.error
    spec = rl.ModelSpec.from_hf_config(Path(__file__).parent / "hf_configs" / "llama-3.1-8b.json")
    p = rl.predict(spec, rl.load_hardware("h100-sxm"), rl.Workload(batch_size=1, prompt_tokens=2048, output_tokens=256))
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)]


# ------------------------------------------------------------------ Predict: charts and defects seen in screenshots
def _chart_data(chart, name: str) -> pd.DataFrame:
    """The rows of one named dataset of a vega-lite chart element, decoded from its Arrow payload."""
    import pyarrow as pa

    for ds in chart.proto.datasets:
        if ds.name == name:
            return pa.ipc.open_stream(ds.data.data).read_all().to_pandas()
    raise KeyError(name)


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def test_every_sweep_can_be_chosen_and_draws_at_full_width():
    at = _app(hw="h100-sxm,h200,mi300x,b200")
    _ok(at)
    counts = {}
    for sweep in ("batch", "prompt", "frontier", "memory"):
        at.radio(key="sweep").set_value(sweep).run()
        _ok(at)
        counts[sweep] = len(at.get("vega_lite_chart")) - 1  # less the roofline
        assert at.query_params["sweep"] == sweep
    assert counts == {"batch": 2, "prompt": 1, "frontier": 1, "memory": 4}  # memory: one chart per device
    memory = at.get("vega_lite_chart")[0]
    spec = _spec(memory)
    layers = spec["layer"]
    assert layers[0]["encoding"]["y"]["title"] == "memory per GPU (GB)" and layers[0]["encoding"]["x"]["axis"]["format"] == "~s"
    data = _chart_data(memory, "memory")
    p = rl.predict_fitting(rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm"), DEMO)
    at_demo = data[(data["context_tokens"] == 2048 + 256) & (data["part"] == "weights")]
    assert at_demo["gb"].iloc[0] == pytest.approx(p.weight_bytes / 1e9)  # plotted in GB, as the title says


def test_seconds_axes_are_in_ms_or_s_with_the_unit_in_the_title():
    at = _app()
    tpot = at.get("vega_lite_chart")[0]
    y = _spec(tpot)["layer"][0]["encoding"]["y"]
    assert y["title"] == "TPOT (ms)" and "format" not in y["axis"]  # plain numbers, no SI suffix ("20m" read as minutes)
    data = _chart_data(tpot, "sweep")
    row = data[data["batch_size"] == 8].iloc[0]
    p = rl.predict("llama-3.1-70b", "h100-sxm", DEMO, rl.Deployment(tp=2))
    assert row["tpot_s_shown"] == pytest.approx(row["tpot_s"] * 1e3) == pytest.approx(p.tpot_s * 1e3)  # 27.9 ms, in ms
    at.radio(key="sweep").set_value("prompt").run()
    y = _spec(at.get("vega_lite_chart")[0])["layer"][0]["encoding"]["y"]
    assert y["title"] == "TTFT (s)"  # the longest prompt takes seconds


def test_a_scenario_that_does_not_fit_says_so_and_labels_the_what_ifs():
    at = _app(model="llama-3.1-405b", hw="h100-sxm,h200")  # 405B in bf16: 810 GB of weights, 8 H100s hold 684 GB
    _ok(at)
    p = rl.predict_fitting(rl.load_model("llama-3.1-405b"), rl.load_hardware("h100-sxm"), DEMO)
    assert not p.fits and p.gpus_per_replica == 8
    (err,) = at.error
    assert err.value.startswith(f"Does not fit: needs {fmt.gigabytes(p.memory_required_bytes_per_gpu)} of "
                                f"{fmt.gigabytes(p.memory_available_bytes_per_gpu)} per GPU at tp 8.")
    assert "tp auto" not in err.value.lower()  # tp is already auto
    what_if = [m.value for m in at.markdown if m.value.startswith("*What-if")]
    assert what_if == [f"*What-if, as if the memory were there:* TTFT {fmt.seconds(p.ttft_s)}, TPOT {fmt.seconds(p.tpot_s)}, "
                       f"{fmt.count(p.output_tokens_per_s)} output tokens/s, MBU decode {fmt.fraction(p.mbu_decode)}, "
                       f"{fmt.usd(p.usd_per_hour)}/hour"]
    h200 = rl.predict_fitting(rl.load_model("llama-3.1-405b"), rl.load_hardware("h200"), DEMO)
    assert h200.fits and _metrics(at, "TPOT") == [fmt.seconds(h200.tpot_s)]  # tiles only for the device that fits
    at.text_input(key="tp").input("4").run()
    assert all("try tp auto" in e.value.lower() for e in at.error) and len(at.error) == 2


def test_headline_tiles_wrap_two_devices_per_row_with_four():
    at = _app(hw="h100-sxm,h200,a100-sxm-80gb,mi300x")
    _ok(at)
    assert len(_metrics(at, "TPOT")) == 4
    blocks = list(at.main.children.values())
    rows = blocks[2:4]  # after the title and its caption: the rows of tiles, then the table
    assert [len(r.children) for r in rows] == [2, 2] and blocks[4].type == "dataframe"  # 2 + 2 devices, not 4 in one row


def test_the_roofline_draws_the_compute_dtypes_ceilings_unless_asked():
    at = _app()
    roofline = at.get("vega_lite_chart")[-1]
    ceilings = _chart_data(roofline, "ceilings")
    assert set(ceilings["ceiling"]) == {"bf16", "HBM"}  # a bf16 run: its ceiling and the bandwidth slope
    h100 = rl.load_hardware("h100-sxm")
    assert ceilings.loc[(ceilings["ceiling"] == "bf16") & (ceilings["level"] == "peak"), "tflops_per_s"].max() == pytest.approx(
        h100.peak_flops_per_s["bf16"] / 1e12)  # 989.4 TFLOP/s, in the axis unit
    dots = _spec(roofline)["layer"][1]["encoding"]
    assert dots["fill"]["field"] == "op" and dots["fill"]["title"] == "operator"  # operators in a legend
    at.checkbox(key="allceil").check().run()
    _ok(at)
    ceilings = _chart_data(at.get("vega_lite_chart")[-1], "ceilings")
    assert set(ceilings["ceiling"]) == {*h100.peak_flops_per_s, "HBM"}
    assert at.query_params["allceil"] == "true"


# ------------------------------------------------------------------ pages and their links
def test_switching_pages_keeps_each_pages_inputs_and_link():
    at = _app()
    at.number_input(key="batch").set_value(16).run()
    at.radio(key="page").set_value("compare").run()
    _ok(at)
    assert at.query_params["page"] == "compare" and "batch" not in at.query_params and at.query_params["cp_hw"] == "h100-sxm"
    at.radio(key="page").set_value("predict").run()
    _ok(at)
    assert at.number_input(key="batch").value == 16 and at.query_params["batch"] == "16"


def test_bad_page_in_the_url_falls_back_with_a_warning():
    at = _app(page="shop", pl_rate="-3")
    _ok(at)
    warnings = [w.value for w in at.warning]
    assert "URL parameter page='shop': choose one of predict, plan, compare, accuracy; using 'predict'" in warnings
    assert "URL parameter pl_rate='-3': expected a positive number; using 10.0" in warnings


# ------------------------------------------------------------------ Plan
PLAN_Q = dict(page="plan", pl_model="llama-3.1-8b", pl_rate="20", pl_prompt="1024", pl_output="128", pl_ttft="1",
              pl_tpot_ms="40", pl_hw="h100-sxm,a100-sxm-80gb,l40s", pl_prec="native,fp8")


@pytest.fixture(scope="module")
def plan_app() -> AppTest:
    return _app(**PLAN_Q)


def _plan_reference(**over) -> pd.DataFrame:
    from roofline.plan import PRECISIONS

    kw = {**dict(requests_per_s=20, prompt_tokens=1024, output_tokens=128, ttft_slo_s=1.0, tpot_slo_s=0.040,
                 hardware=["h100-sxm", "a100-sxm-80gb", "l40s"], precisions={k: PRECISIONS[k] for k in ("native", "fp8")}), **over}
    return rl.plan("llama-3.1-8b", **kw)


def test_the_plan_page_shows_rl_plan(plan_app):
    at = plan_app
    _ok(at)
    assert not at.error and not at.warning
    ref = _plan_reference()
    table = at.table[0].value.reset_index()
    assert list(table["hardware"]) == list(ref["hardware_id"])  # ranked as the planner ranks
    for shown, r in zip(table.itertuples(), ref.itertuples()):
        assert shown.precision == r.precision and shown.replica == fmt.replica(r.tp, r.pp, r.ep, r.nodes_per_replica)
        if r.feasible:
            assert (shown.rank, shown.GPUs, shown.replicas) == (str(r.rank), str(r.gpus), str(r.replicas))
            assert table.loc[shown.Index, "$/hour"] == fmt.usd(r.usd_per_hour)
            assert table.loc[shown.Index, "$/M output tokens"] == fmt.usd(r.usd_per_million_output_tokens)
            assert table.loc[shown.Index, "bound by"] == r.binding_constraint
            # fleet price by hand: GPUs x price per GPU-hour
            assert r.usd_per_hour == pytest.approx(r.gpus * rl.load_hardware(r.hardware_id).price_usd_per_gpu_hour)
    top = ref.iloc[0]
    (ok,) = at.success
    assert ok.value.startswith(f"Top option: {top['gpus']} × {top['hardware_id']} ({top['precision']}")
    assert at.query_params["page"] == "plan" and at.query_params["pl_hw"] == "h100-sxm,a100-sxm-80gb,l40s"


def test_the_plan_page_draws_each_options_frontier(plan_app):
    (chart,) = plan_app.get("vega_lite_chart")
    frontier = _chart_data(chart, "frontier")
    chosen = _chart_data(chart, "chosen")
    ref = _plan_reference()
    assert set(chosen["label"].str.split(" ").str[0]) == set(ref.loc[ref["feasible"], "hardware_id"])
    assert set(frontier["hardware_id"]) == set(ref.loc[ref["feasible"], "hardware_id"])
    slo = _chart_data(chart, "slo")
    assert slo["output_tokens_per_s_per_user"].iloc[0] == pytest.approx(1 / 0.040)  # 25 tokens/s per user


def test_the_plan_page_prices_tighter_slos():
    at = _app(**PLAN_Q, pl_tight="true")
    _ok(at)
    table = at.table[1].value.reset_index()
    assert list(table["SLO"]) == ["TTFT"] * 3 + ["TPOT"] * 3 and list(table["x given"]) == ["1", "0.75", "0.5"] * 2
    ref = _plan_reference()
    assert table["$/hour"].iloc[0] == fmt.usd(ref["usd_per_hour"].iloc[0])
    half_tpot = _plan_reference(tpot_slo_s=0.020)  # TPOT SLO x 0.5 = 20 ms
    assert table["limit"].iloc[5] == "20 ms"
    assert table["$/hour"].iloc[5] == (fmt.usd(half_tpot["usd_per_hour"].iloc[0]) if half_tpot["feasible"].iloc[0] else "-")


def test_a_price_override_reprices_the_plan():
    at = _app(**PLAN_Q, pl_price="l40s=0.5")
    _ok(at)
    table = at.table[0].value
    l40s = table[table["hardware"] == "l40s"].iloc[0]
    assert l40s["$/GPU-hour"] == "$0.50 (override)"  # an overridden price says so
    if l40s["GPUs"] != "-":
        assert l40s["$/hour"] == fmt.usd(int(l40s["GPUs"]) * 0.5)  # GPUs x the overridden price
    at.text_input(key="pl_price").input("l40s=cheap").run()
    assert [e.value for e in at.error] == [
        "price: expected DEVICE=USD_PER_GPU_HOUR with a positive price, e.g. h100-sxm=2.5; got 'l40s=cheap'"]
    at.text_input(key="pl_price").input("b200=5").run()
    assert [e.value for e in at.error] == ["price: b200 is not among the hardware picked; add it or drop its price"]


def test_a_bad_length_distribution_is_one_line():
    at = _app(**{**PLAN_Q, "pl_prompt": "lognormal:2048"})
    _ok(at)
    (err,) = at.error
    assert err.value.startswith("prompt_tokens") and "\n" not in err.value


def test_the_plan_page_chooses_the_attention_layout():
    # Mixtral (MoE) at 5 requests/s on H200, native only: 'on' plans attention data-parallel replicas alone, as
    # rl.plan(attention_dp=[True]) (the CLI's plan --attention-dp on); the replica column names the layout
    from roofline.plan import PRECISIONS
    q = {**PLAN_Q, "pl_model": "mixtral-8x7b", "pl_hw": "h200", "pl_prec": "native", "pl_rate": "5", "pl_adp": "on"}
    at = _app(**q)
    _ok(at)
    assert not at.error and not at.selectbox(key="pl_adp").disabled
    ref = rl.plan("mixtral-8x7b", 5, 1024, 128, 1.0, 0.040, hardware=["h200"], precisions={"native": PRECISIONS["native"]},
                  attention_dp=[True])
    table = at.table[0].value.reset_index()
    assert list(table["replica"]) == [fmt.replica_of(r) for r in ref.itertuples()]
    assert all(ref["attention_dp"]) and table["replica"].iloc[0].endswith(" dp-attention")
    assert table["$/hour"].iloc[0] == fmt.usd(ref["usd_per_hour"].iloc[0]) and at.query_params["pl_adp"] == "on"


def test_the_plan_layout_control_is_explained_for_a_dense_model(plan_app):
    # Llama 3.1 8B is dense: the planner tries tensor-parallel attention alone, so the control is greyed out at
    # 'both' (the default, which rl.plan's is) and says why; 'on' (from a link) stays changeable and every row
    # carries the planner's own reason, no crash
    box = plan_app.selectbox(key="pl_adp")
    assert box.value == "both" and box.disabled
    assert any(c.value.startswith("A dense model: the planner tries tensor-parallel attention alone") for c in plan_app.sidebar.caption)
    at = _app(**PLAN_Q, pl_adp="on")
    _ok(at)
    assert not at.selectbox(key="pl_adp").disabled
    ref = _plan_reference(attention_dp=[True])
    assert not ref["feasible"].any()
    bound = at.table[0].value["bound by"]
    assert list(bound) == [f"infeasible: {r}" for r in ref["reason"]] and "Llama 3.1 8B is dense" in bound.iloc[0]


# ------------------------------------------------------------------ Compare
def test_the_compare_page_shows_rl_compare():
    at = _app(page="compare", cp_hw="h200", cp_base="", cp_variants="int4:weight_dtype=int4\nstudent:model=llama-3.1-8b\nbad:colour=red")
    _ok(at)
    assert [e.value for e in at.error] == ["variant bad: unknown key 'colour'; see `roofline compare --help` for the keys"]
    table = at.table[0].value
    assert list(table.columns) == ["baseline", "int4", "student"]
    ref = rl.compare("llama-3.1-70b", "h200", DEMO, rl.Deployment(),
                     {"int4": rl.Deployment(weight_dtype="int4"), "student": rl.Variant(model="llama-3.1-8b")})
    for name in ref.index:
        assert table.loc["TPOT", name] == fmt.seconds(ref.at[name, "tpot_s"])
        assert table.loc["weights per GPU", name] == fmt.gigabytes(ref.at[name, "weight_bytes"])
    assert table.loc["TPOT vs baseline", "int4"] == f"{ref.at['int4', 'tpot_s'] / ref.at['baseline', 'tpot_s']:.2f}x"
    assert len(at.get("vega_lite_chart")) == 1  # the ratios


def test_the_default_compare_page_runs_every_technique():
    at = _app(page="compare")
    _ok(at)
    assert not at.error
    assert list(at.table[0].value.columns) == ["baseline", "int4 weights", "fp8 KV cache", "speculative", "pruned 25% layers",
                                                   "MQA", "student 8B"]


# ------------------------------------------------------------------ Accuracy
def test_the_accuracy_page_reads_the_committed_corpus_run():
    """The page shows the committed `roofline validate --published` run: the rows of trust high or medium with a
    prediction, one error row per family (`views.error_table`), one predicted-vs-measured chart per family and unit."""
    from roofline import views

    csv = Path(APP).parent / "calibrate" / "published" / "report" / "predictions.csv"
    df = pd.read_csv(csv)
    df = df[df["headline"].astype(bool) & df["predicted"].notna()]
    at = _app(page="accuracy")
    _ok(at)
    table = at.table[0].value
    expected = views.error_table(df)
    assert table.index.tolist() == expected["family"].tolist()
    assert table["n"].tolist() == [str(n) for n in expected["n"]]
    assert table["median |error|"].tolist() == [f"{x:.1f}%" for x in expected["median_abs_pct_error"]]
    charts = at.get("vega_lite_chart")
    assert len(charts) == (df["family"] + df["unit"]).nunique()
    at.selectbox(key="ac_gpu").set_value("mi300x").run()
    _ok(at)
    on_mi300x = views.error_table(df[df["gpu"] == "mi300x"])
    assert at.table[0].value.index.tolist() == on_mi300x["family"].tolist() and at.query_params["ac_gpu"] == "mi300x"


def test_the_predict_page_shows_the_error_bands():
    from roofline import fmt

    at = _app(model="llama-3.1-8b", hw="h100-sxm", batch="8")
    _ok(at)
    p = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"),
                   rl.Workload(batch_size=8, prompt_tokens=at.session_state["prompt"], output_tokens=at.session_state["output"]))
    captions = [c.value for c in at.caption]
    assert any(f"TPOT {fmt.band(p.bands['tpot_s'])}" in c for c in captions), captions


# ------------------------------------------------------------------ Predict: attention data parallelism
ADP_Q = dict(model="mixtral-8x7b", hw="h200", batch="8", prompt="512", output="64")
ADP_WL = rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64)


def test_attention_dp_on_the_predict_page():
    # tp 4 with attention data-parallel: rl.predict's figures for Deployment(tp=4, attention_dp=True), the headline
    # naming the layout as the planner does ('tp4 dp-attention'); ticking it on a tp-4 page changes the figures
    mix, h200 = rl.load_model("mixtral-8x7b"), rl.load_hardware("h200")
    at = _app(**ADP_Q, tp="4")
    _ok(at)
    plain = rl.predict(mix, h200, ADP_WL, rl.Deployment(tp=4))
    assert _metrics(at, "TPOT") == [fmt.seconds(plain.tpot_s)] and not at.checkbox(key="adp").disabled
    at.checkbox(key="adp").check().run()
    _ok(at)
    dp = rl.predict(mix, h200, ADP_WL, rl.Deployment(tp=4, attention_dp=True))
    assert dp.tpot_s != plain.tpot_s and _metrics(at, "TPOT") == [fmt.seconds(dp.tpot_s)]
    assert at.dataframe[0].value.loc["GPUs (tensor parallel)", h200.name] == "4 (tp4 dp-attention)"
    assert at.query_params["adp"] == "true" and not at.error


def test_attention_dp_with_tp_auto_starts_at_two():
    # tp auto searches predict_fitting's tps: with attention_dp 2, 4, 8. Mixtral's ~47e9 bf16 parameters (~93 GB)
    # fit one 141 GB H200, but attention data parallelism needs tp > 1, so tp 2 is taken
    at = _app(**ADP_Q, tp="auto", adp="true")
    _ok(at)
    p = rl.predict_fitting(rl.load_model("mixtral-8x7b"), rl.load_hardware("h200"), ADP_WL, rl.Deployment(tp=2, attention_dp=True))
    assert (p.deployment.tp, p.fits) == (2, True)
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)] and not at.error
    assert at.dataframe[0].value.loc["GPUs (tensor parallel)", p.hardware] == "2 (tp2 dp-attention)"


def test_attention_dp_where_it_does_not_apply_says_the_deployments_error():
    # at tp 1 the control is greyed out with Deployment's own one-line reason beside it
    why = "attention_dp: needs tp > 1 (attention data-parallel over the tp GPUs); set tp, or drop attention_dp"
    at = _app(**ADP_Q, tp="1")
    _ok(at)
    assert at.checkbox(key="adp").disabled and f"Not at this tp: {why}" in [c.value for c in at.sidebar.caption]
    assert _metrics(at, "TPOT")  # the page still predicts, without it
    # a link asking for it at tp 1: the same line as the page's error, the box left changeable, and unticking it recovers
    at = _app(**ADP_Q, tp="1", adp="true")
    _ok(at)
    assert [e.value for e in at.error] == [f"input: {why}"] and not at.checkbox(key="adp").disabled
    at.checkbox(key="adp").uncheck().run()
    _ok(at)
    assert not at.error and _metrics(at, "TPOT")
