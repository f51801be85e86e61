"""The Streamlit dashboard (app.py), driven headless with streamlit.testing.v1.AppTest.

Each test starts a fresh session; the library caches (st.cache_resource) are shared across
them, so only the first run pays for building specs and chart templates.
"""

from __future__ import annotations

from pathlib import Path

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
    assert p.num_gpus == 2 and p.model_dump() == rl.predict(model, hw, DEMO, rl.Deployment(tp=2)).model_dump()
    assert _metrics(at, "TTFT") == [fmt.seconds(p.ttft_s)] == ["1.67 s"]
    assert _metrics(at, "TPOT") == [fmt.seconds(p.tpot_s)] == ["28.5 ms"]
    assert _metrics(at, "Output tokens/s") == [fmt.count(p.output_tokens_per_s)]
    assert _metrics(at, "MBU decode") == [fmt.fraction(p.mbu_decode)]
    assert _metrics(at, "$/M tokens") == [fmt.usd(p.cost_per_million_output_tokens_usd)] == ["$9.17"]
    table = at.dataframe[0].value  # the CLI's rows, one column per hardware
    assert table.loc["memory per GPU: required", hw.name] == fmt.gigabytes(p.memory_required_bytes)
    assert table.loc["fits in memory", hw.name] == "yes"
    assert table.loc["max batch at these lengths", hw.name] == fmt.count(p.max_batch_size)
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
    assert len(at.get("vega_lite_chart")) == 6  # roofline + 2 batch + TTFT + frontier + memory
    ops = at.dataframe[1].value
    assert {"prefill", "decode"} == set(ops.phase) and "mlp_up" in set(ops.operator)


def test_the_scenario_is_written_to_the_url(default_app):
    qp = default_app.query_params
    assert (qp["model"], qp["hw"], qp["tp"], qp["batch"], qp["prompt"], qp["output"]) == (
        "llama-3.1-70b", "h100-sxm", "auto", "8", "2048", "256")


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
    assert _metrics(at, "TPOT") == ["28.5 ms"]


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
