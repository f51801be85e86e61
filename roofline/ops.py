"""The operator cost table: FLOPs and bytes of every kernel of one forward pass, on one GPU.

One derivation serves prefill and decode. A forward pass processes
`new_tokens` per sequence for `batch` sequences that already hold `past_tokens`
of context: prefill is (new = prompt, past = 0), a decode step is
(new = 1, past = context - 1). Every quantity is written with plain arithmetic
so the same code runs on Python numbers (one `predict`) and on numpy arrays
(a whole `sweep` grid at once).

Counting rules
--------------
* FLOPs are real floating-point operations: a multiply-add is 2 FLOPs.
  A GEMM of M tokens through an n x k weight costs 2·M·n·k.
* Bytes are HBM traffic, split by kind: weights, activations (read / written),
  KV cache (read / written) and interconnect messages.
* Attention (FlashAttention-style, the default): each query attends to
  min(position, window) keys; scores never reach HBM; Q is read, O written, and
  each visible K/V token is read once per sequence (re-reads by later query
  tiles are assumed to hit L2). The naive kernel also writes and reads the
  score and probability matrices.
* Tensor parallelism over `tp` GPUs splits heads, FFN width and vocabulary;
  KV heads are replicated when tp exceeds them; MLA latents, routers and MLA
  down-projections are replicated. Each layer ends its attention and its MLP
  with an all-reduce of the T x hidden activations (one per layer with parallel
  attention+MLP blocks).
* MoE: with T tokens routed uniformly to k of E experts, the expected number of
  distinct experts touched is E·(1 - (1 - k/E)^T); their weights are read once.
  With expert parallelism, uneven (power-law) routing makes the step wait for the
  busiest rank's rows (`busiest_rank_load`); within one GPU routing is taken as balanced.
  The routed experts run as one fused MoE layer: the T·k token-expert rows are
  gathered into expert order (`moe_permute`), pass the two grouped expert GEMMs
  and the activation, and are scattered back and summed with their gate weights
  (`moe_unpermute`). These five ops carry `grouped` = the code of the expert
  weights' format (`moe_format`): a calibration with a fused-MoE curve of that
  format (`calibration.MoeCurve`) times them as one layer.
* MLA attention runs absorbed (W_UK into the query, W_UV after attention: the
  latent cache is attended directly, like MQA with a 576-wide head) when a
  sequence adds one token (decode); otherwise the latent is decompressed
  through kv_b_proj and attended as MHA (prefill), as vLLM and SGLang do.
* MLA runs two RMSNorms of its own on the latents (q_a_layernorm over r_q, kv_a_layernorm over
  r_kv: `mla_norms`), and the absorbed decode applies W_UK and W_UV as two batched GEMMs, one before and
  one after the attention kernel (`kv_b_proj` launches twice). A MoE layer selects its experts in a
  routing kernel after the router GEMM (`moe_topk`: scores, grouped top-k, gate weights), and adds its shared
  experts' output to the routed experts' in a kernel of its own (`shared_add`).
* Block-scaled W8A8 (FP8 weights with 128x128 block scales computed in FP8, DeepSeek-V3's checkpoint):
  the GEMM takes FP8 activations with one scale per 128-element group of each row, made by a separate
  per-token-group quantization kernel before every such GEMM outside the fused MoE (`act_quant`).
* The input embedding is a row gather (only T rows are read); the LM head runs
  on the last position of each sequence only.
* Elementwise FLOP counts (norms, activations) are approximate (a few per
  element) and never decide a bound: these kernels are memory-bound.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from enum import Enum
from statistics import NormalDist

import numpy as np

from .attention_shapes import decode_kv_units, executed_pairs, prefill_query_tiles
from .calibration import MOE_FORMATS
from .dtypes import QuantScheme
from .memo import Identity, memoized, plain
from .specs import Matrix, ModelSpec
from .workload import ResolvedDeployment

# Approximate FLOPs per element of the memory-bound elementwise kernels.
NORM_FLOPS_PER_ELEMENT = 5  # fused residual add, square, sum, rsqrt-scale, weight multiply
GATED_ACT_FLOPS_PER_ELEMENT = 4  # silu(g) * u: sigmoid ~3, multiply 1
PLAIN_ACT_FLOPS_PER_ELEMENT = 8  # tanh-approximated GELU
# Launches per attention layer: RoPE + KV-cache write (one fused kernel) and the attention kernel;
# the naive variant runs QK^T, softmax and PV as three kernels.
FLASH_ATTENTION_LAUNCHES = 2
NAIVE_ATTENTION_LAUNCHES = 4
# Reads and writes of the score-sized matrices by a naive attention: write S, read S, write P, read P.
NAIVE_SCORE_PASSES = 4
# Routing metadata of one token-expert pair in the fused MoE layer: its int32 row index in expert order
# (read by the permute and by the unpermute) and its fp32 gate weight (read by the unpermute).
MOE_ROUTE_INDEX_BYTES = 4
MOE_ROUTE_WEIGHT_BYTES = 4
# Routing kernel of a MoE layer, per (token, expert) score: the score function (sigmoid or softmax, ~3), the
# correction bias add and the group/top-k comparisons (~2).
MOE_TOPK_FLOPS_PER_SCORE = 5
# Per-token-group FP8 quantization of an activation element: absolute value, group max, scale, round/convert.
ACT_QUANT_FLOPS_PER_ELEMENT = 4
ACT_QUANT_SCALE_BYTES = 4  # one fp32 scale per group of a row
FP8_ELEMENT_BYTES = 1
# The absorbed MLA decode multiplies by W_UK (q_nope -> latent) before attention and by W_UV (latent -> v) after it:
# two batched GEMMs per layer where the decompressing prefill runs kv_b_proj once.
ABSORBED_KV_B_LAUNCHES = 2


# How tensor parallelism shards each matrix (Megatron-LM layout): row-parallel matrices split their
# inputs (and end in an all-reduce), replicated ones are copied, all others split their outputs.
ROW_PARALLEL = frozenset({"o_proj", "mlp_down", "experts_down", "shared_down"})
REPLICATED = frozenset({"router", "q_a_proj", "kv_a_proj"})


class OpKind(str, Enum):
    GEMM = "gemm"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    GATHER = "gather"
    COMM = "comm"


# The members, looked up once: under Python 3.11 `OpKind.GEMM` goes through the enum's metaclass on every access
# (about 6x a module global's lookup), and every operator of every pass names its kind.
_GEMM, _ATTENTION, _ELEMENTWISE, _GATHER, _COMM = OpKind.GEMM, OpKind.ATTENTION, OpKind.ELEMENTWISE, OpKind.GATHER, OpKind.COMM


@dataclass(slots=True)
class Op:
    """One operator of a forward pass, summed over the `layers` it runs in. Per GPU.

    `gemm_m` is the token count of one GEMM (rows of the activation matrix),
    used to pad to tensor-core tiles; `gemm_n`, `gemm_k` its weight's output and input widths
    (this GPU's slice), which the shape-aware GEMM model (`gemm_shapes`) tiles; `window` caps the context this op reads
    (sliding-window attention), None for all others. `messages` counts the
    ring collectives (all-reduces) a COMM op issues over `comm_bytes`.

    `sparse_2_4` is 1 for GEMMs run on 2:4 sparse tensor cores (their `flops`
    are the executed half; the roofline scales the ceiling by speed-up / 2);
    `vector_flops` is CUDA-core work done inside
    the kernel besides its tensor-core math (dequantizing weight-only formats),
    timed at the vector rate and added to the compute term. `wire_bytes` are
    bytes one GPU sends point-to-point (all-to-all, pipeline hand-offs) in
    `wire_messages` messages, with no ring factor; `host_bytes` cross the host
    link (offloaded weights or KV streamed in).

    Attention ops also carry their shape (`attention_shapes`): `executed_flops`, the FLOPs of the causal
    tiles a flash kernel runs (the useful `flops` for a decode step or a naive kernel); `attention_tiles`,
    its query-tile blocks (0 for a decode step); `kv_units`, its decode work units: (sequence, KV head), or under a
    generic GQA decode kernel its (sequence, query head) blocks, g = `decode_kv_reads` per KV head; each summed
    over the layers. A calibrated profile whose curves were fitted over them times the op by them.
    `grouped` is 0 outside a fused
    MoE layer; on its five kernels (the routed experts' grouped GEMMs, their
    activation, the token permute and unpermute) it is the code of the layer's
    expert-weight format (`moe_format`), which picks the calibration's `moe`
    curve that times them as one layer (ignored without such a curve). `moe_experts` is, on those five ops, the
    experts this GPU holds (E / ep; 0 elsewhere, and where the caller does not say): with the layer's hidden size,
    expert width and top-k it names the per-GPU shape a calibration's measured MoE points are looked up by
    (`calibration.MoePoints`). `attention_heads`, `attention_kv_heads`, `attention_head_dim` and
    `attention_new_tokens` are, on a flash attention op of one head dim (d_qk = d_v: not MLA, not a naive kernel), its
    query and KV heads on this GPU, d and the new tokens n per sequence (0 elsewhere): the per-GPU shape and length a
    calibration's measured prefill attention points are looked up by (`calibration.AttentionPoints`; the sequences are
    `kv_units` / (layers · KV heads), one read per KV head in a prefill pass).

    `l2_read_bytes` are bytes the op's thread blocks read from L2 beside its HBM bytes (not counted in `bytes`),
    timed at the device's measured L2-hit read rate (`HardwareProfile.l2_read_bytes_per_s`) in the compute term
    (`roofline.time_ops`): the KV stream of a generic GQA decode kernel, whose g query-head blocks of one KV head
    each read it, g x `kv_read_bytes` (`decode_kv_reads`); 0 elsewhere. Worked number: Llama-2-70B with an FP8 KV
    cache under TensorRT-LLM 0.5 (`trtllm-cpp-0.5`, group 8), one sequence decoding at context 2,048:
    kv_read_bytes = 80 layers x 2,048 x 2 (K, V) x 8 KV heads x 128 x 1 B = 335,544,320 B from HBM,
    l2_read_bytes = 8 x 335,544,320 = 2,684,354,560 B, 274 us at an H200's 9.8e12 B/s.
    """

    name: str
    group: str
    kind: OpKind
    layers: int
    launches: object
    flops: object
    weight_bytes: object = 0.0
    act_read_bytes: object = 0.0
    act_write_bytes: object = 0.0
    kv_read_bytes: object = 0.0
    kv_write_bytes: object = 0.0
    comm_bytes: object = 0.0
    messages: object = 0.0
    gemm_m: object = 0.0
    gemm_n: object = 0.0
    gemm_k: object = 0.0
    sparse_2_4: object = 0.0
    vector_flops: object = 0.0
    wire_bytes: object = 0.0
    wire_messages: object = 0.0
    host_bytes: object = 0.0
    executed_flops: object = 0.0
    attention_tiles: object = 0.0
    kv_units: object = 0.0
    grouped: object = 0.0
    moe_experts: object = 0.0
    attention_heads: object = 0.0
    attention_kv_heads: object = 0.0
    attention_head_dim: object = 0.0
    attention_new_tokens: object = 0.0
    l2_read_bytes: object = 0.0
    window: float = math.inf

    @property
    def bytes(self):
        """HBM bytes moved (interconnect traffic excluded)."""
        return self.weight_bytes + self.act_read_bytes + self.act_write_bytes + self.kv_read_bytes + self.kv_write_bytes


NUMERIC_FIELDS = tuple(f.name for f in fields(Op) if f.name not in ("name", "group", "kind", "layers", "window"))


# ------------------------------------------------------------------ helpers
_SCALAR_TYPES = (int, float)


def _is_scalar(x) -> bool:
    return type(x) in _SCALAR_TYPES


def _min(a, b):
    return min(a, b) if type(a) in _SCALAR_TYPES and type(b) in _SCALAR_TYPES else np.minimum(a, b)


def _max(a, b):
    return max(a, b) if type(a) in _SCALAR_TYPES and type(b) in _SCALAR_TYPES else np.maximum(a, b)


def _ceil_div(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    if _is_scalar(a) and _is_scalar(b):  # one scenario: a plain float, without a numpy call
        return float(math.ceil(a / b))
    return np.ceil(np.asarray(a) / b)


def attended_keys(new_tokens, past_tokens, window=math.inf):
    """Σ_{i=1..n} min(past + i, window): (query, key) pairs of a causal pass, per head and sequence.

    Full attention, prefill of S tokens: S(S+1)/2. Decode at context c (past = c - 1): min(c, window).
    """
    n, p = new_tokens, past_tokens
    if window == math.inf:
        return n * p + n * (n + 1) / 2
    below = _min(_max(window - p, 0), n)  # queries whose span is still shorter than the window
    return below * p + below * (below + 1) / 2 + (n - below) * window


def visible_keys(new_tokens, past_tokens, window=math.inf):
    """Distinct K/V tokens a pass reads per sequence: past + new, or (window + new - 1) when sliding."""
    total = new_tokens + past_tokens
    return total if window == math.inf else _min(total, window + new_tokens - 1)


def expected_experts_touched(tokens, experts, experts_per_token):
    """E·(1 - (1 - k/E)^T): distinct experts hit when T tokens each pick k of E uniformly.

    One token touches k; many tokens touch all E. Mixtral (E=8, k=2) at T=8: 8·(1 - 0.75^8) = 7.20.
    """
    miss = 1 - experts_per_token / experts
    return experts * (1 - miss**tokens) if _is_scalar(tokens) else experts * (1 - np.power(miss, tokens))


# The power-law routing of aiconfigurator-core's MoE tables (ai-dynamo/aiconfigurator `collector/helper.py`,
# `_generate_power_law_distribution`, used by its TensorRT-LLM, SGLang and vLLM collectors): E per-expert loads drawn from
# the density ∝ x^-α on [1, 0.8·T] when the T·k token-expert rows outnumber the E experts, else on [0.01, 2], then scaled
# to sum to T·k. The busiest EP rank's experts are the ones a table row times.
POWER_LAW_LOW = 1.0
POWER_LAW_HIGH_PER_TOKEN = 0.8
POWER_LAW_LOW_FEW_ROWS = 0.01
POWER_LAW_HIGH_FEW_ROWS = 2.0
_STD_NORMAL = NormalDist()


def expert_load_shares(tokens, experts, experts_per_token, alpha):
    """p_i, i = 1..E: the share of one step's T·k token-expert rows that expert i gets under power-law routing.

    Loads x have the density ∝ x^-α on [lo, hi], (lo, hi) = (1, 0.8·T) when T·k > E, else (0.01, 2) (the tables'
    generator, above). The inverse CDF is x(u) = ((hi^(1-α) - lo^(1-α))·u + lo^(1-α))^(1/(1-α)) (lo·(hi/lo)^u at
    α = 1); the E experts take the mid-quantiles u_i = (i - 1/2)/E (the expected sorted sample, no random draw) and
    p_i = x_i / Σ_j x_j. Shape (E,) + the shape of `tokens`.
    Worked number: E = 2, α = 2, T = 1, k = 1 (T·k ≤ E: lo 0.01, hi 2): x(u) = 1/(100 - 99.5·u), so x(1/4) = 1/75.125
    and x(3/4) = 1/25.375, p = (0.2525, 0.7475).
    """
    t = np.asarray(tokens, dtype=float)
    many = t * experts_per_token > experts
    lo = np.where(many, POWER_LAW_LOW, POWER_LAW_LOW_FEW_ROWS)
    hi = np.maximum(np.where(many, POWER_LAW_HIGH_PER_TOKEN * t, POWER_LAW_HIGH_FEW_ROWS), lo)
    u = ((np.arange(experts) + 0.5) / experts).reshape((experts,) + (1,) * t.ndim)
    if abs(1 - alpha) < 1e-9:
        x = lo * (hi / lo) ** u
    else:
        a = 1 - alpha
        x = ((hi**a - lo**a) * u + lo**a) ** (1 / a)
    return x / x.sum(axis=0)


def expert_load_cv(tokens, experts, experts_per_token, alpha):
    """c = std_i(E·p_i): the coefficient of variation of the experts' loads (`expert_load_shares`), per token count.

    A grid is evaluated once per distinct token count (an E x grid array would be large). 0 when every p_i = 1/E.
    """
    t = np.asarray(tokens, dtype=float)
    if t.ndim == 0:
        return float((experts * expert_load_shares(float(t), experts, experts_per_token, alpha)).std())
    distinct, where = np.unique(t, return_inverse=True)
    cv = (experts * expert_load_shares(distinct, experts, experts_per_token, alpha)).std(axis=0)
    return cv[where].reshape(t.shape)


def expected_max_std_normal(n):
    """z_n, the expected largest of n standard normal draws, by Blom's formula Φ^-1((n - 3/8)/(n + 1/4)).

    z_1 = Φ^-1(1/2) = 0; z_8 = Φ^-1(7.625/8.25) = 1.434 (the exact value is 1.424).
    """
    if _is_scalar(n):
        return _STD_NORMAL.inv_cdf((n - 0.375) / (n + 0.25))
    return np.vectorize(lambda v: _STD_NORMAL.inv_cdf((v - 0.375) / (v + 0.25)), otypes=[float])(n)


def busiest_rank_load(tokens, experts, experts_per_token, ep, alpha):
    """Rows of the busiest of `ep` expert-parallel ranks / the mean rank's rows, when T tokens route by the power law
    of exponent `alpha` (`expert_load_shares`).

    Expert i's load is E·p_i times the mean, with coefficient of variation c = std_i(E·p_i). A rank holds g = E/ep
    experts, a draw without replacement, so its load has relative standard deviation c·√((E - g)/(g·(E - 1))) =
    c·√((ep - 1)/(E - 1)); the largest of ep such (normal) sums is the mean times

        load = 1 + c·√((ep - 1)/(E - 1))·z_ep        (z_ep: `expected_max_std_normal`), at most ep,

    and every rank waits for it. One rank (ep = 1) gives 1. Worked number: E = 256, k = 8, T = 4096, α = 1.01
    (c = 1.776): 1 + 1.776·√(7/255)·1.434 = 1.422 at ep = 8 (the tables' generator, sampled 200 times: 1.47; the normal
    approximation reads low for a few large experts, E = 8: 3.4 against 4.4).
    """
    cv = expert_load_cv(tokens, experts, experts_per_token, alpha)
    spread = np.sqrt(np.maximum(ep - 1, 0) / max(experts - 1, 1))
    load = np.minimum(1 + cv * spread * expected_max_std_normal(ep), ep)
    return float(load) if _is_scalar(tokens) and _is_scalar(ep) else load


def _split(x, tp):
    """x / tp: a dimension sharded over tp GPUs (kept an exact int on one GPU)."""
    return x if _is_scalar(tp) and tp == 1 else x / tp


def _local(m: Matrix, model: ModelSpec, tp):
    """Shape (n, k) of a matrix's shard on one of `tp` GPUs."""
    if _is_scalar(tp) and tp == 1:
        return m.n, m.k
    if m.name == "qkv_proj":
        return (model.num_attention_heads / tp + 2 * model.kv_heads_per_gpu(tp)) * model.head_dim, m.k
    if m.name in ROW_PARALLEL:
        return m.n, m.k / tp
    if m.name in REPLICATED:
        return m.n, m.k
    return m.n / tp, m.k  # column-parallel


