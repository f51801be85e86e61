"""roofline.views: chart data and "show the math", checked against hand arithmetic and against predict."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import roofline as rl
from roofline import fmt, views

H100_BF16 = 989.4e12  # dense FLOP/s, hardware_profiles/h100-sxm.yaml
H100_BW = 3.35e12  # bytes/s


@pytest.fixture(scope="module")
def llama70():
    return rl.load_model("llama-3.1-70b")


@pytest.fixture(scope="module")
def h100():
    return rl.load_hardware("h100-sxm", analytical=True)  # the datasheet model the hand arithmetic derives


@pytest.fixture(scope="module")
def pred(llama70, h100):
    """README's demo scenario on two H100s."""
    return rl.predict(llama70, h100, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256), rl.Deployment(tp=2))


def test_decode_mlp_up_point_by_hand(pred, h100):
    _, points = views.roofline_chart_data(pred, h100)
    row = points[(points.phase == "decode") & (points.op == "mlp_up")].iloc[0]
    # gate + up: 2 x 28,672 rows, split over tp=2 -> 28,672 rows of k = 8,192 per GPU; 8 tokens; 80 layers
    flops = 2 * 28_672 * 8_192 * 8 * 80
    weights = 28_672 * 8_192 * 2 * 80  # bf16
    act_read = 8 * 8_192 * 2 * 80  # the normed hidden state
    act_write = 8 * 28_672 * 2 * 80  # gate and up outputs
    assert row.flops == flops == 300_647_710_720
    assert row.hbm_bytes == weights + act_read + act_write
    assert row.intensity_flops_per_byte == pytest.approx(flops / (weights + act_read + act_write))  # ~7.99 FLOP/byte
    ops = pred.operators
    time_s = ops[(ops.phase == "decode") & (ops.op == "mlp_up")].time_s.iloc[0]
    assert row.achieved_flops_per_s == pytest.approx(flops / time_s)
    # far left of the 295 FLOP/byte ridge: the ceiling is the bandwidth slope
    assert row.ceiling_flops_per_s == pytest.approx(flops / (weights + act_read + act_write) * H100_BW)
    assert row.bound == "memory"


def test_every_point_is_an_operator_with_flops_and_bytes(pred, h100):
    _, points = views.roofline_chart_data(pred, h100)
    ops = pred.operators
    hbm = ops.weight_bytes + ops.act_read_bytes + ops.act_write_bytes + ops.kv_read_bytes + ops.kv_write_bytes
    assert len(points) == int(((ops.flops > 0) & (hbm > 0)).sum())
    assert set(points.phase) == {"prefill", "decode"}
    for r in points.itertuples():
        src = ops[(ops.phase == r.phase) & (ops.op == r.op) & (ops.layers_group == r.layers_group)].iloc[0]
        bytes_ = src.weight_bytes + src.act_read_bytes + src.act_write_bytes + src.kv_read_bytes + src.kv_write_bytes
        assert r.intensity_flops_per_byte == pytest.approx(src.flops / bytes_)
        assert r.achieved_flops_per_s == pytest.approx(src.flops / src.time_s)
        assert r.ceiling_flops_per_s == pytest.approx(min(H100_BF16, src.flops / bytes_ * H100_BW))
        assert r.bound == src.bound
    left = views.unplotted_operators(pred)
    assert len(left) + len(points) == len(ops)
    # tp=2: one all-reduce row per phase, interconnect traffic only; the embedding gather has no FLOPs
    assert set(zip(left.phase, left.op)) == {(ph, op) for ph in ("prefill", "decode") for op in ("allreduce", "embedding")}
    assert (left[left.op == "allreduce"].reason == "interconnect traffic only").all()


