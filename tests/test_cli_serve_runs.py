"""`roofline serve --requests N`: a finite run on the command line. Each path prints the library's figures (the same
numbers as the call), the offline waves by hand (10 requests in waves of 4: 4 + 4 + 2), and bad input is one line."""

import json

import numpy as np
import pytest

import roofline as rl
from roofline.cli import main

M8, H100 = "llama-3.1-8b", "h100-sxm"
BASE = ["serve", "--model", M8, "--hardware", H100, "--prompt-tokens", "1000", "--output-tokens", "200"]


def serve_json(capsys, *flags):
    code = main([*BASE, *flags, "--json"])
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    (doc,) = json.loads(out.out)
    return doc


def test_offline_run_in_waves_by_hand():
    # 10 requests of 1000 + 200 tokens, at most 4 running (--max-batch-size 4): waves of 4, 4 and 2, so the wall time is
    # 2 · cycle(4) + cycle(2), each cycle the synchronized wave of that many clients (`rl.wave`)
    run = rl.offline_run(M8, H100, 10, 1000, 200, max_batch_size=4)
    assert run.wave_requests == (4, 4, 2)
    c4, c2 = (rl.wave(M8, H100, k, 1000, 200).cycle_s for k in (4, 2))
    assert run.wave_cycle_s == pytest.approx((c4, c4, c2), rel=1e-9)
    assert run.wall_s == pytest.approx(2 * c4 + c2, rel=1e-9)
    assert run.output_tokens_per_s == pytest.approx(10 * 200 / (2 * c4 + c2), rel=1e-9)
    # offline_run_s is the same run's wall time
    assert rl.offline_run_s(M8, H100, 10, 1000, 200, max_batch_size=4) == run.wall_s


def test_offline_that_does_not_fit_has_no_waves():
    run = rl.offline_run("llama-3.1-405b", H100, 10, 2048, 128)
    assert run.wave_requests == () and run.wall_s == float("inf")


def test_cli_offline_run_is_the_library_run(capsys):
    doc = serve_json(capsys, "--offline", "--requests", "10", "--max-batch-size", "4")
    run = rl.offline_run(M8, H100, 10, 1000, 200, max_batch_size=4)
    assert doc["mode"] == "offline run" and doc["requests"] == 10
    assert doc["wave_requests"] == [4, 4, 2]
    assert doc["run_s"] == pytest.approx(run.wall_s, rel=1e-12)
    assert doc["requests_per_s"] == pytest.approx(10 / run.wall_s, rel=1e-12)
    assert doc["output_tokens_per_s"] == pytest.approx(10 * 200 / run.wall_s, rel=1e-12)
    assert "serving.offline_run" in doc["model_used"]
    code = main([*BASE, "--offline", "--requests", "10", "--max-batch-size", "4"])
    out = capsys.readouterr().out
    assert code == 0 and "3 waves: 2 of 4, 1 of 2" in out and "run: wall time" in out


@pytest.mark.parametrize(("flags", "why"), [
    (["--prompt-tokens", "uniform:500:1500"], "distributed lengths"),
    (["--pp", "2"], "tp replicas only (pp=2, ep=1)"),
])
def test_cli_offline_falls_back_to_the_largest_stable_rate_and_says_why(capsys, flags, why):
    doc = serve_json(capsys, "--offline", "--requests", "100", *flags)
    prompt = flags[1] if flags[0] == "--prompt-tokens" else 1000
    dep = rl.Deployment(pp=2) if "--pp" in flags else rl.Deployment()
    cap = rl.capacity_requests_per_s(M8, H100, prompt, 200, dep)
    assert doc["mode"] == "offline" and doc["requests_per_s"] == pytest.approx(cap, rel=1e-12)
    assert why in doc["note"] and "largest stable rate" in doc["note"] and "run_s" not in doc