# Which weight group (`specs.KeptWeights`) each matrix belongs to, for checkpoints that keep groups in native_dtype.
WEIGHT_GROUP = {
    **dict.fromkeys(("qkv_proj", "o_proj", "q_proj", "q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj"), "attention"),
    "mlp_up": "dense_mlp", "mlp_down": "dense_mlp", "shared_up": "shared_experts", "shared_down": "shared_experts",
    "experts_up": "experts", "experts_down": "experts", "router": "router", "lm_head": "lm_head",
}


def matrix_scheme(name: str, rd: ResolvedDeployment) -> QuantScheme:
    """The storage scheme of one weight matrix, by name.

    Routers are left unquantized (see `ResolvedDeployment.unquantized`), and so is every group a
    quantized checkpoint keeps in native_dtype (`rd.kept`: gpt-oss keeps attention and the LM head in
    BF16, MXFP4 only in its experts); every other matrix uses the weight scheme.
    """
    group = WEIGHT_GROUP.get(name)
    return rd.unquantized if group == "router" or group in rd.kept else rd.weights


def _scheme(m: Matrix, rd: ResolvedDeployment) -> QuantScheme:
    return matrix_scheme(m.name, rd)


# --------------------------------------------------------------- storage
EXPERT_MATRICES = frozenset({"experts_up", "experts_down"})
# 2:4 metadata: a 2-bit position for each kept element, i.e. 1 bit per dense element (NVIDIA Ampere whitepaper).
SPARSE_2_4_META_BITS_PER_ELEMENT = 1
CSR_INDEX_BYTES = 2  # a 16-bit column index per non-zero (rows are at most 65,536 wide)
CSR_ROW_POINTER_BYTES = 4


