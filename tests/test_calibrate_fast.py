"""The reference engine (calibrate/fast.py) against the textbook forward pass, and the engine description's arithmetic.

On the CPU: numerics of every precision this torch can run (fp32, bf16, fp8 through `_scaled_mm` or its fp32
emulation, int8 weight-only), the static cache and its KV buckets, no K/V copies in a decode step, and the
engine-adjusted prediction by hand. CUDA graphs and the flash assertion run only on a GPU (test_calibrate_gpu.py).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import roofline as rl  # noqa: E402
from calibrate import engine as E  # noqa: E402
from calibrate import fast  # noqa: E402
from calibrate.validate import TINY_LLAMA, load_spec  # noqa: E402
from roofline.errors import SpecError  # noqa: E402
from roofline.specs import ModelSpec  # noqa: E402

SPEC = load_spec("tiny-llama")  # 2 layers, h 64, 4 query heads, 2 KV heads, d 16, f 128, vocab 256
TIED = ModelSpec.model_validate({**TINY_LLAMA, "tied_embeddings": True})


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _model(precision, spec=SPEC, seed=0, **kw):
    sup = fast.precision_support(precision, "cpu")
    if not sup.ok:
        pytest.skip(f"{precision} does not run on this CPU torch: {sup.reason}")
    m = fast.build(spec, precision, "cpu", seed=seed, **kw)
    return m


# tolerances: ||out - ref|| / ||ref|| over the logits (METHOD.md): fp32 far under 1e-3; bf16 operands 1e-3..1e-2
# (3e-2 allows the 2-layer accumulation); e4m3 has 3 mantissa bits (relative rounding up to 2^-4 = 6% per
# element, on both operands of five chained GEMMs whose K is only 64-128 terms, so little averages out):
# 0.25, where a wrong scale gives ~1 (seen while writing it); int8 weights (per-row, 1/254 of the range) as bf16
TOL = {"fp32": 1e-5, "bf16": 3e-2, "fp8": 0.25, "int8": 3e-2}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp8", "int8"])
def test_prefill_and_cached_decode_match_the_textbook_forward_pass(precision):
    m = _model(precision, seed=3)
    tokens = torch.randint(0, SPEC.vocab_size, (2, 11))  # fresh random tokens each run
    if precision == "fp8":
        fast.calibrate_fp8(m, tokens)  # static scales from the same distribution, as a calibration set would be
    ref = fast.plain_logits(m, tokens)  # (2, 11, vocab), fp32, over the dequantized weights
    r = fast.Runner(m, kv_bucket_tokens=4)
    r.allocate(2, 11)
    assert r.shape == (2, 12)  # 11 tokens rounded up to the 4-token bucket
    with torch.inference_mode():
        errs = [_rel(m.prefill(tokens[:, :7]), ref[:, 6])]
        r.pos.fill_(7)
        for i in range(7, 11):  # feed the true next token, read the logits of its position
            logits = m.decode(tokens[:, i:i + 1], r.pos, r.kv_len(i))
            r.pos.add_(1)
            errs.append(_rel(logits, ref[:, i]))
    assert all(math.isfinite(e) for e in errs)
    assert max(errs) < TOL[precision], errs
    if precision == "fp8":  # the quantized path is really in use: far from fp32 agreement
        assert min(errs) > 1e-3, errs


def test_fp8_row_scales_match_too():
    m = _model("fp8", fp8_scales="row")
    tokens = torch.randint(0, SPEC.vocab_size, (2, 9))
    m.allocate_cache(2, 9)
    with torch.inference_mode():
        assert _rel(m.prefill(tokens), fast.plain_logits(m, tokens)[:, -1]) < TOL["fp8"]


def test_greedy_generation_equals_greedy_on_the_textbook_pass():
    """Runner.generate (eager on the CPU) picks the same tokens as argmax over full recomputation."""
    m = _model("fp32", seed=5)
    prompt = torch.randint(0, SPEC.vocab_size, (2, 6))
    r = fast.Runner(m, kv_bucket_tokens=4)
    ttft, steps = r.generate(prompt, 5)
    assert ttft > 0 and len(steps) == 4 and r.decode_mode == "eager (cpu)"
    seq = prompt
    for _ in range(5):
        seq = torch.cat([seq, fast.plain_logits(m, seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    # the runner's last token is the 5th generated one; its cache holds prompt + 4 generated tokens
    assert torch.equal(r.tok[:, 0], seq[:, -1])
    assert r.host_pos == 6 + 4


def test_kv_buckets_round_the_read_length_up():
    r = fast.Runner(_model("fp32"), kv_bucket_tokens=32)
    assert [r.kv_len(p) for p in (0, 30, 31, 32, 63, 64)] == [32, 32, 32, 64, 64, 96]
    with pytest.raises(SpecError, match="kv_bucket_tokens"):
        fast.Runner(r.model, kv_bucket_tokens=0)
    with pytest.raises(SpecError, match="graphs"):
        fast.Runner(r.model, graphs=True)  # no CUDA here


def test_a_decode_step_copies_no_grouped_kv():
    """No operator of a decode step makes a tensor as large as K repeated to the query heads (b·H_q·L·d)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    m = _model("fp32")
    b, kv_len = 2, 64
    m.allocate_cache(b, kv_len)
    biggest = []

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
            if isinstance(out, torch.Tensor) and out.untyped_storage().data_ptr() not in inputs:  # new memory only
                biggest.append((out.numel(), func.overloadpacket.__name__))
            return out

    pos = torch.tensor([40])
    with torch.inference_mode(), Sizes():
        m.decode(torch.zeros(b, 1, dtype=torch.long), pos, kv_len)
    repeated_k = b * SPEC.num_attention_heads * kv_len * SPEC.head_dim  # 2·4·64·16 = 8,192
    assert max(biggest)[0] < repeated_k / 2, max(biggest)  # the scores are b·H_q·L = 512; a K copy would be 4,096+


