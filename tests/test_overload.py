"""A finite run offered above capacity: the fluid D/D/c queue (`serving.finite_overload`: admission times by hand, the
run's figures from the saturated steady state, the limit λ → μ⁺ against the stable finite run) and the run stepped
through the scheduler (`serving.overload_schedule` by hand, `overload_run` against the fluid for n ≫ c)."""

import math

import numpy as np
import pytest

import roofline as rl
from roofline.errors import SpecError
from roofline.serving import (
    capacity_requests_per_s,
    finite_overload,
    finite_run_duration_s,
    future_kv_fits,
    overload_of,
    overload_run,
    overload_schedule,
    overload_start_s,
    steady_state,
)

M8, L4 = "llama-3.1-8b", "l4"
VLLM = rl.Deployment(engine="vllm")


def test_admission_times_by_hand_two_slots():
    # n = 10, λ = 2/s, μ = 1/s, c = 2: arrivals 0, 0.5, .., 4.5 s; the first two are admitted on arrival, each holds
    # its slot c/μ = 2 s, so request i >= 2 takes request i-2's slot 2 s after that one: 2, 2.5, 4, 4.5, 6, 6.5, 8, 8.5
    s = overload_start_s(10, 2.0, 1.0, 2)
    assert s == pytest.approx([0, 0.5, 2, 2.5, 4, 4.5, 6, 6.5, 8, 8.5])
    wait = s - np.arange(10) / 2.0
    assert wait == pytest.approx([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # floor(i/2)·2·(1/1 - 1/2)
    assert wait.mean() == pytest.approx(2.0)  # (0+0+1+1+2+2+3+3+4+4)/10


def test_run_by_hand_one_slot():
    # c = 1, service (TTFT_sat + (E[O]-1)·TPOT) = 0.2 + (11 - 1)·0.08 = 1.0 s = 1/μ: request i admitted at i s,
    # waits i - i/2 = i/2 s: 0, 0.5, .., 4.5, mean 2.25 s; the last admitted at 9 s finishes at 10 s: 10 requests in
    # 10 s, 1 request/s = μ
    arrival, start, wait, e2e, makespan = overload_of(10, 2.0, 1.0, 1, 0.2, 0.08, 11)
    assert start == pytest.approx(np.arange(10.0))
    assert wait == pytest.approx(np.arange(10) / 2)
    assert wait.mean() == pytest.approx(2.25)
    assert e2e == pytest.approx(np.arange(10) / 2 + 1.0)
    assert makespan == pytest.approx(10.0)
    assert 10 / makespan == pytest.approx(1.0)
    # the same figures by name (a typed record, seconds)
    times = overload_of(10, 2.0, 1.0, 1, 0.2, 0.08, 11)
    assert times.makespan_s == makespan and times.wait_s.tolist() == wait.tolist()


def test_no_wait_at_or_below_capacity():
    # λ <= μ: every request is admitted on arrival (the max with 0 in ⌊i/c⌋·c·max(1/μ - 1/λ, 0))
    assert overload_start_s(5, 1.0, 2.0, 1) == pytest.approx(np.arange(5.0))
    assert overload_start_s(5, 2.0, 2.0, 1) == pytest.approx(np.arange(5) / 2)


def test_bad_inputs_name_the_field():
    with pytest.raises(SpecError, match="requests"):
        overload_start_s(0, 2.0, 1.0, 1)
    with pytest.raises(SpecError, match="requests"):
        finite_overload(M8, L4, 2.5, 5.0, 280, 310, VLLM)
    cap = capacity_requests_per_s(M8, L4, 280, 310, VLLM)
    with pytest.raises(SpecError, match="requests_per_s.*steady_state"):
        finite_overload(M8, L4, 300, 0.5 * cap, 280, 310, VLLM)
    # a run too short to fill the batch of the capacity point is refused, not answered with figures it never reaches
    with pytest.raises(SpecError, match="never fills"):
        finite_overload(M8, L4, 10, 5.0, 280, 310, VLLM)


def test_overloaded_run_from_the_saturated_state():
    ov = finite_overload(M8, L4, 300, 5.0, 280, 310, VLLM)
    sat = ov.saturated
    mu, c = ov.capacity_requests_per_s, ov.slots
    assert sat.stable and mu == pytest.approx(capacity_requests_per_s(M8, L4, 280, 310, VLLM), rel=1e-6)
    assert c == math.floor(sat.batch_size + 1e-9) and 1 <= c < 300
    # every figure is the fluid formula over the saturated steady state
    i = np.arange(300)
    assert ov.wait_s == pytest.approx(np.floor(i / c) * c * (1 / mu - 1 / 5.0))
    assert ov.ttft_s == pytest.approx(ov.wait_s + sat.ttft_mean_s)
    assert ov.tpot_s == sat.tpot_s
    assert ov.makespan_s == pytest.approx(ov.start_s[-1] + sat.ttft_mean_s + 309 * sat.tpot_s)
    assert ov.output_tokens_per_s == pytest.approx(300 * 310 / ov.makespan_s)
    # the run delivers less than the capacity (the fill and the drain), and the offered rate is not served
    assert ov.achieved_requests_per_s < mu < 5.0
    # the mixture's median TTFT lies between the waits' and the waits' plus the saturated tail
    assert np.median(ov.wait_s) <= ov.ttft_p50_s <= np.max(ov.wait_s) + sat.ttft_p99_s
    assert ov.ttft_p50_s <= ov.ttft_p90_s <= ov.ttft_p99_s
    # the endless stream at that rate stays unstable
    assert not steady_state(M8, L4, 5.0, 280, 310, VLLM).stable


def test_wait_grows_with_the_offered_rate():
    waits = [finite_overload(M8, L4, 300, lam, 280, 310, VLLM).wait_mean_s for lam in (2.5, 5.0, 25.0)]
    assert waits[0] < waits[1] < waits[2]


def test_meets_the_stable_finite_run_at_capacity():
    # λ → μ⁺: the slot waits vanish (W_i ∝ 1/μ - 1/λ) and the figures are the steady state at μ, where the stable
    # path (`steady_state` and `finite_run_duration_s`) ends at λ → μ⁻
    cap = capacity_requests_per_s(M8, L4, 280, 310, VLLM)
    eps = 1e-5
    above = finite_overload(M8, L4, 300, cap * (1 + eps), 280, 310, VLLM)
    below = steady_state(M8, L4, cap * (1 - eps), 280, 310, VLLM)
    # W_i = ⌊i/c⌋·c·(1/μ - 1/λ) <= i·ε/(μ(1+ε)) < 300·ε/μ
    assert above.wait_mean_s < 300 * eps / cap
    assert above.ttft_mean_s == pytest.approx(below.ttft_mean_s, rel=0.05)
    assert above.tpot_s == pytest.approx(below.tpot_s, rel=0.05)
    e2e = below.ttft_mean_s + 309 * below.tpot_s
    stable_rate = 300 / float(finite_run_duration_s(300, cap * (1 - eps), e2e))
    assert above.achieved_requests_per_s == pytest.approx(stable_rate, rel=0.02)


# ------------------------------------------------------------ the run stepped through the scheduler
def _gaps(sc):
    return np.repeat(sc.gap_s, sc.gap_tokens.astype(int))


def test_whole_prompt_schedule_by_hand():
    # X = 1 s a prefill pass, t0 = 0.5 s a decode step, λ = 2/s, n = 3, O = 2 (one decode step each): the passes
    # preempt decode, so prefills run 0-1, 1-2 (arrived 0.5, waits 0.5), 2-3 (arrived 1, waits 1), then one decode
    # step of the three 3-3.5 s; first tokens 1, 2, 3 s, TTFT 1, 1.5, 2 s; gaps 3.5-1, 3.5-2, 3.5-3 s
    sc = overload_schedule(3, 2.0, 2, 10, lambda b: 0.5, prefill_s=1.0)
    assert sc.first_token_s == pytest.approx([1, 2, 3])
    assert sc.first_token_s - sc.arrival_s == pytest.approx([1, 1.5, 2])
    assert sc.last_token_s == pytest.approx([3.5, 3.5, 3.5])
    assert sorted(_gaps(sc)) == pytest.approx([0.5, 1.5, 2.5])


def test_whole_prompt_schedule_holds_back_past_the_slots():
    # one slot: the second prompt (arrived 0.5 s) waits until the first has its last token (1 + 2 x 0.5 = 2 s)
    sc = overload_schedule(2, 2.0, 3, 1, lambda b: 0.5, prefill_s=1.0)
    assert sc.first_token_s == pytest.approx([1, 3])  # 0-1 prefill, 1-2 two decode steps, 2-3 the second prefill
    assert sc.last_token_s == pytest.approx([2, 4])


def test_chunked_schedule_by_hand():
    # C = 100 prompt tokens a step, S = 150, t0 = 0.1 s, tC = 0.3 s (a step with T prompt tokens: t0 + T/C (tC - t0)),
    # λ = 10/s, n = 2, O = 3 (two decode steps each):
    # 0-0.3 s: 100 tokens of prompt 1 (prompt 2 arrives at 0.1, during the step);
    # 0.3-0.6: prompt 1's last 50 and prompt 2's first 50 (0.1 + 1.0 x 0.2 = 0.3 s): prompt 1's first token at 0.6;
    # 0.6-0.9: prompt 2's last 100 and prompt 1's decode: gap 0.3; prompt 2's first token at 0.9;
    # 0.9-1.0: both decode (t0 = 0.1): prompt 1 has its 3 tokens at 1.0; 1.0-1.1: prompt 2's last at 1.1
    sc = overload_schedule(2, 10.0, 3, 10, lambda b: 0.1, prompt_tokens=150, chunk_tokens=100, chunk_step_s=lambda b: 0.3)
    assert sc.first_token_s == pytest.approx([0.6, 0.9])
    assert sc.first_token_s - sc.arrival_s == pytest.approx([0.6, 0.8])
    assert sc.last_token_s == pytest.approx([1.0, 1.1])
    assert sorted(_gaps(sc)) == pytest.approx([0.1, 0.1, 0.1, 0.3])


def test_stepped_run_figures_and_refusals():
    run = overload_run(M8, L4, 300, 5.0, 280, 310, VLLM)
    sc = run.schedule
    assert run.ttft_s == pytest.approx(run.request_s + sc.first_token_s - sc.arrival_s)
    assert run.makespan_s == pytest.approx(sc.last_token_s.max() + run.request_s)
    assert run.output_tokens_per_s == pytest.approx(300 * 310 / run.makespan_s)
    # 309 decode gaps per request: the token-weighted mean gap is the mean of (last - first) / 309
    assert run.itl_mean_s == pytest.approx(np.mean((sc.last_token_s - sc.first_token_s) / 309))
    assert sc.gap_s.min() <= run.itl_p50_s <= sc.gap_s.max()
    with pytest.raises(SpecError, match="pp=1, ep=1"):
        overload_run("llama-3.1-70b", "h100-sxm", 300, 50.0, 280, 310, rl.Deployment(tp=4, pp=2))
    with pytest.raises(SpecError, match="requests"):
        overload_run(M8, L4, 0, 5.0, 280, 310, VLLM)


def test_stepped_run_meets_the_fluid_queue_for_long_runs():
    # n >> c: the batch is full most of the run and frees slots at μ, which is the fluid D/D/c queue
    # (`finite_overload`); both deliver close to μ requests/s and wait alike
    run = overload_run(M8, L4, 2000, 5.0, 280, 310, VLLM)
    fluid = finite_overload(M8, L4, 2000, 5.0, 280, 310, VLLM)
    mu = fluid.capacity_requests_per_s
    assert 2000 / run.makespan_s == pytest.approx(fluid.achieved_requests_per_s, rel=0.02)
    assert 0.95 * mu < 2000 / run.makespan_s < mu * 1.01
    assert run.ttft_s.mean() == pytest.approx(fluid.ttft_mean_s, rel=0.02)
    assert run.itl_mean_s == pytest.approx(fluid.tpot_s, rel=0.03)


def test_stepped_run_of_a_prefill_bound_burst():
    # prompts arriving faster than one prefill pass each (1/λ < X, whole-prompt passes that preempt decode: the bare
    # roofline; an engine that mixes prompts into the decode step is tests/test_serving_mixed.py's): they queue for the
    # prefill, prompt i starting at i·X, so its wait grows by X - 1/λ per request: mean (n-1)/2 · (X - 1/λ) over the run
    dep = rl.Deployment(tp=4, engine=None)
    run = overload_run("llama-3.1-70b", "h100-sxm", 500, 32.0, 467, 16, dep)
    sc = run.schedule
    x = float(np.diff(sc.first_token_s).min())  # back-to-back passes: the pass time X
    assert x > 1 / 32
    assert np.diff(sc.first_token_s) == pytest.approx(np.full(499, x))  # no decode step between them
    assert (sc.first_token_s - sc.arrival_s).mean() == pytest.approx(x + 499 / 2 * (x - 1 / 32))


def test_future_kv_admission_by_hand():
    # SGLang 0.4.0 add_one_req_ignore_eos: F = 100 free, one running request with t = 10 left, o = 50 held; new S = 20:
    # O = 30: sorted (10, 50), (30, 20); k = 0: 100 - 20 - 30 x 2 = 20 > 0; k = 1: 100 - 20 + 50 - 30 x 1 = 100 > 0
    assert future_kv_fits(100, [10], [50], 20, 30)
    # O = 45: k = 0: 100 - 20 - 45 x 2 = -10 <= 0: refused
    assert not future_kv_fits(100, [10], [50], 20, 45)
    # the boundary is strict: O = 40 gives 100 - 20 - 40 x 2 = 0
    assert not future_kv_fits(100, [10], [50], 20, 40) and future_kv_fits(100, [10], [50], 20, 39)
    # a request already done (t = 0) is not listed; the new one alone needs F - S - O > 0: 100 - 20 - 79 = 1
    assert future_kv_fits(100, [0], [50], 20, 79) and not future_kv_fits(100, [0], [50], 20, 80)
    # order does not matter: (t, o) = (5, 10), (50, 30) given either way, new (20, 10), F = 100: sorted 5, 20, 50:
    # k = 0: 90 - 20 x 3 = 30; k = 1: 90 + 10 - 50 x 2 = 0: refused; with F = 101: 1 > 0 and k = 2: 91 + 20 - 50 = 61
    assert not future_kv_fits(100, [50, 5], [30, 10], 10, 20)
    assert future_kv_fits(101, [5, 50], [10, 30], 10, 20)


def test_a_future_kv_refusal_stands_until_a_request_finishes():
    # S = 10, O = 5 (four decode steps), X = 1 s, t0 = 0.5 s, λ = 2/s, P = 41. Request 1 joins at 1 s beside request 0
    # (held (4, 11), 10 allocated: F - S = 41 - 10 - 10 = 21; k = 0: 21 - 5 x 2 = 11 > 0; k = 1: 21 + 11 - 5 = 27 > 0).
    # At 2 s request 2 asks beside both (each (4, 11)): F - S = 41 - 20 - 10 = 11; k = 0: 11 - 4 x 3 = -1: refused.
    # After two decode steps (each (2, 13), 12 allocated) the check would pass (41 - 24 - 10 = 7; 7 - 2 x 3 = 1;
    # 7 + 13 - 5 x 2 = 10; 7 + 26 - 5 = 28), but SGLang does not ask again until the running batch shrinks
    # (batch_is_full): request 2 prefills only after both finish at 4 s (2-4 s: four decode steps), 4-5 s, then 5-7 s
    assert not future_kv_fits(41 - 20, [4, 4], [11, 11], 10, 5) and future_kv_fits(41 - 24, [2, 2], [13, 13], 10, 5)
    sc = overload_schedule(3, 2.0, 5, 10, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=41, prompt_tokens=10)
    assert sc.first_token_s == pytest.approx([1, 2, 5]) and sc.last_token_s == pytest.approx([4, 4, 7])


def test_whole_prompt_schedule_admits_by_future_kv_by_hand():
    # X = 1 s, t0 = 0.5 s, λ = 2/s (arrivals 0, 0.5, 1 s), S = 10, O = 3 (two decode steps), pool P tokens.
    # At 1 s request 0 has its first token (t = 2 left, o = 11 held, 10 allocated); request 1 asks with (3, 10):
    # F - S = P - 20; k = 0: P - 20 - 3 x 2 > 0 needs P > 26.
    # P = 26: refused until request 0 ends (decode 1-1.5, 1.5-2); request 1 prefills 2-3, is refused for request 2
    # the same way (decode 3-4), request 2 prefills 4-5 and decodes 5-6: as one slot would run it
    sc = overload_schedule(3, 2.0, 3, 10, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=26, prompt_tokens=10)
    assert sc.first_token_s == pytest.approx([1, 3, 5]) and sc.last_token_s == pytest.approx([2, 4, 6])
    one_slot = overload_schedule(3, 2.0, 3, 1, lambda b: 0.5, prefill_s=1.0)
    assert one_slot.first_token_s == pytest.approx(sc.first_token_s)
    # P = 27: request 1 joins at 1 s (prefill 1-2); at 2 s request 2 meets F - S = 27 - 20 - 10 = -3 < 0: refused
    # until both finish (decode 2-2.5, 2.5-3), then prefills 3-4 and decodes 4-5
    sc = overload_schedule(3, 2.0, 3, 10, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=27, prompt_tokens=10)
    assert sc.first_token_s == pytest.approx([1, 2, 4]) and sc.last_token_s == pytest.approx([3, 3, 5])
    # the engine's running cap still applies: with one slot the pool of 27 is not reached
    sc = overload_schedule(3, 2.0, 3, 1, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=27, prompt_tokens=10)
    assert sc.first_token_s == pytest.approx([1, 3, 5])
    # a request larger than the pool alone is a one-line error, as is a pool without the prompt length
    with pytest.raises(SpecError, match="kv_pool_tokens: a request of 10 \\+ 3 tokens does not fit a pool of 12"):
        overload_schedule(3, 2.0, 3, 10, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=12, prompt_tokens=10)
    with pytest.raises(SpecError, match="kv_pool_tokens: admission by future KV needs"):
        overload_schedule(3, 2.0, 3, 10, lambda b: 0.5, prefill_s=1.0, kv_pool_tokens=27)


def test_sglang_0_4_0_holds_more_sequences_than_whole_context_slots():
    # Llama-3.3-70B tp 4 on an H200 (the datacrunch SGLang rows), 3,200 requests of 509 + 513 tokens at 16/s: the
    # slot rule holds memory / KV(1,022 tokens) sequences; SGLang 0.4.0 admits while the pool holds the running set's
    # future peak, so more sequences run at once and the queue (TTFT) is shorter (the `sglang` profile's slots also get
    # the larger memory share, 0.88 against 0.85 at tp 4, so the comparison favours the slot rule)
    dep = rl.Deployment(tp=4, engine="sglang-0.4.0")
    run = overload_run("llama-3.3-70b", "h200", 3200, 16.0, 509, 513, dep)
    slots = overload_run("llama-3.3-70b", "h200", 3200, 16.0, 509, 513, dep.model_copy(update={"engine": "sglang"}))
    # the cap the run is given is the engine's (4,096) or what prompts alone could fill, not the slot count
    assert run.max_running > slots.max_running
    assert np.median(run.ttft_s) < np.median(slots.ttft_s)


def test_run_above_capacity_picks_the_model_and_both_answer_the_same_figures():
    # a tp replica is stepped (`overload_run`); pipeline parallelism rules the stepped run out, so the fluid queue
    run = rl.run_above_capacity(M8, L4, 300, 5.0, 280, 310, VLLM)
    assert isinstance(run, rl.OverloadRun)
    # its statistics over the 300 requests, as the corpus and the CLI read them
    assert run.ttft_mean_s == np.mean(run.ttft_s)
    assert (run.ttft_p50_s, run.ttft_p90_s, run.ttft_p99_s) == tuple(np.quantile(run.ttft_s, (0.5, 0.9, 0.99)))
    assert (run.e2e_mean_s, run.e2e_p50_s) == (np.mean(run.e2e_s), np.median(run.e2e_s))
    assert run.achieved_requests_per_s == 300 / run.makespan_s
    fluid = rl.run_above_capacity("llama-3.1-70b", "h100-sxm", 3000, 40.0, 280, 310, rl.Deployment(tp=4, pp=2))
    direct = finite_overload("llama-3.1-70b", "h100-sxm", 3000, 40.0, 280, 310, rl.Deployment(tp=4, pp=2))
    assert isinstance(fluid, rl.FiniteOverload)
    assert (fluid.ttft_mean_s, fluid.makespan_s) == (direct.ttft_mean_s, direct.makespan_s)
    # every token's gap is the saturated step; the median e2e is the middle request's
    assert fluid.itl_mean_s == fluid.tpot_s and fluid.e2e_p50_s == np.median(fluid.e2e_s)