def sparse_applies(m_name: str, rd: ResolvedDeployment) -> bool:
    """Sparsity prunes the transformer blocks' linear layers; routers, embeddings and the LM head stay dense."""
    return rd.dep.sparsity != "dense" and m_name != "router"


def stored_matrix_bytes(scheme: QuantScheme, n, k, rd: ResolvedDeployment, sparse: bool):
    """Bytes to store one n x k weight matrix in its format, with the deployment's sparsity.

    dense:                    elements + scales (`QuantScheme.matrix_bytes`)
    2:4:                      half the values + 1 metadata bit per element + scales
    unstructured, dense fmt:  unchanged (the zeros are stored)
    unstructured, bitmask:    (1 - s) n k values + n k / 8 mask bytes + scales
    unstructured, csr:        (1 - s) n k (values + 2-byte column index) + 4 (n + 1) row pointers + scales
    (s = sparsity_fraction). CSR costs more than dense below s = 2/(2 + value bytes) (50% for 16-bit).
    """
    dense = scheme.matrix_bytes(n, k)
    dep = rd.dep
    if not sparse or dep.sparsity == "dense":
        return dense
    elements = n * k
    value_bytes = elements * scheme.dtype.bits / 8
    meta = dense - value_bytes
    if dep.sparsity == "2:4":
        return value_bytes / 2 + elements * SPARSE_2_4_META_BITS_PER_ELEMENT / 8 + meta
    nonzero = (1 - dep.sparsity_fraction)
    if dep.sparse_format == "bitmask":
        return nonzero * value_bytes + elements / 8 + meta
    if dep.sparse_format == "csr":
        return nonzero * (value_bytes + elements * CSR_INDEX_BYTES) + (n + 1) * CSR_ROW_POINTER_BYTES + meta
    return dense


def weight_storage_bytes(model: ModelSpec, rd: ResolvedDeployment, tp=1, ep=1):
    """Bytes of weights one GPU stores: every matrix shard, its scales, biases, norms, embeddings.

    At tp=1 in a 16-bit format this is exactly 2 · param_count. With expert parallelism each
    GPU holds E/ep whole experts and a full copy of everything else. With attention data parallelism
    (`Deployment.attention_dp`) each GPU holds the whole attention matrices, embedding and LM head
    (`attention_tp`: 1) and 1/tp of every MLP and expert matrix.
    """
    nb = rd.unquantized_bytes
    a_tp = attention_tp(rd, tp)
    attention = {m.name for m in model.attention_matrices()}
    total = 0.0
    for g in model.layer_groups():
        per_layer = model.norm_params_per_layer() * nb
        for m in model.layer_matrices(g.moe):
            n, k = _local(m, model, a_tp if m.name in attention else tp)
            bias_n = m.n if m.name in ROW_PARALLEL else n  # a row-parallel bias is replicated
            copies = m.copies / ep if m.name in EXPERT_MATRICES and ep > 1 else m.copies
            one = stored_matrix_bytes(_scheme(m, rd), n, k, rd, sparse_applies(m.name, rd))
            per_layer = per_layer + copies * (one + (bias_n * nb if m.bias else 0))
        total = total + g.count * per_layer
    return total + embedding_storage_bytes(model, rd, a_tp) + lm_head_storage_bytes(model, rd, a_tp) + model.final_norm_params * nb


