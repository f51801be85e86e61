"""The capacity planner: fleet arithmetic by hand, SLOs met by every row, minimal replicas, invariants over load
and SLOs, infeasibility with its reason, bad input, and `roofline plan` on the command line."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import roofline as rl
from roofline.cli import main
from roofline.errors import SpecError
from roofline.plan import COLUMNS, PRECISIONS

M70 = "llama-3.1-70b"
TRAFFIC = dict(requests_per_s=10, prompt_tokens=2048, output_tokens=256, ttft_slo_s=1.0, tpot_slo_s=0.05)
FEW = ["h100-sxm", "h200", "a100-sxm-80gb", "mi300x"]


@pytest.fixture(scope="module")
def every_option():
    return rl.plan(M70, **TRAFFIC, hardware=FEW, best_only=False)


def test_columns_units_and_ranking(every_option):
    best = rl.plan(M70, **TRAFFIC, hardware=FEW)
    assert list(best.columns) == COLUMNS and len(best) == len(FEW)
    feasible = best[best["feasible"]]
    assert list(feasible["rank"]) == list(range(1, len(feasible) + 1))
    assert feasible["usd_per_hour"].is_monotonic_increasing
    # the best row per device is its cheapest feasible option
    for _, row in feasible.iterrows():
        mine = every_option[(every_option["hardware_id"] == row["hardware_id"]) & every_option["feasible"]]
        assert row["usd_per_hour"] == mine["usd_per_hour"].min()


def test_every_row_meets_its_slos_and_the_fleet_arithmetic(every_option):
    ok = every_option[every_option["feasible"]]
    assert len(ok) > 10
    assert (ok["tpot_s"] <= 0.05).all() and (ok["ttft_at_slo_percentile_s"] <= 1.0 + 1e-6).all()
    assert (ok["ttft_at_slo_percentile_s"] == ok["ttft_p90_s"]).all()  # the default percentile is p90
    assert (ok["gpus_per_replica"] == ok["tp"] * ok["pp"] * ok["ep"]).all()
    assert (ok["gpus"] == ok["replicas"] * ok["gpus_per_replica"]).all()
    assert ok["usd_per_hour"].to_numpy() == pytest.approx((ok["gpus"] * ok["price_usd_per_gpu_hour"]).to_numpy())
    # $/M output tokens at the offered load: 10 requests/s x 256 tokens = 2,560 tokens/s
    assert ok["usd_per_million_output_tokens"].to_numpy() == pytest.approx((ok["usd_per_hour"] / (2560 * 3600) * 1e6).to_numpy())
    assert ok["requests_per_s_per_replica"].to_numpy() == pytest.approx((10 / ok["replicas"]).to_numpy())
    assert (ok["requests_per_s_per_replica"] <= ok["capacity_requests_per_s_per_replica"] * (1 + 1e-9)).all()
    assert (ok["batch_size"] <= ok["max_batch_size_fits"]).all()
    assert (ok["memory_required_bytes_per_gpu"] <= ok["memory_available_bytes_per_gpu"]).all()


def test_replicas_are_the_fewest(every_option):
    # one replica fewer would miss an SLO or be unstable: checked with steady_state, the per-replica API
    for _, row in every_option[every_option["feasible"] & (every_option["replicas"] > 1)].head(6).iterrows():
        dep = rl.Deployment(tp=int(row["tp"]), pp=int(row["pp"]), ep=int(row["ep"]),
                            **PRECISIONS[row["precision"]].model_dump(exclude={"tp", "pp", "ep"}, exclude_defaults=True))
        same = rl.steady_state(M70, row["hardware_id"], 10 / row["replicas"], 2048, 256, dep)
        assert same.tpot_s == pytest.approx(row["tpot_s"], rel=1e-6) and same.ttft_p90_s == pytest.approx(row["ttft_p90_s"], rel=1e-6)
        fewer = rl.steady_state(M70, row["hardware_id"], 10 / (row["replicas"] - 1), 2048, 256, dep)
        assert (not fewer.stable) or fewer.tpot_s > 0.05 or fewer.ttft_p90_s > 1.0


def test_more_load_never_lowers_cost_and_looser_slo_never_raises_it():
    costs = [rl.plan(M70, r, 2048, 256, 1.0, 0.05, hardware=["h100-sxm", "mi300x"]).set_index("hardware_id")["usd_per_hour"]
             for r in (1, 4, 10, 25)]
    for a, b in zip(costs, costs[1:]):
        assert (b >= a).all()
    tight = rl.plan(M70, **{**TRAFFIC, "tpot_slo_s": 0.03, "ttft_slo_s": 0.5}, hardware=["h100-sxm", "mi300x"]).set_index("hardware_id")
    loose = rl.plan(M70, **{**TRAFFIC, "tpot_slo_s": 0.08, "ttft_slo_s": 2.0}, hardware=["h100-sxm", "mi300x"]).set_index("hardware_id")
    base = rl.plan(M70, **TRAFFIC, hardware=["h100-sxm", "mi300x"]).set_index("hardware_id")
    for h in base.index:
        assert loose.loc[h, "usd_per_hour"] <= base.loc[h, "usd_per_hour"] <= tight.loc[h, "usd_per_hour"] or not tight.loc[h, "feasible"]


def test_does_not_fit_says_required_and_available():
    # one node at most: 810 GB of BF16 weights over 8 L4s of 24 GB each cannot fit
    df = rl.plan("llama-3.1-405b", 1, 2048, 256, 2.0, 0.1, hardware=["l4"], precisions={"native": rl.Deployment()},
                 max_gpus_per_replica=8)
    row = df.iloc[0]
    assert not row["feasible"] and row["binding_constraint"] == "memory" and pd.isna(row["rank"])
    # available: the default engine's (vLLM) 90% of the L4's 24.2 GB = 21.7 GB
    assert "needs" in row["reason"] and "GB per GPU at tp8, batch 1" in row["reason"] and "of 21.7 GB" in row["reason"]
    assert row["memory_required_bytes_per_gpu"] > row["memory_available_bytes_per_gpu"]


def test_slo_out_of_reach_and_unsupported_precision():
    df = rl.plan(M70, 1, 2048, 256, 1.0, 0.002, hardware=["h100-sxm"])  # 2 ms: below any option's TPOT at batch 1
    assert not df.iloc[0]["feasible"] and "even at batch 1" in df.iloc[0]["reason"]
    df = rl.plan(M70, 1, 2048, 256, 0.01, 0.05, hardware=["h100-sxm"])
    assert not df.iloc[0]["feasible"] and df.iloc[0]["binding_constraint"] == "TTFT SLO"
    every = rl.plan(M70, 1, 2048, 256, 1.0, 0.05, hardware=["a100-sxm-80gb"], best_only=False)
    fp8 = every[every["precision"] == "fp8"].iloc[0]
    assert fp8["binding_constraint"] == "unsupported" and "no fp8" in fp8["reason"]


def test_distributions_and_chunking_in_the_plan():
    df = rl.plan(M70, 5, "lognormal:2048:0.5", "uniform:128:384", 1.5, 0.05, hardware=["h200"], chunk_tokens=512)
    row = df.iloc[0]
    assert row["feasible"] and row["tpot_s"] <= 0.05 and row["ttft_p90_s"] <= 1.5
    assert df.attrs["prompt_tokens"] == "lognormal median 2048 σ 0.5"


@pytest.mark.parametrize("kw, field", [
    (dict(requests_per_s=-1), "requests_per_s"), (dict(requests_per_s=0), "requests_per_s"),
    (dict(ttft_slo_s=0), "ttft_slo_s"), (dict(tpot_slo_s=-0.1), "tpot_slo_s"),
    (dict(ttft_percentile=1.0), "ttft_percentile"), (dict(prompt_tokens="empirical:"), "prompt_tokens"),
    (dict(output_tokens="normal:10"), "output_tokens"), (dict(chunk_tokens=0), "chunk_tokens"),
    (dict(max_batch_size=0), "max_batch_size"), (dict(hardware=[]), "hardware"),
])
def test_bad_input_is_one_line_naming_the_field(kw, field):
    with pytest.raises(SpecError) as e:
        rl.plan(M70, **{**TRAFFIC, **kw})
    assert e.value.field == field and "\n" not in str(e.value)


def test_unknown_hardware():
    with pytest.raises(SpecError, match="h999"):
        rl.plan(M70, **TRAFFIC, hardware=["h999"])


# ------------------------------------------------------------ CLI
ARGS = ["plan", "--model", M70, "--requests-per-s", "10", "--prompt-tokens", "2048", "--output-tokens", "256",
        "--ttft-slo-s", "1", "--tpot-slo-s", "0.05", "--hardware", "h100-sxm,mi300x"]


def test_cli_table_and_json(capsys):
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "p90 TTFT <= 1 s" in out and "h100-sxm" in out and "$/hour" in out
    assert main(ARGS + ["--json", "--top", "1", "--prompt-tokens", "lognormal:2048:0.5", "--chunk-tokens", "512"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["rows"]) == 1 and doc["rows"][0]["rank"] == 1 and doc["inputs"]["chunk_tokens"] == 512
    assert set(doc["rows"][0]) == set(COLUMNS)


@pytest.mark.parametrize("flag, value, field", [
    ("--requests-per-s", "-3", "requests_per_s"), ("--requests-per-s", "ten", "requests_per_s"),
    ("--ttft-slo-s", "0", "ttft_slo_s"), ("--prompt-tokens", "lognormal:2048", "prompt_tokens"),
    ("--hardware", "h999", "hardware"), ("--top", "0", "top"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys, flag, value, field):
    args = list(ARGS)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("roofline: error: ") and field in err and "\n" not in err


# ------------------------------------------------------------ serving="static": the same enumeration and ranking
def test_static_mode_is_the_largest_batch_within_the_slos_by_hand():
    # Llama-3.1-8B on one H100, 4 req/s of 1,024 + 200 tokens, TTFT <= 1 s, TPOT <= 30 ms, batch cap 64.
    df = rl.plan("llama-3.1-8b", 4, 1024, 200, 1.0, 0.03, hardware=["h100-sxm"], serving="static", tps=[1],
                 precisions={"native": rl.Deployment()}, max_batch_size=64)
    r = df.iloc[0]

    def at(b):
        return rl.predict("llama-3.1-8b", "h100-sxm", rl.Workload(batch_size=b, prompt_tokens=1024, output_tokens=200))

    b = int(r["batch_size"])
    # the static batch's TTFT is its whole prefill, so the TTFT SLO stops the batch: b meets 1 s, b + 1 does not
    assert at(b).ttft_s <= 1.0 < at(b + 1).ttft_s and at(b).tpot_s <= 0.03
    assert r["binding_constraint"] == "TTFT SLO" and r["reason"].startswith(f"batch {b + 1}: TTFT")
    x = at(b).output_tokens_per_s  # one replica at full load: b x 200 / e2e
    assert r["replicas"] == math.ceil(4 * 200 / x) and r["gpus"] == r["replicas"] * 1
    assert r["usd_per_hour"] == pytest.approx(r["gpus"] * 3.95)
    assert r["usd_per_million_output_tokens"] == pytest.approx(r["usd_per_hour"] / (4 * 200 * 3600) * 1e6)
    assert r["capacity_requests_per_s_per_replica"] == pytest.approx(x / 200)
    assert r["output_tokens_per_s_per_replica"] == pytest.approx(4 * 200 / r["replicas"])  # the offered load, as in continuous
    assert r["ttft_p99_s"] == r["ttft_p50_s"] == r["ttft_at_slo_percentile_s"] == at(b).ttft_s  # no queue: one figure
    assert r["max_batch_size_fits"] == at(1).max_batch_size_fits and df.attrs["serving"] == "static"


def test_static_mode_ranks_every_tp_and_keeps_the_cheapest():
    kw = dict(hardware=["a10g"], serving="static", precisions={"native": rl.Deployment()}, max_batch_size=64)
    each = {tp: rl.plan("llama-3.1-8b", 4, 1024, 200, 1.0, 0.03, tps=[tp], **kw).iloc[0] for tp in (1, 2, 4, 8)}
    best = rl.plan("llama-3.1-8b", 4, 1024, 200, 1.0, 0.03, **kw).iloc[0]
    cheapest = min((r["usd_per_hour"], r["gpus"], tp) for tp, r in each.items() if r["feasible"])
    assert (best["usd_per_hour"], best["tp"]) == (cheapest[0], cheapest[2])
    assert {int(r["pp"]) for r in each.values()} == {1}  # a static batch runs on tp alone unless pps says otherwise


def test_static_mode_needs_fixed_lengths_and_no_chunking():
    with pytest.raises(rl.SpecError, match="prompt_tokens"):
        rl.plan("llama-3.1-8b", 4, "lognormal:1024:0.5", 200, 1.0, 0.03, hardware=["h100-sxm"], serving="static")
    with pytest.raises(rl.SpecError, match="chunk_tokens"):
        rl.plan("llama-3.1-8b", 4, 1024, 200, 1.0, 0.03, hardware=["h100-sxm"], serving="static", chunk_tokens=512)
    with pytest.raises(rl.SpecError, match="serving"):
        rl.plan("llama-3.1-8b", 4, 1024, 200, 1.0, 0.03, hardware=["h100-sxm"], serving="dynamic")


# ------------------------------------------------------------ benchmark-shaped loads (issue 12 item 4)
def test_serve_at_a_saturating_concurrency_ttft_grows_while_throughput_plateaus(capsys):
    """`roofline serve --concurrency`: the response-time law N = X·R. Past saturation X stays at the capacity,
    so R = N / X and every extra client adds 1/X to the response time, all of it spent waiting before the
    first token (TPOT is that of the full batch throughout)."""
    code = main(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--prompt-tokens", "1000", "--output-tokens", "200",
                 "--concurrency", "16,64,2048,4096", "--json"])
    pts = json.loads(capsys.readouterr().out)
    assert code == 0 and [p["concurrency"] for p in pts] == [16, 64, 2048, 4096]
    for p in pts:  # N = X·R, R = TTFT + (200 - 1)·TPOT
        assert p["requests_per_s"] * (p["ttft_mean_s"] + 199 * p["tpot_s"]) == pytest.approx(p["concurrency"], rel=1e-6)
    small, mid, big, bigger = pts
    assert small["requests_per_s"] < mid["requests_per_s"] < big["requests_per_s"]  # below saturation X rises with N
    x = big["capacity_requests_per_s"]
    assert big["requests_per_s"] == pytest.approx(x, rel=1e-8) and bigger["requests_per_s"] == pytest.approx(x, rel=1e-8)  # plateau
    assert bigger["tpot_s"] == pytest.approx(big["tpot_s"], rel=1e-9)
    # 2,048 more clients at X ~ 28 requests/s: every request waits 2,048 / X ~ 73 s longer for its first token
    assert bigger["ttft_mean_s"] - big["ttft_mean_s"] == pytest.approx((4096 - 2048) / x, rel=1e-6)
    assert bigger["ttft_p90_s"] > big["ttft_p90_s"] > mid["ttft_p90_s"]


def test_serve_offline_is_the_capacity(capsys):
    code = main(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--prompt-tokens", "1000", "--output-tokens", "200",
                 "--offline", "--json"])
    (p,) = json.loads(capsys.readouterr().out)
    cap = rl.capacity_requests_per_s("llama-3.1-8b", "h100-sxm", 1000, 200)
    assert code == 0 and p["requests_per_s"] == cap and p["output_tokens_per_s"] == pytest.approx(cap * 200)


def test_plan_at_a_concurrency_sizes_the_fleet_by_the_response_time_law():
    n = 512
    df = rl.plan(M70, None, 2048, 256, 2.0, 0.05, hardware=["h100-sxm"], precisions={"native": rl.Deployment()}, tps=[4], pps=[1],
                 concurrency=n)
    r = df.iloc[0]
    assert r["feasible"] and df.attrs["concurrency"] == n and df.attrs["requests_per_s"] is None
    dep = rl.Deployment(tp=4)
    k = int(r["replicas"])
    # each replica runs the closed loop of n / k clients: the same state as closed_loop gives
    one = rl.closed_loop(M70, "h100-sxm", n / k, 2048, 256, dep)
    assert r["requests_per_s_per_replica"] == pytest.approx(one.requests_per_s, rel=1e-6)
    assert r["tpot_s"] == pytest.approx(one.tpot_s, rel=1e-6) and r["tpot_s"] <= 0.05 and r["ttft_at_slo_percentile_s"] <= 2.0
    # one replica fewer would carry more clients than keep the SLOs
    fewer = rl.closed_loop(M70, "h100-sxm", n / (k - 1), 2048, 256, dep)
    assert k > 1 and (fewer.tpot_s > 0.05 or fewer.ttft_p90_s > 2.0)
    # the fleet's rate is what the loop answers: k x the replica's rate; $/M over those tokens
    assert r["usd_per_million_output_tokens"] == pytest.approx(r["usd_per_hour"] / (k * one.requests_per_s * 256 * 3600) * 1e6, rel=1e-6)


def test_a_load_is_a_rate_or_a_concurrency():
    with pytest.raises(SpecError, match="concurrency"):
        rl.plan(M70, 10, 2048, 256, 2.0, 0.05, hardware=["h100-sxm"], concurrency=64)
    with pytest.raises(SpecError, match="requests_per_s"):
        rl.plan(M70, None, 2048, 256, 2.0, 0.05, hardware=["h100-sxm"])
    with pytest.raises(SpecError, match="concurrency"):
        rl.plan(M70, None, 2048, 256, 2.0, 0.05, hardware=["h100-sxm"], concurrency=0)
    with pytest.raises(SpecError, match="concurrency"):
        rl.plan(M70, None, 2048, 256, 2.0, 0.05, hardware=["h100-sxm"], concurrency=64, serving="static")