def test_ceilings_are_peaks_times_fractions_and_the_slope_is_intensity_times_bandwidth(pred, h100):
    ceilings, points = views.roofline_chart_data(pred, h100)
    compute = ceilings[ceilings.kind == "compute"]
    assert set(compute.dtype) == set(h100.peak_flops_per_s)
    for dtype, peak in h100.peak_flops_per_s.items():
        rows = compute[compute.dtype == dtype]
        assert (rows[rows.level == "peak"].flops_per_s == peak).all()
        assert rows[rows.level == "realistic"].flops_per_s.to_numpy() == pytest.approx(peak * h100.efficiency.flops_fraction[dtype])
    bf16 = compute[(compute.dtype == "bf16") & (compute.level == "realistic")]
    assert bf16.flops_per_s.iloc[0] == pytest.approx(989.4e12 * 0.80)  # 791.5 TFLOP/s
    assert bf16.is_compute_dtype.all() and not compute[compute.dtype == "fp8"].is_compute_dtype.any()
    hbm = ceilings[ceilings.kind == "bandwidth"]
    peak, real = hbm[hbm.level == "peak"], hbm[hbm.level == "realistic"]
    assert peak.flops_per_s.to_numpy() == pytest.approx(peak.intensity_flops_per_byte.to_numpy() * 3.35e12)
    assert real.flops_per_s.to_numpy() == pytest.approx(real.intensity_flops_per_byte.to_numpy() * 3.35e12 * 0.89)
    # the x range holds every operator and the highest ridge point (fp8: 1,978.9e12 / 3.35e12 = 591 FLOP/byte)
    xs = ceilings.intensity_flops_per_byte
    assert xs.min() <= points.intensity_flops_per_byte.min() and xs.max() >= max(points.intensity_flops_per_byte.max(), 591)