def attention_tp(rd: ResolvedDeployment, tp):
    """The tensor-parallel width attention, its projections, the embedding and the LM head are split over: 1 under
    attention data parallelism (`Deployment.attention_dp`: each rank holds them whole, SGLang 0.4's ReplicatedLinear
    MLA projections, `VocabParallelEmbedding(enable_tp=False)` and ReplicatedLinear lm_head), else tp."""
    return 1 if rd.dep.attention_dp else tp


def attention_dp_rows(batch, new_tokens, ranks):
    """(sequences on the busiest attention rank, rows the MLP/MoE runs over) of a pass of `batch` sequences adding
    `new_tokens` each, spread over `ranks` attention data-parallel ranks (`Deployment.attention_dp`, ranks = tp).

    The scheduler hands requests to the ranks in turn (SGLang's DataParallelController, round robin), so a rank
    holds B/ranks of them. A decode step (new_tokens = 1) replays a CUDA graph on every rank at the same captured
    batch, the largest rank's, and the gathered MoE input is every rank's padded rows (SGLang 0.4 cuda_graph_runner:
    `global_num_tokens = [bs] * tp_size`): ceil(B/ranks) sequences per rank, ranks · ceil(B/ranks) rows. A prefill pass
    runs eagerly, its gather keeps only the real rows (`all_gather` concatenates `all_lens[i]` rows of each rank):
    B/ranks prompts per rank (the mean; serving prefills one prompt per rank), B · new_tokens rows.
    Worked numbers, ranks = 8: a decode step of B = 4 runs 1 sequence per rank and the MoE over 8 rows; B = 12 runs
    2 per rank and 16 rows; a prefill of 8 prompts of 1,000 tokens runs 1 prompt per rank and 8,000 rows."""
    per_rank = np.asarray(batch, dtype=float) / ranks
    # ceil less a hair: a float B/ranks rounded a hair above a whole number is that number
    per_rank = np.where(np.asarray(new_tokens) == 1, np.ceil(per_rank - 1e-9), per_rank)
    if per_rank.ndim == 0:
        per_rank = float(per_rank)
    return per_rank, per_rank * ranks * new_tokens


def all_gather(name, group, layers, rows_per_rank, hidden, ab, ranks) -> Op:
    """All-gather of every rank's `rows_per_rank` hidden-state rows (a decode step's padded to the busiest rank's,
    `attention_dp_rows`), once per layer, before the MLP/MoE block of attention data parallelism.

    Each GPU ends with all ranks · rows rows; it receives the other (ranks - 1) ranks' shares: (ranks - 1)/ranks of the
    gathered rows, wire bytes = (ranks - 1) · rows · hidden · act bytes. NCCL's ring (SGLang 0.4 calls
    `all_gather_into_tensor` on the tp group) takes ranks - 1 steps, each a hop latency: t = W / link + (ranks - 1) ·
    link latency (`roofline.time_ops`' point-to-point term). Worked number (DeepSeek-V3, h = 7,168, bf16 activations,
    8 ranks of 1 decode token each, 61 layers): 61 · 7 · 7,168 · 2 = 6,121,472 B and 61 · 7 = 427 hops a step."""
    sent = _max(ranks - 1, 0)  # peers' shares received, and ring steps
    multi = sent / _max(ranks - 1, 1)  # 1 when ranks > 1, else 0: one NCCL call a layer
    return Op(name, group, OpKind.COMM, layers, launches=layers * multi, flops=0.0,
              wire_bytes=layers * sent * rows_per_rank * hidden * ab, wire_messages=layers * sent)


def reduce_scatter(name, group, layers, rows_per_rank, hidden, ab, ranks) -> Op:
    """Reduce-scatter of the MLP/MoE block's partial sums over all ranks' rows, each rank keeping the sum of its own
    `rows_per_rank` rows, once per layer (attention data parallelism with `EngineProfile.attention_dp_combine`
    reduce_scatter). NCCL's ring: each GPU sends and receives (ranks - 1)/ranks of the ranks · rows rows in ranks - 1
    steps, the same bytes and hops as `all_gather`, half a ring all-reduce. Worked number as `all_gather`'s."""
    return all_gather(name, group, layers, rows_per_rank, hidden, ab, ranks)


def embedding_storage_bytes(model: ModelSpec, rd: ResolvedDeployment, tp=1):
    """Vocabulary-parallel embedding table shard (+ replicated learned positions).

    See `embedding_scheme` for its format.
    """
    h, v = model.hidden_size, model.vocab_size
    scheme = embedding_scheme(model, rd)
    pos = (model.embedding_params - v * h) * rd.unquantized_bytes
    return scheme.matrix_bytes(_split(v, tp), h) + pos


def embedding_scheme(model: ModelSpec, rd: ResolvedDeployment) -> QuantScheme:
    """Format of the input embedding table.

    A tied table is the LM head's matrix and takes the weight format. An untied one
    follows a plain float cast (fp32, fp16) but stays in the native dtype under
    quantization (int8/int4/fp8/nf4/fp4): it is gathered, not multiplied, and GPTQ,
    AWQ and FP8 checkpoints leave it unquantized.
    """
    if model.tied_embeddings:
        return rd.unquantized if rd.kept & {"lm_head", "embedding"} else rd.weights
    return rd.unquantized


def embedding_row_bytes(model: ModelSpec, rd: ResolvedDeployment):
    """Bytes gathered per token: one embedding row (and one learned-position row)."""
    h, nb = model.hidden_size, rd.unquantized_bytes
    scheme = embedding_scheme(model, rd)
    return scheme.matrix_bytes(1, h) + (h * nb if model.position_embedding == "learned" else 0)


def lm_head_storage_bytes(model: ModelSpec, rd: ResolvedDeployment, tp=1):
    """Untied LM head shard in its format (`matrix_scheme`; 0 when tied), plus its bias."""
    h, v = model.hidden_size, model.vocab_size
    bias = (v / tp) * rd.unquantized_bytes if model.lm_head_bias else 0
    return (0 if model.tied_embeddings else matrix_scheme("lm_head", rd).matrix_bytes(_split(v, tp), h)) + bias


def kv_bytes_per_token_per_layer(model: ModelSpec, rd: ResolvedDeployment, tp=1):
    """KV bytes one token adds to one layer's cache on one GPU (heads split by tp, MLA latent replicated)."""
    return model.kv_bytes_per_token_per_layer(rd.kv.dtype, tp)


def kv_cache_bytes(model: ModelSpec, rd: ResolvedDeployment, batch, context_tokens, tp=1):
    """KV cache one GPU holds for `batch` sequences of `context_tokens`: sliding layers keep the window, unless the
    engine's cache does not window them (`EngineProfile.windowed_kv_cache` false: every layer holds the whole context).

    gpt-oss-120b, BF16 KV, 2,000 tokens: 18 full + 18 sliding (window 128) layers of 2 x 8 x 64 x 2 = 2,048 B per token:
    windowed 2,048 x (18 x 2,000 + 18 x 128) = 78.4 MB, unwindowed 2,048 x 36 x 2,000 = 147.5 MB."""
    per_layer = kv_bytes_per_token_per_layer(model, rd, tp)
    windowed = rd.engine is None or rd.engine.windowed_kv_cache
    total = 0.0
    for att, n_layers in model.kv_layers().items():
        tokens = context_tokens if att == "full" or not windowed else _min(context_tokens, model.sliding_window)
        total = total + n_layers * tokens * per_layer
    return batch * total


# ------------------------------------------------------------ the op table
def dequant_vector_flops(rd: ResolvedDeployment, gemm_m, n, k, copies=1):
    """Vector-unit work of a weight-only GEMM: every weight is dequantized once per tile of
    `dequant_tile_tokens` token rows, `dequant_ops_per_weight` operations each.

    W4A16, 8192 x 8192, 256 tokens, tiles of 64: 3 · 8192² · ceil(256/64) = 805 M ops; at batch 1
    (one tile) it is 201 M ops, 3 µs on an H100's 67 TFLOP/s vector units, hidden under the 11 µs the
    33.6 MB of int4 weights take to read. At large batch it is added to the tensor-core time, which
    is why weight-only 8-bit can run slower than the byte count suggests.
    """
    per = rd.dequant_ops_per_weight
    if not per:
        return 0.0
    tiles = _ceil_div(gemm_m, rd.dep.dequant_tile_tokens) if _is_scalar(gemm_m) else np.ceil(np.asarray(gemm_m) / rd.dep.dequant_tile_tokens)
    return per * copies * n * k * tiles


