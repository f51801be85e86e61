"""The repeated-`predict` shortcuts of issue 11 (item 8) give every figure bit for bit as the longer way does.

A scenario whose prefill passes and decode probes are kept (`engine.prefill_passes`, `engine.decode_probes`) still
paid for sums that depend on those tables alone, for a second pass of the step sums in `energy`, for numpy set-up on
single numbers, for a band's entry lookup per figure and for `model_construct`'s loop over sixty fields. Each test
here sets a shortcut against the way it replaced: equal with `==` (not approx), or the same record.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import roofline as rl
from roofline import bands as B
from roofline import energy as E
from roofline import memo
from roofline.engine import DecodeSteps, decode_ceilings, decode_probes
from roofline.parallelism import check
from roofline.predict import Prediction
from roofline.roofline import Ceilings, bound_index

WL = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
OPTIONAL = {"speculative_tokens_per_step", "tpot_without_speculation_s", "calibration_id"}  # None where not used


@pytest.mark.parametrize("model_id, over", [("llama-3.1-70b", dict(tp=4)), ("gemma-2-9b", dict()),
                                            ("llama-3.1-8b", dict(speculative=rl.Speculative(draft="llama-3.2-1b")))])
def test_predict_sets_every_field_as_model_construct_would(model_id, over):
    """`predict` copies a blank record with every field (`predict._blank_prediction`): every field is set, none is
    left at the blank's None, and the record equals `model_construct` of the same values, field for field, in order."""
    p = rl.predict(model_id, "h100-sxm", WL, rl.Deployment(**over))
    assert p.model_fields_set == set(Prediction.model_fields)
    assert [k for k, v in p.model_dump().items() if v is None and k not in OPTIONAL] == []
    built = Prediction.model_construct(**{k: getattr(p, k) for k in Prediction.model_fields})
    assert list(built.model_dump()) == list(p.model_dump()) and repr(built) == repr(p)