@pytest.mark.parametrize("model, hw, dep", [
    ("llama-3.1-70b", "h100-sxm", rl.Deployment(tp=2)),
    ("llama-3.1-8b", "h100-sxm", rl.Deployment(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8")),
    ("llama-3.1-8b", "a100-sxm-80gb", rl.Deployment(weight_dtype="int4", attention_impl="naive")),
    ("mixtral-8x7b", "h200", rl.Deployment(tp=2)),
    ("deepseek-v3", "h200", rl.Deployment(tp=8)),
    ("gemma-2-9b", "l40s", rl.Deployment()),
    ("gpt-oss-20b", "mi300x", rl.Deployment()),
    ("llama-3.2-1b", "rtx-4090", rl.Deployment(weight_dtype="fp32", activation_dtype="fp32", kv_dtype="fp32")),
])
@pytest.mark.parametrize("batch, prompt, output", [(1, 128, 2), (32, 6000, 512)])
def test_no_operator_beats_its_ceiling(model, hw, dep, batch, prompt, output):
    spec, prof = rl.load_model(model), rl.load_hardware(hw)
    p = rl.predict(spec, prof, rl.Workload(batch_size=batch, prompt_tokens=prompt, output_tokens=output), dep)
    _, points = views.roofline_chart_data(p, prof)
    assert len(points) > 0
    assert (points.achieved_flops_per_s > 0).all()
    assert (points.achieved_flops_per_s <= points.ceiling_flops_per_s * (1 + 1e-9)).all()
    assert ((points.fraction_of_ceiling > 0) & (points.fraction_of_ceiling <= 1 + 1e-9)).all()


def _one(df, **where):
    mask = np.logical_and.reduce([df[k] == v for k, v in where.items()])
    assert mask.sum() == 1
    return df[mask].iloc[0]


def test_batch_sweep_and_frontier_come_from_sweep_and_match_predict(llama70, h100):
    wl, dep = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256), rl.Deployment(tp=2)
    front = views.batch_frontier(llama70, h100, wl, dep)
    assert list(front.batch_size) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    direct = rl.sweep(llama70, h100, batch_size=list(front.batch_size), prompt_tokens=2048, output_tokens=256, tp=2)
    assert front.tokens_per_s_per_user.to_numpy() == pytest.approx(1 / direct.tpot_s.to_numpy())
    assert front.tokens_per_s_per_gpu.to_numpy() == pytest.approx(direct.output_tokens_per_s_per_gpu.to_numpy())
    assert list(front.fits) == list(direct.fits)
    for b in (1, 8, 64):
        p = rl.predict(llama70, h100, wl.model_copy(update={"batch_size": b}), dep)
        row = _one(front, batch_size=b)
        assert row.tokens_per_s_per_user == pytest.approx(1 / p.tpot_s)
        assert row.tokens_per_s_per_gpu == pytest.approx(p.output_tokens_per_s / 2)
        assert row.fits == p.fits
    batch = views.batch_sweep(llama70, h100, wl, dep, batch_sizes=[3, 8])
    p3 = rl.predict(llama70, h100, wl.model_copy(update={"batch_size": 3}), dep)
    row = _one(batch, batch_size=3)
    assert (row.tpot_s, row.output_tokens_per_s) == (pytest.approx(p3.tpot_s), pytest.approx(p3.output_tokens_per_s))
    assert row.hardware == h100.name and row.tp == 2
    # the dashboard's added point at the scenario's batch: the same row, from the Prediction's figures
    point = views.batch_point(p3)
    assert list(point.columns) == list(batch.columns)
    for col in ("tpot_s", "tpot_floor_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user"):
        assert point[col].iloc[0] == pytest.approx(row[col], rel=1e-9)
    assert (point.hardware.iloc[0], point.tp.iloc[0], point.batch_size.iloc[0], point.fits.iloc[0]) == (row.hardware, 2, 3, row.fits)


def test_frontier_per_hardware_trades_latency_for_throughput(llama70):
    wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
    for hw in ("h100-sxm", "mi300x"):
        f = views.batch_frontier(llama70, rl.load_hardware(hw), wl, rl.Deployment(tp=2), batch_sizes=[1, 4, 16])
        # more sequences per step: more tokens per GPU, fewer per user
        assert f.tokens_per_s_per_gpu.is_monotonic_increasing and f.tokens_per_s_per_user.is_monotonic_decreasing


def test_prompt_and_memory_sweeps_match_predict(llama70, h100):
    wl, dep = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256), rl.Deployment(tp=2)
    ttft = views.prompt_sweep(llama70, h100, wl, dep)
    assert ttft.prompt_tokens.max() <= llama70.max_context - 256 and 2048 in set(ttft.prompt_tokens)
    assert ttft.ttft_s.is_monotonic_increasing
    mem = views.memory_sweep(llama70, h100, wl, dep)
    assert (mem.context_tokens == mem.prompt_tokens + 256).all()
    parts = mem[list(views.MEMORY_PARTS)].sum(axis=1)
    assert parts.to_numpy() == pytest.approx(mem.memory_required_bytes_per_gpu.to_numpy())
    # the default engine (vLLM) uses 90% of the GPU's memory (gpu_memory_utilization 0.9)
    assert mem.memory_available_bytes_per_gpu.to_numpy() == pytest.approx(0.9 * h100.memory_bytes)
    assert (mem.runtime_reserve_bytes == 2 * 2**30).all()
    assert (mem.fits == (mem.memory_required_bytes_per_gpu <= 0.9 * h100.memory_bytes)).all()
    for prompt in (512, 8192):
        p = rl.predict(llama70, h100, wl.model_copy(update={"prompt_tokens": prompt}), dep)
        assert _one(ttft, prompt_tokens=prompt).ttft_s == pytest.approx(p.ttft_s)
        row = _one(mem, prompt_tokens=prompt)
        assert row.memory_required_bytes_per_gpu == pytest.approx(p.memory_required_bytes_per_gpu)
        # KV: 8 sequences x context x 163,840 bytes per token per GPU (80 layers x 2 x 4 KV heads x 128 x 2 bytes)
        assert row.kv_cache_bytes == 8 * (prompt + 256) * 80 * 2 * 4 * 128 * 2
    both = views.scenario_sweeps(llama70, h100, wl, dep)
    pd.testing.assert_frame_equal(both[0], views.batch_sweep(llama70, h100, wl, dep))
    pd.testing.assert_frame_equal(both[1], ttft)


