"""Uneven expert routing (issue 12): the power-law expert loads of aiconfigurator-core's MoE tables and the busiest
expert-parallel rank the step waits for. Hand arithmetic, invariants against the balanced layer, and the kernel
tables' power-law / balanced ratios."""

from __future__ import annotations

import importlib.util
import math
from statistics import NormalDist

import numpy as np
import pydantic
import pytest

import roofline as rl
from roofline import ops as O

pd = pytest.importorskip("pandas")

PHI_INV = NormalDist().inv_cdf
DSV3 = rl.load_model("deepseek-v3")  # E = 256, k = 8, h = 7168, F_e = 2048
MIXTRAL = rl.load_model("mixtral-8x7b")  # E = 8, k = 2, h = 4096, F_e = 14336


# ------------------------------------------------------------------ the distribution, by hand
def test_load_shares_by_hand_few_rows():
    # E = 2, α = 2, T·k = 1 ≤ E: loads on [0.01, 2], x(u) = ((2^-1 - 0.01^-1)·u + 0.01^-1)^-1 = 1 / (100 - 99.5·u)
    p = O.expert_load_shares(1, 2, 1, 2.0)
    x = np.array([1 / (100 - 99.5 * 0.25), 1 / (100 - 99.5 * 0.75)])  # mid-quantiles 1/4, 3/4
    assert p == pytest.approx(x / x.sum(), rel=1e-12)
    assert p == pytest.approx([0.2525, 0.7475], abs=1e-4)


def test_load_shares_at_alpha_one_are_log_uniform():
    # α = 1: x(u) = lo·(hi/lo)^u; E = 2, T = 10, k = 1 (T·k = 10 > E: lo = 1, hi = 0.8·10 = 8): x = 8^(1/4), 8^(3/4)
    p = O.expert_load_shares(10, 2, 1, 1.0)
    x = np.array([8**0.25, 8**0.75])
    assert p == pytest.approx(x / x.sum(), rel=1e-12)


def test_expected_max_of_normals_by_blom():
    assert O.expected_max_std_normal(1) == pytest.approx(0.0, abs=1e-12)
    assert O.expected_max_std_normal(8) == pytest.approx(PHI_INV(7.625 / 8.25), rel=1e-12)  # 1.434 (exact 1.424)
    assert O.expected_max_std_normal(np.array([1, 8])) == pytest.approx([0.0, PHI_INV(7.625 / 8.25)], abs=1e-12)


def test_busiest_rank_load_by_hand():
    # E = 2, k = 1, T = 1, α = 2: E·p = (0.505, 1.495), c = std = 0.495; ep = 2 ranks of one expert each:
    # 1 + c·√((2 - 1)/(2 - 1))·z_2, z_2 = Φ^-1(1.625/2.25)
    p = O.expert_load_shares(1, 2, 1, 2.0)
    c = float(np.std(2 * p))
    assert O.expert_load_cv(1, 2, 1, 2.0) == pytest.approx(c, rel=1e-12)
    assert O.busiest_rank_load(1, 2, 1, 2, 2.0) == pytest.approx(1 + c * 1.0 * PHI_INV(1.625 / 2.25), rel=1e-12)
    assert O.busiest_rank_load(1, 2, 1, 1, 2.0) == 1.0  # one rank waits for no other


def test_busiest_rank_load_worked_number_and_bounds():
    # the docstring's worked number: E = 256, k = 8, T = 4096, ep = 8
    c = O.expert_load_cv(4096, 256, 8, 1.01)
    assert O.busiest_rank_load(4096, 256, 8, 8, 1.01) == pytest.approx(1 + c * math.sqrt(7 / 255) * PHI_INV(7.625 / 8.25), rel=1e-12)
    assert 1.4 < O.busiest_rank_load(4096, 256, 8, 8, 1.01) < 1.45
    # more ranks wait for a busier one; never more than every row on one rank
    loads = [O.busiest_rank_load(4096, 256, 8, ep, 1.01) for ep in (1, 2, 4, 8, 16)]
    assert loads == sorted(loads) and loads[0] == 1.0
    assert O.busiest_rank_load(4096, 8, 2, 8, 1.01) <= 8
    # a grid gives the same numbers as one scenario at a time
    grid = O.busiest_rank_load(np.array([16.0, 4096.0, 4096.0]), 256, 8, np.array([8, 8, 1]), 1.01)
    assert grid == pytest.approx([O.busiest_rank_load(16, 256, 8, 8, 1.01), loads[3], 1.0], rel=1e-12)