@pytest.mark.parametrize("analytical", [False, True])
@pytest.mark.parametrize("model_id, over", [("llama-3.1-70b", dict(tp=4)), ("gemma-2-9b", dict()),
                                            ("deepseek-v3", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8"))])
def test_paired_step_sums_are_each_sets_own(model_id, over, analytical):
    """`DecodeProbes.over` sums the realistic and floor steps' per-op busy time in one `sum_over_steps` over both
    sets stacked: each set's column equals, bit for bit, the sum that set's own steps take alone, and so do the
    totals, the single steps and the mean-step figures kept with the probes."""
    model, hw = rl.load_model(model_id), rl.load_hardware("h200", analytical=analytical)
    dep = rl.Deployment(**over)
    rd = check(model, hw, WL, dep)
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    probes = decode_probes(model, rd, 8, 1, dep.tp, dep.ep, decode_ceilings(real), floor, key=None)
    lo, hi = 2049, 2303
    paired = probes.over(lo, hi)[:2]
    for alone, kept in zip((probes.real.over(lo, hi), probes.floor.over(lo, hi)), paired):
        assert alone.any_dep
        assert np.array_equal(alone.dep_busy_s(), kept.dep_busy_s())
        assert alone.total_s() == kept.total_s() and alone.step_s(lo + 7) == kept.step_s(lo + 7)
        plain = DecodeSteps(alone.d1, alone.d2, alone.t1, alone.t2, lo, hi)  # nothing kept: every sum taken here
        assert plain.mean_flops_per_step() == kept.mean_flops_per_step() == plain.mean_per_step(plain.d1.f["flops"], plain.d2.f["flops"])
        assert plain.mean_hbm_bytes_per_step() == kept.mean_hbm_bytes_per_step()
        t1, t2 = plain.t1, plain.t2
        assert kept.mean_terms_s() == [plain.mean_per_step(t1.compute_s, t2.compute_s), plain.mean_per_step(t1.memory_s, t2.memory_s),
                                       t1.comm_s.sum(axis=0)]


def test_energy_of_one_scenario_equals_the_array_formula():
    """`energy_j` takes two plain numbers in floats and a grid in arrays: the same float64 operations, so the same
    bits. Hand number (module docstring): 20 W idle, 100 W TDP, 0.5 s busy in 2 s: 20 · 2 + 80 · 0.5 = 80 J."""
    assert E.energy_j(2.0, 0.5, 20.0, 100.0) == 80.0
    times = [0.0, 1e-9, 0.3, 2.0, 7.123456789, math.inf, math.nan]
    busies = [0.0, 1e-12, 0.1, 0.5, 3.0, 9.9, math.nan]
    grid = E.energy_j(np.array(times)[:, None], np.array(busies)[None, :], 61.5, 700.0)
    for (i, t), (j, b) in itertools.product(enumerate(times), enumerate(busies)):
        one = E.energy_j(np.float64(t), b, 61.5, 700.0)
        assert one == grid[i, j] or (math.isnan(one) and math.isnan(grid[i, j])), (t, b)
    for u in (-1.0, -0.0, 0.0, 0.25, 1.0, 1.5, math.inf, -math.inf):
        assert E.power_w(u, 20.0, 100.0) == E.power_w(np.array([u]), 20.0, 100.0)[0]
    assert math.isnan(E.power_w(math.nan, 20.0, 100.0))


def test_bound_of_three_numbers_is_np_argmax():
    """`bound_index` of one scenario's three terms without stacking arrays: np.argmax's rule, the first of the largest
    (a tie goes to compute, then memory) and the first NaN, with its type."""
    values = [0.0, -0.0, 1.0, 2.0, math.nan, math.inf, -math.inf]
    for c, m, x in itertools.product(values, repeat=3):
        want = np.argmax(np.stack(np.broadcast_arrays(np.float64(c), np.float64(m), np.float64(x))), axis=0)
        got = bound_index(np.float64(c), m, np.asarray(x))
        assert got == want and type(got) is type(want), (c, m, x)
    assert bound_index(1.0, 1.0, 0.5) == 0 and bound_index(0.5, 2.0, 2.0) == 1  # ties: the first


def test_class_entries_are_the_per_figure_lookup():
    """A band's entry is looked up once per hardware and precision class (`bands._class_entries`): each figure's band
    equals y · exp(q10 - δ), y · exp(q90 + δ) of the entry `entry_key` picks for it, bit for bit."""
    level, entries = B._entries()
    families = sorted({k.split("|")[0] for k in entries}) + ["no_such_family"]
    for family, hc, pc in itertools.product(families, ["nvidia-hopper", "amd-cdna-3", "nvidia-ampere", "none"],
                                            ["16-bit", "8-bit", "weight-only"]):
        key = B.entry_key(entries, family, hc, pc)
        b = B.band(0.0123, family, hc, pc)
        if key is None:
            assert b is None
            continue
        lo, hi = B.log_limits(entries[key])
        assert (b.low, b.high, b.basis, b.rows, b.level) == (0.0123 * math.exp(lo), 0.0123 * math.exp(hi), key, entries[key]["n"], level)
    assert B.band(math.nan, "tpot_static", "nvidia-hopper", "16-bit") is None


def test_resolution_is_kept_and_a_note_goes_on_a_copy():
    """`Deployment.resolved` is kept per (deployment, model) object; a scenario past the model's context notes it on
    a copy (`with_note`, same key), so the next scenario of that deployment carries no note."""
    m, dep = rl.load_model("llama-3.1-8b"), rl.Deployment()
    memo.clear_all()
    rd = dep.resolved(m)
    assert dep.resolved(m) is rd and rd.notes == []
    assert rl.Deployment().resolved(m) is not rd and rl.Deployment().resolved(m).key() == rd.key()  # another object
    long = rl.Workload(batch_size=1, prompt_tokens=m.max_context + 1000, output_tokens=8)
    for _ in range(2):
        assert len(rl.predict(m, "h100-sxm", long, dep).notes) == 1
    noted = check(m, rl.load_hardware("h100-sxm"), long, dep)
    assert noted is not rd and noted.key() is rd.key() and rd.notes == []
    assert rl.predict(m, "h100-sxm", WL, dep).notes == ()


def test_one_sign_step_sums_equal_the_mixed_formula():
    """`engine._sum_positive` takes a set of lines whose slopes share one sign through that sign's branch alone; the
    mixed formula picks the same branch per line, so each line summed alone equals its entry of the mixed set, bit for
    bit, and both equal the brute-force sum Σ max(0, g0 + g1·x) (to rounding)."""
    from roofline.engine import _sum_positive

    g0 = np.array([-5.0, 7.5, 3.0e-4, -1.0e-3, 2.0, -2.0, 0.25])
    g1 = np.array([0.01, -0.02, -1.0e-6, 3.0e-7, 0.0, 0.0, -0.5])
    lo, hi = 100, np.asarray(1234)
    mixed = _sum_positive(g0, g1, lo, hi)
    x = np.arange(lo, int(hi) + 1)
    for i in range(len(g0)):
        alone = _sum_positive(g0[i:i + 1], g1[i:i + 1], lo, hi)
        assert alone.shape == (1,) and alone[0] == mixed[i], i
        assert alone[0] == pytest.approx(np.maximum(0.0, g0[i] + g1[i] * x).sum(), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------ fifth pass: one scenario's steps in plain floats
def _bits(x) -> bytes:
    return np.float64(x).tobytes()


SPECIAL = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 1e-300, -1e-300, 4503599627370497.0, 1e300, -1e300,
           math.inf, -math.inf, math.nan]


def test_scalar_primitives_follow_numpy_bit_for_bit():
    """The step sums' element-wise primitives (`engine._maximum`, `_minimum`, `_floor`, `_ceil`, `_where`) on single
    numbers give numpy's answer bit for bit, signed zeros and NaN included (np.maximum(0.0, -0.0) is -0.0: on a tie the
    second; a NaN on either side wins; floor(-0.0) and ceil(-0.5) are -0.0)."""
    from roofline.engine import _ceil, _floor, _maximum, _minimum, _where

    for a, b in itertools.product(SPECIAL, repeat=2):
        assert _bits(_maximum(a, b)) == _bits(np.maximum(np.float64(a), np.float64(b))), (a, b)
        assert _bits(_minimum(a, b)) == _bits(np.minimum(np.float64(a), np.float64(b))), (a, b)
        for cond in (True, False, np.bool_(True), np.bool_(False)):
            assert _bits(_where(cond, a, b)) == _bits(np.where(cond, a, b)), (cond, a, b)
    for x in SPECIAL:
        assert _bits(_floor(x)) == _bits(np.floor(np.float64(x))) and _bits(_ceil(x)) == _bits(np.ceil(np.float64(x))), x
    assert _maximum(3, 0) == 3 and _maximum(-2, 0) == 0  # step counts: integers stay integers


def test_plain_sum_adds_in_numpys_order():
    """`engine.plain_sum` adds a few floats in order from 0.0, as numpy sums fewer than eight along an axis (a 1-d
    array, or a column of a 2-d one): equal bit for bit on magnitudes chosen to round differently in another order."""
    from roofline.engine import plain_sum

    rng = np.random.default_rng(11)
    for n in range(1, 8):
        for _ in range(200):
            x = rng.choice([1e16, -1e16, 1.0, 3.0, 1e-3, 0.1, -0.0], size=n) * rng.uniform(0.5, 2.0, size=n)
            pair = np.stack([x, x[::-1]], axis=1)
            assert _bits(plain_sum(x.tolist())) == _bits(x.sum(axis=0)) == _bits(pair.sum(axis=0)[0])
            assert _bits(plain_sum(x[::-1].tolist())) == _bits(pair.sum(axis=0)[1])
    assert plain_sum([]) == 0.0 and plain_sum([1e16, 1.0, 1.0]) == 1e16  # ((0 + 1e16) + 1) + 1: the order shows


def test_step_sums_of_plain_floats_equal_the_array_formula():
    """`sum_over_steps` and `sum_of_m` on one line in plain floats (`DecodeSteps` of one scenario) equal, bit for bit,
    that line's element of the same call over arrays of lines: every slope sign, lines crossing inside the range, past
    a sliding window or not, an empty range past the window."""
    from roofline.engine import sum_of_m, sum_over_steps

    rng = np.random.default_rng(5)
    c0, c1 = rng.uniform(-1e-4, 1e-4, 60), np.concatenate([rng.uniform(-1e-7, 1e-7, 50), np.zeros(10)])
    b0, b1 = rng.uniform(0.0, 1e-4, 60), rng.uniform(0.0, 1e-7, 60)
    for lo, hi in ((2049, 2303), (1, 1), (100, 5000)):
        for window in (math.inf, 4096.0, 1500.0, 50.0):
            win = np.full(60, window)
            grid = sum_over_steps(c0, c1, b0, b1, lo, hi, win)
            past = bool(window != math.inf)
            for i in range(60):
                one = sum_over_steps(float(c0[i]), float(c1[i]), float(b0[i]), float(b1[i]), float(lo), float(hi), window, past)
                assert type(one) is float and _bits(one) == _bits(grid[i]), (lo, hi, window, i)
            assert _bits(sum_of_m(float(lo), float(hi), window)) == _bits(sum_of_m(lo, hi, win)[0])


def _array_steps(monkeypatch):
    """Switch the plain-float path off: every scenario's steps summed over numpy arrays, as before it."""
    monkeypatch.setattr(DecodeSteps, "plain_terms", lambda self: None)
    memo.clear_all()


@pytest.mark.parametrize("analytical", [False, True])
@pytest.mark.parametrize("model_id, over", [("llama-3.1-70b", dict(tp=4)), ("deepseek-v3", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8")),
                                            ("gemma-2-9b", dict()), ("gpt-oss-120b", dict(engine=None)),
                                            ("mixtral-8x7b", dict(tp=2, pp=2)), ("llama-3.1-8b", dict(speculative=rl.Speculative(draft="llama-3.2-1b")))])
def test_predict_in_plain_floats_equals_predict_over_arrays(model_id, over, analytical, monkeypatch):
    """A scenario's decode steps summed in plain floats (`DecodeSteps.plain_terms`) give every figure of `predict`, the
    single-step times and the operator rows bit for bit as the same steps summed over numpy arrays: calibrated and
    analytical profiles, sliding windows, MoE, a pipeline, speculation; the first call (timed) and the second (kept)."""
    hw = rl.load_hardware("h100-sxm", analytical=analytical)
    dep = rl.Deployment(**over)
    workloads = [WL, rl.Workload(batch_size=3, prompt_tokens=6000, output_tokens=900), rl.Workload(batch_size=1, prompt_tokens=64, output_tokens=1)]

    def run(plain: bool):
        memo.clear_all()
        out = []
        for w in workloads * 2:
            p = rl.predict(model_id, hw, w, dep)
            assert (p._evaluation.decode.real._plain is not None) == plain  # the path under test was taken
            out.append((repr(p.model_dump()), _bits(p.tpot_at(w.prompt_tokens + 5)), p.operators.to_csv()))
        return out

    plain_run = run(True)
    _array_steps(monkeypatch)
    assert run(False) == plain_run


def _between_rows_every_term(m, f, m_tokens, i, i1, top, bottom, tile):
    """`calibration.between_rows` as fp16twin wrote it (every term evaluated everywhere): the reference of the next test."""
    from roofline.units import TILE_SLACK

    rows = np.asarray(m_tokens, dtype=float)
    m = np.asarray(m, dtype=float)
    tile = np.maximum(np.asarray(tile, dtype=float), 1.0)
    u = np.ceil(m / tile - TILE_SLACK) * tile / f
    u_lo = np.ceil(rows[i] / tile) * tile / top
    u_hi = np.ceil(rows[i1] / tile) * tile / bottom
    inside = (m > rows[0]) & (m < rows[-1])
    held = np.where(inside, np.minimum(np.maximum(u, np.minimum(u_lo, u_hi)), np.maximum(u_lo, u_hi)), u)
    return np.ceil(m / tile - TILE_SLACK) * tile / held


@pytest.mark.parametrize("m_range", [(1.0, 300.0), (0.5, 16.0), (4096.0, 9000.0), (16.0, 16.0)])
@pytest.mark.parametrize("tile_shape", [(), (1, 1), (3, 1, 1)])
def test_between_rows_equals_every_term_evaluated(m_range, tile_shape):
    """`between_rows` computes p(m) once and skips the neighbours' times where no m is inside the table; the result
    equals the every-term formula bit for bit (and in shape) inside, at and past the table's edges (m_range
    (4096, 9000) and (0.5, 16) lie wholly past or at the edges of rows 16..4096), with one tile or a tile per row,
    with the rows' padded counts kept per tile or not, and through `GemmTable.at` with the table's cached rows."""
    from roofline.calibration import GemmTable, _bracket, between_rows

    rng = np.random.default_rng(7)
    m_tokens = (16, 17, 32, 33, 64, 128, 4096)
    table = GemmTable(dtype="bf16", peak_per_s=1e15, m_tokens=m_tokens, nk_elements=(1e6, 1e8),
                      fraction=tuple((0.05 + 0.1 * k, 0.1 + 0.1 * k) for k in range(len(m_tokens))))
    m = np.round(rng.uniform(*m_range, size=(3, 5, 1)) * 4) / 4  # quarter rows: some exactly on a measured row
    nk = rng.uniform(1e6, 1e8, size=(3, 1, 4))
    tile = np.full(tile_shape, 16.0) if tile_shape != (3, 1, 1) else np.array([16.0, 8.0, 0.0])[:, None, None]
    xs, ys, grid = table.grid
    i, wi = _bracket(xs, np.log(m))
    j, wj = _bracket(ys, np.log(nk))
    i1, j1 = np.minimum(i + 1, len(xs) - 1), np.minimum(j + 1, len(ys) - 1)
    top = grid[i, j] + (grid[i, j1] - grid[i, j]) * wj
    bottom = grid[i1, j] + (grid[i1, j1] - grid[i1, j]) * wj
    f = top + (bottom - top) * wi
    want = _between_rows_every_term(m, f, m_tokens, i, i1, top, bottom, tile)
    got = between_rows(m, f, table.rows_tokens, i, i1, top, bottom, tile)
    assert got.shape == want.shape and np.array_equal(got, want)
    kept = {}
    for _ in range(2):  # the rows' p(M) computed, then read from the dict
        got = between_rows(m, f, table.rows_tokens, i, i1, top, bottom, tile, kept)
        assert got.shape == want.shape and np.array_equal(got, want)
    assert list(kept) == ([16.0] if np.size(tile) == 1 and m_range[0] < 4096 and m_range[1] > 16 else [])
    assert np.array_equal(table.at(m, nk, tile), want) and np.array_equal(table.at(m, nk, tile), want)


def _stacked_tables(model_id, hw, dep, wl=WL):
    """One scenario's prefill pass and decode probes stacked as `engine._timed_together` stacks them, with the ceilings
    they are timed against: (table, [realistic, replayed decode, floor], tp)."""
    from roofline import ops as O
    from roofline.roofline import OpTable

    model = rl.load_model(model_id)
    rd = check(model, hw, wl, dep)
    real, floor = Ceilings.of(hw, rd.compute_key), Ceilings.of(hw, rd.compute_key, floor=True)
    b = wl.batch_size
    passes = [(wl.prompt_tokens, 0), (1, 0), (1, 1)]
    table = OpTable.of_phases([O.forward_ops(model, rd, b, new, past, dep.tp, ep=dep.ep) for new, past in passes])
    return table, [real, decode_ceilings(real), floor], dep.tp


def _same_ceilings(a: Ceilings, b: Ceilings) -> bool:
    """Every field equal bit for bit and of the same shape (numbers by value and type)."""
    import dataclasses

    for f in dataclasses.fields(Ceilings):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (np.shape(x) == np.shape(y) and np.array_equal(x, y, equal_nan=True)):
                return False
        elif not (type(x) is type(y) and (x == y or (x != x and y != y))):
            return False
    return True


@pytest.mark.parametrize("model_id, hw_id, over", [
    ("llama-3.1-70b", "h100-sxm", dict(tp=4)), ("llama-3.1-70b", "h100-sxm", dict()),
    ("deepseek-v3", "h200", dict(tp=8, weight_dtype="fp8", activation_dtype="fp8")),  # block-FP8 W8A8, MoE curves
    ("mixtral-8x7b", "h200", dict(tp=2)), ("gemma-2-9b", "a100-sxm-80gb", dict()), ("gpt-oss-120b", "b200", dict(engine=None)),
    ("llama-3.1-8b", "h100-sxm", dict(weight_dtype="int4")),  # weight-only: the small-M gemv lines
])
def test_launch_free_rates_shared_by_eager_and_replayed_sets(model_id, hw_id, over, monkeypatch):
    """`per_op_ceilings_of_sets` resolves the launch-free half of `per_op_ceilings` (`launch_free_rates`) once for the
    eager and the replayed ceilings of one stacked table, and every set's per-op ceilings equal, bit for bit, those
    `per_op_ceilings` resolves for that set alone (the every-term way)."""
    from roofline.calibration import CalibratedCurves
    from roofline.roofline import per_op_ceilings, per_op_ceilings_of_sets

    table, sets, tp = _stacked_tables(model_id, rl.load_hardware(hw_id), rl.Deployment(**over))
    real, dec, _ = sets
    assert dec.curves is not real.curves and real.curves.shares_launch_free_rates(dec.curves)
    alone = [per_op_ceilings(table, c, tp) for c in sets]
    calls = []
    resolve = CalibratedCurves.launch_free_rates
    monkeypatch.setattr(CalibratedCurves, "launch_free_rates", lambda self, t, c: calls.append(1) or resolve(self, t, c))
    shared = per_op_ceilings_of_sets(table, sets, tp)
    assert len(calls) == 1  # resolved once for both calibrated sets
    assert len(shared) == 3 and all(_same_ceilings(a, b) for a, b in zip(alone, shared))


def test_launch_free_rates_not_shared_across_devices_or_ceilings():
    """Curves of another device (or another calibration of the same device) are not the same curves; nor are ceilings
    with another GEMM rate: each set then resolves its own launch-free rates."""
    import dataclasses

    from roofline.roofline import per_op_ceilings, per_op_ceilings_of_sets

    h100, h200 = rl.load_hardware("h100-sxm"), rl.load_hardware("h200")
    table, (real, dec, _), tp = _stacked_tables("llama-3.1-70b", h100, rl.Deployment())
    other = Ceilings.of(h200, "bf16")
    assert not real.curves.shares_launch_free_rates(other.curves)
    slower = dataclasses.replace(dec, gemm_flops_per_s=dec.gemm_flops_per_s / 2)
    for sets in ([real, other], [real, slower]):
        got = per_op_ceilings_of_sets(table, sets, tp)
        assert all(_same_ceilings(per_op_ceilings(table, c, tp), g) for c, g in zip(sets, got))


@pytest.mark.parametrize("model_id, hw_id, over", [("llama-3.1-70b", "h100-sxm", dict()), ("deepseek-v3", "h200", dict(tp=8)),
                                                   ("mixtral-8x7b", "h100-sxm", dict(tp=2, pp=2))])
def test_predict_with_shared_launch_free_rates_equals_set_by_set(model_id, hw_id, over, monkeypatch):
    """Every figure of `predict`, its single-step times and operator rows, with one scenario's sets resolved together
    (`per_op_ceilings_of_sets`) equal those with each set resolved alone, bit for bit, on new scenarios."""
    from roofline import engine
    from roofline.roofline import per_op_ceilings

    dep = rl.Deployment(**over)
    workloads = [rl.Workload(batch_size=b, prompt_tokens=s, output_tokens=o) for b, s, o in ((8, 2048, 256), (3, 777, 31), (64, 128, 1))]

    def run():
        memo.clear_all()
        return [(repr(p.model_dump()), _bits(p.tpot_at(w.prompt_tokens + 3)), p.operators.to_csv())
                for w in workloads for p in [rl.predict(model_id, hw_id, w, dep)]]

    together = run()
    monkeypatch.setattr(engine, "per_op_ceilings_of_sets", lambda t, sets, tp: [per_op_ceilings(t, c, tp) for c in sets])
    assert run() == together


@pytest.mark.parametrize("over", [dict(), dict(tp=4), dict(weight_offload_fraction=0.25)])
def test_comm_of_a_table_that_moves_nothing_is_the_formula(over):
    """`_comm_s` returns zeros, without evaluating the all-reduce algorithms, for a small table none of whose ops
    communicates (one GPU, nothing offloaded): equal bit for bit and in shape to `_comm_terms` over every op; a table
    that communicates (tp 4: the all-reduces; offload: the host link) is evaluated whole, as before."""
    from roofline.roofline import _comm_s, _comm_terms, stacked

    table, sets, tp = _stacked_tables("llama-3.1-70b", rl.load_hardware("h100-sxm", analytical=True), rl.Deployment(**over))
    for c in (sets[0], stacked([sets[0], sets[2]], (None, None, slice(None)))):  # one set; two stacked on the last axis
        got, want = _comm_s(table, c, tp), _comm_terms(table.f, c, tp)
        assert got.shape == np.broadcast_shapes(want.shape, table.f["flops"].shape) and np.array_equal(got, want)
        assert bool(got.any()) == bool(over)  # all 0 on one GPU with nothing offloaded


def _stacked_per_op_as_before(sets, shape):
    """`roofline.stacked_per_op` as the sixth pass wrote it (`all` over generators): the reference of the next test."""
    from roofline.roofline import _STACKED_FIELDS, _scalar

    out = {}
    for name in _STACKED_FIELDS:
        values = [getattr(c, name) for c in sets]
        if all(map(_scalar, values)):
            out[name] = values[0] if all(v == values[0] for v in values) else np.array(values, dtype=float)
        else:
            out[name] = a = np.empty(shape[:-1] + (len(sets),))
            for j, v in enumerate(values):
                a[..., j] = v[..., 0] if isinstance(v, np.ndarray) and v.ndim else v
    return Ceilings(**out)


def test_stacked_per_op_equals_the_generator_form():
    """`stacked_per_op` with explicit loops gives the record the `all`-over-generators form gave: per-op arrays stacked,
    one shared value kept as it is (a number, or a 0-d array), values that differ stacked as an array."""
    import dataclasses

    from roofline.roofline import per_op_ceilings, stacked_per_op

    table, sets, tp = _stacked_tables("llama-3.1-70b", rl.load_hardware("h100-sxm"), rl.Deployment(tp=2))
    resolved = [per_op_ceilings(table, c, tp) for c in sets]
    zero_d = dataclasses.replace(resolved[2], sm_count=np.array(resolved[2].sm_count))  # a 0-d array among numbers
    for group in (resolved, resolved[:1], [resolved[0], zero_d], [sets[2], zero_d]):
        got, want = stacked_per_op(group, table.f["flops"].shape), _stacked_per_op_as_before(group, table.f["flops"].shape)
        assert _same_ceilings(got, want)


def test_numeric_rows_equal_np_array_of_the_nested_lists():
    """`numeric_rows` reads the ops' numeric fields off one flat iterator (`np.fromiter`): the same float64 array, value
    for value (bit for bit), shape and strides, as `np.array` of the nested lists, for plain floats, ints past 2^53
    (rounded to nearest, ties to even, alike), numpy scalars and 0-d arrays; lists of unequal length are refused."""
    from roofline import ops as O
    from roofline.roofline import _NUMERIC_GETTER, numeric_rows

    model = rl.load_model("deepseek-v3")
    rd = rl.Deployment(tp=8).resolved(model)
    phases = [list(O.forward_ops(model, rd, 8, new, past, 8)) for new, past in ((2048, 0), (1, 0), (1, 1))]
    odd = [O.Op("x", "g", O.OpKind.GEMM, 3, launches=2**53 + 1, flops=np.float64(0.1), weight_bytes=np.array(7.5),
                act_read_bytes=-0.0, gemm_m=3 * 2**60 + 5, kv_units=True)]
    for lists in (phases, phases[:1], [odd, odd]):
        want = np.array([list(map(_NUMERIC_GETTER, ops)) for ops in lists], dtype=float)
        got = numeric_rows(lists)
        assert got.dtype == want.dtype and got.shape == want.shape and got.strides == want.strides
        assert got.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="as many ops"):
        numeric_rows([phases[0], phases[0][:-1]])
