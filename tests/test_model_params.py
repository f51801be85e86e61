"""Shipped model specs against their published parameter counts.

Every id in `model_specs/` has a row in `PUBLISHED`: the total parameter count the
model's publisher (or its checkpoint) states, the active count for MoE models, and
where the figure comes from. `ModelSpec.param_count` must land within 2% of it;
there is no wider tolerance anywhere. Where a published figure counts something
differently from `ModelSpec`, the row says how and the test applies that exact
difference instead of loosening the tolerance:

* `checkpoint_duplicate`: the Falcon 7B/40B safetensors store lm_head.weight as a
  copy of the tied word embedding, so the checkpoint holds vocab x hidden more
  values than the model has parameters (the model ties them; see
  vllm-project/vllm#3590).
* `active_excludes_embedding`: the gpt-oss model card's "active parameters per
  token" leave out the input embedding table (a lookup, not a matmul), while
  `active_param_count` includes it (the Mixtral / DeepSeek convention).

Three models are also worked by hand below, so the formula is checked from first
principles and not only against rounded figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import roofline as rl

SPEC_DIR = Path(__file__).resolve().parent.parent / "model_specs"

EXPECTED_IDS = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b",
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
    "llama-3.2-1b", "llama-3.2-3b", "llama-3.3-70b",
    "mistral-7b", "mixtral-8x7b", "mixtral-8x22b",
    "qwen2.5-7b", "qwen2.5-72b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b",
    "gemma-2-9b", "gemma-2-27b",
    "deepseek-v3", "gpt-oss-20b", "gpt-oss-120b",
    "falcon-7b", "falcon-40b", "falcon-180b",
    "gpt-j-6b", "gpt-3-175b", "mpt-7b", "phi-3-mini",
]

TOLERANCE = 0.02


@dataclass(frozen=True)
class Published:
    total: float                    # parameters (or checkpoint values, see checkpoint_duplicate)
    active: float | None = None     # MoE: parameters one token touches
    active_excludes_embedding: bool = False
    checkpoint_duplicate: int = 0   # values the checkpoint stores twice (a tied lm_head copy)


PUBLISHED: dict[str, Published] = {
    # Llama 2: Hugging Face model pages (safetensors parameter count of meta-llama/Llama-2-*-hf).
    "llama-2-7b": Published(6.74e9),
    "llama-2-13b": Published(13.0e9),
    "llama-2-70b": Published(69.0e9),
    # Llama 3.1 / 3.3: Hugging Face model pages (safetensors parameter count), 8.03B / 70.6B / 406B.
    "llama-3.1-8b": Published(8.03e9),
    "llama-3.1-70b": Published(70.6e9),
    "llama-3.1-405b": Published(406e9),
    "llama-3.3-70b": Published(70.6e9),
    # Llama 3.2 model card, "Llama 3.2 (text only)" table: 1.23B and 3.21B parameters.
    "llama-3.2-1b": Published(1.23e9),
    "llama-3.2-3b": Published(3.21e9),
    # Mistral 7B v0.1: Hugging Face model page (safetensors parameter count), 7.24B.
    "mistral-7b": Published(7.24e9),
    # Mistral AI announcements (mistral.ai/news/mixtral-of-experts, .../mixtral-8x22b):
    # 46.7B total / 12.9B used per token; 141B total / 39B active.
    "mixtral-8x7b": Published(46.7e9, 12.9e9),
    "mixtral-8x22b": Published(141e9, 39e9),
    # Qwen model cards ("Number of Parameters"; MoE: "Number of Activated Parameters").
    "qwen2.5-7b": Published(7.61e9),
    "qwen2.5-72b": Published(72.7e9),
    "qwen3-32b": Published(32.8e9),
    "qwen3-30b-a3b": Published(30.5e9, 3.3e9),
    "qwen3-235b-a22b": Published(235e9, 22e9),
    # Gemma 2 paper (arXiv 2408.00118), parameter-count table: embedding + non-embedding
    # parameters, 917,962,752 + 8,324,201,984 and 1,180,237,824 + 26,047,480,320 (the paper's
    # embedding counts a 256,128-row table; the released config has 256,000 rows).
    "gemma-2-9b": Published(917_962_752 + 8_324_201_984),
    "gemma-2-27b": Published(1_180_237_824 + 26_047_480_320),
    # DeepSeek-V3 technical report (arXiv 2412.19437): 671B total, 37B activated per token.
    # The 685B on Hugging Face adds the 14B multi-token-prediction module, not modeled here.
    "deepseek-v3": Published(671e9, 37e9),
    # gpt-oss model card (arXiv 2508.10925), Table 1: total 20.91B / 116.83B, active per token
    # 3.61B / 5.13B. Those active counts leave the input embedding table out.
    "gpt-oss-20b": Published(20.91e9, 3.61e9, active_excludes_embedding=True),
    "gpt-oss-120b": Published(116.83e9, 5.13e9, active_excludes_embedding=True),
    # Falcon 7B / 40B: safetensors shards of tiiuae/falcon-7b (9.95 + 4.48 GB) and
    # tiiuae/falcon-40b (9.50 + 7 x 9.51 + 7.58 GB) in BF16, 2 bytes per value; both store
    # lm_head.weight as a copy of the tied 65,024-row embedding.
    "falcon-7b": Published((9.95e9 + 4.48e9) / 2, checkpoint_duplicate=65024 * 4544),
    "falcon-40b": Published((9.50e9 + 7 * 9.51e9 + 7.58e9) / 2, checkpoint_duplicate=65024 * 8192),
    # Falcon 180B model card: "a 180B parameters causal decoder-only model".
    "falcon-180b": Published(180e9),
    # GPT-J 6B model card hyperparameter table: n_parameters 6,053,381,344.
    "gpt-j-6b": Published(6_053_381_344),
    # GPT-3 paper (arXiv 2005.14165) Table 2.1: n_params 175.0B.
    "gpt-3-175b": Published(175.0e9),
    # MPT-7B model card hyperparameter table: n_parameters 6.7B.
    "mpt-7b": Published(6.7e9),
    # Phi-3-mini-4k-instruct model card: "a 3.8B parameters ... open model".
    "phi-3-mini": Published(3.8e9),
}


def _rel_err(got: float, want: float) -> float:
    return abs(got - want) / want


# ------------------------------------------------------------------ registry
def test_list_models_is_the_full_list():
    assert sorted(rl.list_models()) == sorted(EXPECTED_IDS)


def test_every_shipped_id_has_a_published_row():
    assert set(PUBLISHED) == set(EXPECTED_IDS)


def test_ids_match_file_names():
    stems = sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))
    assert stems == sorted(EXPECTED_IDS)
    for stem in stems:
        assert rl.load_model(stem) == rl.load_model(SPEC_DIR / f"{stem}.yaml")


@pytest.mark.parametrize("model_id", EXPECTED_IDS)
def test_every_model_loads(model_id):
    spec = rl.load_model(model_id)
    assert isinstance(spec, rl.ModelSpec)
    assert spec.source.startswith("https://")
    assert spec.param_count > 0
    assert 0 < spec.active_param_count <= spec.param_count


# ------------------------------------------------------------ published counts
@pytest.mark.parametrize("model_id", EXPECTED_IDS)
def test_param_count_matches_published(model_id):
    spec = rl.load_model(model_id)
    row = PUBLISHED[model_id]
    got = spec.param_count + row.checkpoint_duplicate
    assert _rel_err(got, row.total) <= TOLERANCE, (
        f"{model_id}: param_count {spec.param_count:,} (+{row.checkpoint_duplicate:,} duplicated in the "
        f"checkpoint) vs published {row.total:,.0f}: {100 * (got / row.total - 1):+.2f}%"
    )


@pytest.mark.parametrize("model_id", [m for m in EXPECTED_IDS if PUBLISHED[m].active is not None])
def test_active_param_count_matches_published(model_id):
    spec = rl.load_model(model_id)
    row = PUBLISHED[model_id]
    assert spec.moe is not None
    got = spec.active_param_count - (spec.embedding_params if row.active_excludes_embedding else 0)
    assert _rel_err(got, row.active) <= TOLERANCE, (
        f"{model_id}: active {got:,} vs published {row.active:,.0f}: {100 * (got / row.active - 1):+.2f}%"
    )


@pytest.mark.parametrize("model_id", EXPECTED_IDS)
def test_only_moe_models_have_fewer_active_than_total(model_id):
    spec = rl.load_model(model_id)
    assert (spec.moe is not None) == (PUBLISHED[model_id].active is not None)
    if spec.moe is None:
        assert spec.active_param_count == spec.param_count
    else:
        assert spec.active_param_count < spec.param_count


# ------------------------------------------------------------- by hand
def test_llama_2_7b_by_hand():
    # 32 layers x (4·4096² attention + 3·4096·11008 SwiGLU + 2·4096 RMSNorm weights)
    # + 2·32000·4096 (untied embedding and LM head) + 4096 (final norm).
    d, f, layers, vocab = 4096, 11008, 32, 32000
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    assert per_layer == 202_383_360
    total = layers * per_layer + 2 * vocab * d + d
    assert total == 6_738_415_616
    assert rl.load_model("llama-2-7b").param_count == total


def test_gemma_2_9b_non_embedding_by_hand():
    # The Gemma 2 paper's non-embedding count, exactly: 42 layers x (q 3584->16·256,
    # k and v 3584->8·256, o 4096->3584, GeGLU 3·3584·14336, four RMSNorms) + final norm.
    # Tied embeddings: the 256,000 x 3584 table is counted once, outside this figure.
    d, f, layers = 3584, 14336, 42
    q, kv = 16 * 256, 8 * 256
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * f + 4 * d
    non_embedding = layers * per_layer + d
    assert non_embedding == 8_324_201_984
    spec = rl.load_model("gemma-2-9b")
    assert spec.param_count - spec.embedding_params == non_embedding
    assert spec.lm_head_params == 0


def test_mixtral_8x7b_by_hand():
    # Attention: q and o 4096², k and v 4096·(8·128). Router 8·4096. Eight SwiGLU experts of
    # 3·4096·14336. Two RMSNorms. Untied 32000-row embedding and LM head, final norm.
    d, f, layers, vocab = 4096, 14336, 32, 32000
    attn = 2 * d * d + 2 * d * 8 * 128
    expert = 3 * d * f
    router, norms = 8 * d, 2 * d
    outer = 2 * vocab * d + d
    total = layers * (attn + router + 8 * expert + norms) + outer
    active = layers * (attn + router + 2 * expert + norms) + outer
    assert (total, active) == (46_702_792_704, 12_879_925_248)
    spec = rl.load_model("mixtral-8x7b")
    assert (spec.param_count, spec.active_param_count) == (total, active)


def test_gpt_j_6b_by_hand():
    # Parallel block, one LayerNorm (weight + bias) per layer; bias-free attention
    # (4·4096²), MLP 4096->16384->4096 with biases; untied LM head with a bias.
    d, f, layers, vocab = 4096, 16384, 28, 50400
    per_layer = 4 * d * d + (2 * d * f + f + d) + 2 * d
    total = layers * per_layer + vocab * d + (vocab * d + vocab) + 2 * d
    assert total == 6_050_882_784
    assert rl.load_model("gpt-j-6b").param_count == total


# ------------------------------------------------------- structure from configs
def test_attention_patterns_follow_the_configs():
    for model_id, window in [("gemma-2-9b", 4096), ("gemma-2-27b", 4096),
                             ("gpt-oss-20b", 128), ("gpt-oss-120b", 128)]:
        spec = rl.load_model(model_id)
        assert spec.layer_attention(0) == "sliding" and spec.layer_attention(1) == "full", model_id
        assert spec.sliding_window == window, model_id
        assert spec.kv_layers() == {"sliding": spec.num_layers // 2, "full": spec.num_layers // 2}
    mistral = rl.load_model("mistral-7b")
    assert mistral.kv_layers() == {"sliding": 32} and mistral.sliding_window == 4096


def test_deepseek_v3_structure():
    spec = rl.load_model("deepseek-v3")
    assert spec.attention == "mla"
    assert spec.moe.dense_layers == (0, 1, 2) and spec.moe.num_shared_experts == 1
    assert [g.moe for g in spec.layer_groups()] == [False, True]
    assert spec.kv_row() == (1, 512 + 64)


def test_biases_norms_and_positions_follow_the_configs():
    assert rl.load_model("qwen2.5-7b").qkv_bias and not rl.load_model("qwen2.5-7b").o_bias
    assert all(rl.load_model(m).qk_norm for m in ("qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b"))
    oss = rl.load_model("gpt-oss-120b")
    assert oss.qkv_bias and oss.o_bias and oss.moe.router_bias and oss.moe.expert_bias
    gptj = rl.load_model("gpt-j-6b")
    assert gptj.parallel_blocks and gptj.n_norms_per_layer == 1 and gptj.mlp_bias and gptj.lm_head_bias
    gpt3 = rl.load_model("gpt-3-175b")
    assert gpt3.position_embedding == "learned" and gpt3.norm == "layernorm" and gpt3.norm_bias
    assert gpt3.qkv_bias and gpt3.o_bias and gpt3.mlp_bias and gpt3.tied_embeddings
    assert rl.load_model("mpt-7b").position_embedding == "alibi"
    assert rl.load_model("falcon-7b").n_norms_per_layer == 1
    assert rl.load_model("falcon-40b").n_norms_per_layer == 2
    assert rl.load_model("falcon-180b").n_norms_per_layer == 2
    assert rl.load_model("gemma-2-9b").n_norms_per_layer == 4
    for m in ("falcon-7b", "falcon-40b", "falcon-180b", "gpt-j-6b", "gpt-3-175b", "mpt-7b"):
        assert rl.load_model(m).ffn_kind == "plain", m
    for m in ("gemma-2-9b", "gemma-2-27b", "llama-3.2-1b", "llama-3.2-3b", "falcon-7b", "mpt-7b"):
        assert rl.load_model(m).tied_embeddings, m
