"""The published corpus (calibrate/published): loading, the row semantics, the error statistics by hand,
the accuracy gate, the closed-loop and offline serving modes it needs, and the 80% error bands."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import roofline as rl
from calibrate import corpus
from roofline import bands as B
from roofline.engines import load_engine
from roofline.errors import SpecError
from roofline.serving import capacity_requests_per_s, closed_loop, steady_state


@pytest.fixture(scope="module")
def whole():
    """The whole corpus through the predictor once (about 15 s on one core)."""
    df, table, _ = corpus.run()
    return df, table


# ------------------------------------------------------------ the corpus itself
def test_corpus_size_and_coverage():
    rows = corpus.load_corpus()
    assert len(rows) >= 300
    assert len({r.source for r in rows}) >= 12
    gpus = {r.gpu for r in rows}
    assert {"a100-sxm-80gb", "h100-sxm", "h200", "b200", "mi300x", "l40s"} <= gpus
    assert {r.workload for r in rows} == set(corpus.WORKLOADS)
    assert {1, 2, 4, 8} <= {r.tp for r in rows}
    models = {r.model for r in rows}
    assert {"deepseek-v3", "mixtral-8x7b", "llama-3.1-8b", "llama-3.1-70b"} <= models  # MLA, MoE, dense
    dtypes = {r.weight_dtype for r in rows}
    assert {"bf16", "fp16", "fp8", "int8", "int4"} <= dtypes
    assert any(r.workload == "static" and r.batch_size == 1 for r in rows)  # batch-1 latency
    assert any(r.workload == "offline" for r in rows)  # high-load throughput


def test_every_row_names_its_source_and_a_known_model():
    for r in corpus.load_corpus():
        assert r.url.startswith("http"), r.id
        assert (corpus.CORPUS_DIR / "e2e" / f"{r.source}.md").is_file(), f"{r.source} has no notes file"
        if r.model.endswith(".json"):
            assert (corpus.CORPUS_DIR / r.model).is_file(), r.id
        else:
            rl.load_model(r.model)


def test_a_malformed_cell_names_file_line_and_column(tmp_path):
    (tmp_path / "e2e").mkdir()
    good = {c: "" for c in corpus.COLUMNS} | {
        "id": "x-1", "source": "x", "url": "https://example.org", "gpu": "h100-sxm", "tp": "1", "model": "llama-3.1-8b",
        "workload": "static", "batch_size": "1", "prompt_tokens": "128", "output_tokens": "128", "metric": "tpot",
        "statistic": "mean", "value": "7.5", "unit": "ms", "trust": "high"}
    def write(**bad):
        with (tmp_path / "e2e" / "x.csv").open("w", newline="") as fh:
            w = pd.DataFrame([good | bad], columns=corpus.COLUMNS)
            w.to_csv(fh, index=False)
    write()
    assert corpus.load_corpus(tmp_path)[0].value == 7.5
    write(value="seven")
    with pytest.raises(SpecError, match=r"^x.csv:2: value: must be a number, got 'seven'"):
        corpus.load_corpus(tmp_path)
    write(unit="tokens/s")
    with pytest.raises(SpecError, match=r"^x.csv:2: unit: 'tokens/s' is not a unit of tpot"):
        corpus.load_corpus(tmp_path)
    write(workload="static", batch_size="")
    with pytest.raises(SpecError, match=r"^x.csv:2: batch_size: is required"):
        corpus.load_corpus(tmp_path)
    write(value="nan")
    with pytest.raises(SpecError, match=r"^x.csv:2: value: must be a positive finite number"):
        corpus.load_corpus(tmp_path)


# ------------------------------------------------------------ row semantics, by hand
def _row(**kw) -> corpus.Row:
    base = dict(id="t", source="t", url="", framework="", gpu="h100-sxm", num_gpus=1, tp=1, pp=1, ep=1, model="llama-3.1-8b",
                weight_dtype=None, activation_dtype=None, kv_dtype=None, weight_group_size=None, workload="static",
                batch_size=1, concurrency=None, request_rate_per_s=None, num_requests=None, prompt_tokens=128, output_tokens=128,
                metric="tpot", statistic="mean", value=1.0, unit="ms", trust="high")
    return corpus.Row(**(base | kw))


def test_static_rows_are_predict_in_the_published_unit():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    # a row of a framework without an engine profile ("" here) runs on the bare roofline
    p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(engine=None))
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    assert corpus.predict_row(_row(metric="tpot", unit="ms", **r)) == pytest.approx(p.tpot_s * 1e3)
    assert corpus.predict_row(_row(metric="ttft", unit="s", **r)) == pytest.approx(p.ttft_s)
    assert corpus.predict_row(_row(metric="ttft", unit="ns", **r)) == pytest.approx(p.ttft_s * 1e9)
    assert corpus.predict_row(_row(metric="user_throughput", unit="tokens/s/user", **r)) == pytest.approx(1 / p.tpot_s)
    # total throughput of a static batch: 8 x (512 + 64) tokens over the end-to-end latency
    assert corpus.predict_row(_row(metric="total_throughput", unit="tokens/s", **r)) == pytest.approx(8 * 576 / p.e2e_latency_s)
    assert corpus.predict_row(_row(metric="output_throughput", unit="tokens/s", **r)) == pytest.approx(p.output_tokens_per_s)


def test_rows_run_under_their_frameworks_engine_profile():
    # vLLM, SGLang and TensorRT-LLM (and NIM, a TensorRT-LLM container) rows run under their engine profile
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    for framework, engine in (("vllm", "vllm"), ("sglang", "sglang"), ("trtllm", "trtllm"), ("nim", "trtllm"), ("lmdeploy", None)):
        assert corpus.deployment_of(_row(framework=framework, **r)).engine == engine
    p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(engine="vllm"))
    assert corpus.predict_row(_row(framework="vllm", metric="tpot", unit="ms", **r)) == pytest.approx(p.tpot_s * 1e3)


def test_the_tensorrt_llm_version_split_matches_the_profiles_versions():
    # corpus.TRTLLM_CPP_NO_XQA / TRTLLM_CPP_XQA_GROUP8 and the `versions:` the two profiles state ("0.5 - 0.6 ...",
    # "0.7 - 0.9 ..."): the first and last release named map to the profile, the releases either side do not
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)

    def of(version):
        return corpus.engine_of(_row(framework="trtllm", extra={"framework_version": version}, **r))

    for engine, (lo, hi) in (("trtllm-cpp-0.5", corpus.TRTLLM_CPP_NO_XQA), ("trtllm-cpp-0.7", corpus.TRTLLM_CPP_XQA_GROUP8)):
        first, last = (int(x) for x in re.match(r"0\.(\d+) - 0\.(\d+) ", load_engine(engine).versions).groups())
        assert (0, first, 0) == lo and (0, last + 1, 0) == hi, engine
        assert of(f"0.{first}.0") == of(f"0.{last}.9") == engine
        assert of(f"0.{first - 1}.9") != engine and of(f"0.{last + 1}.0") != engine


def test_tensorrt_llm_rows_before_0_17_run_under_the_cpp_runtime_profile():
    # the row's framework_version picks the TensorRT-LLM profile: releases before 0.17 (TensorRT engines in the C++
    # runtime) run as trtllm-cpp (0.5 - 0.6 as trtllm-cpp-0.5, 0.7 - 0.9 as trtllm-cpp-0.7: their GQA decode kernels);
    # 0.17 (the PyTorch backend's first release, trtllm-serve without CUDA graphs) as trtllm-eager; 0.18 on, an
    # unstated or unparsable version, and NIM keep trtllm
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    for version, engine in (("0.5.0", "trtllm-cpp-0.5"), ("0.6.1", "trtllm-cpp-0.5"), ("0.7a", "trtllm-cpp-0.7"),
                            ("0.9.0", "trtllm-cpp-0.7"), ("0.10.0", "trtllm-cpp"),
                            ("0.14.0 (tensorrtllm_backend)", "trtllm-cpp"), ("0.16.0", "trtllm-cpp"),
                            ("0.17.post1.dev", "trtllm-eager"), ("0.18.0", "trtllm"), ("1.0", "trtllm"), ("", "trtllm"),
                            ("main", "trtllm")):
        row = _row(framework="trtllm", extra={"framework_version": version}, **r)
        assert corpus.engine_of(row) == engine, version
        assert corpus.deployment_of(row).engine == engine, version
    assert corpus.engine_of(_row(framework="nim", extra={"framework_version": "0.14.0"}, **r)) == "trtllm"
    # the prediction is the trtllm-cpp engine's, and the cache keeps the two TensorRT-LLM generations apart
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    cache: dict = {}
    got = {}
    for version, engine in (("0.14.0", "trtllm-cpp"), ("1.0", "trtllm")):
        row = _row(framework="trtllm", extra={"framework_version": version}, metric="tpot", unit="ms", **r)
        got[engine] = corpus.predict_row(row, cache=cache)
        p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(engine=engine))
        assert got[engine] == pytest.approx(p.tpot_s * 1e3)
    assert len(cache) == 2 and got["trtllm-cpp"] > got["trtllm"]  # eager decode launches cost more than a graph replay


def test_the_prediction_cache_keys_on_the_engine():
    # two rows of one setup measured under different frameworks share a cache but not a prediction: the vLLM row
    # pays vLLM's per-step CPU time (h(B) = 160 us + 21 us/seq) that the TensorRT-LLM profile does not
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64, metric="tpot", unit="ms")
    cache: dict = {}
    got = {fw: corpus.predict_row(_row(framework=fw, **r), cache=cache) for fw in ("vllm", "trtllm")}
    for fw in ("vllm", "trtllm"):
        p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64), rl.Deployment(engine=fw))
        assert got[fw] == pytest.approx(p.tpot_s * 1e3)
    assert got["vllm"] != pytest.approx(got["trtllm"])
    assert len(cache) == 2


def test_throughput_of_a_run_is_its_replicas_and_per_gpu_divides_by_all_gpus():
    # 8 GPUs in replicas of tp2: 4 replicas, each at the capacity of one tp2 replica
    lam = capacity_requests_per_s("llama-3.1-8b", "h100-sxm", 1024, 128, rl.Deployment(tp=2, engine=None))
    r = dict(workload="offline", batch_size=None, num_gpus=8, tp=2, prompt_tokens=1024, output_tokens=128)
    assert corpus.predict_row(_row(metric="output_throughput", unit="tokens/s", **r)) == pytest.approx(4 * lam * 128)
    assert corpus.predict_row(_row(metric="output_throughput", unit="tokens/s/gpu", **r)) == pytest.approx(4 * lam * 128 / 8)
    assert corpus.predict_row(_row(metric="total_throughput", unit="tokens/s", **r)) == pytest.approx(4 * lam * (1024 + 128))
    assert corpus.predict_row(_row(metric="request_throughput", unit="requests/s", **r)) == pytest.approx(4 * lam)
    with pytest.raises(corpus.Unsupported, match="ttft of an offline run"):
        corpus.predict_row(_row(metric="ttft", unit="ms", **r))


def test_concurrency_rows_split_the_clients_over_the_replicas():
    sp = closed_loop("llama-3.1-8b", "h100-sxm", 16, 1024, 128, rl.Deployment(tp=1, engine=None))
    r = dict(workload="concurrency", batch_size=None, concurrency=32, num_gpus=2, prompt_tokens=1024, output_tokens=128)
    assert corpus.predict_row(_row(metric="ttft", unit="ms", **r)) == pytest.approx(sp.ttft_mean_s * 1e3)
    assert corpus.predict_row(_row(metric="ttft", statistic="p90", unit="ms", **r)) == pytest.approx(sp.ttft_p90_s * 1e3)
    assert corpus.predict_row(_row(metric="output_throughput", unit="tokens/s", **r)) == pytest.approx(2 * sp.requests_per_s * 128)
    with pytest.raises(corpus.Unsupported, match="p99 tpot under load"):
        corpus.predict_row(_row(metric="tpot", statistic="p99", unit="ms", **r))


def test_ep_inside_the_tp_group_runs_as_attention_data_parallel_experts():
    r = _row(model="qwen3-235b-a22b", gpu="h200", num_gpus=4, tp=4, ep=4, weight_dtype="fp8", activation_dtype="fp8")
    assert r.replica_gpus == 4 and r.replicas == 1
    dep = corpus.deployment_of(r)
    assert (dep.tp, dep.ep) == (1, 4)


def test_a_row_in_the_checkpoints_own_format_runs_the_checkpoint_as_stored():
    # DeepSeek-V3 ships FP8 with one scale per 128 x 128 block and FP8 activations (W8A8): an "fp8" row runs that
    # checkpoint, not a per-tensor re-quantization; gpt-oss's MXFP4 rows keep its BF16 attention and LM head
    ds = rl.load_model("deepseek-v3")
    dep = corpus.deployment_of(_row(model="deepseek-v3", gpu="h200", num_gpus=8, tp=8, weight_dtype="fp8",
                                    activation_dtype="fp8"), ds)
    assert dep.weight_dtype is None and dep.activation_dtype == "fp8"
    w = dep.resolved(ds).weights
    assert (w.granularity, w.group_size) == ("block", 128)
    # block scales: one fp32 scale per 128·128 = 16,384 weights, so 8 + 32/16384 bits per weight (k = 7168 = 56 blocks)
    assert w.bits_per_element(7168) == pytest.approx(8 + 32 / 16384)
    oss = rl.load_model("gpt-oss-20b")
    assert corpus.deployment_of(_row(model="gpt-oss-20b", weight_dtype="fp4", activation_dtype="bf16"), oss).weight_dtype is None
    # another format than the checkpoint's, or a stated group size, is a re-quantized copy: kept as the row says
    assert corpus.deployment_of(_row(model="gpt-oss-20b", weight_dtype="fp8", activation_dtype="fp8"), oss).weight_dtype == "fp8"
    assert corpus.deployment_of(_row(model="deepseek-v3", weight_dtype="fp8", weight_group_size=64), ds).weight_dtype == "fp8"


def test_infeasible_predictions_are_misses_not_inputs():
    r = _row(model="llama-3.1-70b", gpu="a100-sxm-80gb", batch_size=1)  # 141 GB of BF16 weights on one 80 GB GPU
    with pytest.raises(corpus.Unsupported) as err:
        corpus.predict_row(r)
    assert err.value.infeasible and "predicted infeasible" in str(err.value)
    with pytest.raises(corpus.Unsupported) as err:
        corpus.predict_row(_row(gpu="tpu-v5e"))
    assert not err.value.infeasible and "no hardware profile" in str(err.value)


# ------------------------------------------------------------ the serving modes the corpus needs
def test_closed_loop_obeys_the_response_time_law():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    for n in (1, 8, 64):
        sp = closed_loop(m, hw, n, 1000, 200)
        r = sp.ttft_mean_s + (200 - 1) * sp.tpot_s  # one request's response time
        assert sp.requests_per_s * r == pytest.approx(n, rel=1e-8)
        # the same rate through the open-loop model gives the same state
        same = steady_state(m, hw, sp.requests_per_s, 1000, 200)
        assert same.ttft_mean_s == pytest.approx(sp.ttft_mean_s) and same.tpot_s == pytest.approx(sp.tpot_s)


def test_closed_loop_beyond_capacity_queues_for_a_slot():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    sp = closed_loop(m, hw, 4096, 1000, 200)
    assert sp.requests_per_s == pytest.approx(sp.capacity_requests_per_s, rel=1e-8)
    # response-time law: R = N / X, the surplus waits for a batch slot before its prefill
    r = sp.ttft_mean_s + 199 * sp.tpot_s
    assert r == pytest.approx(4096 / sp.requests_per_s, rel=1e-8)
    with pytest.raises(SpecError, match="^concurrency: "):
        closed_loop(m, hw, 0, 1000, 200)


def test_capacity_is_the_top_of_the_steady_state_curve():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    assert capacity_requests_per_s(m, hw, 1000, 200) == steady_state(m, hw, 1.0, 1000, 200).capacity_requests_per_s


# ------------------------------------------------------------ statistics, the gate, by hand
def _frame(errors, family="tpot_static", source="s"):
    measured = np.ones(len(errors))
    pred = measured * (1 + np.asarray(errors))
    df = pd.DataFrame({"id": [f"r{i}" for i in range(len(errors))], "source": source, "family": family, "measured": measured, "headline": True,
                       "predicted": pred, "infeasible": False, "hardware_class": "nvidia-hopper", "precision": "16-bit"})
    df["error"] = df["predicted"] / df["measured"] - 1
    df["abs_pct_error"] = 100 * df["error"].abs()
    df["log_error"] = np.log(df["measured"] / df["predicted"])
    return df


def test_family_table_by_hand():
    t = corpus.family_table(_frame([0.10, -0.20, 0.30, -0.05]))
    row = t.iloc[0]
    assert row["n"] == 4
    assert row["median_abs_pct_error"] == pytest.approx((10 + 20) / 2)  # |e| sorted 5, 10, 20, 30
    assert row["bias_pct"] == pytest.approx((-5 + 10) / 2)  # e sorted -20, -5, 10, 30
    # p90 by linear interpolation over 4 values: position 0.9 * 3 = 2.7 between 20 and 30
    assert row["p90_abs_pct_error"] == pytest.approx(20 + 0.7 * 10)


def test_gate_fails_on_worse_median_p90_or_more_infeasible_rows():
    base = {"families": {"tpot_static": {"n": 4, "median_abs_pct_error": 14.0, "p90_abs_pct_error": 26.0, "infeasible": 0}}}
    t = corpus.family_table(_frame([0.10, -0.20, 0.30, -0.05]))  # median 15, p90 27
    assert corpus.gate(t, base) == []  # 15 <= 14 + 1, 27 <= 26 + 3
    base["families"]["tpot_static"]["median_abs_pct_error"] = 13.9
    assert corpus.gate(t, base) == ["tpot_static: median |error| 15.0% > baseline 13.9% + 1"]
    base["families"]["tpot_static"] |= {"median_abs_pct_error": 15.0, "p90_abs_pct_error": 23.9}
    assert corpus.gate(t, base) == ["tpot_static: p90 |error| 27.0% > baseline 23.9% + 3"]
    base["families"]["missing_family"] = {"n": 3, "median_abs_pct_error": 1, "p90_abs_pct_error": 1}
    assert corpus.gate(t, base)[-1] == "missing_family: no rows predicted now (baseline n=3)"


def test_the_gate_catches_a_deliberately_worse_efficiency():
    """Run two sources with the shipped profiles, then with the achievable HBM fraction halved (a wrong efficiency):
    decode, memory-bound, slows about twice over and the gate must fail on TPOT."""
    sources = "gpt-fast-readme,trtllm-perf-overview-v0.9"
    df, table, _ = corpus.run(source=sources)
    baseline = corpus.baseline_of(table, df)
    assert corpus.gate(table, baseline) == []

    def worse(hw_id):
        hw = rl.load_hardware(hw_id)
        eff = hw.efficiency.model_copy(update={"memory_bandwidth_fraction": hw.efficiency.memory_bandwidth_fraction * 0.5})
        return hw.model_copy(update={"efficiency": eff})

    df2, table2, _ = corpus.run(source=sources, load_hardware=worse)
    failures = corpus.gate(table2, baseline)
    assert any(f.startswith("tpot_static: median |error|") for f in failures), failures


def test_the_whole_corpus_meets_the_committed_baseline(whole):
    df, table = whole
    baseline = json.loads(corpus.BASELINE_PATH.read_text())
    assert corpus.gate(table, baseline) == []
    assert baseline["rows"] == len(df) and baseline["predicted"] == int(df["predicted"].notna().sum())


# ------------------------------------------------------------ error bands
def test_bands_are_the_10th_and_90th_percentile_of_log_errors():
    # ten rows with log(measured/predicted) = 0.0, 0.1, ..., 0.9: numpy's linear quantiles at 0.1 and 0.9 are 0.09, 0.81
    pred = np.exp(-np.arange(10) / 10)
    df = _frame(pred - 1)
    entries = corpus.build_bands(df)
    assert entries["tpot_static"]["log_q10"] == pytest.approx(0.09) and entries["tpot_static"]["log_q90"] == pytest.approx(0.81)
    assert "tpot_static|hardware_class=nvidia-hopper" not in entries  # 10 rows < 20 for a class of its own
    assert entries["tpot_static"]["log_widening"] == 0.0  # one source cannot be held out against another


def test_band_percentiles_weigh_every_source_equally():
    # source a: one row at log error 0; source b: nine rows at log error 1. Weights 1 and 1/9 each, so the
    # weighted positions are a at 0.25, b's rows at 0.5 + (i + 0.5)/18, rescaled so the first is 0 and the last 1:
    # the 10th percentile lies between a (0) and b's first row (position (0.5 + 1/36 - 0.25) / (0.5 + 17/36 - 0.25))
    a = _frame([0.0], source="a")
    b = _frame([math.exp(-1) - 1] * 9, source="b")
    b["id"] = [f"b{i}" for i in range(9)]
    lo, hi = corpus._quantiles(pd.concat([a, b])["log_error"].to_numpy(), np.array(["a"] + ["b"] * 9))
    first_b = (0.5 + 1 / 36 - 0.25) / (0.5 + 17 / 36 - 0.25)
    assert lo == pytest.approx(0.1 / first_b) and hi == pytest.approx(1.0)
    # unweighted, the 10th percentile would already be 1: nine of ten rows sit there (numpy: 0.9 at position 0.1)
    assert np.quantile([0.0] + [1.0] * 9, 0.1) == pytest.approx(0.9)


def test_held_out_widening_by_hand():
    # source a: log errors 0.0 .. 0.9; source b: 0.5 .. 1.4 (ten rows each, so equal weights: numpy's linear quantiles).
    # a held out is judged by b's percentiles [0.59, 1.31]: scores max(0.59 - l, l - 1.31) = 0.59, 0.49, ..., 0.09 for
    # l = 0.0 .. 0.5, then -0.01, -0.11, -0.21, -0.31 for 0.6 .. 0.9; b held out, by a's [0.09, 0.81]: -0.31, -0.21,
    # -0.11, -0.01 for 0.5 .. 0.8, then 0.09 .. 0.59 for 0.9 .. 1.4. The twenty scores are -0.31, -0.21, ..., 0.59 twice
    # each; their 80th percentile sits at 0.8 x 19 = 15.2 of the sorted 0-based list, between 0.39 (15th) and 0.49
    # (16th): δ = 0.39 + 0.2 x 0.1 = 0.41.
    a = _frame(np.exp(-np.arange(10) / 10) - 1, source="a")
    b = _frame(np.exp(-np.arange(10) / 10 - 0.5) - 1, source="b")
    b["id"] = [f"b{i}" for i in range(10)]
    both = pd.concat([a, b], ignore_index=True)
    e = corpus.build_bands(both)["tpot_static"]
    assert e["log_widening"] == pytest.approx(0.41)
    pooled = np.concatenate([np.arange(10) / 10, np.arange(10) / 10 + 0.5])
    assert (e["log_q10"], e["log_q90"]) == (pytest.approx(np.quantile(pooled, 0.1)), pytest.approx(np.quantile(pooled, 0.9)))
    assert B.log_limits(e) == (pytest.approx(e["log_q10"] - 0.41), pytest.approx(e["log_q90"] + 0.41))
    # a row lies inside its held-out band widened by δ exactly when its score is <= δ: 16 of the 20 (all but the
    # 0.49 and 0.59 of each source), the 80% the widening promises
    scores = np.round(np.concatenate([np.arange(-0.31, 0.6, 0.1)] * 2), 6)
    assert np.mean(scores <= 0.41) == pytest.approx(0.8)


def test_band_of_a_value_and_the_most_specific_entry(monkeypatch):
    entries = {"tpot_static": {"log_q10": -0.1, "log_q90": 0.2, "log_widening": 0.05, "n": 50, "sources": 5},
               "tpot_static|hardware_class=nvidia-hopper": {"log_q10": 0.0, "log_q90": 0.3, "n": 25, "sources": 3}}
    monkeypatch.setattr(B, "_entries", lambda: (0.8, entries))
    b = B.band(0.020, "tpot_static", "nvidia-hopper", "16-bit")
    assert (b.low, b.high, b.rows) == (pytest.approx(0.020), pytest.approx(0.020 * math.exp(0.3)), 25)
    b = B.band(0.020, "tpot_static", "amd-cdna-3", "8-bit")  # no class entry: the family's
    # q10 - δ = -0.15, q90 + δ = 0.25 (the hopper entry has no δ: a file written before δ was recorded)
    assert (b.low, b.high, b.basis) == (pytest.approx(0.020 * math.exp(-0.15)), pytest.approx(0.020 * math.exp(0.25)), "tpot_static")
    assert B.band(0.020, "ttft_static", "nvidia-hopper", "16-bit") is None
    assert B.precision_class("int4", "bf16") == "weight-only" and B.precision_class("fp8_e4m3", "fp8_e4m3") == "8-bit"


def test_every_prediction_carries_the_committed_bands():
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    p = rl.predict(m, hw, rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=128))
    _, entries = B._entries()
    for name, family in {"ttft_s": "ttft_static", "tpot_s": "tpot_static"}.items():
        key = B.entry_key(entries, family, "nvidia-hopper", "16-bit")
        b = p.bands[name]
        assert b.basis == key and b.low == pytest.approx(getattr(p, name) * math.exp(B.log_limits(entries[key])[0]))
    sp = steady_state(m, hw, 2.0, 1024, 128)
    assert sp.bands["tpot_s"].high == pytest.approx(sp.tpot_s * math.exp(B.log_limits(entries[sp.bands["tpot_s"].basis])[1]))
    assert "output_tokens_per_s" not in sp.bands  # the rate is an input of an open loop, not a prediction
    assert "output_tokens_per_s" in closed_loop(m, hw, 8, 1024, 128).bands


def test_committed_bands_are_rebuilt_from_the_corpus(whole):
    df, _ = whole
    _, committed = B._entries()
    assert committed == corpus.build_bands(corpus.headline(df))


def test_cross_validated_coverage_by_hand():
    # two sources; each held out is judged by the other's band, built from one source and so not widened (δ = 0)
    a = _frame(np.exp(-np.arange(10) / 10) - 1, source="a")  # log errors 0.0 .. 0.9
    b = _frame(np.exp(-np.arange(10) / 10 - 0.5) - 1, source="b")  # log errors 0.5 .. 1.4
    b["id"] = [f"b{i}" for i in range(10)]
    cov = corpus.cross_validated_coverage(pd.concat([a, b], ignore_index=True)).set_index("family")
    # a held out, band of b = [0.59, 1.31]: a's 0.6, 0.7, 0.8, 0.9 inside; b held out, band of a = [0.09, 0.81]: 0.5 .. 0.8 inside
    assert cov.loc["all", "held_out_rows"] == 20 and cov.loc["all", "coverage"] == pytest.approx(8 / 20)


def test_coverage_by_source_weighs_every_held_out_source_equally():
    # a: log errors 0.00, 0.05, .., 0.95 (twenty rows); b: 0.00 .. 0.45 (ten rows). a held out, b's band [0.045, 0.405]
    # (numpy: 0.05 x 0.9, 0.05 x 8.1) holds 0.05 .. 0.40: 8 of 20; b held out, a's band [0.095, 0.855] (0.05 x 1.9,
    # 0.05 x 17.1) holds 0.10 .. 0.45: 8 of 10. By rows 16 / 30; by source (0.4 + 0.8) / 2 = 0.6.
    a = _frame(np.exp(-np.arange(20) / 20) - 1, source="a")
    b = _frame(np.exp(-np.arange(10) / 20) - 1, source="b")
    b["id"] = [f"b{i}" for i in range(10)]
    cov = corpus.cross_validated_coverage(pd.concat([a, b], ignore_index=True)).set_index("family")
    assert cov.loc["tpot_static", "held_out_sources"] == 2 and cov.loc["tpot_static", "held_out_rows"] == 30
    assert cov.loc["tpot_static", "coverage"] == pytest.approx(16 / 30)
    assert cov.loc["tpot_static", "coverage_by_source"] == pytest.approx(0.6) == cov.loc["all", "coverage_by_source"]


# ------------------------------------------------------------ the command
def test_cli_validate_published_one_source(capsys):
    from roofline.cli import main

    assert main(["validate", "--published", "--source", "gpt-fast-readme"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("published corpus: ") and "TPOT / ITL, static batch" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "nope"], "roofline: error: --source: nope not in the corpus; choose from "),
    (["--family", "tpot_static", "--update"], "roofline: error: --update: rewrites the committed baseline"),
])
def test_cli_validate_published_bad_input_is_one_line(capsys, args, message):
    from roofline.cli import main

    assert main(["validate", "--published", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_planner_rows_carry_the_serving_bands(capsys):
    df = rl.plan(model="llama-3.1-8b", requests_per_s=5, prompt_tokens=1024, output_tokens=256, ttft_slo_s=1, tpot_slo_s=0.05,
                 hardware=["h100-sxm"])
    r = df.iloc[0]
    _, entries = B._entries()
    key = B.entry_key(entries, "tpot_serving", "nvidia-hopper", B.precision_class(r["weight_dtype"], r["activation_dtype"]))
    assert r["tpot_band_low_s"] == pytest.approx(r["tpot_s"] * math.exp(B.log_limits(entries[key])[0]))
    assert r["tpot_band_high_s"] == pytest.approx(r["tpot_s"] * math.exp(B.log_limits(entries[key])[1]))
    from roofline import fmt
    from roofline.cli import main

    assert main(["plan", "--model", "llama-3.1-8b", "--requests-per-s", "5", "--prompt-tokens", "1024", "--output-tokens", "256",
                 "--ttft-slo-s", "1", "--tpot-slo-s", "0.05", "--hardware", "h100-sxm"]) == 0
    out = capsys.readouterr().out
    assert f"TPOT {fmt.seconds(r['tpot_band_low_s'])} – {fmt.seconds(r['tpot_band_high_s'])}" in out


def test_cli_predict_prints_the_bands(capsys):
    from roofline import fmt
    from roofline.cli import main

    p = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(batch_size=8, prompt_tokens=1024, output_tokens=128))
    assert main(["predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "8", "--prompt-tokens", "1024",
                 "--output-tokens", "128"]) == 0
    out = capsys.readouterr().out
    b = p.bands["tpot_s"]
    assert f"{fmt.seconds(b.low)} – {fmt.seconds(b.high)} (n={b.rows:,})" in out


def test_finite_offline_runs_are_a_static_batch_and_are_not_shared_between_request_counts():
    """An offline run of N requests that fit one batch is that static batch: N·O tokens over its e2e latency. Rows
    that differ only in N must not share a cached prediction (they once did)."""
    m, hw = rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm")
    r = dict(workload="offline", batch_size=None, prompt_tokens=1024, output_tokens=128, metric="output_throughput", unit="tokens/s")
    cache: dict = {}
    got = {n: corpus.predict_row(_row(num_requests=n, **r), cache=cache) for n in (8, 32)}
    for n, value in got.items():
        e2e = rl.predict(m, hw, rl.Workload(batch_size=n, prompt_tokens=1024, output_tokens=128), rl.Deployment(engine=None)).e2e_latency_s
        assert value == pytest.approx(n * 128 / e2e)
    assert got[8] != got[32]


def test_vllm_v0_rows_of_an_mla_model_run_under_the_v0_mla_profile():
    # vLLM 0.7 ran the V0 engine, which serves an MLA model without chunked prefill (vllm-v0-mla); 0.7 rows of other
    # models, 0.6 (no MLA kernels yet), 0.8 on (V1), an unstated version, and a row whose model is not given keep vllm
    ds, llama = rl.load_model("deepseek-v3"), rl.load_model("llama-3.1-8b")
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    for version, model, engine in (("0.7.3.dev138+g21f6ca217", ds, "vllm-v0-mla"), ("0.7.4.dev181+gf35f8e22", ds, "vllm-v0-mla"),
                                   ("0.6.0", ds, "vllm"), ("0.7.3", llama, "vllm"), ("0.8.3", ds, "vllm"),
                                   ("0.10.0", ds, "vllm"), ("", ds, "vllm"), ("0.7.3", None, "vllm")):
        row = _row(framework="vllm", extra={"framework_version": version}, **r)
        assert corpus.engine_of(row, model) == engine, (version, model)
        assert corpus.deployment_of(row, model).engine == engine, (version, model)
    # SGLang and TensorRT-LLM rows of the same model are unaffected
    assert corpus.engine_of(_row(framework="sglang", extra={"framework_version": "0.4.3.post2"}, **r), ds) == "sglang"


def test_sglang_0_4_0_rows_run_under_its_profile():
    # SGLang 0.4.0 and 0.4.0.post1 (mem_fraction_static by tp) run as sglang-0.4.0; later 0.4 releases, 0.3, an
    # unstated version and other frameworks keep their profile
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    for version, engine in (("0.4.0", "sglang-0.4.0"), ("0.4.0.post1", "sglang-0.4.0"), ("0.4.0.post2", "sglang"),
                            ("0.4.2.post4", "sglang"), ("0.4.3.post2", "sglang"), ("0.3.0", "sglang"), ("", "sglang")):
        row = _row(framework="sglang", extra={"framework_version": version}, **r)
        assert corpus.engine_of(row) == engine, version
        assert corpus.deployment_of(row).engine == engine, version
    assert corpus.engine_of(_row(framework="vllm", extra={"framework_version": "0.4.0"}, **r)) == "vllm"


def test_vllm_v0_mla_wave_prefills_ten_whole_prompts_a_step():
    # dstack's vLLM 0.7 DeepSeek-R1 run on 8x H200 at max-concurrency 64, 3200 in / 800 out: a synchronized wave of
    # 64 whole prompts in prefill steps of at most 32768 tokens: floor(32768 / 3200) = 10 prompts (32,000 tokens) a
    # step, so 6 full steps and a 7th of 4 prompts (12,800 tokens); decode waits until all are prefilled
    dep = rl.Deployment(tp=8, activation_dtype="fp8", engine="vllm-v0-mla")
    w = rl.wave("deepseek-v3", "h200", 64, 3200, 800, dep)
    sc = w.schedule
    assert sc.prefill_tokens.tolist()[:7] == [32000.0] * 6 + [12800.0]
    assert sc.decode_rows.tolist()[:7] == [0.0] * 7 and sc.decode_rows.tolist()[7:] == [64.0] * 799
    assert sc.first_step.tolist() == [j for j in range(1, 7) for _ in range(10)] + [7] * 4
    # the 32nd and 33rd prompts (the median's pair) come out of step 4: TTFT = r + t1 + ... + t4
    r = load_engine("vllm-v0-mla").request_s(3200)
    assert float(np.median(w.ttft_s)) == pytest.approx(r + float(np.sum(w.step_s[:4])))
    # the V1 profile mixes and chunks (8192 on an H200), so its closed loop is the Poisson one: a shorter TTFT
    sp0 = rl.closed_loop("deepseek-v3", "h200", 64, 3200, 800, dep, synchronized=True)
    sp1 = rl.closed_loop("deepseek-v3", "h200", 64, 3200, 800, dep.model_copy(update={"engine": "vllm"}), synchronized=True)
    assert sp0.ttft_mean_s == pytest.approx(float(np.mean(w.ttft_s)))
    assert sp0.ttft_mean_s > 4 * sp1.ttft_mean_s


def test_lmdeploy_rows_of_0_1_to_0_2_1_run_under_the_turbomind_profile():
    # LMDeploy 0.1.0 - 0.2.1 (cache_max_entry_count a share of the whole device) run as lmdeploy-turbomind; 0.2.2 made
    # it a share of the free memory, so 0.2.2 on, 0.0.x, and a row of no stated version keep the bare roofline
    r = dict(workload="static", batch_size=8, prompt_tokens=512, output_tokens=64)
    assert corpus._version(_row(extra={"framework_version": "v0.2.1"}, **r)) == (0, 2, 1)
    assert corpus._version(_row(extra={"framework_version": "0.17.post1.dev"}, **r)) == (0, 17, 0)
    for version, engine in (("v0.1.0", "lmdeploy-turbomind"), ("v0.2.0", "lmdeploy-turbomind"), ("0.2.1", "lmdeploy-turbomind"),
                            ("V0.1.0", "lmdeploy-turbomind"), ("v0.2.2", None), ("v0.3.0", None), ("0.0.14", None), ("", None),
                            ("main", None)):
        row = _row(framework="lmdeploy", extra={"framework_version": version}, **r)
        assert corpus.engine_of(row) == engine, version
        assert corpus.deployment_of(row).engine == engine, version
    # a leading "v" on another framework's version parses too: TensorRT-LLM v0.9.0 is the C++ runtime's
    assert corpus.engine_of(_row(framework="trtllm", extra={"framework_version": "v0.9.0"}, **r)) == "trtllm-cpp-0.7"
    # the published pages: every lmdeploy-a100-fp16 row (v0.1.0 and v0.2.0) runs under the profile; the quantization
    # pages state no version and keep the bare roofline
    rows = corpus.load_corpus()
    a100 = [x for x in rows if x.source == "lmdeploy-a100-fp16"]
    assert a100 and {x.extra["framework_version"] for x in a100} == {"v0.1.0", "v0.2.0"}
    assert {corpus.engine_of(x) for x in a100} == {"lmdeploy-turbomind"}
    quant = [x for x in rows if x.source == "lmdeploy-quant-docs" and x.framework == "lmdeploy"]
    assert quant and {corpus.engine_of(x) for x in quant} == {None}
    # its prediction is the profile's: Llama-2-7B, batch 1, 128 + 128 tokens on the A100, TPOT in seconds
    row = _row(framework="lmdeploy", extra={"framework_version": "v0.1.0"}, gpu="a100-sxm-80gb", model="llama-2-7b",
               metric="itl", statistic="median", unit="s", workload="static", batch_size=1, prompt_tokens=128, output_tokens=128)
    p = rl.predict("llama-2-7b", "a100-sxm-80gb", rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=128),
                   rl.Deployment(engine="lmdeploy-turbomind"))
    assert corpus.predict_row(row) == pytest.approx(p.tpot_s)


def test_nim_rows_kv_format_is_implied_by_memory():
    # NIM Llama-3.3-70B 1.8.0 "fp8 TP2" on 2x H100 80 GB, 5000 in / 500 out, closed loop at 150 clients: 920.90 output
    # tokens/s at a mean ITL of 92.86 ms. Each decoding sequence emits one token per ITL, so at least
    # 920.90 x 0.09286 = 85.5 sequences decode at once, each holding its 5,000-token prompt in the KV cache.
    rows = [x for x in corpus.load_corpus() if x.source == "nim-llama-3.3-70b"]
    assert rows and {x.kv_dtype for x in rows} == {"fp8"}
    at = {(x.concurrency, x.prompt_tokens, x.metric): x.value for x in rows}
    running = at[(150, 5000, "output_throughput")] * at[(150, 5000, "itl")] * 1e-3
    assert running == pytest.approx(920.90 * 0.09286)
    m, hw = rl.load_model("llama-3.3-70b"), rl.load_hardware("h100-sxm")
    # 16-bit KV: 2 (K, V) x 80 layers x 8 KV heads x 128 x 2 B = 327,680 B a token; 8-bit half that
    assert (m.num_layers, m.num_kv_heads, m.head_dim) == (80, 8, 128)
    kv16_per_token = 2 * 80 * 8 * 128 * 2
    # an upper bound on the KV room: both GPUs' memory less the FP8 weights at one byte a parameter (no runtime,
    # no activations, embeddings counted at 1 B): 2 x 85,520,809,984 - 70,553,706,496 = 100,487,913,472 B
    room = 2 * hw.memory_bytes - m.param_count * 1
    assert room == 2 * 85_520_809_984 - 70_553_706_496
    assert running * 5000 * kv16_per_token > 1.39 * room  # 140.1 GB of 16-bit KV: the run could not have happened
    assert running * 5000 * kv16_per_token / 2 < 0.70 * room  # 70.0 GB of 8-bit KV fits


def test_source_sensitivity_by_hand():
    # source a: |e| 5, 10, 15 %; source b: |e| 80, 90 %. All five: median 15. Without b: 10 (median of 5, 10, 15);
    # without a: 85. So b is decisive. Weighted by source (1/3 each for a, 1/2 each for b), the midpoints
    # 1/6, 1/2, 5/6, 5/4, 7/4 rescale to 0, 4/19, 8/19, 13/19, 1; position 9.5/19 lies 1.5/5 of the way from 15 to 80.
    a = _frame([0.05, -0.10, 0.15], source="a")
    b = _frame([0.80, -0.90], source="b")
    b["id"] = ["b0", "b1"]
    t = corpus.source_sensitivity(pd.concat([a, b], ignore_index=True)).set_index("family")
    row = t.loc["tpot_static"]
    assert row["n"] == 5 and row["sources"] == 2
    assert row["median_abs_pct_error"] == pytest.approx(15.0)
    assert row["decisive_source"] == "b" and row["n_without"] == 3
    assert row["median_without"] == pytest.approx(10.0)
    assert row["p90_without"] == pytest.approx(10 + 0.8 * 5)  # position 0.9 x 2 = 1.8 between 10 and 15
    assert row["bias_without"] == pytest.approx(5.0)  # signed errors of a: -10, 5, 15
    assert row["median_by_source"] == pytest.approx(15 + 1.5 / 5 * 65)


def test_source_sensitivity_skips_single_source_families():
    assert corpus.source_sensitivity(_frame([0.1, 0.2])).empty
