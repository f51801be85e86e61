"""Pipeline and expert parallelism and multi-node replicas under continuous batching, and in the planner.

Hand arithmetic against `predict` (the same operator table, one formula per quantity), the stage and
wave formulas of `roofline.serving`, invariants (a slower network never speeds a replica up; more
stages never add weight bytes per GPU), bad input, and the planner's search over tp x pp and ep.


The serving model's arithmetic is derived here on the bare roofline (engine=None); what an engine profile adds
(CPU time per step, tokenization, its limits) is tested by hand in tests/test_engines.py."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import roofline as rl
from roofline import ops as O
from roofline.cli import main
from roofline.errors import SpecError
from roofline.plan import parallelisms
from roofline.serving import replica_memory_bytes, steady_state

H100 = rl.load_hardware("h100-sxm", analytical=True)  # the datasheet model the hand arithmetic below derives
L8 = rl.load_model("llama-3.1-8b")
L405 = rl.load_model("llama-3.1-405b")
MIX = rl.load_model("mixtral-8x7b")
IDLE = 1e-6  # requests/s: a replica with (almost) no load


def _idle(model, dep, prompt=1024, output=128, hw=H100):
    return steady_state(model, hw, IDLE, prompt, output, dep)


# ------------------------------------------------------------ pipeline parallelism, by hand
def test_pipeline_idle_replica_is_predict_at_batch_1():
    # with no load the batch is 1 and there is no queue: TPOT = pp (t_stage + hop) = predict's TPOT at batch 1,
    # and TTFT - residual = pp X_stage + (pp - 1) hop(S) = predict's TTFT
    for pp in (1, 2, 4):
        dep = rl.Deployment(engine=None, pp=pp)
        s = _idle(L8, dep)
        p = rl.predict(L8, H100, rl.Workload(batch_size=1, prompt_tokens=1024, output_tokens=128), dep)
        assert s.tpot_s == pytest.approx(p.tpot_s, rel=1e-6)
        assert s.ttft_mean_s - s.decode_step_s / 2 == pytest.approx(p.ttft_s, rel=1e-6)
        assert s.gpus_per_replica == pp


def test_pipeline_adds_one_hop_per_stage_to_tpot():
    # every op of a stage is 1/pp of the pass, so pp stage steps cost one whole step; what pp = 2 adds at batch 1
    # is 2 hand-offs of one token's activations over NVLink:
    # hop = 1.8 us + 4,096 hidden x 2 bytes / (450 GB/s x 0.82) = 1.8e-6 + 8,192 / 369e9 s
    hop_s = 1.8e-6 + 4096 * 2 / (450e9 * 0.82)
    one, two = _idle(L8, rl.Deployment(engine=None)), _idle(L8, rl.Deployment(engine=None, pp=2))
    # the stage step the curves carry is half a step plus one hop
    assert two.decode_step_s == pytest.approx(one.decode_step_s / 2 + hop_s, rel=1e-9)
    # TPOT is pp stage steps (stretched by 1/(1 - lambda a), a ~1e-8 effect at 1e-6 requests/s)
    assert two.tpot_s - one.tpot_s == pytest.approx(2 * hop_s, rel=1e-4)


def test_pipeline_stage_is_the_prefill_server():
    # a stage is busy with a prompt for X/pp, so at the same arrival rate the prefill utilization halves
    lam = 2.0
    one = steady_state(L8, H100, lam, 1024, 128, rl.Deployment(engine=None))
    two = steady_state(L8, H100, lam, 1024, 128, rl.Deployment(engine=None, pp=2))
    assert two.prefill_utilization == pytest.approx(one.prefill_utilization / 2, rel=1e-9)
    # Little's law with TPOT = pp x mean stage step: B = lambda E[O-1] TPOT
    assert two.batch_size == pytest.approx(lam * 127 * two.tpot_s, rel=1e-9)


def test_pipeline_memory_per_gpu_by_hand():
    rd = rl.Deployment(engine=None).resolved(L8)
    w1, kv1 = replica_memory_bytes(L8, rd, 1, 2048)
    rd2 = rl.Deployment(engine=None, pp=4).resolved(L8)
    w4, kv4 = replica_memory_bytes(L8, rd2, 1, 2048)
    # a stage holds 1/4 of the weights and of each sequence's KV: 32 layers x 2 (K, V) x 8 heads x 128 x 2 bytes
    # = 131,072 bytes per token, over 2,048 tokens / 4 stages
    assert w4 == pytest.approx(w1 / 4) and w4 == pytest.approx(O.weight_storage_bytes(L8, rd, 1) / 4)
    assert kv1 == 32 * 2 * 8 * 128 * 2 * 2048 and kv4 == pytest.approx(kv1 / 4)
    # so the batch a GPU holds grows (each GPU also holds a smaller weight share)
    assert _idle(L8, rl.Deployment(engine=None, pp=4)).max_batch_size_fits > 4 * _idle(L8, rl.Deployment(engine=None)).max_batch_size_fits


def test_chunked_prefill_with_a_pipeline():
    dep = rl.Deployment(engine=None, pp=2)
    s = steady_state(L8, H100, 4.0, 2048, 256, dep, chunk_tokens=512)
    assert s.stable and not math.isnan(s.chunked_step_s)
    # the worst gap is one chunked step at every stage; TPOT is pp mean stage steps
    assert s.itl_max_s == pytest.approx(2 * s.chunked_step_s, rel=1e-9)
    assert s.tpot_s >= 2 * s.decode_step_s


# ------------------------------------------------------------ expert parallelism, by hand
def test_expert_parallel_prefill_runs_in_waves():
    # each of the ep ranks prefills its own prompt in the same step: the wave is predict's prefill of a batch of ep
    # prompts (one per rank); each rank queues lambda/ep of the prompts, so its utilization is (lambda/ep) X_wave
    lam = 4.0
    for ep in (2, 4, 8):
        dep = rl.Deployment(engine=None, ep=ep)
        wave_s = rl.predict(MIX, H100, rl.Workload(batch_size=ep, prompt_tokens=1024, output_tokens=128), dep).ttft_s
        s = steady_state(MIX, H100, lam, 1024, 128, dep)
        assert s.prefill_utilization == pytest.approx(lam / ep * wave_s, rel=1e-6)
        idle = _idle(MIX, dep)
        assert idle.ttft_mean_s - idle.decode_step_s / 2 == pytest.approx(wave_s, rel=1e-6)
        assert idle.gpus_per_replica == ep


def test_expert_parallel_memory_per_gpu():
    rd1, rd8 = rl.Deployment(engine=None).resolved(MIX), rl.Deployment(engine=None, ep=8).resolved(MIX)
    w1, kv1 = replica_memory_bytes(MIX, rd1, 1, 4096)
    w8, kv8 = replica_memory_bytes(MIX, rd8, 1, 4096)
    # each GPU holds 8/8 = 1 expert per layer and a full copy of everything else; each attention rank holds the KV
    # of its own 1/8 of the sequences: per sequence of the replica, 1/8 of its KV per GPU
    assert w8 == pytest.approx(O.weight_storage_bytes(MIX, rd8, 1, 8)) and w8 < w1 / 4
    assert kv8 == pytest.approx(kv1 / 8)


# ------------------------------------------------------------ multi-node replicas
def test_pipeline_across_nodes_hands_off_over_the_network():
    # Llama 405B at tp=8 x pp=2 on H100 spans two 8-GPU nodes: the two hand-offs per token go over the network.
    # One token's activations per tp rank: 16,384 hidden x 2 bytes / 8 = 4,096 bytes.
    # ib-ndr-400: 5 us + 4,096 / (50 GB/s x 0.85); eth-100: 30 us + 4,096 / (1.5625 GB/s x 0.70)
    ib_s = 5e-6 + 4096 / (50e9 * 0.85)
    eth_s = 30e-6 + 4096 / (1.5625e9 * 0.70)
    fast = _idle(L405, rl.Deployment(engine=None, tp=8, pp=2, weight_dtype="fp8", activation_dtype="fp8", network="ib-ndr-400"))
    slow = _idle(L405, rl.Deployment(engine=None, tp=8, pp=2, weight_dtype="fp8", activation_dtype="fp8", network="eth-100"))
    assert fast.gpus_per_replica == 16
    assert slow.tpot_s - fast.tpot_s == pytest.approx(2 * (eth_s - ib_s), rel=1e-6)
    assert slow.tpot_s > fast.tpot_s  # a slower network never speeds a replica up


def test_unsupported_serving_fields_are_refused_not_ignored():
    for dep, field in [
        (rl.Deployment(engine=None, speculative=rl.Speculative(k=4, acceptance_rate=0.7, draft="llama-3.2-1b")), "speculative"),
        (rl.Deployment(engine=None, pp=2, pp_microbatches=4), "pp_microbatches"),
        (rl.Deployment(engine=None, prefix_tokens=512, prefix_hit_rate=0.5), "prefix_tokens"),
        (rl.Deployment(engine=None, kv_offload_fraction=0.5), "kv_offload_fraction"),
        (rl.Deployment(engine=None, weight_offload_fraction=0.5), "weight_offload_fraction"),
    ]:
        with pytest.raises(SpecError) as e:
            steady_state(L8, H100, 1.0, 1024, 128, dep)
        assert e.value.field == field and "\n" not in str(e.value)


# ------------------------------------------------------------ the planner over tp x pp and ep
def test_parallelisms_enumerated():
    shapes = parallelisms(L8, H100)
    assert (1, 1, 1) in shapes and (8, 2, 1) in shapes and (4, 16, 1) in shapes
    assert all(tp * pp * ep <= 64 for tp, pp, ep in shapes) and all(ep == 1 for *_, ep in shapes)
    moe = parallelisms(MIX, H100)
    assert {s for s in moe if s[2] > 1} == {(1, 1, 2), (1, 1, 4), (1, 1, 8)}  # 8 experts
    assert parallelisms(MIX, H100, eps=[4]) == [(1, 1, 4)]  # leaving ep=1 out drops the tp x pp shapes
    assert parallelisms(L8, H100, tps=[8], pps=[1, 2], max_gpus=8) == [(8, 1, 1)]


def test_a_model_wider_than_a_node_is_planned_across_nodes():
    one_node = rl.plan(L405, 2, 2048, 256, 3.0, 0.1, hardware=[H100], precisions={"native": rl.Deployment(engine=None)}, engine=None,
                       max_gpus_per_replica=8)
    assert not one_node.iloc[0]["feasible"] and one_node.iloc[0]["binding_constraint"] == "memory"
    df = rl.plan(L405, 2, 2048, 256, 3.0, 0.1, hardware=[H100], precisions={"native": rl.Deployment(engine=None)}, engine=None)
    row = df.iloc[0]
    # 810 GB of BF16 weights need more than one 8 x 80 GB node
    assert row["feasible"] and row["gpus_per_replica"] > 8 and row["pp"] > 1
    assert row["nodes_per_replica"] == math.ceil(row["gpus_per_replica"] / 8) and row["network"] == "ib-ndr-400"
    assert row["gpus"] == row["replicas"] * row["tp"] * row["pp"] * row["ep"]
    # the row is the steady state of that replica, as `steady_state` computes it
    dep = rl.Deployment(engine=None, tp=int(row["tp"]), pp=int(row["pp"]))
    same = steady_state(L405, H100, 2 / row["replicas"], 2048, 256, dep)
    assert same.tpot_s == pytest.approx(row["tpot_s"], rel=1e-6) and same.gpus_per_replica == row["gpus_per_replica"]
    # a slower network never makes the cheapest fleet cheaper
    eth = rl.plan(L405, 2, 2048, 256, 3.0, 0.1, hardware=[H100], precisions={"native": rl.Deployment(engine=None)}, engine=None, network="eth-100")
    assert eth.iloc[0]["usd_per_hour"] >= row["usd_per_hour"]


def test_expert_parallel_options_in_the_plan():
    df = rl.plan(MIX, 4, 1024, 256, 1.0, 0.05, hardware=["h100-sxm"], eps=[2, 4, 8], best_only=False, engine=None)
    ok = df[df["feasible"]]
    assert set(ok["ep"]) <= {2, 4, 8} and (ok["tp"] == 1).all() and (ok["pp"] == 1).all()
    assert (ok["gpus_per_replica"] == ok["ep"]).all() and len(ok) > 0


def test_best_only_pruning_finds_the_same_plan():
    # the default call skips options whose fleet cannot be cheaper; it must pick what the full enumeration picks
    kw = dict(requests_per_s=6, prompt_tokens=2048, output_tokens=256, ttft_slo_s=1.5, tpot_slo_s=0.06,
              hardware=["h100-sxm", "mi300x", "l40s", "a100-sxm-80gb"])
    for model in (MIX, L405):
        best = rl.plan(model, **kw)
        every = rl.plan(model, **kw, best_only=False)
        for _, row in best[best["feasible"]].iterrows():
            mine = every[(every["hardware_id"] == row["hardware_id"]) & every["feasible"]]
            assert row["usd_per_hour"] == pytest.approx(mine["usd_per_hour"].min(), rel=1e-12)
        assert set(best[~best["feasible"]]["hardware_id"]) == set(every["hardware_id"]) - set(every[every["feasible"]]["hardware_id"])


@pytest.mark.parametrize("kw, field", [
    (dict(pps=[0]), "pps"), (dict(pps="2"), "pps"), (dict(pps=[200]), "pps"), (dict(tps=[]), "tps"),
    (dict(eps=[2]), "eps"), (dict(max_gpus_per_replica=0), "max_gpus_per_replica"), (dict(network="nope"), "network"),
])
def test_bad_parallelism_input(kw, field):
    with pytest.raises(SpecError) as e:
        rl.plan(L8, 1, 1024, 128, 1.0, 0.05, hardware=["h100-sxm"], **kw)
    assert e.value.field == field and "\n" not in str(e.value)


def test_expert_degree_must_divide_the_experts():
    with pytest.raises(SpecError) as e:
        rl.plan(MIX, 1, 1024, 128, 1.0, 0.05, hardware=["h100-sxm"], eps=[3])
    assert e.value.field == "eps" and "8 experts" in str(e.value)


def test_cli_plan_with_parallelism_flags(capsys):
    args = ["plan", "--model", "llama-3.1-405b", "--requests-per-s", "2", "--prompt-tokens", "2048", "--output-tokens", "256",
            "--ttft-slo-s", "3", "--tpot-slo-s", "0.1", "--hardware", "h100-sxm", "--pp", "1,2,4", "--network", "roce-400",
            "--engine", "none"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "replica" in out and " pp" in out
    assert main(args + ["--json", "--all-options"]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out)["rows"])
    wide = rows[rows["gpus_per_replica"] > 8]
    assert set(rows["pp"]) == {1, 2, 4} and len(wide) > 0
    assert (wide["network"] == "roce-400").all() and (wide["nodes_per_replica"] >= 2).all()
    assert (rows[rows["gpus_per_replica"] <= 8]["network"] == "").all()


@pytest.mark.parametrize("flag, value, field", [
    ("--pp", "two", "pps"), ("--ep", "0", "eps"), ("--max-gpus-per-replica", "-8", "max_gpus_per_replica"),
    ("--network", "token-ring", "network"), ("--tp", ",", "tps"),
])
def test_cli_bad_parallelism_flags(capsys, flag, value, field):
    args = ["plan", "--model", "llama-3.1-8b", "--requests-per-s", "1", "--prompt-tokens", "1024", "--output-tokens", "128",
            "--ttft-slo-s", "1", "--tpot-slo-s", "0.05", "--hardware", "h100-sxm", flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("roofline: error: ") and field in err and "\n" not in err


def test_disaggregated_pools_with_a_pipelined_decode_pool():
    d = rl.disaggregate("llama-3.1-70b", "h100-sxm", 10, 2048, 256, 1.0, 0.05, prefill=rl.Deployment(engine=None, tp=4),
                        decode=rl.Deployment(engine=None, tp=4, pp=2))
    assert d.feasible and d.decode_gpus_per_replica == 8 and d.prefill_gpus_per_replica == 4
    # GPUs = prefill replicas x 4 + decode replicas x (4 x 2)
    assert d.gpus == d.prefill_replicas * 4 + d.decode_replicas * 8
    assert d.usd_per_hour == pytest.approx(d.gpus * H100.price_usd_per_gpu_hour)
