"""Synchronized waves of a closed loop with fixed lengths (`serving.wave`), by hand: the engine's schedule of a
wave, the TTFT / TPOT / cycle formulas over step times, the step times against the operator table, and where
`closed_loop(synchronized=True)` uses a wave and where it does not."""

from __future__ import annotations

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.engine import decode_ceilings
from roofline.errors import SpecError
from roofline.parallelism import check
from roofline.roofline import Ceilings, OpTable, time_ops
from roofline.serving import Traffic, closed_loop, steady_state, wave, wave_of, wave_schedule, wave_step_times
from roofline.workload import Workload

M8, H100 = "llama-3.1-8b", "h100-sxm"


# ------------------------------------------------------------ the schedule, by hand
def test_chunked_multi_prompt_not_mixed_schedule_by_hand():
    # C = 8192, S = 3200, N = 4: 12,800 prompt tokens in two steps, 8192 (prompts 1, 2 and 1792 of 3) then 4608
    # (3's last 1408, all of 4); no decode while prompts wait; then O - 1 = 9 decode steps of all 4 sequences
    sc = wave_schedule(4, 3200, 10, 8192, chunked=True, multi_prompt=True, mixed=False)
    assert sc.prefill_tokens.tolist() == [8192, 4608] + [0] * 9
    assert sc.prefill_prompts.tolist() == [3, 2] + [0] * 9
    assert sc.decode_rows.tolist() == [0, 0] + [4] * 9
    assert sc.start_step.tolist() == [1, 1, 1, 2]
    assert sc.first_step.tolist() == [1, 1, 2, 2]
    assert sc.last_step.tolist() == [11] * 4  # k + O - 1 = 2 + 9: the wave finishes together
    assert sc.prefill_steps == 2


def test_mixed_schedule_by_hand():
    # the same wave with O = 5 on an engine that mixes: step 1 as above; step 2 decodes prompts 1 and 2 (2 of the
    # budget) and prefills 1408 + 3200 = 4608 tokens; prompt i decodes in k_i + 1 .. k_i + 4, so steps 3-5 decode
    # all 4 and step 6 the last two
    sc = wave_schedule(4, 3200, 5, 8192, chunked=True, multi_prompt=True, mixed=True)
    assert sc.prefill_tokens.tolist() == [8192, 4608, 0, 0, 0, 0]
    assert sc.decode_rows.tolist() == [0, 2, 4, 4, 4, 2]
    assert sc.first_step.tolist() == [1, 1, 2, 2]
    assert sc.last_step.tolist() == [5, 5, 6, 6]


def test_mixed_decode_takes_its_share_of_the_budget():
    # C = 100, S = 60, N = 3, mixed: step 1 prefills 60 + 40 of prompt 2 -> prompt 1 done; step 2: 1 decode row,
    # 99 left: 20 of prompt 2 and 60 of prompt 3 (80 tokens)
    sc = wave_schedule(3, 60, 4, 100, chunked=True, multi_prompt=True, mixed=True)
    assert sc.prefill_tokens.tolist()[:2] == [100, 80]
    assert sc.decode_rows.tolist()[:2] == [0, 1]
    assert sc.first_step.tolist() == [1, 2, 2]


def test_whole_prompt_and_one_prompt_per_step_schedules():
    # whole prompts (no chunking), several per step: floor(8192 / 3000) = 2 prompts a step, 5 prompts in 3 steps
    sc = wave_schedule(5, 3000, 3, 8192, chunked=False, multi_prompt=True, mixed=False)
    assert sc.prefill_tokens.tolist()[:3] == [6000, 6000, 3000]
    assert sc.first_step.tolist() == [1, 1, 2, 2, 3]
    # chunks of one prompt at a time: S = 5000 in chunks of 4096 + 904, then the next prompt
    sc = wave_schedule(2, 5000, 3, 4096, chunked=True, multi_prompt=False, mixed=False)
    assert sc.prefill_tokens.tolist()[:4] == [4096, 904, 4096, 904]
    assert sc.first_step.tolist() == [2, 4]
    # a whole prompt longer than the budget still runs (one prompt, one step)
    sc = wave_schedule(2, 9000, 3, 8192, chunked=False, multi_prompt=True, mixed=False)
    assert sc.prefill_tokens.tolist()[:2] == [9000, 9000]