def test_cli_stable_rate_run_adds_its_wall_time(capsys):
    # under capacity: the steady state plus the run's wall time (n - 1)/λ + e2e, e2e = TTFT + (O - 1)·TPOT
    doc = serve_json(capsys, "--requests-per-s", "5", "--requests", "500")
    sp = rl.steady_state(M8, H100, 5.0, 1000, 200)
    e2e = sp.ttft_mean_s + 199 * sp.tpot_s
    assert doc["stable"] is True and doc["ttft_mean_s"] == pytest.approx(sp.ttft_mean_s, rel=1e-12)
    assert doc["e2e_mean_s"] == pytest.approx(e2e, rel=1e-12)
    assert doc["run_s"] == pytest.approx(499 / 5 + e2e, rel=1e-12)
    assert doc["run_output_tokens_per_s"] == pytest.approx(500 * 200 / (499 / 5 + e2e), rel=1e-12)
    assert doc["run_s"] == pytest.approx(float(rl.serving.finite_run_duration_s(500, 5.0, e2e)), rel=1e-12)


def test_cli_overloaded_tp_run_is_overload_run(capsys):
    doc = serve_json(capsys, "--requests-per-s", "40", "--requests", "500")
    run = rl.overload_run(M8, H100, 500, 40.0, 1000, 200)
    assert doc["mode"] == "finite overload" and "overload_run" in doc["model_used"] and doc["stable"] is False
    assert doc["ttft_mean_s"] == pytest.approx(float(np.mean(run.ttft_s)), rel=1e-12)
    assert doc["ttft_p50_s"] == pytest.approx(float(np.median(run.ttft_s)), rel=1e-12)
    assert doc["ttft_p90_s"] == pytest.approx(float(np.quantile(run.ttft_s, 0.9)), rel=1e-12)
    assert doc["itl_mean_s"] == pytest.approx(run.itl_mean_s, rel=1e-12)
    assert doc["e2e_mean_s"] == pytest.approx(float(np.mean(run.e2e_s)), rel=1e-12)
    assert doc["makespan_s"] == pytest.approx(run.makespan_s, rel=1e-12)
    assert doc["run_output_tokens_per_s"] == pytest.approx(500 * 200 / run.makespan_s, rel=1e-12)
    # the offered rate is above what the run achieves, which is at most the capacity
    assert doc["run_requests_per_s"] < doc["capacity_requests_per_s"] < doc["requests_per_s"] == 40


def test_cli_overloaded_pipeline_run_is_the_fluid_model(capsys):
    doc = serve_json(capsys, "--requests-per-s", "80", "--requests", "2000", "--pp", "2")
    ov = rl.finite_overload(M8, H100, 2000, 80.0, 1000, 200, rl.Deployment(pp=2))
    assert "finite_overload" in doc["model_used"]
    assert doc["ttft_mean_s"] == pytest.approx(ov.ttft_mean_s, rel=1e-12)
    assert doc["ttft_p90_s"] == pytest.approx(ov.ttft_p90_s, rel=1e-12)
    assert doc["itl_mean_s"] == pytest.approx(ov.tpot_s, rel=1e-12)
    assert doc["makespan_s"] == pytest.approx(ov.makespan_s, rel=1e-12)
    assert doc["run_requests_per_s"] == pytest.approx(ov.achieved_requests_per_s, rel=1e-12)


def test_cli_without_requests_is_unchanged(capsys):
    code = main([*BASE, "--requests-per-s", "40"])
    out = capsys.readouterr().out
    assert code == 0 and "NO: unstable" in out and "run:" not in out


@pytest.mark.parametrize(("flags", "message"), [
    (["--offline", "--requests", "0"], "roofline: error: requests: must be at least 1, got 0\n"),
    (["--requests-per-s", "5", "--requests", "2.5"], "roofline: error: requests: expected an integer, got '2.5'\n"),
    (["--concurrency", "4", "--requests", "10"], "roofline: error: requests: a closed loop runs until stopped: give --requests "
                                                 "with --requests-per-s or --offline, or leave it out\n"),
])
def test_cli_bad_requests_is_one_line(capsys, flags, message):
    code = main([*BASE, *flags])
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and out.err == message
