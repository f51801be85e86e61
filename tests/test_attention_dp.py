"""Attention data parallelism with a tensor-parallel MLP/MoE (`Deployment.attention_dp`, SGLang --enable-dp-attention):
the operator table by hand for Mixtral-8x7B at tp 4 with and without it (attention FLOPs per rank, the all-gather's
bytes, weights and KV per rank), the decode padding, the validation errors, the engine's per-rank budget, the CLI
flag, the planner's choice, and invariants."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import roofline as rl
from roofline import ops as O
from roofline.cli import main
from roofline.parallelism import engine_limits_on, kv_bytes_per_gpu

MIX = rl.load_model("mixtral-8x7b")  # L = 32, h = 4,096, 32 query / 8 KV heads of 128, E = 8, k = 2, V = 32,000, bf16
DSV3 = rl.load_model("deepseek-v3")  # MLA: one latent per token, replicated by every tp rank
H200 = rl.load_hardware("h200")


def _rd(model=MIX, **kw):
    return rl.Deployment(engine=None, **kw).resolved(model)


def _op(ops, name, group=None):
    hits = [op for op in ops if op.name == name and (group is None or op.group == group)]
    assert len(hits) == 1, (name, [op.group for op in hits])
    return hits[0]


# ------------------------------------------------------------------ padding
def test_rows_by_hand():
    # decode: every rank replays the largest rank's captured batch, ceil(B/8); the MoE runs over 8 of them
    assert O.attention_dp_rows(4, 1, 8) == (1.0, 8.0)
    assert O.attention_dp_rows(12, 1, 8) == (2.0, 16.0)
    assert O.attention_dp_rows(16, 1, 8) == (2.0, 16.0)
    # prefill: the mean rank's prompts, the real rows gathered (8 prompts of 1,000 tokens: 1 each, 8,000 rows)
    assert O.attention_dp_rows(8, 1000, 8) == (1.0, 8000.0)
    assert O.attention_dp_rows(4, 1000, 8) == (0.5, 4000.0)


# ------------------------------------------------------------------ the operator table at tp 4, decode of 8 at context 512
def _decode(dp: bool):
    rd = _rd(tp=4, attention_dp=dp)
    return O.forward_ops(MIX, rd, 8, 1, 511, 4)


def test_attention_flops_per_rank_by_hand():
    plain, dp = _decode(False), _decode(True)
    # plain: 8 sequences x 32/4 = 8 heads; dp: 8/4 = 2 sequences x 32 heads. Each (sequence, head) attends 512 keys at
    # 2·128 + 2·128 FLOPs a pair, over 32 layers: the same 64 sequence-heads either way
    per_pair = 2 * 128 + 2 * 128
    assert _op(plain, "attention").flops == 32 * 8 * 8 * 512 * per_pair == 536_870_912
    assert _op(dp, "attention").flops == 32 * 2 * 32 * 512 * per_pair == 536_870_912
    # qkv_proj: [T, h] x [h, (q + 2 kv) d / tp]: 8 tokens x 1,536 columns plain, 2 tokens x 6,144 whole under dp
    assert _op(plain, "qkv_proj").flops == 32 * 2 * 8 * 4096 * (48 * 128 / 4) == 3_221_225_472
    assert _op(dp, "qkv_proj").flops == 32 * 2 * 2 * 4096 * (48 * 128) == 3_221_225_472
    # but each rank reads the whole attention weights: 4x the plain shard
    assert _op(dp, "qkv_proj").weight_bytes == 4 * _op(plain, "qkv_proj").weight_bytes == 32 * 4096 * 6144 * 2
    # the LM head, whole on every rank over its 2 sequences: [2, 4,096] x [4,096, 32,000]
    assert _op(dp, "lm_head").flops == 2 * 2 * 4096 * 32000


def test_collectives_by_hand():
    plain, dp = _decode(False), _decode(True)
    # plain: two all-reduces a layer over the 8 tokens: 32 · 2 · 8 · 4,096 · 2 B
    assert _op(plain, "allreduce").comm_bytes == 32 * 2 * 8 * 4096 * 2 == 4_194_304
    names = [op.name for op in dp]
    assert "allreduce" not in names  # no engine: the MLP output returns by reduce-scatter (`ops.attention_dp_combine`)
    # all-gather: each GPU receives the 3 other ranks' 2 rows of 4,096 bf16 values, in 3 ring steps, every layer
    gather = _op(dp, "all_gather")
    assert gather.wire_bytes == 32 * 3 * 2 * 4096 * 2 == 1_572_864
    assert gather.wire_messages == 32 * 3
    scatter = _op(dp, "reduce_scatter")
    assert scatter.wire_bytes == gather.wire_bytes and scatter.wire_messages == gather.wire_messages


def test_sglang_combines_by_all_reduce():
    # SGLang 0.4's MoE ends in an all-reduce over all 8 gathered rows, once a layer; none after attention
    rd = rl.Deployment(tp=4, attention_dp=True, engine="sglang").resolved(MIX)
    ops = O.forward_ops(MIX, rd, 8, 1, 511, 4)
    assert _op(ops, "allreduce").comm_bytes == 32 * 1 * 8 * 4096 * 2 == 2_097_152
    assert _op(ops, "allreduce").messages == 32
    assert "reduce_scatter" not in [op.name for op in ops]


def test_moe_runs_over_the_padded_rows():
    # B = 5 over 4 ranks: ceil(5/4) = 2 sequences per rank, the router over 4 · 2 = 8 rows ([T, h] x [h, E])
    ops = O.forward_ops(MIX, _rd(tp=4, attention_dp=True), 5, 1, 511, 4)
    assert _op(ops, "router").flops == 32 * 2 * 8 * 4096 * 8
    assert _op(ops, "attention").flops == 32 * 2 * 32 * 512 * 512  # 2 sequences of all 32 heads on the busiest rank


# ------------------------------------------------------------------ memory per rank
def test_weights_per_rank_by_hand():
    plain = O.weight_storage_bytes(MIX, _rd(tp=4), 4)
    dp = O.weight_storage_bytes(MIX, _rd(tp=4, attention_dp=True), 4)
    # each rank also holds the 3/4 of the attention matrices and of the embedding and LM head it did not:
    # attention per layer (q 4,096 + k, v 1,024 each + o 4,096 columns of 4,096) x 2 B = 83,886,080 B, 32 layers;
    # embedding and LM head 32,000 x 4,096 x 2 B each
    attention = 32 * (4096 + 2 * 1024 + 4096) * 4096 * 2
    tables = 2 * 32000 * 4096 * 2
    assert dp - plain == pytest.approx(0.75 * (attention + tables), rel=1e-12)
    assert 0.75 * (attention + tables) == 2_406_481_920


def test_kv_per_rank_by_hand():
    # Mixtral (GQA): a rank holds every KV head of 1/4 of the sequences = 1/4 of the heads of all of them:
    # 32 layers x 2 x 8 heads x 128 x 2 B x 1,000 tokens / 4 = 32,768,000 B either way
    assert kv_bytes_per_gpu(MIX, _rd(tp=4, attention_dp=True), 4, 1000) == 32 * 2 * 8 * 128 * 2 * 1000 / 4 == 32_768_000
    assert kv_bytes_per_gpu(MIX, _rd(tp=4), 4, 1000) == 32_768_000
    # DeepSeek-V3 (MLA): every tp rank replicates the latent, so data-parallel attention holds 1/8 of it at tp 8
    plain = kv_bytes_per_gpu(DSV3, _rd(DSV3, tp=8), 8, 1000)
    dp = kv_bytes_per_gpu(DSV3, _rd(DSV3, tp=8, attention_dp=True), 8, 1000)
    assert dp == pytest.approx(plain / 8, rel=1e-12)


# ------------------------------------------------------------------ engine limits
def test_sglang_budget_per_rank():
    # SGLang 0.4 with dp attention: one scheduler per rank, each with chunked_prefill_size // 2 = 8,192 // 2 tokens
    rd = rl.Deployment(tp=8, attention_dp=True, engine="sglang").resolved(DSV3)
    seqs, tokens = engine_limits_on(rd, H200)
    plain_seqs, plain_tokens = engine_limits_on(rl.Deployment(tp=8, engine="sglang").resolved(DSV3), H200)
    assert tokens == plain_tokens // 2 == 4096
    assert seqs == 8 * plain_seqs


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, says", [
    (dict(tp=1, attention_dp=True), "attention_dp: needs tp > 1"),
    (dict(tp=1, ep=8, attention_dp=True), "attention_dp: ep=8 already runs attention data-parallel"),
])
def test_validation_errors(kw, says):
    with pytest.raises(ValidationError, match=says):
        rl.Deployment(**kw)


def test_parallel_blocks_refused():
    falcon = rl.load_model("falcon-40b")
    with pytest.raises(rl.SpecError, match="attention_dp: .*parallel blocks"):
        rl.predict(falcon, H200, rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=8),
                   rl.Deployment(tp=8, attention_dp=True))


@pytest.mark.parametrize("kw, group, replica", [
    # pp = ep = 1: one tp group; its attention tensor-parallel too (attention_ranks 1): a tp replica
    (dict(tp=8), True, True),
    (dict(tp=1), True, True),
    # attention data-parallel over the 8 tp GPUs: still one tp group, but 8 schedulers (attention_ranks 8)
    (dict(tp=8, attention_dp=True), True, False),
    # a pipeline (2 stages) or expert parallelism (8 ranks): neither
    (dict(tp=4, pp=2), False, False),
    (dict(ep=8), False, False),
])
def test_tp_group_and_tp_replica(kw, group, replica):
    # the one home of "a tp replica" (the stepped runs, the mixed step loop, the headline's layout note):
    # pp = 1 and ep = 1, and for a replica attention tensor-parallel, i.e. one attention rank
    dep = rl.Deployment(**kw)
    assert (dep.is_tp_group, dep.is_tp_replica) == (group, replica)
    assert dep.is_tp_replica == (dep.pp == 1 and dep.attention_ranks == 1)


def test_stepped_runs_refuse_it():
    # offline waves and the stepped overload run step one scheduler; a data-parallel replica has one per rank
    with pytest.raises(rl.SpecError, match="no attention_dp"):
        rl.offline_run(MIX, H200, 8, 128, 16, rl.Deployment(tp=4, attention_dp=True))


# ------------------------------------------------------------------ invariants
def test_one_rank_is_plain():
    # forward_ops at tp 1 with a data-parallel resolution is the plain table, op for op
    dp, plain = _rd(tp=2, attention_dp=True), _rd(tp=2)
    a, b = O.forward_ops(MIX, dp, 8, 1, 511, 1), O.forward_ops(MIX, plain, 8, 1, 511, 1)
    assert [op.name for op in a] == [op.name for op in b]
    for x, y in zip(a, b):
        assert (x.flops, x.weight_bytes, x.act_read_bytes, x.kv_read_bytes, x.comm_bytes, x.wire_bytes) == \
               (y.flops, y.weight_bytes, y.act_read_bytes, y.kv_read_bytes, y.comm_bytes, y.wire_bytes)


def test_throughput_per_replica_sane():
    wl = rl.Workload(batch_size=32, prompt_tokens=1024, output_tokens=256)
    dp = rl.predict(MIX, H200, wl, rl.Deployment(tp=4, attention_dp=True))
    plain = rl.predict(MIX, H200, wl, rl.Deployment(tp=4))
    assert dp.fits and plain.fits
    assert 0 < dp.output_tokens_per_s < float("inf")
    # the same tokens a step; data-parallel attention reads 4x the attention weights, so a step is not faster than
    # half the plain one nor more than 4x slower
    assert 0.5 * plain.tpot_s < dp.tpot_s < 4 * plain.tpot_s
    assert dp.weight_bytes > plain.weight_bytes


# ------------------------------------------------------------------ CLI and planner
def test_cli_flag(capsys):
    assert main(["predict", "--model", "mixtral-8x7b", "--hardware", "h200", "--tp", "4", "--attention-dp"]) == 0
    assert main(["predict", "--model", "mixtral-8x7b", "--hardware", "h200", "--tp", "1", "--attention-dp"]) != 0
    err = capsys.readouterr().err
    assert "attention_dp: needs tp > 1" in err and "Traceback" not in err


def test_planner_tries_both_layouts():
    df = rl.plan(MIX, 1.0, 1024, 256, ttft_slo_s=5.0, tpot_slo_s=0.2, hardware=["h200"], tps=[4], pps=[1], eps=[1],
                 precisions={"native": rl.Deployment()}, best_only=False)
    tp4 = df[df["tp"] == 4]
    assert sorted(tp4["attention_dp"].tolist()) == [False, True]
    best = rl.plan(MIX, 1.0, 1024, 256, ttft_slo_s=5.0, tpot_slo_s=0.2, hardware=["h200"], tps=[4], pps=[1], eps=[1],
                   precisions={"native": rl.Deployment()})
    # the chosen layout is reported, and it is the first of every option's ranking (cost per hour, then GPUs, TTFT, ...)
    first = df.iloc[0]
    assert len(best) == 1 and first["rank"] == 1 and first["tp"] == 4
    assert bool(best["attention_dp"].iloc[0]) == bool(first["attention_dp"])
    assert (best["usd_per_hour"].iloc[0], best["ttft_at_slo_percentile_s"].iloc[0]) == \
        (first["usd_per_hour"], first["ttft_at_slo_percentile_s"])
    only = rl.plan(MIX, 1.0, 1024, 256, ttft_slo_s=5.0, tpot_slo_s=0.2, hardware=["h200"], tps=[4], pps=[1], eps=[1],
                   precisions={"native": rl.Deployment()}, attention_dp=[True], best_only=False)
    assert only["attention_dp"].tolist() == [True]


# ------------------------------------------------------------------ synchronized waves over the ranks
def test_rank_shares_by_hand():
    from roofline.serving import rank_shares
    assert rank_shares(12, 8) == [(2, 4), (1, 4)]
    assert rank_shares(4, 8) == [(1, 4)]
    assert rank_shares(16, 8) == [(2, 8)]
    assert rank_shares(7, 1) == [(7, 1)]


def test_wave_over_ranks_by_hand():
    # 6 requests of 3,000 + 16 tokens over 4 SGLang ranks, each with 8,192 // 2 = 4,096 tokens a step: two ranks hold
    # 2 requests (step 1: the first prompt whole and 1,096 tokens of the second; step 2: its last 1,904), two hold 1
    # (done in step 1). First tokens: steps 1, 2, 1, 2, 1, 1; then 15 decode steps after the busiest rank's 2
    dep = rl.Deployment(tp=4, attention_dp=True, engine="sglang")
    w = rl.wave(MIX, H200, 6, 3000, 16, dep)
    assert w.decode_batch == 6
    assert sorted(w.schedule.first_step.tolist()) == [1, 1, 1, 1, 2, 2]
    assert w.schedule.prefill_tokens.tolist()[:2] == [4096, 1904]
    assert len(w.step_s) == 2 + 15
    assert w.ttft_s.max() == pytest.approx(w.request_s + w.step_s[:2].sum())
    assert w.cycle_s == pytest.approx(w.request_s + w.step_s.sum())


# ------------------------------------------------------------------ tp auto, and the planner with no admitting shape
LLAMA8 = rl.load_model("llama-3.1-8b")  # 32 heads, FFN 14,336: valid tp on an 8-GPU node 1, 2, 4, 8
SHORT = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=8)


def test_auto_tp_under_attention_dp_starts_at_two():
    # valid_tps = [1, 2, 4, 8]; attention_dp needs tp > 1, so the smallest tried is 2. 8.0e9 bf16 parameters are
    # 16 GB, 8 GB a GPU at tp 2 (the attention weights whole on each): it fits in 141 GB, so tp 2 is taken
    p = rl.predict_fitting(LLAMA8, H200, SHORT, rl.Deployment(tp=2, attention_dp=True))
    assert (p.deployment.tp, p.deployment.attention_dp, p.fits) == (2, True, True)
    # without it the smallest valid tp, 1, already fits
    assert rl.predict_fitting(LLAMA8, H200, SHORT, rl.Deployment()).deployment.tp == 1


def test_the_tps_auto_tries():
    # Llama 3.1 8B: 32 query / 8 KV heads, FFN 14,336, an 8-GPU H200 node: valid tp 1, 2, 4, 8 (each divides 8 KV
    # heads). attention_dp drops tp 1 (it needs tp > 1); ep > 1 keeps tp 1 alone (ep runs with tp = 1). The dashboard's
    # tp auto searches the same list (`fitting_tps`, shared with predict_fitting)
    from roofline.predict import fitting_tps
    assert fitting_tps(LLAMA8, H200, rl.Deployment()) == rl.valid_tps(LLAMA8, H200) == [1, 2, 4, 8]
    assert fitting_tps(LLAMA8, H200, rl.Deployment(tp=2, attention_dp=True)) == [2, 4, 8]
    assert fitting_tps(MIX, H200, rl.Deployment(ep=8)) == [1]


def test_auto_tp_with_ep_keeps_tp_one():
    # ep > 1 runs attention data-parallel over the ep GPUs with tp = 1 (Deployment's check): auto tries tp 1 alone.
    # DeepSeek-V3's 671e9 FP8 parameters over ep 2 are still ~335 GB a GPU, over H200's 141 GB: fits=False at tp 1,
    # where it once went on to tp 8 x ep 2, a shape Deployment refuses
    p = rl.predict_fitting(DSV3, H200, SHORT, rl.Deployment(ep=2))
    assert (p.deployment.tp, p.deployment.ep, p.fits) == (1, 2, False)


def test_auto_tp_under_attention_dp_without_a_wider_tp():
    one_gpu = H200.model_copy(update={"interconnect": H200.interconnect.model_copy(update={"max_gpus": 1})})
    with pytest.raises(rl.SpecError, match=r"^tp: attention_dp needs tp > 1"):
        rl.predict_fitting(LLAMA8, one_gpu, SHORT, rl.Deployment(tp=2, attention_dp=True))


def test_cli_auto_tp_with_attention_dp(capsys):
    assert main(["predict", "--model", "llama-3.1-8b", "--hardware", "h200", "--tp", "auto", "--attention-dp", "--json"]) == 0
    import json
    (p,) = json.loads(capsys.readouterr().out)
    assert (p["deployment"]["tp"], p["deployment"]["attention_dp"]) == (2, True)
    # with ep the attention_dp conflict is named, not a tp the user did not give
    assert main(["predict", "--model", "deepseek-v3", "--hardware", "h200", "--tp", "auto", "--ep", "8", "--attention-dp"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attention_dp: ep=8 already runs attention data-parallel" in err


def test_planner_says_why_no_shape_takes_attention_dp():
    # a dense model, or a MoE model held to tp 1: no shape runs attention data-parallel, so attention_dp=[True] leaves
    # nothing to try; one infeasible row per (precision, device) says so instead of an empty table
    for model, tps in ((LLAMA8, None), (MIX, [1])):
        df = rl.plan(model, 1.0, 1024, 256, ttft_slo_s=5.0, tpot_slo_s=0.2, hardware=["h200"], tps=tps,
                     precisions={"native": rl.Deployment()}, attention_dp=[True], best_only=False)
        assert len(df) == 1
        row = df.iloc[0]
        assert (bool(row["feasible"]), row["binding_constraint"]) == (False, "parallelism")
        assert "attention_dp=[True] runs attention data-parallel only" in row["reason"]
        assert ("is dense" in row["reason"]) == (model is LLAMA8)


def test_short_overload_run_points_where_it_can_run():
    # 4 requests at a rate far above capacity never fill the batch of the capacity point; a tp replica is told to
    # step it with overload_run, an attention data-parallel one (which overload_run refuses) is not sent there
    with pytest.raises(rl.SpecError, match="use overload_run"):
        rl.finite_overload(LLAMA8, H200, 4, 1e4, 128, 16, rl.Deployment(tp=2))
    with pytest.raises(rl.SpecError) as exc:
        rl.finite_overload(LLAMA8, H200, 4, 1e4, 128, 16, rl.Deployment(tp=2, attention_dp=True))
    assert "use overload_run" not in str(exc.value) and "tp replica only" in str(exc.value)


def test_sweep_keeps_to_the_shapes_deployment_allows():
    # a sweep's tp axis under a deployment with attention_dp skips tp 1 (Deployment refuses it) and times tp 4 as
    # predict does; under ep > 1 it skips every tp above 1 (ep runs with tp = 1), where it once timed tp 2 x ep 4
    wl = rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64)
    dp = rl.Deployment(tp=4, attention_dp=True)
    df = rl.sweep(MIX, H200, batch_size=8, prompt_tokens=512, output_tokens=64, tp=[1, 4], deployment=dp)
    assert df["tp"].tolist() == [4]
    assert df["tpot_s"].iloc[0] == rl.predict(MIX, H200, wl, dp).tpot_s
    assert [(s["reason"], s["scenarios"]) for s in df.attrs["skipped"]] == [("attention_dp needs tp > 1", 1)]
    ep = rl.sweep(MIX, H200, batch_size=8, prompt_tokens=512, output_tokens=64, tp=[1, 2], deployment=rl.Deployment(ep=4))
    assert ep["tp"].tolist() == [1]
    assert ep["tpot_s"].iloc[0] == rl.predict(MIX, H200, wl, rl.Deployment(ep=4)).tpot_s
    assert [s["reason"] for s in ep.attrs["skipped"]] == ["ep=4 runs with tp = 1 (attention data-parallel over the ep GPUs)"]


def test_replica_shape_of_a_row():
    # one helper reads a row's shape for the CLI, the report, the views and the dashboard; a frame without the
    # attention_dp column (an older plan's) reads as tensor-parallel attention
    from collections import namedtuple

    import pandas as pd

    from roofline import fmt
    Row = namedtuple("Row", "tp pp ep nodes_per_replica attention_dp")
    assert fmt.replica_of(Row(8, 1, 1, 1, True)) == "tp8 dp-attention"
    assert fmt.replica_of(Row(8, 2, 1, 2, False)) == "tp8 pp2, 2 nodes"
    assert fmt.replica_of(Row(1, 1, 16, 2, False)) == "ep16, 2 nodes"
    old = pd.DataFrame([{"tp": 4, "pp": 1, "ep": 1, "nodes_per_replica": 1}])
    assert fmt.replica_of(old.iloc[0]) == fmt.replica_of(next(old.itertuples())) == "tp4"


def test_a_replica_is_spelled_one_way():
    # a Deployment reads as its planner row does ('tp8 dp-attention', not 'tp=8 attention_dp'), without the node count
    # a Deployment cannot know; the planner's reasons name the layout the same way as its replica column
    from collections import namedtuple

    from roofline import fmt
    Row = namedtuple("Row", "tp pp ep nodes_per_replica attention_dp")
    for kw, text in ((dict(tp=8, attention_dp=True), "tp8 dp-attention"), (dict(tp=4, pp=2), "tp4 pp2"),
                     (dict(ep=8), "ep8"), (dict(tp=2), "tp2")):
        dep = rl.Deployment(**kw)
        assert fmt.replica_of_deployment(dep) == fmt.replica_of(Row(dep.tp, dep.pp, dep.ep, 1, dep.attention_dp)) == text
    # Mixtral's ~47B bf16 parameters (~93 GB) at tp 2 with attention replicated on both GPUs: more than an L4 holds
    df = rl.plan(MIX, 1.0, 1024, 256, ttft_slo_s=5.0, tpot_slo_s=0.2, hardware=["l4"], tps=[2], pps=[1], eps=[1],
                 precisions={"native": rl.Deployment()}, attention_dp=[True], best_only=False)
    row = next(df.itertuples())
    assert row.binding_constraint == "memory" and fmt.replica_of(row) == "tp2 dp-attention"
    assert " per GPU at tp2 dp-attention, batch 1, of " in row.reason and "attention_dp" not in row.reason


def test_headline_names_the_layout():
    # the headline's GPU count says the replica's shape where it is not tp alone: the same 8 GPUs, three layouts
    from roofline import fmt
    wl = rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=64)
    for dep, text in ((rl.Deployment(tp=8, attention_dp=True), "8 (tp8 dp-attention)"), (rl.Deployment(tp=4, pp=2), "8 (tp4 pp2)"),
                      (rl.Deployment(tp=8), "8")):
        rows = dict(fmt.headline_rows(rl.predict(MIX, H200, wl, dep)))
        assert rows["GPUs (tensor parallel)"] == text
