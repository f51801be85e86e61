"""The memo tables (`roofline.memo`): bounded, keyed so that a changed input can never get a stale answer,
and invisible in the figures (a warm prediction equals a cold one)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import roofline as rl
from roofline import memo
from roofline import parallelism as PA
from roofline.roofline import Ceilings

WL = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)


# ------------------------------------------------------------ the tables themselves
def test_bound_and_order():
    t = memo.Memo("test", maxsize=2)
    calls = []

    def compute(k):
        calls.append(k)
        return k * 10

    assert t.get(1, lambda: compute(1)) == 10
    assert t.get(2, lambda: compute(2)) == 20
    assert t.get(1, lambda: compute(1)) == 10  # a hit
    assert t.get(3, lambda: compute(3)) == 30  # over the bound: 1, the oldest stored, leaves
    assert len(t) == 2
    assert t.get(2, lambda: compute(2)) == 20
    assert t.get(1, lambda: compute(1)) == 10  # computed again
    assert calls == [1, 2, 3, 1]
    assert (t.hits, t.misses) == (2, 4)
    with pytest.raises(ValueError, match="maxsize"):
        memo.Memo("bad", maxsize=0)


def test_identity_keys_objects_not_values_and_holds_them():
    a, b = [1, 2], [1, 2]  # equal values, two objects
    assert memo.Identity(a) == memo.Identity(a) and hash(memo.Identity(a)) == id(a) and memo.Identity(a).obj is a
    assert memo.Identity(a) != memo.Identity(b)
    key = memo.Identity([3])
    gc.collect()
    assert key.obj == [3]  # the key keeps its object alive: no other object can take its address meanwhile


def test_memoized_stores_plain_keys_and_passes_the_rest_through():
    calls = []

    @memo.memoized(lambda x: x if memo.plain(x) else None, maxsize=4)
    def square(x):
        """docstring kept"""
        calls.append(x)
        return x * x

    grid = np.array([2.0, 3.0])
    assert square(3) == 9 and square(3) == 9
    assert (square(grid) == [4.0, 9.0]).all() and (square(grid) == [4.0, 9.0]).all()  # an array: called each time
    assert len(calls) == 3 and calls[0] == 3
    assert square.__doc__ == "docstring kept" and square.memo.hits == 1
    memo.clear_all()
    assert len(square.memo) == 0


# ------------------------------------------------------------ model_copy on a spec already used
def test_model_copy_of_a_used_spec_recomputes_its_layers():
    """Issue 11: `spec.model_copy(update=...)` on a ModelSpec already predicted kept its cached layer groups,
    so predict ignored the change. Llama-3.1-70B, one GPU, BF16: a layer holds
    QKV (64 + 2·8)·128·8192 = 83,886,080 + O 8192² = 67,108,864 + gated MLP 3·8192·28,672 = 704,643,072
    + two RMSNorms 2·8192 = 16,384 parameters = 855,654,400, at 2 bytes; 40 layers fewer hold
    40 · 855,654,400 · 2 = 68,452,352,000 bytes less."""
    m = rl.load_model("llama-3.1-70b")
    dep = rl.Deployment(tp=1)
    full = rl.predict(m, "h100-sxm", WL, dep)  # fills every cache of m
    half_spec = m.model_copy(update={"num_layers": 40})
    assert sum(g.count for g in half_spec.layer_groups()) == 40
    assert sum(g.count for g in m.layer_groups()) == 80  # the original keeps its own
    half = rl.predict(half_spec, "h100-sxm", WL, dep)
    assert full.weight_bytes - half.weight_bytes == pytest.approx(40 * 855_654_400 * 2, rel=1e-12)
    assert half.ttft_s < full.ttft_s
    assert half_spec == rl.load_model("llama-3.1-70b").model_copy(update={"num_layers": 40})  # fields alone compare


def test_model_copy_of_a_used_gemm_table_recomputes_its_grid():
    hw = rl.load_hardware("h100-sxm")
    table = next(iter(hw.calibration.gemm.values()))
    _ = table.grid
    flat = table.model_copy(update={"fraction": tuple(tuple(0.5 for _ in row) for row in table.fraction)})
    assert (flat.grid[2] == 0.5).all()
    assert not (table.grid[2] == 0.5).all()


# ------------------------------------------------------------ cached answers follow their inputs
def test_ceilings_follow_a_copied_profile():
    hw = rl.load_hardware("h100-sxm", analytical=True)
    c = Ceilings.of(hw, "bf16")
    assert Ceilings.of(hw, "bf16") is c  # looked up, not rebuilt
    faster = hw.model_copy(update={"memory_bandwidth_bytes_per_s": 2 * hw.memory_bandwidth_bytes_per_s})
    assert Ceilings.of(faster, "bf16").bytes_per_s == pytest.approx(2 * c.bytes_per_s, rel=1e-12)
    assert Ceilings.of(hw, "bf16", floor=True).bytes_per_s == hw.memory_bandwidth_bytes_per_s  # floor keyed apart


def test_weight_bytes_follow_the_resolved_formats():
    """Same model, tp and deployment object shape, other weight format: int8 holds half the BF16 bytes of
    every quantized matrix, so the cached BF16 answer must not be returned for it."""
    m = rl.load_model("llama-3.1-8b")
    bf16 = rl.Deployment().resolved(m)
    int8 = rl.Deployment(weight_dtype="int8").resolved(m)
    assert bf16.key() != int8.key()
    a, b = PA.weight_bytes_per_gpu(m, bf16, 1), PA.weight_bytes_per_gpu(m, int8, 1)
    assert b < 0.6 * a
    assert PA.weight_bytes_per_gpu(m, rl.Deployment().resolved(m), 1) == a  # an equal resolution hits the same entry


@pytest.mark.parametrize("model_id", ["llama-3.1-70b", "deepseek-v3", "gemma-2-9b"])
def test_warm_prediction_equals_cold(model_id):
    dep = rl.Deployment(tp=8)
    memo.clear_all()
    cold = rl.predict(model_id, "h100-sxm", WL, dep).model_dump()
    warm = rl.predict(model_id, "h100-sxm", WL, dep).model_dump()
    assert warm.keys() == cold.keys()
    for k, v in cold.items():
        assert warm[k] == v or (v != v and warm[k] != warm[k]), k  # NaN (a price that does not fit) equals NaN


@pytest.mark.parametrize("model_id, hw_id, over", [
    ("llama-3.1-70b", "h100-sxm", dict(tp=4)),  # calibrated by default: decode probes summed set by set
    ("deepseek-v3", "h200", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8")),
    ("gemma-2-9b", "l40s", dict(pp=2, pp_microbatches=2)),  # sliding window, a pipeline
    ("llama-3.1-8b", "a100-sxm-80gb", dict(prefix_tokens=512, prefix_hit_rate=0.6)),  # two prefill passes
])
@pytest.mark.parametrize("analytical", [False, True])
def test_timed_passes_kept_serve_other_prompts_and_outputs(model_id, hw_id, over, analytical):
    """`engine.decode_probes` times a batch's decode probes once and `engine.prefill_passes` a batch and prompt's
    prefill once; a scenario that finds them (another prompt: the probes; another output length: both) equals,
    figure for figure and step for step, the same scenario predicted cold."""
    hw = rl.load_hardware(hw_id, analytical=analytical)
    dep = rl.Deployment(**over)
    probes, prefill = memo.table("engine.decode_probes"), memo.table("engine.prefill_passes")
    memo.clear_all()
    rl.predict(model_id, hw, WL, dep)
    later = []
    for wl, prefill_hit in ((rl.Workload(batch_size=8, prompt_tokens=1000, output_tokens=17), False),
                            (rl.Workload(batch_size=8, prompt_tokens=1000, output_tokens=40), True)):
        hits = (probes.hits, prefill.hits)
        later.append((wl, rl.predict(model_id, hw, wl, dep)))
        assert probes.hits == hits[0] + 1 and prefill.hits == hits[1] + prefill_hit
    for wl, warm in later:
        memo.clear_all()
        cold = rl.predict(model_id, hw, wl, dep)
        w, c = warm.model_dump(), cold.model_dump()
        assert w.keys() == c.keys()
        for k, v in c.items():
            assert w[k] == v or (v != v and w[k] != w[k]), k
        for ctx in (1001, 1010, 1000 + wl.output_tokens - 1):
            assert warm.tpot_at(ctx) == cold.tpot_at(ctx)


@pytest.mark.parametrize("model_id,hw_id,over", [
    ("llama-3.1-70b", "h100-sxm", dict(tp=4)),  # calibrated: timed against [real, decode (graph), floor]
    ("deepseek-v3", "h200", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8")),  # calibrated MoE
    ("gemma-2-9b", "l40s", dict(pp=2, pp_microbatches=2)),  # sliding window, a pipeline
    ("llama-3.1-8b", "a100-sxm-80gb", dict(prefix_tokens=512, prefix_hit_rate=0.6)),  # two prefill passes
])
@pytest.mark.parametrize("analytical", [False, True])
def test_prefill_and_probes_timed_together_equal_each_timed_alone(model_id, hw_id, over, analytical):
    """A scenario missing both kept tables times its prefill passes and decode probes in one stacked table
    (`engine._timed_together`); one missing only one of them times that one alone (`prefill_passes`, `decode_probes`).
    Every term is elementwise per op, pass and set of ceilings, so the three ways give every figure bit for bit."""
    import roofline.engine  # noqa: F401  (its tables exist once it is imported)

    hw = rl.load_hardware(hw_id, analytical=analytical)
    dep = rl.Deployment(**over)
    probes, prefill = memo.table("engine.decode_probes"), memo.table("engine.prefill_passes")
    memo.clear_all()
    together = rl.predict(model_id, hw, WL, dep)  # both missed: one stacked timing
    assert (probes.misses, prefill.misses) == (1, 1)
    alone = []
    for table in (probes, prefill):  # the other table still holds the scenario: this one is timed on its own
        table.clear()
        alone.append(rl.predict(model_id, hw, WL, dep))
        assert table.misses == 1
    want = together.model_dump()
    for got in alone:
        g = got.model_dump()
        for k, v in want.items():
            assert g[k] == v or (v != v and g[k] != g[k]), k
        for ctx in (WL.prompt_tokens + 1, WL.prompt_tokens + 100, WL.prompt_tokens + WL.output_tokens - 1):
            assert got.tpot_at(ctx) == together.tpot_at(ctx)


def test_hashed_key_is_the_tuple_of_its_items():
    """`memo.HashedKey` hashes once, as the plain tuple does, and equals it: a lookup under either finds one entry."""
    items = (rl.Deployment(tp=2), 1.5, "bf16")
    k = memo.HashedKey(items)
    assert k == items and hash(k) == hash(items) and {items: 1}[k] == 1


def test_resolution_key_follows_a_fallback():
    """A resolution's kept key is rebuilt when `fallen_back` replaces its formats (an int8 compute on a device
    without int8 tensor cores falls back to a weight-only kernel: another compute dtype, another key)."""
    m = rl.load_model("llama-3.1-8b")
    rd = rl.Deployment(weight_dtype="int8", activation_dtype="int8").resolved(m)
    before = rd.key()
    fb = rd.fallen_back("test")
    assert fb.key() != before and fb.key()[-1] == "bf16" and rd.key() is before
