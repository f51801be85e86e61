"""Mixed steps (serving module docstring, "Mixed steps"): a prompt's first token leaves at the end of the step that
also decodes the running batch, the step loop is the server, an arrival waits out the length-biased residual of the
step in progress and shares its own step with the prompts that arrived during the same step. By hand from the
formulas, and the invariants: TTFT at least one full step at the operating batch, a pass alone as B -> 0, monotone
in load; engines whose prefill steps run alone keep the M/G/1 formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

import roofline as rl
from roofline.serving import Traffic, curves_for, mg1_wait_mean_s, mixed_step_ttft_terms, overload_run, overload_schedule, steady_state

M8, M70, H100 = "llama-3.1-8b", "llama-3.1-70b", "h100-sxm"
TRTLLM_CPP = rl.Deployment(engine="trtllm-cpp", tp=1)  # whole prompts in the decode step, several a step
TP2 = rl.Deployment(engine=None, tp=2)


def test_step_loop_terms_by_hand():
    # t0 = 20 ms, a fixed piece a = 30 ms a request at λ = 10/s: ρ = 0.3, m = 0.02 / 0.7 = 28.571 ms
    # E[T²] = (λ m a² + t0² + 2 t0 ρ m) / (1 - ρ²) = (0.000257143 + 0.0004 + 0.000342857) / 0.91 = 0.001 / 0.91
    lam, t0, a = 10.0, 0.02, 0.03
    m, et2 = t0 / 0.7, 0.001 / 0.91
    r, others, wb, p = mixed_step_ttft_terms(lam, t0, a, a * a, a, 0.0, 0.0)
    assert r == pytest.approx(et2 / m / 2) == pytest.approx(0.0192308, rel=1e-5)  # E[T²]/(2m), the length-biased residual
    assert others == pytest.approx(lam * a * et2 / m) == pytest.approx(0.0115385, rel=1e-5)  # ρ E[T²]/m
    assert wb == 0.0
    assert p == pytest.approx(1 - math.exp(-lam * et2 / m))  # some other prompt shares the step
    # the residual is longer than half the mean step: steps that carry prompts are longer and more likely to be hit
    assert r > m / 2
    # no prompt work (a = 0): every step is t0, R = t0/2, nothing shares: the residual of the M/G/1 formula's r = t̄/2
    r0, o0, _, _ = mixed_step_ttft_terms(lam, t0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert r0 == pytest.approx(t0 / 2) and o0 == 0.0
    # an overlap scheduler adds one mean step; whole-budget steps ahead: an M/G/1 wait of those steps
    r1, _, wb1, p1 = mixed_step_ttft_terms(lam, t0, a, a * a, a, 0.01, 0.0001, lookahead_steps=1.0)
    assert r1 == pytest.approx(r + m)
    assert wb1 == pytest.approx(float(mg1_wait_mean_s(lam, 0.01, 0.0001))) == pytest.approx(10 * 0.0001 / (2 * 0.9))
    assert p1 == pytest.approx(1 - 0.9 * math.exp(-lam * et2 / m))


def test_whole_prompt_mixed_engine_by_hand():
    cv = curves_for(rl.load_model(M8), rl.load_hardware(H100), TRTLLM_CPP, Traffic.of(None, 512, 128), None)
    assert cv.mixed and cv.chunk is None
    t0, x, delta, a_grid = cv.t0[0], cv.x_pre[0, 0], cv.delta[0, :, 0], cv.a_mixed[0]
    # a prompt in a step of B decodes costs δ(B, S) > 0, and the step t0 + δ is at most the two passes apart
    assert np.all(delta > 0) and np.all(t0 + delta <= t0 + x)
    # B -> 0: the step carrying the prompt is the prefill pass itself (to the tile rounding of one more GEMM row)
    assert t0[0] + delta[0] == pytest.approx(x, rel=0.1)
    # a(B) = E[X] - (X - δ) q(B) E[O-1] / B, q(B) = 1 - exp(-B / E[O-1]): the weights read once, once per step
    k, b, eo1 = 20, cv.grid[20], 127.0
    assert a_grid[k] == pytest.approx(x - (x - delta[k]) * (1 - math.exp(-b / eo1)) * eo1 / b, rel=1e-12)
    assert np.all(a_grid >= delta - 1e-15) and np.all(a_grid <= x + 1e-15)  # between one prompt a step and many
    # the state at 10 requests/s, by hand from its step times
    lam = 10.0
    st = cv.state(np.array([lam]))
    t0s, a, own = float(st.t0_s[0]), float(st.utilization[0]) / lam, float(st.service_s[0, 0])
    m = t0s / (1 - lam * a)
    assert st.tpot_s[0] == pytest.approx(m, rel=1e-12)
    et2 = (lam * m * a * a + t0s**2 + 2 * t0s * lam * a * m) / (1 - (lam * a) ** 2)  # one fixed prompt: pieces of a
    assert st.residual_s[0] == pytest.approx(et2 / (2 * m), rel=1e-12)
    assert st.wait_mean_s[0] == pytest.approx(lam * x * et2 / m, rel=1e-12)  # the others add a whole X each
    request = cv.request_s[0]  # the engine's API time and tokenizing (1.55 ms + 512 x 10 us)
    assert request == pytest.approx(1.51e-3 + 512 * 1e-5)  # trtllm-cpp request_overhead_s (1.51 ms) + 512 prompt tokens x 10 us
    assert st.ttft_mean_s[0] == pytest.approx(et2 / (2 * m) + lam * x * et2 / m + own + request, rel=1e-12)
    # TTFT is at least one full step at the operating batch, plus the request's own time
    assert own > t0s and st.ttft_mean_s[0] > t0s + request


def test_mixed_ttft_rises_with_load_and_percentiles_order():
    ttft = [steady_state(M8, H100, lam, 512, 128, TRTLLM_CPP) for lam in (1.0, 5.0, 10.0, 20.0, 30.0)]
    means = [p.ttft_mean_s for p in ttft]
    assert all(b > a for a, b in zip(means, means[1:]))
    for p in ttft:
        assert p.ttft_p50_s <= p.ttft_p90_s <= p.ttft_p99_s
    p99 = [p.ttft_p99_s for p in ttft]
    assert all(b > a for a, b in zip(p99, p99[1:]))


def test_chunked_prompt_over_the_budget_by_hand():
    # 2,048 tokens at C = 512 on the bare roofline (chunked prefill is a mixed step): n = 4 steps, the first three
    # of the whole budget (tC), the last t0 + 512 (tC - t0)/512 = tC; the budget is held for 3 tC
    p = steady_state(M70, H100, 1.0, 2048, 256, TP2, chunk_tokens=512)
    t0, tc, m = p.decode_step_s, p.chunked_step_s, p.tpot_s
    a = 2048 * (tc - t0) / 512
    rho = 1.0 * a
    assert m == pytest.approx(t0 / (1 - rho))
    et2 = (1.0 * m * 4 * (tc - t0) ** 2 + t0**2 + 2 * t0 * rho * m) / (1 - rho**2)  # four pieces of tC - t0
    wait = rho * et2 / m + 1.0 * (3 * tc) ** 2 / (2 * (1 - 3 * tc))  # sharing + M/G/1 of the whole-budget steps
    assert p.ttft_wait_mean_s == pytest.approx(wait, rel=1e-9)
    assert p.ttft_mean_s == pytest.approx(et2 / (2 * m) + wait + 4 * tc, rel=1e-9)
    # a short prompt's first token waits for a whole step carrying the decode batch: longer than its S/C share of tC
    short = steady_state(M70, H100, 1.0, 128, 256, TP2, chunk_tokens=512)
    share = 128 / 512 * short.chunked_step_s
    step = short.decode_step_s + 128 / 512 * (short.chunked_step_s - short.decode_step_s)
    assert short.ttft_mean_s > step > share


def test_prefill_alone_keeps_the_mg1_formula():
    # SGLang's default scheduler runs a prefill step alone (mixed_prefill_decode false): no mixed step loop
    dep = rl.Deployment(engine="sglang", tp=1)
    cv = curves_for(rl.load_model(M8), rl.load_hardware(H100), dep, Traffic.of(None, 512, 128), None)
    assert not cv.mixed and cv.delta is None
    st = cv.state(np.array([10.0]))
    x = cv.x_pre[0, 0]
    assert st.service_s[0, 0] == pytest.approx(x)
    assert st.residual_s[0] == pytest.approx(st.tpot_s[0] * (0.5 + cv.lookahead_steps))
    assert st.wait_probability[0] == pytest.approx(st.utilization[0])


def test_overload_schedule_whole_prompts_in_the_decode_step_by_hand():
    # t0 = 0.5 s, a prompt of S = 400 tokens adds δ = 0.6 s to a step and each further one X = 1 s (the weights read
    # once a step), budget C = 1,000 tokens (two prompts a step), λ = 2/s, n = 3 arriving at 0, 0.5, 1 s, O = 2:
    # step 1 (0 - 1.1 s): prompt 0 alone, t0 + δ = 1.1 s; step 2 (1.1 - 3.2 s): prompts 1 and 2 (800 tokens) beside
    # prompt 0's decode, t0 + δ + X = 2.1 s; step 3 (3.2 - 3.7 s): decodes 1 and 2
    sc = overload_schedule(3, 2.0, 2, 4, lambda b: 0.5, prefill_s=1.0, prompt_tokens=400, chunk_tokens=1000,
                           prompt_step_s=lambda b: 0.6)
    assert sc.first_token_s - sc.arrival_s == pytest.approx([1.1, 2.7, 2.2])
    assert sc.last_token_s == pytest.approx([3.2, 3.7, 3.7])
    assert dict(zip(sc.gap_s, sc.gap_tokens)) == pytest.approx({0.5: 2.0, 2.1: 1.0})
    # four at 0, 0.01, 0.02, 0.03 s: prompt 0 alone (0 - 1.1 s), prompts 1 and 2 (1.1 - 3.2 s); a third would make
    # 1,200 tokens, over the budget, so prompt 3 waits for step 3, beside the decodes of 1 and 2: 3.2 + 0.5 + 0.6 = 4.3 s
    sc4 = overload_schedule(4, 100.0, 2, 4, lambda b: 0.5, prefill_s=1.0, prompt_tokens=400, chunk_tokens=1000,
                            prompt_step_s=lambda b: 0.6)
    assert sc4.first_token_s == pytest.approx([1.1, 3.2, 3.2, 4.3])
    with pytest.raises(rl.SpecError, match="prompt_step_s"):
        overload_schedule(3, 2.0, 2, 4, lambda b: 0.5, prefill_s=1.0, prompt_step_s=lambda b: 0.6)


def test_overload_run_of_a_mixed_engine_steps_whole_prompts_together():
    # TensorRT-LLM's C++ executor above capacity: prompts enter the decode steps whole, up to its 8,192-token budget
    run = overload_run(M8, H100, 200, 200.0, 512, 16, TRTLLM_CPP)
    first = run.schedule.first_token_s
    # several prompts leave in one step: their first tokens come out together
    assert len(np.unique(np.round(first, 12))) < len(first)
    # a step never carries more prompts than the budget holds: 8,192 / 512 = 16
    _, counts = np.unique(np.round(first, 12), return_counts=True)
    assert counts.max() <= 16


def test_a_disaggregated_prefill_pool_has_no_mixed_steps():
    # vLLM chunks prefill into decode steps, but a prefill pool has no decode batch to share them with: its prompts
    # queue for the M/G/1 prefill server (disaggregation._prefill_pool)
    m, h, tr = rl.load_model(M8), rl.load_hardware(H100), Traffic.of(None, 512, 128)
    dep = rl.Deployment(engine="vllm", tp=1)
    assert curves_for(m, h, dep, tr, None).mixed
    cp = curves_for(m, h, dep, tr, None, prefill_only=True)
    assert not cp.mixed
    st = cp.state(np.array([5.0]))
    assert st.service_s[0, 0] == pytest.approx(512 / cp.chunk[0] * st.tc_s[0])  # S/C of a chunked step, as before


def test_the_mixed_step_is_the_wave_models_step():
    # the same step timed by the synchronized-wave model (serving.wave_step_times: GEMMs over d + T tokens, decode
    # attention at S + O/2, T tokens of prompt attention, h(d + q)) and by the steady state's t0(B) + δ(B, S): B = 16
    # decodes beside one 512-token prompt; they differ only by the LM head's one extra row in the wave's step
    from roofline.serving import WaveSchedule, wave_step_times

    model, hw = rl.load_model(M8), rl.load_hardware(H100)
    cv = curves_for(model, hw, TRTLLM_CPP, Traffic.of(None, 512, 128), None)
    k = int(np.searchsorted(cv.grid, 16.0))
    assert cv.grid[k] == 16.0
    one = np.ones(1)
    sched = WaveSchedule(prefill_tokens=512 * one, prefill_prompts=one, decode_rows=16 * one, start_step=one,
                         first_step=one, last_step=one)
    wave_step = wave_step_times(model, cv.rd, cv.hws[0], sched, 512, 512 + 128 / 2)[0]  # the engine's kernel tables
    assert cv.t0[0, k] + cv.delta[0, k, 0] == pytest.approx(wave_step, rel=2e-3)