def _gemm(name, group, layers, m_tokens, n, k, scheme: QuantScheme, ab, nb, copies=1, bias=False, gemm_m=None, rd=None, sparse=False):
    """A GEMM of `m_tokens` rows through `copies` weight matrices of n x k (biases unquantized).

    With `rd`, the matrix is stored with the deployment's sparsity (`stored_matrix_bytes`) and a
    weight-only format pays its dequantization (`dequant_vector_flops`). On 2:4 sparse tensor
    cores half the multiply-adds are skipped: `flops` counts the executed half.
    """
    one = scheme.matrix_bytes(n, k) if rd is None else stored_matrix_bytes(scheme, n, k, rd, sparse)
    weights = copies * (one + (n * nb if bias else 0))
    gm = m_tokens if gemm_m is None else gemm_m
    two_four = rd is not None and sparse and rd.dep.sparsity == "2:4"
    return Op(
        name, group, _GEMM, layers, launches=layers,
        flops=layers * 2 * m_tokens * n * k * (0.5 if two_four else 1),
        weight_bytes=layers * weights,
        act_read_bytes=layers * m_tokens * k * ab,
        act_write_bytes=layers * m_tokens * n * ab,
        gemm_m=gm, gemm_n=n, gemm_k=k,
        sparse_2_4=1.0 if two_four else 0.0,
        vector_flops=0.0 if rd is None or scheme is not rd.weights or not rd.dequant_ops_per_weight  # (no dequantization: 0)
        else layers * dequant_vector_flops(rd, gm, n, k, copies),
    )


def _norms(name, group, layers, per_layer, tokens, width, ab, nb):
    """`per_layer` fused residual-add + norm kernels over tokens x width: read x and residual, write both."""
    count = layers * per_layer
    return Op(
        name, group, _ELEMENTWISE, layers, launches=count,
        flops=count * NORM_FLOPS_PER_ELEMENT * tokens * width,
        weight_bytes=count * width * nb,
        act_read_bytes=count * 2 * tokens * width * ab,
        act_write_bytes=count * 2 * tokens * width * ab,
    )


def _activation(name, group, layers, tokens, width, gated: bool, ab):
    """The FFN nonlinearity: gated reads gate and up (2 x width) and writes width; plain reads and writes width."""
    per_el = GATED_ACT_FLOPS_PER_ELEMENT if gated else PLAIN_ACT_FLOPS_PER_ELEMENT
    return Op(
        name, group, _ELEMENTWISE, layers, launches=layers,
        flops=layers * per_el * tokens * width,
        act_read_bytes=layers * (2 if gated else 1) * tokens * width * ab,
        act_write_bytes=layers * tokens * width * ab,
    )


def mla_norms(group, layers, tokens, q_lora_rank, kv_lora_rank, ab, nb) -> Op:
    """MLA's RMSNorms on its latents (no residual): q_a_layernorm over the r_q query latent (when queries are
    compressed) and kv_a_layernorm over the r_kv KV latent. Each reads its T x width input and writes T x width,
    and reads its width of weights. Worked number (DeepSeek-V3: r_q = 1536, r_kv = 512, bf16, T = 4): 2 launches,
    reads 4·2048·2 + 2048·2 = 20,480 B, writes 16,384 B per layer.
    """
    widths = [w for w in (q_lora_rank, kv_lora_rank) if w]
    width = sum(widths)
    return Op("mla_norms", group, _ELEMENTWISE, layers, launches=layers * len(widths),
              flops=layers * NORM_FLOPS_PER_ELEMENT * tokens * width,
              weight_bytes=layers * width * nb,
              act_read_bytes=layers * tokens * width * ab,
              act_write_bytes=layers * tokens * width * ab)


def moe_topk(group, layers, tokens, experts, experts_per_token, ab) -> Op:
    """The routing kernel: the router's T x E scores through the score function (plus the correction bias of
    noaux_tc routing, whose E values are counted with the router's weights), the (grouped) top-k, and the k gate
    weights of each token.

    Reads T·E scores, writes T·k int32 expert ids and T·k fp32 gate weights; one launch
    (the fused kernels: SGLang's moe_fused_gate, TensorRT-LLM's noaux_tc; engines that run it as separate
    torch operations launch more). Worked number (DeepSeek-V3: E = 256, k = 8, bf16, T = 4): reads 4·256·2
    = 2,048 B, writes 4·8·(4 + 4) = 256 B, 5,120 FLOPs per layer.
    """
    pairs = tokens * experts_per_token
    return Op("moe_topk", group, _ELEMENTWISE, layers, launches=layers,
              flops=layers * MOE_TOPK_FLOPS_PER_SCORE * tokens * experts,
              act_read_bytes=layers * tokens * experts * ab,
              act_write_bytes=layers * pairs * (MOE_ROUTE_INDEX_BYTES + MOE_ROUTE_WEIGHT_BYTES))


def shared_add(group, layers, tokens, hidden, ab) -> Op:
    """The shared experts' output added to the routed experts' (one elementwise kernel before the layer's all-reduce,
    as SGLang's and vLLM's DeepSeek MoE blocks run it): reads both T x h, writes T x h. Worked number (DeepSeek-V3,
    h = 7168, bf16, T = 4): reads 2·4·7168·2 = 114,688 B, writes 57,344 B per layer.
    """
    return Op("shared_add", group, _ELEMENTWISE, layers, launches=layers, flops=layers * tokens * hidden,
              act_read_bytes=layers * 2 * tokens * hidden * ab, act_write_bytes=layers * tokens * hidden * ab)


def block_quantized_activations(rd: ResolvedDeployment) -> bool:
    """Whether block-scaled weights run W8A8: 8-bit weights with block scales computed in 8 bits. Their GEMMs
    (DeepGEMM, the Triton and CUTLASS block-FP8 GEMMs of vLLM, SGLang and TensorRT-LLM) take FP8 activations
    with one scale per `group_size`-element group of each row, which a quantization kernel makes first."""
    return rd.weights.granularity == "block" and rd.weights.dtype.bits == 8 and rd.act.bits == 8 and not rd.weight_only


def act_quant(group, layers, gemms: list[Op], group_size) -> Op:
    """Per-token-group FP8 quantization of the inputs of block-scaled W8A8 `gemms` (one kernel each, per layer).

    Each GEMM's T x k input (`gemm_m` x `gemm_k` per layer) is read where the GEMM read it (its `act_read_bytes`,
    or `kv_read_bytes` for the latents a decompressing kv_b_proj takes from the cache) and written as one FP8 byte
    per element with one fp32 scale per `group_size` elements; `_quantize_inputs` then makes the GEMM read that.
    Worked number (DeepSeek-V3 q_a_proj input, h = 7168, groups of 128, bf16, T = 4): reads 4·7168·2 = 57,344 B,
    writes 4·7168·(1 + 4/128) = 29,568 B.
    """
    elements = sum(g.layers * g.gemm_m * g.gemm_k for g in gemms)
    return Op("act_quant", group, _ELEMENTWISE, layers, launches=layers * len(gemms),
              flops=ACT_QUANT_FLOPS_PER_ELEMENT * elements,
              act_read_bytes=sum(g.act_read_bytes for g in gemms),
              kv_read_bytes=sum(g.kv_read_bytes for g in gemms),
              act_write_bytes=elements * quantized_element_bytes(group_size))


def quantized_element_bytes(group_size):
    """Bytes per element of a per-token-group FP8 activation: the FP8 value and its share of the group's fp32 scale."""
    return FP8_ELEMENT_BYTES + ACT_QUANT_SCALE_BYTES / group_size