# ------------------------------------------------------------------ the operator table
def test_expert_parallel_step_waits_for_the_busiest_rank():
    # DeepSeek-V3 prefill over ep = 8 GPUs, 8 prompts of 512 (T = 4096 tokens in all): the busiest rank computes
    # load · T·k/8 rows and sends and receives load times the mean rank's all-to-all rows
    skew = rl.Deployment(ep=8, weight_dtype="fp8", activation_dtype="fp8")
    flat = skew.model_copy(update={"expert_routing_alpha": None})
    load = O.busiest_rank_load(4096, 256, 8, 8, skew.expert_routing_alpha)
    rs = O.forward_ops(DSV3, skew.resolved(DSV3), 8, 512, 0, ep=8)
    rf = O.forward_ops(DSV3, flat.resolved(DSV3), 8, 512, 0, ep=8)
    rows = lambda ops: sum(op.flops for op in ops if op.name.startswith("experts_up"))
    assert rows(rs) == pytest.approx(load * rows(rf), rel=1e-12)
    assert rows(rf) == pytest.approx(58 * 2 * (4096 * 8 / 8) * (2 * 2048) * 7168, rel=1e-12)  # 58 MoE layers
    a2a = lambda ops: next(op for op in ops if op.name == "all_to_all").wire_bytes
    assert a2a(rs) == pytest.approx(load * a2a(rf), rel=1e-12)
    # every rank holds a copy of the rest: attention and the router are untouched
    assert next(op for op in rs if op.name == "router").flops == next(op for op in rf if op.name == "router").flops


def test_one_gpu_is_timed_as_balanced():
    # without expert parallelism there is no busier rank to wait for; within one GPU the layer is timed as balanced
    for model, tp in ((MIXTRAL, 2), (DSV3, 8)):
        ops = {a: O.forward_ops(model, rl.Deployment(tp=tp, expert_routing_alpha=a).resolved(model), 64, 1, 99, tp)
               for a in (None, 1.01, 1.2)}
        for a in (1.01, 1.2):
            assert [(op.name, op.flops, op.bytes) for op in ops[a]] == [(op.name, op.flops, op.bytes) for op in ops[None]]


def test_routing_alpha_is_validated():
    bad = (rl.SpecError, pydantic.ValidationError)
    with pytest.raises(bad, match="expert_routing_alpha"):
        rl.Deployment(expert_routing_alpha=0)
    with pytest.raises(bad, match="expert_routing_alpha"):
        rl.Deployment(expert_routing_alpha=-1.0)
    assert rl.Deployment().expert_routing_alpha == 1.01  # aiconfigurator-core's default power law


# ------------------------------------------------------------------ against the kernel tables (no fit: a check)
@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator_core") is None,
                    reason="aiconfigurator-core not installed (pip install roofline[public-data])")
def test_power_law_over_balanced_tracks_the_h200_trtllm_tables():
    """H200, TensorRT-LLM 1.3.0rc20 CUTLASS fused MoE, fp8_block, tp 1, ep 1-8, 16-16384 tokens: the model's
    power-law / balanced ratio against the table's (`python -m calibrate.moe_routing` prints 0.125 against 0.173)."""
    from calibrate.moe_routing import paired_rows, routing_ratios, summary
    from calibrate.public import data_root
    from roofline.calibration import attach_calibration, load_calibration

    df = pd.read_parquet(data_root() / "h200_sxm" / "moe" / "trtllm" / "1.3.0rc20" / "moe_perf.parquet")
    hw = attach_calibration(rl.load_hardware("h200", analytical=True), load_calibration("calibrate/public/h200-trtllm.json"))
    ratios = routing_ratios(paired_rows(df, "moe_torch_flow_cutlass", "fp8_block", "power_law_1.01"), hw, "fp8_block", 1.01)
    assert len(ratios) > 1000
    model, balanced = np.median(np.abs(ratios["error"])), np.median(np.abs(ratios["balanced_error"]))
    assert model < 0.13 and model < balanced - 0.03
    # prefill over 8 ranks: the busiest rank sets the time (table about 1.57x); balanced misses it by a third
    wide = summary(ratios).loc[(8, "4k-16k")]
    assert wide["table"] > 1.4 and wide["model"] > 1.4
    assert wide["model_abs_error"] < 0.1 < 0.3 < wide["balanced_abs_error"]