# ------------------------------------------------------------ latencies from step times, by hand
def test_wave_latencies_worked_example():
    # the docstring's example: two prefill steps of 4 s and 3 s, then 9 decode steps of 0.1 s, r = 0
    sc = wave_schedule(4, 3200, 10, 8192, chunked=True, multi_prompt=True, mixed=False)
    w = wave_of(sc, [4.0, 3.0] + [0.1] * 9, 0.0, 10)
    assert w.ttft_s.tolist() == pytest.approx([4, 4, 7, 7])
    assert w.tpot_s.tolist() == pytest.approx([(3 + 0.9) / 9] * 2 + [0.1] * 2)
    assert w.cycle_s == pytest.approx(7.9)
    assert w.requests_per_s == pytest.approx(4 / 7.9)
    # a request latency r outside the steps adds to every TTFT and to the cycle, not to TPOT
    w2 = wave_of(sc, [4.0, 3.0] + [0.1] * 9, 0.05, 10)
    assert w2.ttft_s.tolist() == pytest.approx([4.05, 4.05, 7.05, 7.05])
    assert w2.tpot_s.tolist() == pytest.approx(w.tpot_s.tolist())
    with pytest.raises(SpecError, match="step_s"):
        wave_of(sc, [1.0, 2.0], 0.0, 10)


def test_step_times_against_the_operator_table():
    # bare roofline (no engine), whole prompts one per step: a pure prefill step of one 1000-token prompt is the
    # prefill pass (linear ops + its attention); a decode step of 3 sequences is the decode pass at c = S + O/2
    dep = rl.Deployment(engine=None)
    model, hw = rl.load_model(M8), rl.load_hardware(H100)
    rd = check(model, hw, Workload(prompt_tokens=1000, output_tokens=100), dep)
    sc = wave_schedule(3, 1000, 100, 1000, chunked=False, multi_prompt=False, mixed=False)
    t = wave_step_times(model, rd, hw, sc, 1000, 1050)
    ceil = Ceilings.of(hw, rd.compute_key)
    prefill = time_ops(OpTable.of(O.forward_ops(model, rd, 1, 1000, 0, 1, mla_absorbed=False)), ceil, 1).time_s.sum()
    assert t[:3] == pytest.approx([prefill] * 3, rel=1e-9)
    w = wave(M8, H100, 3, 1000, 100, dep)
    # not mixed: every request finishes at the end of the wave, TTFT_i + (O - 1) TPOT_i = cycle - r
    assert (w.ttft_s + 99 * w.tpot_s).tolist() == pytest.approx([w.cycle_s] * 3)
    assert w.ttft_s.tolist() == pytest.approx([prefill, 2 * prefill, 3 * prefill], rel=1e-9)
    # decode steps: 3 sequences at the mean context S + O/2 = 1050, replayed from a graph (as `predict`'s decode)
    dec = time_ops(OpTable.of(O.forward_ops(model, rd, 3, 1, 1049, 1, mla_absorbed=True)), decode_ceilings(ceil), 1).time_s.sum()
    assert t[3:] == pytest.approx([dec] * 99, rel=1e-9)


# ------------------------------------------------------------ closed_loop(synchronized=True)
def test_closed_loop_uses_the_wave_on_an_engine_that_does_not_mix():
    dep = rl.Deployment(engine="sglang")
    w = wave(M8, H100, 16, 1000, 200, dep)
    sp = closed_loop(M8, H100, 16, 1000, 200, dep, synchronized=True)
    assert sp.ttft_mean_s == pytest.approx(float(np.mean(w.ttft_s)))
    assert sp.tpot_s == pytest.approx(float(np.mean(w.tpot_s)))
    assert sp.requests_per_s == pytest.approx(16 / w.cycle_s)
    assert sp.batch_size == 16 and sp.stable
    # 16 prompts of 1000 tokens in steps of 8192: prompts 1-8 in step 1, 9-16 in step 2; the p50 lies between
    assert w.schedule.first_step.tolist() == [1] * 8 + [2] * 8
    assert sp.ttft_p50_s == pytest.approx((w.ttft_s[7] + w.ttft_s[8]) / 2)
    # the Poisson loop prefills each arrival alone: a wave's TTFT is longer
    assert sp.ttft_mean_s > closed_loop(M8, H100, 16, 1000, 200, dep).ttft_mean_s


