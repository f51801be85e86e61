"""Energy per token (roofline.energy): P = P_idle + (TDP - P_idle) · u per operator, arithmetic written out.

The tiny model and the round-number device of tests/test_ops_hand.py: TDP 100 W, idle 20 W,
1e14 FLOP/s BF16 peak, 1e12 bytes/s peak bandwidth.
"""

from __future__ import annotations

import math

import pytest

import roofline as rl
from roofline import energy as E
from roofline import ops as O
from tests.test_ops_hand import ROUND_HW, TINY

IDLE, TDP, PEAK, BW = 20.0, 100.0, 1e14, 1e12


def test_power_and_energy_worked_numbers():
    # P(u) = 20 + 80 u: 20 W idle, 60 W at u = 0.5, 100 W at u = 1; u is clipped to [0, 1]
    assert E.power_w(0.0, IDLE, TDP) == 20 and E.power_w(0.5, IDLE, TDP) == 60 and E.power_w(1.0, IDLE, TDP) == 100
    assert E.power_w(1.7, IDLE, TDP) == 100
    # a 2 s phase with 0.5 s of speed-of-light work: 20 W x 2 s + 80 W x 0.5 s = 80 J = P(0.25) x 2 s
    assert E.energy_j(2.0, 0.5, IDLE, TDP) == pytest.approx(80.0)
    assert E.energy_j(2.0, 0.5, IDLE, TDP) == pytest.approx(E.power_w(0.25, IDLE, TDP) * 2.0)
    assert E.energy_j(0.0, 0.0, IDLE, TDP) == 0  # an empty phase (one output token: no decode step)
    # 0.5 J per token = 0.5e6 J per million = 0.5e6 / 3.6e6 kWh = 0.1389 kWh per million
    assert E.kwh_per_million(0.5) == pytest.approx(0.5e6 / 3.6e6)


def test_static_batch_energy_by_hand():
    """TINY on the round device, batch 1, prompt 8, output 3 (two decode steps).

    Prefill busy = Σ_ops max(F / 1e14, B / 1e12) of the prefill table; decode at batch 1 is memory-bound
    in every operator, so its busy time is the decode bytes over 1e12 B/s, summed over both steps.
    Energy = idle x phase time + (TDP - idle) x busy, one GPU.
    """
    wl = rl.Workload(batch_size=1, prompt_tokens=8, output_tokens=3)
    p = rl.predict(TINY, ROUND_HW, wl)
    pre_ops = O.forward_ops(TINY, rl.Deployment().resolved(TINY), 1, 8, 0)
    pre_busy = sum(max(op.flops / PEAK, op.bytes / BW) for op in pre_ops)
    assert p.prefill_energy_j == pytest.approx(IDLE * p.ttft_s + (TDP - IDLE) * pre_busy, rel=1e-12)
    rd = rl.Deployment().resolved(TINY)
    steps = [O.forward_ops(TINY, rd, 1, 1, c - 1) for c in (9, 10)]  # the 2nd and 3rd tokens attend to 9 and 10 keys
    assert all(op.flops / PEAK <= op.bytes / BW for ops in steps for op in ops)  # every op memory-bound
    dec_bytes = sum(op.bytes for ops in steps for op in ops)
    dec_time = p.e2e_latency_s - p.ttft_s
    assert p.decode_energy_j == pytest.approx(IDLE * dec_time + (TDP - IDLE) * dec_bytes / BW, rel=1e-12)
    assert p.energy_per_output_token_j == pytest.approx((p.prefill_energy_j + p.decode_energy_j) / 3)
    assert p.kwh_per_million_output_tokens == pytest.approx(p.energy_per_output_token_j / 3.6)
    assert IDLE < p.mean_power_w_per_gpu < TDP


def test_energy_scales_with_the_gpus_of_a_replica():
    """tp = 2: two GPUs each draw the same per-GPU power model over the same phase times."""
    wl = rl.Workload(batch_size=4, prompt_tokens=64, output_tokens=16)
    one = rl.predict("llama-3.1-8b", "h100-sxm", wl)
    two = rl.predict("llama-3.1-8b", "h100-sxm", wl, rl.Deployment(tp=2))
    hw = rl.load_hardware("h100-sxm")
    for p, gpus in ((one, 1), (two, 2)):
        total = p.prefill_energy_j + p.decode_energy_j
        assert total == pytest.approx(p.mean_power_w_per_gpu * gpus * p.e2e_latency_s)
        assert hw.idle_power_w < p.mean_power_w_per_gpu < hw.tdp_w


def test_decode_energy_per_token_falls_with_batch_while_memory_bound():
    """The weights are read once per step whatever the batch: more sequences share each joule."""
    hw = "h100-sxm"
    j = [rl.predict("llama-3.1-8b", hw, rl.Workload(batch_size=b, prompt_tokens=128, output_tokens=128)).energy_per_output_token_j
         for b in (1, 4, 16, 64)]
    assert j == sorted(j, reverse=True)


def test_fleet_energy_by_hand():
    """3 replicas of 2 GPUs (idle 100 W), each making 1,000 tokens/s at 400 W per GPU, asked for 2,500 tokens/s:
    2.5 replica-seconds per second busy. P = 3·2·100 + 2.5·2·(400 - 100) = 600 + 1,500 = 2,100 W -> 0.84 J/token."""
    assert E.fleet_energy_per_output_token_j(3, 2, 100.0, 400.0, 1000.0, 2500.0) == pytest.approx(0.84)


def test_serving_energy_by_hand():
    """Steady state, one GPU: busy GPU-seconds per output token = [prefill busy + (O - 1) · step busy / B] / O."""
    rd = rl.Deployment().resolved(TINY)
    s, o, b, c = 8, 4, 2, 10
    pre = sum(max(op.flops / PEAK, op.bytes / BW) for op in O.forward_ops(TINY, rd, 1, s, 0, mla_absorbed=False))
    step = sum(max(op.flops / PEAK, op.bytes / BW) for op in O.forward_ops(TINY, rd, b, 1, c - 1, mla_absorbed=True))
    busy = (pre + (o - 1) * step / b) / o
    rate = 1000.0  # output tokens/s of the replica
    want = (IDLE + (TDP - IDLE) * busy * rate) / rate
    got = E.serving_energy_per_output_token_j(TINY, rd, ROUND_HW, 1, b, s, c, o, rate, 1)
    assert got == pytest.approx(want, rel=1e-12)


def test_plan_and_report_carry_energy():
    df = rl.plan("llama-3.1-8b", requests_per_s=2, prompt_tokens=512, output_tokens=128, ttft_slo_s=2, tpot_slo_s=0.1,
                 hardware=["h100-sxm", "l4"])
    ok = df[df["feasible"]]
    assert len(ok) and (ok["energy_per_output_token_j"] > 0).all()
    assert ok["kwh_per_million_output_tokens"].tolist() == pytest.approx((ok["energy_per_output_token_j"] / 3.6).tolist())
    assert df[~df["feasible"]]["energy_per_output_token_j"].map(math.isnan).all()


def test_idle_power_must_be_below_tdp():
    data = ROUND_HW.model_dump()
    with pytest.raises(Exception, match="idle_power_w"):
        rl.HardwareProfile.model_validate(data | {"idle_power_w": 100})