def _allreduce(name, group, layers, per_layer, tokens, hidden, ab, tp):
    """All-reduce of the T x hidden activations, `per_layer` times per layer (zero on one GPU)."""
    multi = _max(tp - 1, 0) / _max(tp - 1, 1)  # 1 when tp > 1, else 0
    count = layers * per_layer * multi
    return Op(
        name, group, _COMM, layers, launches=count, flops=0.0,
        comm_bytes=count * tokens * hidden * ab, messages=count,
    )


def _attention(model: ModelSpec, rd: ResolvedDeployment, group, layers, window, batch, new, past, tp, naive: bool, absorbed: bool):
    """The attention core of `layers` layers: QK^T, softmax, PV over the visible keys.

    FLOPs per (query, key) pair and head: 2·d_qk for the score, 2·d_v for the weighted sum.
    """
    ab = rd.act_bytes
    heads = _split(model.num_attention_heads, tp)
    pairs = attended_keys(new, past, window)  # per sequence and head
    visible = visible_keys(new, past, window)
    tokens = batch * new
    kv_token = kv_bytes_per_token_per_layer(model, rd, tp)
    if model.mla is not None and absorbed:
        m = model.mla
        d_qk, d_v = m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank
    else:
        d_qk, d_v = model.head_dim, model.v_head_dim
    reads = decode_kv_reads(model, rd, new, tp)  # 1 for MLA and for every kernel that reads a KV head once
    if model.mla is not None and not absorbed:
        # K and V were decompressed by kv_b_proj into activations; the latent was read there.
        kv_read, act_kv = 0.0, batch * visible * heads * (model.head_dim + model.v_head_dim) * ab
    else:
        kv_read, act_kv = batch * visible * kv_token, 0.0
    # a generic GQA decode kernel streams its KV head once per query head: `reads` times the KV through L2, of which
    # HBM supplies it once (`decode_kv_reads`)
    l2_read = np.where(np.asarray(reads) > 1, kv_read * reads, 0.0) if not _is_scalar(reads) else \
        (kv_read * reads if reads > 1 else 0.0)
    score_bytes = NAIVE_SCORE_PASSES * batch * heads * pairs * ab if naive else 0.0
    per_pair = 2 * d_qk + 2 * d_v
    executed = pairs if naive else executed_pairs(new, past, window)  # a naive kernel computes the whole score matrix
    kv_heads = 1 if model.mla is not None and absorbed else (heads if model.mla is not None else model.kv_heads_per_gpu(tp))
    flash = not naive and model.mla is None and d_qk == d_v  # carries its shape for measured points (`Op` docstring)
    return Op(
        "attention", group, _ATTENTION, layers,
        launches=layers * (NAIVE_ATTENTION_LAUNCHES if naive else FLASH_ATTENTION_LAUNCHES),
        flops=layers * batch * heads * pairs * per_pair,
        executed_flops=layers * batch * heads * executed * per_pair,
        attention_tiles=0.0 if naive else layers * prefill_query_tiles(batch, heads, new),
        kv_units=layers * decode_kv_units(batch, kv_heads) * reads,
        act_read_bytes=layers * (tokens * heads * d_qk * ab + act_kv + score_bytes / 2),
        act_write_bytes=layers * (tokens * heads * d_v * ab + score_bytes / 2),
        kv_read_bytes=layers * kv_read,
        kv_write_bytes=layers * tokens * kv_token,
        l2_read_bytes=layers * l2_read,
        attention_heads=heads if flash else 0.0,
        attention_kv_heads=kv_heads if flash else 0.0,
        attention_head_dim=d_qk if flash else 0.0,
        attention_new_tokens=new if flash else 0.0,
        window=window,
    )


def decode_kv_reads(model: ModelSpec, rd: ResolvedDeployment, new_tokens, tp=1):
    """How many times a decode step's attention kernel streams each KV head of a sequence: 1, except on an engine whose
    GQA-aware decode kernel does not serve the layer's layout (`engines.GroupedDecodeKernel`), where the generic kernel
    runs one thread block per (sequence, query head) and each block streams its KV head's keys and values itself:
    g = query heads / KV heads on the GPU times. A prefill pass (new_tokens > 1) runs the context kernel, which reads
    each KV head once.

    Where the g reads come from. The generic kernel's grid is (query heads, sequences) with the query head fastest
    (TensorRT-LLM's masked MHA: grid {num_heads, batch}), so the g blocks of one (sequence, KV head) are consecutive,
    dispatched together and stream the same lines at the same time, and the KV they hold at once (a few sequences'
    worth per layer: Falcon-180B at tp 4, 2 KV heads x 1,152 tokens x 64 x 2 x 1 B = 295 KB a sequence) is far
    below the L2: HBM supplies each line once (`kv_read_bytes` unchanged) and L2 serves all g reads (`Op.l2_read_bytes`
    = g x the KV bytes), timed at the device's measured L2 read rate as SM-side work (`roofline` adds it to the
    compute term). Worked number: Falcon-180B at tp 4 (58 query
    heads, 2 KV heads of 64 on a GPU) under TensorRT-LLM 0.9 (`trtllm-cpp-0.7`: XQA serves head 128 / 256 at group 8
    only): 58 / 2 = 29 reads."""
    kernel = None if rd.engine is None else rd.engine.grouped_decode_kernel
    if kernel is None or model.mla is not None:
        return 1.0
    group = _split(model.num_attention_heads, tp) / model.kv_heads_per_gpu(tp)
    reads = kernel.reads_per_kv_head(model.head_dim, group)
    if _is_scalar(new_tokens):
        return reads if new_tokens == 1 else 1.0
    return np.where(np.asarray(new_tokens) == 1, reads, 1.0)


def _select(mask, a: list[Op], b: list[Op]) -> list[Op]:
    """Op by op, field by field: `a`'s value where `mask` holds, else `b`'s (the two lists have the same ops)."""
    out = []
    for x, y in zip(a, b, strict=True):
        vals = {f: np.where(mask, getattr(x, f), getattr(y, f)) for f in NUMERIC_FIELDS}
        out.append(dataclasses.replace(x, **vals))
    return out


def _forward_key(model, rd, batch, new_tokens, past_tokens, tp=1, mla_absorbed=None, ep=1):
    """`forward_ops`' memo key: one scenario of plain numbers (a grid is built each time)."""
    if plain(batch) and plain(new_tokens) and plain(past_tokens) and plain(tp) and plain(ep):
        return Identity(model), rd.key(), batch, new_tokens, past_tokens, tp, mla_absorbed, ep
    return None