def test_math_lines_substitute_the_predictions_numbers(pred, llama70, h100):
    lines = views.math_lines(pred, llama70, h100)
    text = "\n".join(lines)
    line = {ln.split(" = ")[0].split(" >= ")[0]: ln for ln in lines}
    # MBU = bytes per step / TPOT / bandwidth: the arithmetic of predict.derived
    assert pred.decode_bytes_per_step / pred.tpot_s / 3.35e12 == pytest.approx(pred.mbu_decode)
    assert line["MBU decode"].endswith(
        f"{fmt.gigabytes(pred.decode_bytes_per_step)} / {fmt.seconds(pred.tpot_s)} / 3.35 TB/s = {fmt.fraction(pred.mbu_decode)}")
    assert pred.prefill_flops / pred.ttft_s / H100_BF16 == pytest.approx(pred.mfu_prefill)
    assert line["MFU prefill"].endswith(f"= {fmt.fraction(pred.mfu_prefill)}")
    # the bandwidth bound never beats the floor the roofline sums up
    assert pred.decode_bytes_per_step / H100_BW <= pred.tpot_floor_s
    assert f"{fmt.gigabytes(pred.decode_bytes_per_step)} / 3.35 TB/s = {fmt.seconds(pred.decode_bytes_per_step / H100_BW)}" in line["TPOT floor"]
    assert line["TPOT floor"].endswith(f"= {fmt.seconds(pred.tpot_floor_s)}")
    # KV per token per GPU at tp=2: 80 layers x 2 (K, V) x 4 KV heads x 128 x 2 bytes = 163,840
    assert pred.kv_bytes_per_token == 163_840
    assert "8 x (2048 + 256) x 163,840 B = 3.0 GB" in line["KV cache per GPU"]
    assert line["Ridge point (bf16)"].endswith("989 TFLOP/s / 3.35 TB/s = 295 FLOP/byte")
    assert line["TPOT"].startswith(f"TPOT = (end-to-end - TTFT) / (output - 1) = ({fmt.seconds(pred.e2e_latency_s)} - "
                                   f"{fmt.seconds(pred.ttft_s)}) / 255 = {fmt.seconds(pred.tpot_s)}")
    assert f"8 x 256 / {fmt.seconds(pred.e2e_latency_s)} = {fmt.count(pred.output_tokens_per_s)} tokens/s" in line["Throughput"]
    assert line["Cost per 1M output tokens"].endswith(f"x 10^6 = {fmt.usd(pred.usd_per_million_output_tokens)}")
    assert (f"= {fmt.gigabytes(pred.memory_required_bytes_per_gpu)} of {fmt.gigabytes(0.9 * h100.memory_bytes)} available "
            f"(the vLLM engine's 90.0% of {fmt.gigabytes(h100.memory_bytes)}): fits") in text
    assert line["Max batch"].endswith(f"= {pred.max_batch_size_fits}")
    assert "workspace of one 8,192-token step" in line["Max batch"] and "1,024 running sequences" in line["Max batch"]
    assert "quantization scales" not in line["Weights per GPU"]  # bf16 weights have none


def test_math_lines_when_it_does_not_fit_and_with_sliding_windows():
    big, h100 = rl.load_model("llama-3.1-405b"), rl.load_hardware("h100-sxm")
    p = rl.predict(big, h100, rl.Workload(prompt_tokens=100, output_tokens=1))
    lines = views.math_lines(p, big, h100)
    assert lines[-1] == f"Cost per 1M output tokens: n/a, the scenario {p.fit_message}"
    assert any(ln.startswith("TPOT = the decode step after the first token") for ln in lines)
    gemma, l40s = rl.load_model("gemma-2-9b"), rl.load_hardware("l40s")
    p = rl.predict(gemma, l40s, rl.Workload(batch_size=2, prompt_tokens=6000, output_tokens=100),
                   rl.Deployment(weight_dtype="int4", weight_group_size=128))
    kv = next(ln for ln in views.math_lines(p, gemma, l40s) if ln.startswith("KV cache"))
    # half the layers slide over a 4,096-token window: KV is not context x bytes per token
    assert p.kv_cache_bytes < 2 * 6100 * p.kv_bytes_per_token
    assert "sliding-window" in kv and kv.endswith(f"= {fmt.gigabytes(p.kv_cache_bytes)} (sliding-window layers keep only their window)")
    assert "int4 (with quantization scales)" in views.math_lines(p, gemma, l40s)[0]