def test_a_mixing_engine_is_the_poisson_loop_with_a_note():
    dep = rl.Deployment(engine="vllm")
    sp = closed_loop(M8, H100, 16, 1000, 200, dep, synchronized=True)
    plain = closed_loop(M8, H100, 16, 1000, 200, dep)
    assert sp.ttft_mean_s == plain.ttft_mean_s and sp.tpot_s == plain.tpot_s
    assert any("mixes prefill and decode" in n for n in sp.notes)


def test_engine_profiles_say_whether_they_mix():
    from roofline.engines import load_engine
    assert {e: load_engine(e).mixed_prefill_decode for e in ("vllm", "sglang", "trtllm")} == {"vllm": True, "sglang": False, "trtllm": True}


# ------------------------------------------------------------ bad input
def test_synchronized_needs_a_closed_loop_and_fixed_lengths():
    with pytest.raises(SpecError, match="synchronized.*concurrency"):
        Traffic.of(2.0, 1000, 100, synchronized=True)
    with pytest.raises(SpecError, match="synchronized.*prompt_tokens is not fixed"):
        Traffic.of(None, "uniform:100:200", 100, concurrency=4, synchronized=True)
    with pytest.raises(SpecError, match="synchronized"):
        closed_loop(M8, H100, 4, "lognormal:1000:0.5", 100, rl.Deployment(engine="sglang"), synchronized=True)
    with pytest.raises(SpecError, match="synchronized.*pp=2"):
        wave("llama-3.1-70b", H100, 4, 1000, 100, rl.Deployment(engine="sglang", tp=2, pp=2))
    assert Traffic.of(None, 1000, 100, concurrency=4, synchronized=True).synchronized


def test_serve_cli_synchronized():
    import contextlib
    import io
    import json

    from roofline.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["serve", "--model", M8, "--hardware", H100, "--prompt-tokens", "1000", "--output-tokens", "200",
              "--concurrency", "16", "--synchronized", "--engine", "sglang", "--json"])
    doc = json.loads(out.getvalue())[0]
    w = wave(M8, H100, 16, 1000, 200, rl.Deployment(engine="sglang"))
    assert doc["ttft_mean_s"] == pytest.approx(float(np.mean(w.ttft_s)))


def test_finite_run_duration_worked_number():
    from roofline.serving import finite_run_duration_s
    # 500 Poisson requests at 16/s: the last is sent after 499 gaps of 1/16 s, then completes 17 s later
    assert finite_run_duration_s(500, 16.0, 17.0) == pytest.approx(499 / 16 + 17)
    # one request: its own latency
    assert finite_run_duration_s(1, 16.0, 17.0) == pytest.approx(17.0)


def test_an_overlap_scheduler_makes_an_arrival_wait_one_more_step():
    # vLLM V1 (synchronous): an arrival waits out the step in progress, t̄/2 on average; SGLang and TensorRT-LLM schedule
    # step n+1 while step n runs, so the arrival also waits out step n+1: 3t̄/2 (pp = 1, so TPOT = t̄)
    from roofline.serving import curves_for
    model, hw = rl.load_model(M8), rl.load_hardware(H100)
    # TensorRT-LLM's C++ executor (before 0.17) has no overlap scheduler: t̄/2, as vLLM. SGLang 0.4.0 (the release
    # that made the overlap loop the default) keeps one batch launched ahead, never two: 3t̄/2 (datacrunch .md, TTFT audit)
    for engine, steps in (("vllm", 0.5), ("sglang", 1.5), ("sglang-0.4.0", 1.5), ("trtllm", 1.5), ("trtllm-cpp", 0.5)):
        cv = curves_for(model, hw, rl.Deployment(engine=engine), Traffic.of(2.0, 500, 200), None)
        st = cv.state(np.array([2.0]))
        assert st.residual_s[0] == pytest.approx(steps * st.tpot_s[0])
        assert st.ttft_mean_s[0] == pytest.approx(st.residual_s[0] + st.wait_mean_s[0] + st.service_mean_s[0]
                                                  + float((st.extra_s[0] * cv.s_p).sum()))