@memoized(_forward_key, maxsize=64, freeze=tuple)
def forward_ops(model: ModelSpec, rd: ResolvedDeployment, batch, new_tokens, past_tokens, tp=1, mla_absorbed: bool | None = None,
                ep=1) -> list[Op]:
    """Every operator of one forward pass over `batch` sequences adding `new_tokens` each, on one GPU.

    Prefill: new_tokens = prompt, past_tokens = 0. Decode step at context c: new_tokens = 1, past_tokens = c - 1.
    With expert parallelism over `ep` GPUs (tp = 1), each GPU runs attention and dense layers on its
    batch / ep sequences and the MoE layers on the tokens all-to-all sends it (see `_moe_ops`). With attention
    data parallelism (`Deployment.attention_dp`, over the tp GPUs) each GPU runs the embedding, attention (whole
    weights, `attention_tp`), norms and LM head on its own sequences and the MLP/MoE tp-sharded over every rank's rows
    (`attention_dp_rows`), between an `all_gather` and the combine (`attention_dp_combine`).
    Offloaded fractions of the weights and KV cache also cross the host link (`host_bytes`).
    One scenario of plain numbers is built once and shared (`memo`; a tuple, which no caller may change); a grid
    returns a new list.
    """
    h = model.hidden_size
    ab, nb = rd.act_bytes, rd.unquantized_bytes
    if mla_absorbed is None and _is_scalar(new_tokens):
        mla_absorbed = new_tokens == 1
    elif mla_absorbed is None:
        one = np.asarray(new_tokens) == 1
        if model.mla is not None and one.any() and not one.all():  # a grid of prompts with some of length 1
            return _select(one, forward_ops(model, rd, batch, new_tokens, past_tokens, tp, True, ep),
                           forward_ops(model, rd, batch, new_tokens, past_tokens, tp, False, ep))
        mla_absorbed = bool(one.all())
    absorbed = mla_absorbed
    global_tokens = batch * new_tokens
    if not (_is_scalar(ep) and ep == 1):
        batch = batch / ep
    dp = rd.dep.attention_dp and not (_is_scalar(tp) and tp == 1)
    if dp:  # attention data-parallel over the tp ranks: this rank's sequences; the MLP/MoE over every rank's rows
        batch, ffn_tokens = attention_dp_rows(batch, new_tokens, tp)
    a_tp = attention_tp(rd, tp)
    tokens = batch * new_tokens
    if not dp:
        ffn_tokens = tokens
    naive = rd.dep.attention_impl == "naive"
    gated = model.ffn_kind == "gated"
    ops: list[Op] = [
        Op("embedding", "model", _GATHER, 1, launches=1, flops=0.0,
           weight_bytes=tokens * embedding_row_bytes(model, rd),
           act_write_bytes=tokens * h * ab),
    ]
    for g in model.layer_groups():
        lab, L = g.label, g.count
        window = g.window if g.window is not None else math.inf
        group_start = len(ops)
        ops.append(_norms("norms", lab, L, model.n_norms_per_layer, tokens, h, ab, nb))
        for m in model.attention_matrices():
            if m.name == "o_proj":  # the attention core sits between the projections that feed it and o_proj
                ops.append(_attention(model, rd, lab, L, window, batch, new_tokens, past_tokens, a_tp, naive, absorbed))
            # [T, k] x [k, n] with n, k this GPU's slice of the matrix: qkv_proj [T, h] x [h, (q + 2kv)·d/tp];
            # o_proj [T, q·d/tp] x [q·d/tp, h]; MLA q_a [T, h] x [h, r_q], q_b [T, r_q] x [r_q, q·d/tp],
            # kv_a [T, h] x [h, r_kv + d_rope], kv_b [B·visible, r_kv] x [r_kv, q·(d_nope + d_v)/tp]
            n, k = _local(m, model, a_tp)
            m_tokens = tokens
            if m.name == "kv_b_proj" and not absorbed:  # decompress every visible latent
                m_tokens = batch * visible_keys(new_tokens, past_tokens, window)
            op = _gemm(m.name, lab, L, m_tokens, n, k, _scheme(m, rd), ab, nb, bias=m.bias, rd=rd, sparse=sparse_applies(m.name, rd))
            if m.name == "kv_b_proj" and not absorbed:
                op.act_read_bytes = 0.0
                op.kv_read_bytes = L * m_tokens * kv_bytes_per_token_per_layer(model, rd, a_tp)
            elif m.name == "kv_b_proj":  # absorbed: W_UK before the attention kernel, W_UV after it
                op.launches = L * ABSORBED_KV_B_LAUNCHES
            ops.append(op)
        if model.mla is not None:
            ops.append(mla_norms(lab, L, tokens, model.mla.q_lora_rank, model.mla.kv_lora_rank, ab, nb))
        if dp:  # every rank's rows in, before the MLP/MoE (`attention_dp_rows`: a decode step's padded to the busiest rank's)
            ops.append(all_gather("all_gather", lab, L, ffn_tokens / tp, h, ab, tp))
        if g.moe:
            ops += _moe_ops(model, rd, lab, L, ffn_tokens, tp, gated, ep, global_tokens)
        else:
            up, down = model.mlp_matrices(False)
            sp = sparse_applies("mlp", rd)
            # [T, h] x [h, 2F/tp] (gate and up fused; F/tp without a gate)
            ops.append(_gemm("mlp_up", lab, L, ffn_tokens, *_local(up, model, tp), _scheme(up, rd), ab, nb, bias=up.bias, rd=rd, sparse=sp))
            ops.append(_activation("mlp_act", lab, L, ffn_tokens, _split(model.intermediate_size, tp), gated, ab))
            # [T, F/tp] x [F/tp, h]
            ops.append(_gemm("mlp_down", lab, L, ffn_tokens, *_local(down, model, tp), _scheme(down, rd), ab, nb, bias=down.bias, rd=rd, sparse=sp))
        if block_quantized_activations(rd):
            ops += _quantize_inputs(ops[group_start:], rd, lab, L, absorbed)
        if dp and attention_dp_combine(rd) == "reduce_scatter":  # each rank keeps the sum of its own rows
            ops.append(reduce_scatter("reduce_scatter", lab, L, ffn_tokens / tp, h, ab, tp))
        elif dp:  # the MLP/MoE's own all-reduce over every rank's rows, then each rank slices its own (none after attention)
            ops.append(_allreduce("allreduce", lab, L, 1, ffn_tokens, h, ab, tp))
        else:  # all-reduces after attention and after the MLP (one after both with parallel blocks), in one row
            ops.append(_allreduce("allreduce", lab, L, 1 if model.parallel_blocks else 2, tokens, h, ab, tp))
    ops.append(_norms("final_norm", "model", 1, 1, tokens, h, ab, nb))
    v_local = _split(model.vocab_size, a_tp)
    # [B, h] x [h, V/tp]: the last position of each sequence only
    lm_scheme = embedding_scheme(model, rd) if model.tied_embeddings else matrix_scheme("lm_head", rd)
    ops.append(_gemm("lm_head", "model", 1, batch, v_local, h, lm_scheme, ab, nb, bias=model.lm_head_bias, rd=rd))
    fw, fk = rd.dep.weight_offload_fraction, rd.dep.kv_offload_fraction
    if fw or fk:
        for op in ops:
            op.host_bytes = fw * op.weight_bytes + fk * op.kv_read_bytes
    return ops


def attention_dp_combine(rd: ResolvedDeployment) -> str:
    """How attention data parallelism brings the MLP/MoE output back to each rank (`EngineProfile.attention_dp_combine`):
    `all_reduce` of every rank's rows, each rank then slicing its own (SGLang 0.4), or `reduce_scatter`; the bare
    roofline (no engine) takes reduce_scatter, the least a layout needs to move."""
    return "reduce_scatter" if rd.engine is None else rd.engine.attention_dp_combine


def _quantize_inputs(group_ops: list[Op], rd: ResolvedDeployment, group, layers, absorbed) -> list[Op]:
    """The `act_quant` op of a layer group's block-scaled W8A8 GEMMs, which then read FP8 activations and scales.

    Those GEMMs are the group's GEMMs stored in the weight format outside the fused MoE (whose kernels quantize
    their own rows and are timed as one layer): not the router (unquantized), not the absorbed W_UK / W_UV
    batched GEMMs (SGLang and vLLM keep them in 16 bits; `kv_b_proj` at decode). One quantization per GEMM, as
    each linear layer of these engines quantizes its own input (an engine that fuses q_a_proj and kv_a_proj
    quantizes their shared input once).
    """
    gemms = [op for op in group_ops if op.kind is _GEMM and not op.grouped and matrix_scheme(op.name, rd) is rd.weights
             and not (absorbed and op.name == "kv_b_proj")]
    if not gemms:
        return []
    size = rd.weights.group_size
    quant = act_quant(group, layers, gemms, size)
    for op in gemms:  # the GEMM now reads the quantized input (the latents' cache read moved into the quantization)
        op.act_read_bytes = op.layers * op.gemm_m * op.gemm_k * quantized_element_bytes(size)
        op.kv_read_bytes = 0.0
    return [quant]


def moe_format(scheme: QuantScheme) -> str | None:
    """The `calibration.MOE_FORMATS` name of expert weights stored in `scheme`, or None (no curve can describe them).

    16-bit -> bf16; 8-bit with block scales -> fp8_block, other 8-bit -> fp8; 4-bit -> fp4.
    """
    bits = scheme.dtype.bits
    if bits == 8:
        return "fp8_block" if scheme.granularity == "block" else "fp8"
    return {16: "bf16", 4: "fp4"}.get(bits)


def moe_format_code(scheme: QuantScheme) -> float:
    """An op's `grouped` value in a fused MoE layer: 1 + the index of `moe_format` in `calibration.MOE_FORMATS`,
    or len(MOE_FORMATS) + 1 for a format no curve describes (never 0, which marks ops outside the layer)."""
    name = moe_format(scheme)
    return float(1 + (MOE_FORMATS.index(name) if name is not None else len(MOE_FORMATS)))


