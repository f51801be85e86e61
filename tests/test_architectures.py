"""Hand-derived costs of the architecture-specific paths: MLA (absorbed and not), MoE routing,
naive vs FlashAttention IO, sliding windows in decode, and the sweep's handling of invalid grids."""

from __future__ import annotations

import pytest

import roofline as rl
from roofline import ops as O


def ops_of(model_id, batch, new, past, **dep):
    model = rl.load_model(model_id)
    return {op.name + "@" + op.group: op for op in O.forward_ops(model, rl.Deployment(**dep).resolved(model), batch, new, past)}


def pick(ops, name):
    return [op for key, op in ops.items() if key.startswith(name + "@")]


def test_mla_decode_runs_absorbed_over_the_latent():
    """DeepSeek-V3 decode at context c: 128 heads attend to a 512 + 64 latent (scores: 2·576 FLOPs,
    weighted sum of the 512-wide latent: 2·512 FLOPs per pair); each token's latent is read once."""
    c = 1000
    attn = pick(ops_of("deepseek-v3", 1, 1, c - 1), "attention")
    flops = sum(op.flops for op in attn)
    kv = sum(op.kv_read_bytes for op in attn)
    assert flops == 61 * 128 * c * (2 * 576 + 2 * 512)
    assert kv == 61 * c * 576 * 2  # bf16 latent, shared by all 128 heads


def test_mla_prefill_decompresses_and_attends_as_mha():
    """Prefill of S tokens: kv_b_proj expands every latent into 128 heads of K (128 nope dims) and V (128);
    attention then uses 192-dim queries/keys and 128-dim values over S(S+1)/2 pairs per head."""
    s = 512
    ops = ops_of("deepseek-v3", 1, s, 0)
    attn_flops = sum(op.flops for op in pick(ops, "attention"))
    assert attn_flops == 61 * 128 * (s * (s + 1) / 2) * (2 * 192 + 2 * 128)
    kvb = pick(ops, "kv_b_proj")
    assert sum(op.flops for op in kvb) == 61 * 2 * s * 512 * (128 * (128 + 128))
    assert sum(op.kv_read_bytes for op in kvb) == 61 * s * 576 * 2  # the latent cache is read to decompress it


def test_moe_decode_reads_only_the_experts_it_touches():
    """Mixtral 8x7B, one sequence: each layer touches its top-2 of 8 experts; each expert is a gated
    FFN of 3 x 4096 x 14336 bf16 weights. 64 tokens touch 8·(1 - (3/4)^64) = ~8 experts."""
    expert_bytes = 3 * 4096 * 14336 * 2
    one = pick(ops_of("mixtral-8x7b", 1, 1, 99), "experts_up")[0].weight_bytes + pick(ops_of("mixtral-8x7b", 1, 1, 99), "experts_down")[0].weight_bytes
    assert one == 32 * 2 * expert_bytes
    many = ops_of("mixtral-8x7b", 64, 1, 99)
    touched = 8 * (1 - 0.75**64)
    assert pick(many, "experts_up")[0].weight_bytes + pick(many, "experts_down")[0].weight_bytes == pytest.approx(32 * touched * expert_bytes)
    # FLOPs count only the routed pairs: 64 tokens x 2 experts x 3 matrices x 2 x 4096 x 14336, per layer
    flops = pick(many, "experts_up")[0].flops + pick(many, "experts_down")[0].flops
    assert flops == 32 * 64 * 2 * 3 * 2 * 4096 * 14336


def test_active_parameters_drive_moe_decode_floor():
    """At batch 1 an MoE model's decode floor tracks its active, not its total, parameters."""
    hw = rl.load_hardware("h100-sxm")
    model = rl.load_model("mixtral-8x7b")
    p = rl.predict(model, hw, rl.Workload(prompt_tokens=16, output_tokens=2))
    gather_saving = (model.embedding_params - model.hidden_size) * 2  # the embedding table is gathered, not read
    assert p.decode_bytes_per_step == pytest.approx(2 * model.active_param_count - gather_saving, rel=0.005)


def test_naive_attention_moves_the_score_matrix():
    """Naive attention writes and reads the S x S scores and probabilities: 4 passes x pairs x heads x 2 bytes
    per layer more HBM traffic than FlashAttention, which grows with S^2 while the weights do not."""
    s = 4096
    flash = pick(ops_of("llama-3.1-8b", 1, s, 0), "attention")[0]
    naive = pick(ops_of("llama-3.1-8b", 1, s, 0, attention_impl="naive"), "attention")[0]
    pairs = s * (s + 1) / 2
    assert naive.bytes - flash.bytes == 32 * 4 * 32 * pairs * 2
    assert naive.flops == flash.flops  # same arithmetic, more traffic
    hw = rl.load_hardware("h100-sxm")
    wl = rl.Workload(prompt_tokens=s, output_tokens=2)
    assert rl.predict(rl.load_model("llama-3.1-8b"), hw, wl, rl.Deployment(attention_impl="naive")).ttft_s > \
        rl.predict(rl.load_model("llama-3.1-8b"), hw, wl).ttft_s


def test_decode_step_time_flattens_past_the_window():
    """Mistral's 4,096-token window: decode steps cost the same beyond it, and grow before it."""
    p = rl.predict(rl.load_model("mistral-7b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=100, output_tokens=10))
    assert p.tpot_at(1000) < p.tpot_at(4096) == pytest.approx(p.tpot_at(20_000))
    full = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=100, output_tokens=10))
    assert full.tpot_at(20_000) > full.tpot_at(4096)
    assert full.tpot_at(101) == pytest.approx(full.tpot_first_step_s)
    with pytest.raises(rl.SpecError, match="context_tokens"):
        full.tpot_at(0)


def test_sweep_leaves_out_invalid_scenarios_and_says_why():
    df = rl.sweep(model=["falcon-7b", "llama-3.1-8b"], hardware=["a100-sxm-80gb", "h100-sxm"], batch_size=[1, 4],
                  prompt_tokens=[1024, 4000], output_tokens=[64], tp=[1, 2], activation_dtype=["bf16", "fp8"],
                  weight_dtype=["fp8"])
    reasons = {(s["model"], s["reason"]) for s in df.attrs["skipped"]}
    assert any("tp does not divide" in r for _, r in reasons)  # falcon-7b has 71 heads: tp=2 is impossible
    assert not any("max_context" in r for _, r in reasons)  # falcon-7b at 4000 + 64 > 2,048: predicted, with a note in predict
    assert any("lacks fp8" in r for _, r in reasons)  # the A100 has no FP8 tensor cores
    assert not ((df.model.str.startswith("Falcon")) & (df.tp == 2)).any()
    assert not ((df.hardware == "NVIDIA A100 SXM4 80GB") & (df.activation_dtype == "fp8_e4m3")).any()
    # W8A16 on the A100 stays: fp8 storage, bf16 compute
    assert ((df.hardware == "NVIDIA A100 SXM4 80GB") & (df.activation_dtype == "bf16")).any()


def test_sweep_rejects_bad_axes():
    with pytest.raises(rl.SpecError, match="batch_size"):
        rl.sweep(model="llama-3.1-8b", hardware="h100-sxm", batch_size=[0, 4])


def test_cli_operator_table(capsys):
    from roofline.cli import main
    assert main(["predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--operators"]) == 0
    out = capsys.readouterr().out
    assert "Operators of Llama 3.1 8B" in out and "decode attention" in out and "prefill mlp_up" in out
