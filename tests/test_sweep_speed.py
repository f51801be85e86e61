"""The sweep's speed-ups (issue 11: `sweep` >= 4 M scenarios/s) change how a grid is laid out and which elements are
evaluated, never a figure. Each shortcut is checked against the general formula it stands for: where the general
path runs the same arithmetic on the same operands the results are bitwise equal; the sweep's rows stay in the
frame's row-major order and equal `predict`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import roofline as rl
from roofline import calibration as C
from roofline import ops as O
from roofline import roofline as R
from roofline.engine import sum_over_steps
from roofline.roofline import Ceilings, OpTable, bound_index, stacked, time_ops
from roofline.workload import Deployment


def _loop_sum(c0, c1, b0, b1, lo, hi, window):
    """Σ_{c=lo..hi} max(c0 + c1·m, b0 + b1·m), m = min(c, window), one step at a time."""
    return sum(max(c0 + c1 * min(c, window), b0 + b1 * min(c, window)) for c in range(int(lo), int(hi) + 1))


@pytest.mark.parametrize("case", ["memory-bound everywhere", "compute-bound everywhere", "crossing inside a range"])
def test_step_sums_over_a_grid_equal_each_scenario_alone(case):
    """Lines of (device, batch) against ranges of (prompt, output): the grid takes the one-sign shortcut where it
    holds (`engine._sum_positive`); each element equals the scalar call (the general formula) and a loop."""
    rng = np.random.default_rng(7)
    b0, b1 = rng.uniform(1e-5, 2e-5, (3, 2, 1, 1)), rng.uniform(1e-9, 2e-9, (3, 2, 1, 1))
    if case == "memory-bound everywhere":
        c0, c1 = 0.5 * b0, 0.5 * b1
    elif case == "compute-bound everywhere":
        c0, c1 = 2 * b0, 2 * b1
    else:  # compute overtakes memory at context (b0 - c0) / (c1 - b1) = 1e-5 / 1e-8 = 1000, inside 129..2303
        c0, c1 = b0 - 1e-5, b1 + 1e-8
    # 8 x 8 = 64 ranges: enough for the split (`engine._SPLIT_MIN_RANGES`)
    prompt = np.array([128.0, 256.0, 384.0, 512.0, 768.0, 1024.0, 1536.0, 2048.0]).reshape(1, 1, 8, 1)
    steps = np.array([1.0, 7.0, 15.0, 31.0, 63.0, 127.0, 191.0, 255.0]).reshape(1, 1, 1, 8)
    lo, hi = prompt + 1, prompt + steps
    grid = sum_over_steps(c0, c1, b0, b1, lo, hi, np.inf)
    assert grid.shape == (3, 2, 8, 8)
    for n, idx in enumerate(itertools.product(range(3), range(2), range(8), range(8))):
        co = (idx[0], idx[1], 0, 0)
        args = (c0[co], c1[co], b0[co], b1[co], lo[0, 0, idx[2], 0], hi[0, 0, idx[2], idx[3]])
        assert grid[idx] == sum_over_steps(*args, np.inf)  # bitwise: the same products
        if n % 7 == 0:
            assert grid[idx] == pytest.approx(_loop_sum(*args, np.inf), rel=1e-12)


def test_bound_index_is_the_first_largest_term():
    """Two comparisons against the maximum give np.argmax over the stacked terms, ties to the first, NaN as argmax."""
    rng = np.random.default_rng(3)
    terms = [rng.integers(0, 3, (64, 128)).astype(float) for _ in range(3)]  # many ties
    expected = np.argmax(np.stack(terms), axis=0)
    assert np.array_equal(bound_index(*terms), expected)
    terms[1][5, 7] = np.nan
    assert np.array_equal(bound_index(*terms), np.argmax(np.stack(terms), axis=0))
    assert bound_index(1.0, 3.0, 3.0) == 1  # a tie between memory and communication: memory, the first


def _grid_table(model_id="llama-3.1-70b"):
    """The prefill table of a (batch, tp, prompt) grid, as `sweep` builds it."""
    m = rl.load_model(model_id)
    rd = Deployment().resolved(m)
    b = np.arange(1.0, 17.0).reshape(1, 16, 1, 1, 1)
    tp = np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 1, 4, 1, 1)
    s = (128.0 * np.arange(1, 33)).reshape(1, 1, 1, 32, 1)
    return OpTable.of(O.forward_ops(m, rd, b, s, 0, tp), (1, 16, 4, 32, 1)), tp, rd


def test_comm_term_of_the_communicating_ops_alone_equals_every_op(monkeypatch):
    """Over a large table only the all-reduce row is evaluated (`roofline._comm_s`); the others are 0, exactly what the
    formula gives them (0 bytes over positive rates, 0 messages times finite latencies)."""
    t, tp, rd = _grid_table()
    hws = [rl.load_hardware(h) for h in ("h100-sxm", "mi300x")]
    c = stacked([Ceilings.of(h, rd.compute_key) for h in hws], np.arange(2).reshape(2, 1, 1, 1, 1))
    c = c.curves.with_allreduce(t, c.curves.prepare(c, tp), tp)  # the measured all-reduce of each op, as `time_ops` does
    rows = R._comm_s(t, c, tp)
    monkeypatch.setattr(R, "_COMM_ROWS_MIN_SIZE", 10**12)
    every = R._comm_s(t, c, tp)
    assert rows.shape == every.shape and np.array_equal(rows, every)
    assert np.count_nonzero(rows.reshape(len(t.names), -1).any(axis=1)) == 1  # Llama: the all-reduce only


def test_calibrated_rates_by_device_slice_and_gemm_rows_equal_the_whole_grid(monkeypatch):
    """`StackedCurves.per_op_ceilings` times each device's curves on its own slice of the device axis, and the GEMM
    table is looked up on the GEMM rows over the axes M and N·K span; timing every device over the whole grid and
    every row gives the same per-op rates (np.where keeps each device's where it holds that device)."""
    t, tp, rd = _grid_table()
    hws = [rl.load_hardware("h100-sxm"), rl.load_hardware("a100-sxm-80gb", analytical=True), rl.load_hardware("mi300x")]
    c = stacked([Ceilings.of(h, rd.compute_key) for h in hws], np.arange(3).reshape(3, 1, 1, 1, 1))
    fast = time_ops(t, c, tp)
    monkeypatch.setattr(C.StackedCurves, "_device_axis", lambda self, t: None)
    monkeypatch.setattr(C, "_GEMM_ROWS_MIN_SIZE", 10**12)
    slow = time_ops(t, c, tp)
    for name in ("compute_s", "memory_s", "comm_s", "overhead_s"):
        a, b = np.broadcast_arrays(getattr(fast, name), getattr(slow, name))
        assert np.array_equal(a, b), name


def test_gemm_table_at_few_nk_values_equals_the_full_lookup():
    """Interpolating each table row at the few N·K values first, then between the rows around each M, is the same
    arithmetic as the bilinear lookup on full-size arguments."""
    table = next(iter(rl.load_hardware("h100-sxm").calibration.gemm.values()))
    rng = np.random.default_rng(5)
    m = np.exp(rng.uniform(0, 12, (5, 1, 16, 1, 32)))
    nk = np.exp(rng.uniform(10, 22, (5, 1, 1, 4, 1)))
    full_m, full_nk = (np.ascontiguousarray(a) for a in np.broadcast_arrays(m, nk))
    assert np.array_equal(table.at(m, nk), table.at(full_m, full_nk))


def test_sweep_rows_are_row_major_and_equal_predict():
    """The grid is evaluated with its axes reordered (`sweep._EVAL_AXES`) and transposed back: rows stay row-major over
    (device, batch, prompt, output, tp) and each equals `predict` of its scenario."""
    axes = dict(batch_size=[1, 3], prompt_tokens=[128, 512], output_tokens=[2, 64], tp=[1, 2])
    hw_ids = ["h100-sxm", "mi300x"]
    df = rl.sweep("llama-3.1-8b", hw_ids, **axes)
    combos = list(itertools.product(range(len(hw_ids)), *axes.values()))
    assert len(df) == len(combos)
    assert [tuple(r) for r in df[list(axes)].itertuples(index=False)] == [c[1:] for c in combos]
    names = [rl.load_hardware(h).name for h in hw_ids]
    assert list(df["hardware"].astype(str)) == [names[c[0]] for c in combos]
    for i in (0, 5, 18, 31):
        h, b, s, o, tp = combos[i]
        p = rl.predict("llama-3.1-8b", hw_ids[h], rl.Workload(batch_size=b, prompt_tokens=s, output_tokens=o), rl.Deployment(tp=tp))
        row = df.iloc[i]
        for name in ("ttft_s", "tpot_s", "e2e_latency_s", "kv_cache_bytes", "usd_per_million_output_tokens"):
            assert row[name] == pytest.approx(getattr(p, name), rel=1e-12), (i, name)