def test_a_wave_larger_than_the_batch_memory_holds_is_refused_and_closed_loop_falls_back():
    # Llama-3.1-70B tp2 on H100 with 5000 + 500 tokens: the batch memory holds is far below 1,000 sequences
    dep = rl.Deployment(engine="sglang", tp=2)
    with pytest.raises(SpecError, match="concurrency.*exceeds"):
        wave("llama-3.1-70b", H100, 1000, 5000, 500, dep)
    sp = closed_loop("llama-3.1-70b", H100, 1000, 5000, 500, dep, synchronized=True)
    assert any("exceeds the batch" in n for n in sp.notes)
    assert sp.ttft_mean_s == closed_loop("llama-3.1-70b", H100, 1000, 5000, 500, dep).ttft_mean_s


def test_an_engine_that_does_not_mix_runs_prefill_passes_alone_in_steady_state():
    # SGLang chunks prefill but runs a prefill step alone: its steady state is the whole-prompt model (prefill passes
    # preempt decode, a = E[X(S)]), with the engine's CPU time and tokenization; vLLM mixes chunks of its budget
    sg = steady_state(M8, H100, 2.0, 500, 200, rl.Deployment(engine="sglang"))
    assert sg.chunk_tokens is None and np.isnan(sg.chunked_step_s)
    vl = steady_state(M8, H100, 2.0, 500, 200, rl.Deployment(engine="vllm"))
    assert vl.chunk_tokens == 8192 and vl.chunked_step_s > vl.decode_step_s
    # an explicit budget is a mixed chunked step on either engine
    assert steady_state(M8, H100, 2.0, 500, 200, rl.Deployment(engine="sglang"), chunk_tokens=512).chunk_tokens == 512


def test_a_mixing_engines_wave_finishes_apart():
    # vLLM mixes: prompt i's last token comes k_i + O - 1 steps into the wave, so the earlier prompts finish first;
    # each request's TTFT + (O - 1) TPOT is r + the steps up to its own last one
    w = wave(M8, H100, 16, 1000, 200, rl.Deployment(engine="vllm"))
    sc = w.schedule
    assert sc.last_step.tolist() == (sc.first_step + 199).tolist()
    done = np.concatenate([[0.0], np.cumsum(w.step_s)])
    assert (w.ttft_s + 199 * w.tpot_s).tolist() == pytest.approx((w.request_s + done[sc.last_step]).tolist())
    assert w.cycle_s == pytest.approx(w.request_s + done[-1])


# ------------------------------------------------------------ an offline run of n fixed-length requests: waves
def test_an_offline_run_is_whole_waves_and_a_partial_one():
    # 1000 requests of 128 + 2048 on an 8B FP8 H100 under a cap of 384 (trtllm-bench build's; memory holds more at
    # 2176 tokens a sequence): waves of 384, 384 and 232, T = 2 · cycle(384) + cycle(232); a run that fits one wave
    # is that wave
    dep = rl.Deployment(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8", engine="trtllm-cpp")
    t = rl.offline_run_s(M8, H100, 1000, 128, 2048, dep, chunk_tokens=2048, max_batch_size=384)
    c384 = rl.wave(M8, H100, 384, 128, 2048, dep, chunk_tokens=2048).cycle_s
    c232 = rl.wave(M8, H100, 232, 128, 2048, dep, chunk_tokens=2048).cycle_s
    assert t == pytest.approx(2 * c384 + c232, rel=1e-9)
    assert rl.offline_run_s(M8, H100, 232, 128, 2048, dep, chunk_tokens=2048, max_batch_size=384) == \
        pytest.approx(c232, rel=1e-9)
    # the partial wave costs more per request than a full one (a step's time does not fall in proportion to its
    # batch), so the run's rate is below whole waves' 384 / cycle(384) and above the partial wave's 232 / cycle(232)
    assert 232 / c232 < 1000 / t < 384 / c384
    # every 384 requests more add one cycle(384)
    t4 = rl.offline_run_s(M8, H100, 1384, 128, 2048, dep, chunk_tokens=2048, max_batch_size=384)
    assert t4 - t == pytest.approx(c384, rel=1e-9)


def test_an_offline_run_in_waves_needs_fixed_lengths_and_a_tp_replica():
    with pytest.raises(SpecError, match="prompt_tokens"):
        rl.offline_run_s(M8, H100, 100, "normal:2048:200", 128)
    with pytest.raises(SpecError, match="pp=2"):
        rl.offline_run_s(M8, H100, 100, 2048, 128, rl.Deployment(pp=2))
    # a run that does not fit at batch 1 takes forever
    assert rl.offline_run_s("llama-3.1-405b", H100, 10, 2048, 128) == float("inf")