def test_powers_of_two_grid():
    assert views.powers_of_two(1, 100, [24]) == [1, 2, 4, 8, 16, 24, 32, 64]
    assert views.powers_of_two(64, 300, [1000]) == [64, 128, 256]


def test_views_import_no_ui_libraries():
    code = "import sys, roofline.views; bad = {'streamlit', 'altair'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ the Accuracy and Plan pages' frames
def test_error_table_by_hand():
    points = pd.DataFrame({"predicted": [11.0, 9.0, 15.0, 10.0, 12.0], "measured": [10.0, 10.0, 10.0, 10.0, 10.0],
                           "family": ["a", "a", "b", "b", "b"], "gpu": ["h100-sxm"] * 5, "model": ["m"] * 5})
    t = views.error_table(points)
    # a: errors +10%, -10%      -> median |e| 10, p90 |e| 10, bias (median signed) 0
    # b: errors +50%, 0%, +20%  -> |e| sorted 0, 20, 50: median 20; p90 = 20 + 0.8 x (50 - 20) = 44 (linear); bias +20
    assert t["family"].tolist() == ["a", "b"] and t["n"].tolist() == [2, 3]
    assert t["median_abs_pct_error"].tolist() == pytest.approx([10.0, 20.0])
    assert t["p90_abs_pct_error"].tolist() == pytest.approx([10.0, 44.0])
    assert t["bias_pct"].tolist() == pytest.approx([0.0, 20.0], abs=1e-12)
    assert list(t.columns) == list(views.ACCURACY_TABLE_COLUMNS)
    with pytest.raises(ValueError, match="lacks gpu"):
        views.error_table(points.drop(columns="gpu"))


def test_slo_tightening_never_gets_cheaper():
    kw = dict(model="llama-3.1-8b", requests_per_s=5, prompt_tokens=1024, output_tokens=128, ttft_slo_s=1.0, tpot_slo_s=0.03,
              hardware=["h100-sxm", "l40s"])
    t = views.slo_tightening(kw, steps=(1.0, 0.5))
    assert t[["slo", "factor"]].values.tolist() == [["TTFT", 1.0], ["TTFT", 0.5], ["TPOT", 1.0], ["TPOT", 0.5]]
    assert t["tpot_slo_s"].tolist() == pytest.approx([0.03, 0.03, 0.03, 0.015])
    assert t["ttft_slo_s"].tolist() == pytest.approx([1.0, 0.5, 1.0, 1.0])
    given = rl.plan(**kw)
    assert t["usd_per_hour"].iloc[0] == pytest.approx(given["usd_per_hour"].iloc[0])
    for slo in ("TTFT", "TPOT"):  # a tighter SLO only removes options
        cost = t.loc[t["slo"] == slo, "usd_per_hour"].fillna(np.inf).tolist()
        assert cost == sorted(cost)
    assert t.loc[t["factor"] == 1, "usd_per_hour_vs_given"].tolist() == [1.0, 1.0]


def test_plan_frontiers_pass_through_the_planners_operating_point():
    hws = [rl.load_hardware("h100-sxm")]
    df = rl.plan("llama-3.1-8b", 5, 1024, 128, 1.0, 0.03, hardware=hws)
    fr = views.plan_frontiers(rl.load_model("llama-3.1-8b"), df, hws, 1024, 128)
    r = df.iloc[0]
    assert set(fr["hardware_id"]) == {r["hardware_id"]} and fr["option"].iloc[0] == f"{r['precision']}, tp{r['tp']}"
    assert (fr["gpus"] == r["gpus_per_replica"]).all()
    # the plan runs each replica at λ/replicas, a point between two frontier batches: its per-GPU throughput lies inside
    per_gpu = r["output_tokens_per_s_per_gpu"]
    assert fr["output_tokens_per_s_per_gpu"].min() <= per_gpu <= fr["output_tokens_per_s_per_gpu"].max()
