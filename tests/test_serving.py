"""Continuous batching in steady state, by hand: queueing formulas, step times against `predict`, Little's law,
chunked prefill, the frontier, disaggregated KV transfer; length distributions; bad input.

The serving model's arithmetic is derived here on the bare roofline (engine=None); what an engine profile adds
(CPU time per step, tokenization, its limits) is tested by hand in tests/test_engines.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import roofline as rl
from roofline.disaggregation import kv_transfer_s
from roofline.errors import SpecError
from roofline.serving import LengthDist, as_length_dist, mg1_wait_mean_s, steady_state, ttft_percentile_s, wait_tail_probability

M70, H100 = "llama-3.1-70b", "h100-sxm"
TP2 = rl.Deployment(engine=None, tp=2)


# ------------------------------------------------------------ queueing, by hand
def test_md1_wait_by_hand():
    # fixed prefill X = 0.25 s (mu = 4/s) at lambda = 2/s: rho = 0.5; M/D/1 W = rho / (2 mu (1 - rho)) = 0.5 / 4 = 0.125 s
    assert mg1_wait_mean_s(2.0, 0.25, 0.25**2) == pytest.approx(0.5 / (2 * 4 * 0.5)) == pytest.approx(0.125)
    # exponential service with the same mean (E[X^2] = 2 E[X]^2) waits twice as long: M/M/1 W = rho/(mu - lambda) = 0.25
    assert mg1_wait_mean_s(2.0, 0.25, 2 * 0.25**2) == pytest.approx(0.5 / (4 - 2))
    assert mg1_wait_mean_s(4.0, 0.25, 0.0625) == math.inf  # rho = 1: unstable


def test_wait_tail_and_ttft_percentiles_by_hand():
    rho, w = np.array(0.5), np.array(0.125)
    # P(W > y) = rho exp(-y rho / E[W]) = 0.5 exp(-4 y); P(W > 0) = rho
    assert wait_tail_probability(np.array(0.1), rho, w) == pytest.approx(0.5 * math.exp(-0.4))
    assert wait_tail_probability(np.array(-1e-9), rho, w) == 1.0
    x, p = np.array([0.25]), np.array([1.0])
    # TTFT = W + 0.25: p90 = 0.25 + (E[W]/rho) ln(rho / 0.1) = 0.25 + 0.25 ln 5; p50: rho = 0.5 of arrivals wait, so W_p50 = 0
    q90 = ttft_percentile_s(0.9, np.array(0.0), x, 0 * x, p, rho, w)
    assert q90 == pytest.approx(0.25 + 0.25 * math.log(5), rel=1e-6)
    assert ttft_percentile_s(0.5, np.array(0.0), x, 0 * x, p, rho, w) == pytest.approx(0.25, rel=1e-6)


# ------------------------------------------------------------ step times and Little's law against predict
def test_steady_state_by_hand_from_predict():
    # Fixed 2,048 + 256 tokens: the mean decode context is 2048 + 256/2 = 2176 tokens.
    model, hw = rl.load_model(M70), rl.load_hardware(H100)
    t0 = rl.predict(model, hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256), TP2).tpot_at(2176)
    x = rl.predict(model, hw, rl.Workload(batch_size=1, prompt_tokens=2048, output_tokens=256), TP2).ttft_s
    # the rate that keeps B = 8 busy: lambda = B / (E[O-1] t0 + B X) = 8 / (255 t0 + 8 X)
    lam = 8 / (255 * t0 + 8 * x)
    s = steady_state(M70, H100, lam, 2048, 256, TP2)
    assert s.decode_step_s == pytest.approx(t0, rel=1e-9)
    tpot = t0 / (1 - lam * x)  # prefill passes take rho = lambda X of the time
    assert s.tpot_s == pytest.approx(tpot, rel=1e-9)
    assert s.batch_size == pytest.approx(lam * 255 * tpot) == pytest.approx(8)  # Little's law
    assert s.prefill_utilization == pytest.approx(lam * x)
    wait = lam * x * x / (2 * (1 - lam * x))  # M/D/1
    assert s.ttft_mean_s == pytest.approx(tpot / 2 + wait + x, rel=1e-9)
    assert s.itl_max_s == pytest.approx(t0 + x)  # a 2,048-token prefill stalls the batch
    assert s.output_tokens_per_s == pytest.approx(lam * 256)
    assert s.usd_per_million_output_tokens == pytest.approx(2 * 3.95 / 3600 / (lam * 256) * 1e6)
    assert s.ttft_p50_s <= s.ttft_p90_s <= s.ttft_p99_s


def test_chunked_prefill_shares_the_weight_reads():
    plain = steady_state(M70, H100, 1.0, 2048, 256, TP2)
    chunked = steady_state(M70, H100, 1.0, 2048, 256, TP2, chunk_tokens=512)
    model, hw = rl.load_model(M70), rl.load_hardware(H100)
    x512 = rl.predict(model, hw, rl.Workload(prompt_tokens=512, output_tokens=2), TP2).ttft_s
    # a step carrying 512 prefill tokens costs more than a decode step but less than the two passes apart
    assert chunked.decode_step_s < chunked.chunked_step_s < chunked.decode_step_s + x512
    # the worst inter-token gap is one chunked step, not a whole 2,048-token prefill
    assert chunked.itl_max_s == pytest.approx(chunked.chunked_step_s) and chunked.itl_max_s < plain.itl_max_s
    # f = lambda E[S] tbar / C of the steps carry a chunk: tbar = t0 + f (tC - t0)
    f = 1.0 * 2048 * chunked.tpot_s / 512
    assert chunked.tpot_s == pytest.approx(chunked.decode_step_s + f * (chunked.chunked_step_s - chunked.decode_step_s))
    # the prompt is served 512 tokens per chunked step: 4 steps, each carrying the decode batch; the step loop's
    # length-biased residual and the prompts sharing a step are tests/test_serving_mixed.py's
    assert chunked.ttft_mean_s > chunked.ttft_wait_mean_s + 4 * chunked.chunked_step_s + chunked.tpot_s / 2


def test_more_load_never_lowers_latency_and_overload_is_unstable():
    pts = [steady_state(M70, H100, lam, 2048, 256, TP2) for lam in (0.2, 0.8, 1.4, 2.0)]
    for a, b in zip(pts, pts[1:]):
        assert b.tpot_s >= a.tpot_s and b.ttft_p90_s >= a.ttft_p90_s and b.batch_size >= a.batch_size
    cap = pts[0].capacity_requests_per_s
    over = steady_state(M70, H100, cap * 1.5, 2048, 256, TP2)
    assert not over.stable and "unstable" in over.reason and f"{cap:.3g}" in over.reason
    assert math.isinf(over.tpot_s) and math.isnan(over.usd_per_million_output_tokens)


def test_memory_limits_the_batch():
    # KV of Llama-3.1-70B at tp 2 (bf16): 327,680 / 2 bytes per token per GPU; 2,304 tokens per sequence
    s = steady_state(M70, H100, 0.5, 2048, 256, TP2)
    model, hw = rl.load_model(M70), rl.load_hardware(H100)
    p = rl.predict(model, hw, rl.Workload(batch_size=1, prompt_tokens=2048, output_tokens=256), TP2)
    # one prompt's prefill workspace (predict at batch 1), not a whole static batch's: more room than predict's limit
    free = hw.memory_bytes - p.weight_bytes - p.runtime_reserve_bytes - p.activation_workspace_bytes
    assert s.max_batch_size_fits == free // (327680 / 2 * 2304)
    assert s.max_batch_size_fits > p.max_batch_size_fits


def test_frontier_monotone():
    # the analytical model: measured kernel tables are not monotone in M (each M gets the kernel a heuristic
    # picks), so a calibrated step can be a hair faster at a larger batch
    f = rl.frontier(M70, [rl.load_hardware(h, analytical=True) for h in ("h100-sxm", "h200")], 2048, 256, TP2)
    for _, g in f.groupby("hardware"):
        g = g.sort_values("batch_size")
        # a batch one tile step past another (decode GEMM rows 185-192 -> 193-256 of 64-row tiles) can serve a lower
        # rate than the smaller batch (the sawtooth of roofline.py's docstring): such a point is dominated, and only
        # the batches whose rate is not below a smaller batch's are the curve; along it, more batch never raises tokens/s/user
        g = g[g["requests_per_s"] >= g["requests_per_s"].cummax() - 1e-12]
        assert (np.diff(g["output_tokens_per_s_per_user"]) <= 1e-12).all()
        assert g["pareto"].any()
    h200 = f[f["hardware"].str.contains("H200")]
    assert h200["batch_size"].max() > f[f["hardware"].str.contains("H100")]["batch_size"].max()  # 141 GB holds more


def test_kv_transfer_by_hand():
    model, hw = rl.load_model(M70), rl.load_hardware(H100)
    # 2,048 tokens x 327,680 bytes = 671,088,640 bytes; tp 2 + 2 on one 8-GPU NVLink board: 2 lanes of 450 GB/s x fraction
    frac = hw.efficiency.interconnect_bandwidth_fraction
    t = kv_transfer_s(model, hw, TP2, TP2, 2048)
    assert t == pytest.approx(671_088_640 / (2 * 450e9 * frac) + hw.interconnect.latency_s)
    # tp 4 + 8 exceeds the board: 4 lanes of the 64 GB/s host link
    t2 = kv_transfer_s(model, hw, rl.Deployment(engine=None, tp=4), rl.Deployment(engine=None, tp=8), 2048)
    assert t2 == pytest.approx(671_088_640 / (4 * 64e9 * frac) + hw.interconnect.latency_s)
    assert kv_transfer_s(model, hw, TP2, TP2, 2048, link_bytes_per_s=50e9) == pytest.approx(671_088_640 / 50e9 + hw.interconnect.latency_s)
    # attention data-parallel over tp 2 (attention_dp): each prompt's KV, every head of it, sits on one rank, so one
    # lane, not two: 671,088,640 / (1 x 450 GB/s x fraction)
    dp2 = rl.Deployment(engine=None, tp=2, attention_dp=True)
    assert kv_transfer_s(model, hw, dp2, TP2, 2048) == pytest.approx(671_088_640 / (1 * 450e9 * frac) + hw.interconnect.latency_s)


def test_disaggregated_pools():
    d = rl.disaggregate(M70, H100, 10, 2048, 256, ttft_slo_s=1.0, tpot_slo_s=0.05, prefill=TP2, decode=TP2)
    assert d.feasible and d.gpus == 2 * (d.prefill_replicas + d.decode_replicas)
    assert d.tpot_s <= 0.05 and d.ttft_at_slo_percentile_s <= 1.0
    assert d.usd_per_hour == pytest.approx(d.gpus * 3.95)
    assert d.colocated_gpus > 0
    tight = rl.disaggregate(M70, H100, 10, 2048, 256, ttft_slo_s=0.05, tpot_slo_s=0.05, prefill=TP2, decode=TP2)
    assert not tight.feasible and "TTFT" in tight.reason


# ------------------------------------------------------------ length distributions
def test_length_moments_exact():
    ln = LengthDist.lognormal(2048, 0.5)
    assert ln.mean_tokens == pytest.approx(2048 * math.exp(0.125))
    assert ln.mean_square_tokens == pytest.approx(2048**2 * math.exp(0.5))
    assert ln.percentile(0.5) == pytest.approx(2048)
    u = as_length_dist("uniform:128:384", "output_tokens")
    assert u.mean_tokens == 256 and u.mean_square_tokens == pytest.approx(np.mean(np.arange(128, 385) ** 2.0))
    e = as_length_dist([(100, 0.25), (300, 0.75)], "prompt_tokens")
    assert (e.mean_tokens, e.mean_square_tokens, e.percentile(0.2), e.percentile(0.5)) == (250, 0.25 * 1e4 + 0.75 * 9e4, 100, 300)
    assert as_length_dist("empirical:100=0.25,300=0.75", "prompt_tokens") == e
    assert as_length_dist(512, "prompt_tokens") == LengthDist.fixed(512)
    # a clipped normal against a large sample: values below 1 become 1
    n = LengthDist.normal(10, 20)
    sample = np.clip(np.random.default_rng(0).normal(10, 20, 2_000_000), 1, None)
    assert n.mean_tokens == pytest.approx(sample.mean(), rel=3e-3)
    assert n.mean_square_tokens == pytest.approx((sample**2).mean(), rel=3e-3)


def test_distributions_change_the_answer():
    fixed = steady_state(M70, H100, 0.5, 2048, 256, TP2)
    spread = steady_state(M70, H100, 0.5, "lognormal:2048:0.5", 256, TP2)
    assert spread.ttft_p99_s > fixed.ttft_p99_s  # longer prompts in the tail
    assert spread.max_batch_size_fits < fixed.max_batch_size_fits  # memory sized for the 99th-percentile context


@pytest.mark.parametrize("value, field, fragment", [
    ("empirical:", "prompt_tokens", "empirical"),
    ("empirical:100=0.5,200=0.6", "prompt_tokens", "sum to"),
    ("gamma:3:4", "prompt_tokens", "unknown distribution"),
    ("lognormal:2048", "output_tokens", "takes 2"),
    ("uniform:300:100", "prompt_tokens", "below"),
    ("-5", "prompt_tokens", "greater than or equal to 1"),
    ([], "prompt_tokens", "at least one"),
    (True, "prompt_tokens", "boolean"),
])
def test_bad_lengths_are_one_line_errors(value, field, fragment):
    with pytest.raises(SpecError) as e:
        as_length_dist(value, field)
    assert e.value.field == field and fragment in str(e.value) and "\n" not in str(e.value)


def test_bad_serving_input():
    with pytest.raises(SpecError, match="^requests_per_s: "):
        steady_state(M70, H100, -1, 2048, 256, TP2)
    with pytest.raises(SpecError, match="^output_tokens: .*no decode steps"):
        steady_state(M70, H100, 1, 2048, 1, TP2)
    with pytest.raises(SpecError, match="^chunk_tokens: "):
        steady_state(M70, H100, 1, 2048, 256, TP2, chunk_tokens=0)
    past = steady_state(M70, H100, 0.01, 200_000, 256, rl.Deployment(engine=None, tp=8))  # past max_context: predicted, with a note
    assert any("runs past max_context=131,072" in n for n in past.notes)


def test_disaggregate_searches_each_pools_replica_shape():
    """Left unset, each pool takes the replica shape (tp x pp) needing the fewest GPUs: a 70B in bf16 (141 GB of
    weights) fits no single 80 GB H100, so tp=1 pools cannot work, but searched ones do."""
    fixed = rl.disaggregate(M70, H100, 10, 2048, 256, ttft_slo_s=2.0, tpot_slo_s=0.05, prefill=rl.Deployment(engine=None), decode=rl.Deployment(engine=None))
    assert not fixed.feasible and fixed.reason == "decode pool does not fit"
    d = rl.disaggregate(M70, H100, 10, 2048, 256, ttft_slo_s=2.0, tpot_slo_s=0.05)
    assert d.feasible and d.prefill_gpus_per_replica >= 2 and d.decode_gpus_per_replica >= 2
    assert d.gpus == d.prefill_replicas * d.prefill_gpus_per_replica + d.decode_replicas * d.decode_gpus_per_replica
    assert d.usd_per_hour == pytest.approx(d.gpus * rl.load_hardware(H100).price_usd_per_gpu_hour)
    prefill = rl.Deployment(engine=None, tp=d.prefill_tp, pp=d.prefill_pp)
    for tp in (2, 4, 8):  # no other decode shape serves the traffic on fewer GPUs
        other = rl.disaggregate(M70, H100, 10, 2048, 256, ttft_slo_s=2.0, tpot_slo_s=0.05, prefill=prefill, decode=rl.Deployment(engine=None, tp=tp))
        if other.feasible:
            assert other.decode_replicas * tp >= d.decode_replicas * d.decode_gpus_per_replica
    big = rl.disaggregate("llama-3.1-405b", "l40s", 10, 2048, 256, ttft_slo_s=2.0, tpot_slo_s=0.05)
    assert not big.feasible and big.reason == "decode pool does not fit with any replica shape (tp x pp) on NVIDIA L40S 48GB"
