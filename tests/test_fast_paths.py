"""The fast layouts of issue 11 (item 8) change how tables are built and timed, never a figure.

One scenario stacks its prefill, prefix-hit and decode-probe passes in one operator table and times it against
the realistic and floor ceilings at once (`engine._timed_passes`, `OpTable.of_phases`, `DecodeSteps.at`); a grid
builds and times each pass on its own. Both layouts run the same formulas, so a scenario evaluated as scalars and
as a grid of one must agree to rounding (1e-12: the order of a reassociated sum), whatever the deployment.
`sweep` builds one frame with categorical labels; its rows stay those of `predict` (tests/test_properties.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.engine import evaluate
from roofline.parallelism import check, scale_out
from roofline.roofline import Ceilings, OpTable, stacked, time_ops

CASES = {
    "dense, one GPU": ("llama-3.1-8b", "h100-sxm", dict()),
    "dense, tp 4, pp 2 with micro-batches": ("llama-3.1-70b", "h100-sxm", dict(tp=4, pp=2, pp_microbatches=4)),
    "MLA + MoE, fp8, tp 8": ("deepseek-v3", "h200", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8")),
    "MoE, expert parallel": ("deepseek-v3", "h200", dict(ep=8, weight_dtype="fp8", activation_dtype="fp8")),
    "sliding window": ("gemma-2-9b", "l40s", dict()),
    "prefix caching, paged KV, offload": ("llama-3.1-8b", "a100-sxm-80gb", dict(prefix_tokens=512, prefix_hit_rate=0.6,
                                                                               kv_allocation="paged", kv_offload_fraction=0.2)),
    "weight-only int4, naive attention": ("mixtral-8x7b", "mi300x", dict(weight_dtype="int4", attention_impl="naive")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_scenario_stacked_equals_a_grid_of_one(case):
    model_id, hw_id, over = CASES[case]
    model, hw = rl.load_model(model_id), rl.load_hardware(hw_id)
    wl, dep = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=129), rl.Deployment(**over)
    rd = check(model, hw, wl, dep)
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    real, floor, hop, _ = scale_out(hw, dep, real, floor)
    b, s, o, tp = wl.batch_size, wl.prompt_tokens, wl.output_tokens, dep.tp
    one = evaluate(model, rd, real, floor, b, s, o, tp, hop)  # scalars: every pass in one table
    grid = evaluate(model, rd, real, floor, np.array([b]), np.array([s]), np.array([o]), np.array([float(tp)]), hop)
    assert one.prefill.table.f["flops"].shape == (len(one.prefill.table.names),)  # the one-scenario layout was taken
    for name, value in one.figures().items():
        got = np.ravel(getattr(grid, name))[0]
        if name.endswith("bound_index"):
            assert got == value, name
        else:
            assert got == pytest.approx(float(value), rel=1e-12, abs=0), name
    # the decode steps one by one, and the per-op mean step, from the realistic set taken out of the stacked timing
    for c in (s + 1, s + 64, s + o - 1):
        assert np.ravel(grid.decode.real.step_s(c))[0] == pytest.approx(float(one.decode.real.step_s(c)), rel=1e-12)
    assert np.ravel(grid.decode.floor.total_s())[0] == pytest.approx(float(one.decode.floor.total_s()), rel=1e-12)


def test_of_phases_takes_each_pass_out_unchanged():
    """A pass taken out of a stacked table is the table of that pass alone, field by field, exactly."""
    model, hw = rl.load_model("deepseek-v3"), rl.load_hardware("h200")
    rd = rl.Deployment(tp=8).resolved(model)
    passes = [O.forward_ops(model, rd, 4, 1000, 0, 8), O.forward_ops(model, rd, 4, 1, 0, 8), O.forward_ops(model, rd, 4, 1, 1, 8)]
    both = OpTable.of_phases(passes)
    assert both.f["flops"].shape == (len(passes[0]), 3, 1)
    for i, ops in enumerate(passes):
        alone, taken = OpTable.of(ops, ()), both.phase(i)
        assert taken.names == alone.names and list(taken.kinds) == list(alone.kinds)
        for k in alone.f:
            assert np.array_equal(taken.f[k], alone.f[k]), k
        for k in ("hbm_bytes", "pad_mask", "rows_safe", "is_gemm", "is_attention"):
            assert np.array_equal(getattr(taken, k), getattr(alone, k)), k
    # timed against (real, floor) stacked on the last axis: each set's terms are those of a call with that set alone
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    timed = time_ops(both, stacked([real, floor]), 8)
    for i in range(3):
        for j, c in enumerate((real, floor)):
            alone = time_ops(OpTable.of(passes[i], ()), c, 8)
            assert np.allclose(timed.at(i, j).time_s, alone.time_s, rtol=1e-15, atol=0)


def test_of_phases_needs_the_same_operators():
    model = rl.load_model("llama-3.1-8b")
    other = rl.load_model("deepseek-v3")
    a = O.forward_ops(model, rl.Deployment().resolved(model), 1, 8, 0)
    b = O.forward_ops(other, rl.Deployment().resolved(other), 1, 8, 0)
    with pytest.raises(ValueError, match="same operators"):
        OpTable.of_phases([a, b])


def test_sweep_labels_are_categorical_and_invalid_rows_left_out():
    """tp 3 does not divide Llama-3.1-8B's 8 KV heads: 2 devices x 2 batches of it are skipped, 2 x 2 x 2 rows stay."""
    df = rl.sweep("llama-3.1-8b", ["h100-sxm", "mi300x"], batch_size=[1, 8], prompt_tokens=512, output_tokens=32, tp=[1, 2, 3])
    assert len(df) == 2 * 2 * 2 and sorted(df["tp"].unique()) == [1, 2]
    assert df.attrs["skipped"][0]["scenarios"] == 2 * 2
    for col in ("model", "hardware", "weight_dtype", "activation_dtype", "kv_dtype", "prefill_bound", "decode_bound"):
        assert str(df[col].dtype) == "category", col
    assert df["fits"].dtype == bool and df["max_batch_size_fits"].dtype == np.int64 and df["ttft_s"].dtype == np.float64
    assert list(df.index) == list(range(len(df)))
    row = df[(df["hardware"] == "AMD Instinct MI300X") & (df["batch_size"] == 8) & (df["tp"] == 2)].iloc[0]
    p = rl.predict("llama-3.1-8b", "mi300x", rl.Workload(batch_size=8, prompt_tokens=512, output_tokens=32), rl.Deployment(tp=2))
    assert row["model"] == p.model and row["ttft_s"] == pytest.approx(p.ttft_s, rel=1e-12)
    assert row["tpot_s"] == pytest.approx(p.tpot_s, rel=1e-12)
