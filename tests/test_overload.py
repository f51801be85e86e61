"""A finite run offered above capacity (`serving.finite_overload`): the D/D/c admission times by hand, the run's
figures from the saturated steady state, and the limit λ → μ⁺ against the stable finite run."""

import math

import numpy as np
import pytest

import roofline as rl
from roofline.errors import SpecError
from roofline.serving import (
    capacity_requests_per_s,
    finite_overload,
    finite_run_duration_s,
    overload_of,
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