def moe_permute(group, layers, tokens, experts_per_token, hidden, ab) -> Op:
    """Gather T tokens' activations into expert order: each of the T·k token-expert rows is one copy of its token.

    Reads T·h activations and T·k int32 row indices, writes T·k·h (one row per pair). No FLOPs.
    Worked number (Mixtral, h = 4096, k = 2, bf16, T = 8): reads 8·4096·2 + 16·4 = 65,600 B, writes 16·4096·2
    = 131,072 B per layer.
    """
    pairs = tokens * experts_per_token
    return Op("moe_permute", group, _GATHER, layers, launches=layers, flops=0.0,
              act_read_bytes=layers * (tokens * hidden * ab + pairs * MOE_ROUTE_INDEX_BYTES),
              act_write_bytes=layers * pairs * hidden * ab)


def moe_unpermute(group, layers, tokens, experts_per_token, hidden, ab) -> Op:
    """Scatter the T·k expert outputs back to token order, each token the gate-weighted sum of its k rows.

    Reads T·k·h activations, T·k int32 indices and T·k fp32 gate weights; writes T·h. FLOPs 2·T·k·h (one
    multiply-add per element of each row). Worked number (Mixtral, T = 8): reads 16·4096·2 + 16·8 = 131,200 B,
    writes 65,536 B, 131,072 FLOPs per layer.
    """
    pairs = tokens * experts_per_token
    return Op("moe_unpermute", group, _ELEMENTWISE, layers, launches=layers,
              flops=layers * 2 * pairs * hidden,
              act_read_bytes=layers * pairs * (hidden * ab + MOE_ROUTE_INDEX_BYTES + MOE_ROUTE_WEIGHT_BYTES),
              act_write_bytes=layers * tokens * hidden * ab)


def fused_moe_ops(rd: ResolvedDeployment, group, layers, tokens, routed, touched, hidden, up_shape, down_shape,
                  experts_per_token, gated: bool, bias: bool = False, sparse: bool = False, local_experts=0.0) -> list[Op]:
    """The five kernels of one GPU's fused MoE layer, in order: permute, grouped up GEMM, activation,
    grouped down GEMM, unpermute.

    `tokens` T are this GPU's tokens (permuted before, summed back after the experts), `routed` the
    token-expert rows its experts compute, `touched` the distinct experts it reads, so each expert's GEMM has
    routed / touched rows: up [routed/touched, h] x [h, n_up] per touched expert, down [routed/touched, F_e] x
    [F_e, h] (`up_shape`, `down_shape` are this GPU's (n, k) slices). Each op's `grouped` is the expert
    weights' format code (`moe_format_code`), which selects a calibration's `moe` curve (`calibration.MoeCurve`), and
    `moe_experts` the `local_experts` this GPU holds (E / ep; 0: not said, no measured points apply).
    """
    ab, nb = rd.act_bytes, rd.unquantized_bytes
    per_expert_m = routed / touched
    fused = [
        moe_permute(group, layers, tokens, experts_per_token, hidden, ab),
        _gemm("experts_up", group, layers, routed, *up_shape, rd.weights, ab, nb, touched, bias, per_expert_m, rd=rd, sparse=sparse),
        _activation("experts_act", group, layers, routed, down_shape[1], gated, ab),
        _gemm("experts_down", group, layers, routed, *down_shape, rd.weights, ab, nb, touched, bias, per_expert_m, rd=rd, sparse=sparse),
        moe_unpermute(group, layers, tokens, experts_per_token, hidden, ab),
    ]
    code = moe_format_code(rd.weights)
    for op in fused:
        op.grouped = code
        op.moe_experts = local_experts
    return fused


def _moe_ops(model: ModelSpec, rd: ResolvedDeployment, group, layers, tokens, tp, gated, ep=1, global_tokens=None) -> list[Op]:
    """Router, routed experts (only the distinct experts touched are read) and shared experts.

    Expert parallelism over `ep` GPUs: the T tokens of all GPUs pick k experts each; a GPU holds
    E/ep experts, touches E·(1-(1-k/E)^T)/ep of them and computes T·k/ep token-expert pairs
    under balanced routing (`Deployment.expert_routing_alpha` None). Uneven routing (a power law,
    the default) is applied here and only here (`busiest_rank_load`): the step waits for the
    busiest rank, which computes `load` · T·k/ep pairs (its share of the touched experts kept at
    the mean, E·(1-(1-k/E)^T)/ep) and receives and returns `load` times the mean rank's rows.
    Within one GPU the layer is still timed as balanced: the fewer experts a skewed batch touches
    and its cold experts' weight reads beside its hot experts' compute are left out (the first
    alone moves the kernel tables' power-law / balanced ratios further from the model; both
    together fit them better but overstate the tables' decode gain, and a GEMM table, where no
    fused-MoE curve applies, would time each load group as its own kernel).
    Dispatch and combine are two all-to-alls: each GPU sends (T/ep)·k·(ep-1)/ep rows of `hidden`
    activations to its peers and gets as many back (times `load` on the busiest rank), in ep - 1
    messages each way. The routed experts' five kernels (`fused_moe_ops`) move this
    GPU's own T tokens in the permute and unpermute (before dispatch, after combine).
    """
    e = model.moe
    ab, nb = rd.act_bytes, rd.unquantized_bytes
    mats = {m.name: m for m in model.mlp_matrices(True)}
    router = mats["router"]
    all_tokens = tokens if global_tokens is None else global_tokens
    touched = expected_experts_touched(all_tokens, e.num_experts, e.experts_per_token)
    routed = all_tokens * e.experts_per_token  # token-expert pairs
    multi = not (_is_scalar(ep) and ep == 1)
    load = 1.0
    if multi:  # the busiest rank: `load` times the mean rank's rows, the mean rank's share of the touched experts
        alpha = rd.dep.expert_routing_alpha
        if alpha is not None:
            load = busiest_rank_load(all_tokens, e.num_experts, e.experts_per_token, ep, alpha)
        touched, routed = touched / ep, routed * load / ep
    sp = sparse_applies("experts", rd)
    ops = [_gemm("router", group, layers, tokens, router.n, router.k, _scheme(router, rd), ab, nb, bias=router.bias),  # [T, h] x [h, E]
           moe_topk(group, layers, tokens, e.num_experts, e.experts_per_token, ab)]
    up_n, up_k = _local(mats["experts_up"], model, tp)
    dn_n, dn_k = _local(mats["experts_down"], model, tp)
    # per touched expert [T·k/touched, h] x [h, 2F_e/tp]; down [T·k/touched, F_e/tp] x [F_e/tp, h] (T·k/ep rows in all)
    ops += fused_moe_ops(rd, group, layers, tokens, routed, touched, model.hidden_size, (up_n, up_k), (dn_n, dn_k),
                         e.experts_per_token, gated, e.expert_bias, sp, e.num_experts / ep)
    if e.num_shared_experts:
        su, sd = _local(mats["shared_up"], model, tp), _local(mats["shared_down"], model, tp)
        # shared experts, every token: [T, h] x [h, 2F_s/tp] and [T, F_s/tp] x [F_s/tp, h]
        ops.append(_gemm("shared_up", group, layers, tokens, *su, matrix_scheme("shared_up", rd), ab, nb, rd=rd, sparse=sp))
        ops.append(_activation("shared_act", group, layers, tokens, sd[1], gated, ab))
        ops.append(_gemm("shared_down", group, layers, tokens, *sd, matrix_scheme("shared_down", rd), ab, nb, rd=rd, sparse=sp))
        ops.append(shared_add(group, layers, tokens, model.hidden_size, ab))
    if multi:
        pairs_sent = load * tokens * e.experts_per_token * (ep - 1) / ep  # the busiest rank gets and returns `load` x the mean
        ops.append(Op("all_to_all", group, _COMM, layers, launches=2 * layers, flops=0.0,
                      wire_bytes=layers * 2 * pairs_sent * model.hidden_size * ab, wire_messages=layers * 2 * (ep - 1)))
    return ops