def test_parameter_count_equals_the_spec_in_every_precision():
    for spec in (SPEC, TIED):
        for precision in ("fp32", "fp8", "int8"):
            assert fast.param_count(_model(precision, spec)) == spec.param_count, (spec.tied_embeddings, precision)


def test_unknown_precision_and_unsupported_spec_are_one_line():
    with pytest.raises(SpecError) as err:
        fast.precision_support("fp4", "cpu")
    assert str(err.value).startswith("precision") and "\n" not in str(err.value)
    with pytest.raises(SpecError, match="MoE"):
        fast.build(rl.load_model("mixtral-8x7b"), "bf16", "meta")


# ------------------------------------------------------------ the engine description
def test_kernels_per_layer_are_the_difference_of_a_two_and_a_one_layer_copy():
    def make_pass(layers):
        spec = ModelSpec.model_validate({**TINY_LLAMA, "num_layers": layers})
        r = fast.Runner(fast.build(spec, "fp32", "cpu"), kv_bucket_tokens=8)
        r.allocate(1, 16)
        tokens = torch.randint(0, spec.vocab_size, (1, 8))

        def at_8():
            r.pos.fill_(8)
        return (None, lambda: r.prefill(tokens)), (at_8, lambda: r._body(8))

    pre, dec = E.count_kernels(make_pass, "cpu")
    # a layer runs at least the 4 GEMMs, 2 norms, the KV writes and attention; the rest the embedding and head
    assert pre.per_layer >= 10 and dec.per_layer >= 10 and pre.rest >= 3 and dec.rest >= 3
    assert dec.total(16) == dec.rest + 16 * dec.per_layer


def test_engine_adjustment_swaps_the_overhead_term_by_hand():
    """tiny-llama on h100-sxm: 1 + 2·9 + 2 = 21 launches per pass at 4 us. An engine of 20 kernels per layer and 10
    besides runs 50 per pass. Graph-replayed decode: work + 50 · 1 us. Eager prefill: the CPU issues while the GPU
    runs, so max(work, 50 · 4 us); work = the prediction less its 21 · 4 us of overhead."""
    wl = rl.Workload(batch_size=2, prompt_tokens=16, output_tokens=5)
    pred = rl.predict(SPEC, rl.load_hardware("h100-sxm", analytical=True), wl,
                      rl.Deployment(weight_dtype="bf16", activation_dtype="bf16", kv_dtype="bf16", engine=None))
    held = E.roofline_launches(pred)
    assert held["decode"][0] == held["prefill"][0] == 21
    assert math.isclose(held["decode"][1], 21 * 4e-6, rel_tol=1e-12)
    k = E.KernelCount(per_layer=20, rest=10, device="cpu", method="by hand")
    adj = E.adjust(pred, 2, E.ENGINES["fast"], k, k, eager_s=4e-6, graph_s=1e-6)
    work_dec, work_pre = pred.tpot_s - 21 * 4e-6, pred.ttft_s - 21 * 4e-6
    assert work_pre < 50 * 4e-6  # a tiny model's prefill is launch-bound
    assert math.isclose(adj["tpot_s"], work_dec + 50 * 1e-6, rel_tol=1e-9)
    assert math.isclose(adj["ttft_s"], 50 * 4e-6, rel_tol=1e-9)
    assert math.isclose(adj["output_tokens_per_s"], 2 * 5 / (adj["ttft_s"] + 4 * adj["tpot_s"]), rel_tol=1e-12)
    eager = E.adjust(pred, 2, E.ENGINES["hf"], k, k, eager_s=4e-6, graph_s=1e-6)  # hf launches decode eagerly
    assert math.isclose(eager["tpot_s"], max(work_dec, 50 * 4e-6), rel_tol=1e-9)
    # a GPU-bound pass hides its eager launches: 8B, 8 x 2,048-token prefill
    big = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm", analytical=True), rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=2))
    held = E.roofline_launches(big)
    assert math.isclose(E.adjust(big, 32, E.ENGINES["fast"], k, k, 4e-6, 1e-6)["ttft_s"], big.ttft_s - held["prefill"][1], rel_tol=1e-12)
