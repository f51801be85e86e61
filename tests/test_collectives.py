"""The all-reduce model (`roofline.collectives`): each algorithm by hand, the topology, the calibrated line, the
scale-out fallback, the floor, and the interconnect fields' validation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import roofline as rl
from roofline import ops as O
from roofline.collectives import allreduce_s, allreduce_times_s, best_algorithm, group_link_bytes_per_s
from roofline.errors import SpecError
from roofline.parallelism import scale_out
from roofline.roofline import Ceilings, OpTable, time_ops

MIB = 1 << 20
PUBLIC = Path(__file__).resolve().parent.parent / "calibrate" / "public"


def _allreduce_op(tokens, hidden, tp, layers=1):
    """One layer's two all-reduces of [tokens, hidden] bf16 activations (ops._allreduce via forward_ops' shape)."""
    return O.Op("allreduce", "layer", O.OpKind.COMM, layers, launches=2 * layers, flops=0.0,
                comm_bytes=2 * layers * tokens * hidden * 2, messages=2 * layers)


def _comm_s(hw, op, tp, floor=False):
    t = OpTable.of([op], ())
    return float(time_ops(t, Ceilings.of(hw, "bf16", floor=floor), tp).comm_s[0])


def test_each_algorithm_by_hand_on_h100_at_tp8():
    """H100 SXM at tp 8: link 450e9 · 0.82 = 369e9 B/s, alpha 4.6 us, ring hop 1.8 us. A 1 MiB message:
    one-shot 7 · 1,048,576 / 369e9 + 4.6 us = 24.49 us; two-shot 1.75 · 1,048,576 / 369e9 + 9.2 us = 14.17 us;
    ring 4.97 + 14 · 1.8 = 30.17 us. The vLLM 0.24.0 kernel table measures 15.0 us at 1 MiB."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    c = Ceilings.of(hw, "bf16")
    assert c.link_bytes_per_s == pytest.approx(369e9) and c.allreduce_step_s == 4.6e-6
    t = allreduce_times_s(MIB, 1, 8, c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s, c.allreduce_step_s,
                          c.nvls_bytes_per_s)
    assert float(t["one_shot"]) == pytest.approx(7 * MIB / 369e9 + 4.6e-6)
    assert float(t["one_shot"]) == pytest.approx(24.49e-6, rel=1e-3)
    assert float(t["two_shot"]) == pytest.approx(1.75 * MIB / 369e9 + 9.2e-6)
    assert float(t["two_shot"]) == pytest.approx(14.17e-6, rel=1e-3)
    assert float(t["ring"]) == pytest.approx(1.75 * MIB / 369e9 + 14 * 1.8e-6)
    assert t["nvls"] == np.inf  # the profile leaves NVLS out (see its sources)
    args = (c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s, c.allreduce_step_s, c.nvls_bytes_per_s)
    assert best_algorithm(MIB, 1, 8, *args) == "two_shot"
    assert best_algorithm(16 * 1024, 1, 8, *args) == "one_shot"  # 7 · 16,384 / 369e9 = 0.31 us + 4.6 us
    assert float(allreduce_s(MIB, 1, 8, *args)) == pytest.approx(float(t["two_shot"]))


def test_a_decode_allreduce_no_longer_pays_fourteen_ring_hops():
    """A decode step of 8 tokens on llama-3.1-70b (hidden 8192) at tp 8 on an H100: 8 · 8192 · 2 = 131,072 bytes.
    One-shot: 7 · 131,072 / 369e9 + 4.6 us = 7.09 us per all-reduce; the old ring charged
    1.75 · 131,072 / 369e9 + 14 · 1.8 us = 25.82 us."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    op = _allreduce_op(8, 8192, 8)
    assert _comm_s(hw, op, 8) == pytest.approx(2 * (7 * 131072 / 369e9 + 4.6e-6))
    ring_only = hw.model_copy(update={"interconnect": hw.interconnect.model_copy(update={"custom_allreduce_latency_s": None})})
    assert _comm_s(ring_only, op, 8) == pytest.approx(2 * (1.75 * 131072 / 369e9 + 14 * 1.8e-6))


def test_a_mesh_gives_a_tp2_group_one_link():
    """MI300X xGMI: one 64 GB/s link per GPU pair, fraction 0.71. tp 2: the group has 1 link, 45.44e9 B/s;
    tp 8: 7 links, 318.08e9 (= the 448 GB/s per GPU · 0.71). A 64 MiB prefill all-reduce at tp 2, two-shot:
    2 · 1/2 · 67,108,864 / 45.44e9 + 2 · 6.3 us = 1.4769 ms + 12.6 us (one-shot is the same bytes, 6.3 us)."""
    hw = rl.load_hardware("mi300x", analytical=True)
    c = Ceilings.of(hw, "bf16")
    assert hw.interconnect.topology == "mesh"
    assert float(group_link_bytes_per_s(c.link_bytes_per_s, c.pair_link_bytes_per_s, 2)) == pytest.approx(64e9 * 0.71)
    assert float(group_link_bytes_per_s(c.link_bytes_per_s, c.pair_link_bytes_per_s, 8)) == pytest.approx(448e9 * 0.71)
    s = 64 * MIB
    got = float(allreduce_s(s, 1, 2, c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s, c.allreduce_step_s, 0.0))
    assert got == pytest.approx(s / (64e9 * 0.71) + 6.3e-6)  # one-shot at p = 2: 1 · S / link + alpha
    # per byte, a tp-2 group is 7x slower than the whole board's link would suggest
    switch = hw.model_copy(update={"interconnect": hw.interconnect.model_copy(update={"topology": "switch",
                                                                                        "pair_bytes_per_s_per_direction": None})})
    op = _allreduce_op(8192, 8192, 2)
    assert _comm_s(hw, op, 2) > 6 * _comm_s(switch, op, 2)


def test_pcie_devices_keep_the_ring_alone():
    """L40S over PCIe: no custom all-reduce, so the old formula exactly: 2(p-1)/p · C / (32e9 · 0.44) + 2(p-1) · 3 us."""
    hw = rl.load_hardware("l40s", analytical=True)
    assert hw.interconnect.topology == "pcie" and hw.interconnect.custom_allreduce_latency_s is None
    op = _allreduce_op(64, 5120, 4)
    c_bytes, messages = 2 * 64 * 5120 * 2, 2
    assert _comm_s(hw, op, 4) == pytest.approx(1.5 * c_bytes / (32e9 * 0.44) + 6 * messages * 3e-6)


def test_the_floor_is_the_best_algorithm_without_latency_and_never_above_the_real_time():
    """Floor on a switch without NVLS (A100's second-generation NVSwitch): the bandwidth-optimal 2(p-1)/p · C / link at
    the line rate (no alpha). On an NVLS-capable switch (H100 / H200 / B200 / GB200: `nvls_capable`) the floor is NVLS at
    the line rate, C / link (a GPU sends S and receives S once): 8,192 tokens · 8192 · 2 bytes, two all-reduces, at tp 8
    on H100: 2 · 134,217,728 / 450e9 = 596.5 us against the two-shot's 1.75 × that = 1,043.9 us."""
    for name in ("h100-sxm", "h200", "b200", "mi300x", "l40s", "a100-sxm-80gb"):
        for analytical in (True, False):
            hw = rl.load_hardware(name, analytical=analytical)
            for tp, tokens in ((2, 1), (4, 64), (8, 8192), (8, 40_000)):
                if tp > hw.interconnect.max_gpus:
                    continue
                op = _allreduce_op(tokens, 8192, tp)
                assert _comm_s(hw, op, tp, floor=True) <= _comm_s(hw, op, tp) * (1 + 1e-12), (name, analytical, tp, tokens)
    a100 = rl.load_hardware("a100-sxm-80gb", analytical=True)
    assert not a100.interconnect.nvls_capable
    op = _allreduce_op(8192, 8192, 8)
    assert _comm_s(a100, op, 8, floor=True) == pytest.approx(1.75 * 2 * 8192 * 8192 * 2 / 300e9)
    h100 = rl.load_hardware("h100-sxm", analytical=True)
    assert h100.interconnect.nvls_capable and h100.interconnect.nvls_bandwidth_fraction is None
    assert _comm_s(h100, op, 8, floor=True) == pytest.approx(2 * 8192 * 8192 * 2 / 450e9)


def test_a_measured_nvls_allreduce_is_not_below_the_floor():
    """NCCL runs NVLS for large messages at tp 8 on an HGX H200: the table's 512 MiB all-reduce moves 461 GB/s of bus
    bandwidth (2 · 7/8 · S / t), above the 450 GB/s link a two-shot can use. The floor counts NVLS (C / link), so a
    calibrated all-reduce of 256 sequences × 83 tokens × 7168 · 2 bytes = 304.6 MB (DeepSeek-V3's prefill) stays
    above it, with the engine's kernel and with NCCL's."""
    from roofline.engines import with_nccl_allreduce

    hw = rl.load_hardware("h200")
    op = _allreduce_op(256 * 83, 7168, 8)
    for profile in (hw, with_nccl_allreduce(hw)):
        real, floor = _comm_s(profile, op, 8), _comm_s(profile, op, 8, floor=True)
        assert floor == pytest.approx(2 * 256 * 83 * 7168 * 2 / 450e9)
        assert floor <= real


def test_a_calibrated_allreduce_replaces_the_model_but_not_from_a_pcie_host():
    """With calibrate/public/h200.json attached, a tp-8 all-reduce op costs messages · t(S) through the file's measured
    '8' points (same profile: the points unscaled). 16 tokens · 8192 · 2 bytes = 262,144 B, a measured size (2^18):
    two all-reduces · 10.06 us = 20.12 us. l40s.json's all-reduce measures that host's PCIe bus: not used."""
    points = json.loads((PUBLIC / "h200.json").read_text())["allreduce_points"]["groups"]["8"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hw = rl.load_hardware("h200", calibration=str(PUBLIC / "h200.json"))
        l40s = rl.load_hardware("l40s", calibration=str(PUBLIC / "l40s.json"))
    op = _allreduce_op(16, 8192, 8)
    message_bytes = 16 * 8192 * 2
    t_measured = points["time_s"][points["message_bytes"].index(message_bytes)]
    assert t_measured == pytest.approx(10.06e-6)
    assert _comm_s(hw, op, 8) == pytest.approx(2 * t_measured)
    analytical = hw.model_copy(update={"calibration": None})  # same summary fractions, no curves
    assert _comm_s(hw, op, 3) == pytest.approx(_comm_s(analytical, op, 3))  # no tp-3 points: the model
    plain = rl.load_hardware("l40s", analytical=True)
    assert _comm_s(l40s, op, 8) == pytest.approx(_comm_s(plain, op, 8))


def test_a_group_past_the_nvlink_domain_runs_the_ring_over_the_network():
    """tp 16 on 8-GPU H100 nodes: the collective crosses the scale-out network, where only NCCL's ring runs."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    dep = rl.Deployment(tp=16)
    real, floor = Ceilings.of(hw, "bf16"), Ceilings.of(hw, "bf16", floor=True)
    real2, floor2, _, _ = scale_out(hw, dep, real, floor)
    assert real2.allreduce_step_s == np.inf and real2.nvls_bytes_per_s == 0 and real2.pair_link_bytes_per_s == np.inf
    op = _allreduce_op(8, 8192, 16)
    t = float(time_ops(OpTable.of([op], ()), real2, 16).comm_s[0])
    c_bytes = 2 * 8 * 8192 * 2
    assert t == pytest.approx(2 * 15 / 16 * c_bytes / real2.link_bytes_per_s + 2 * 15 * 2 * real2.link_latency_s)


def test_nvls_when_a_profile_declares_it():
    """A switch profile with nvls_bandwidth_fraction 0.61: a 256 MiB all-reduce at tp 8 moves S / (450e9 · 0.61)
    + 2 alpha = 977.9 us + 9.2 us, below two-shot's 1.75 · S / 369e9 + 9.2 us = 1272.9 us."""
    hw = rl.load_hardware("h100-sxm", analytical=True)
    ic = hw.interconnect.model_dump() | {"nvls_bandwidth_fraction": 0.61,
                                         "sources": {**hw.interconnect.sources, "nvls_bandwidth_fraction": "test"}}
    nv = hw.model_copy(update={"interconnect": rl.Interconnect.model_validate(ic)})
    c = Ceilings.of(nv, "bf16")
    s = 256 * MIB
    args = (c.link_bytes_per_s, c.pair_link_bytes_per_s, c.link_latency_s, c.allreduce_step_s, c.nvls_bytes_per_s)
    assert best_algorithm(s, 1, 8, *args) == "nvls"
    assert float(allreduce_s(s, 1, 8, *args)) == pytest.approx(s / (450e9 * 0.61) + 9.2e-6)
    assert best_algorithm(16 * 1024, 1, 8, *args) == "one_shot"


@pytest.mark.parametrize("update, field", [
    ({"topology": "mesh"}, "interconnect.pair_bytes_per_s_per_direction"),
    ({"pair_bytes_per_s_per_direction": 64e9}, "interconnect.pair_bytes_per_s_per_direction"),
    ({"nvls_bandwidth_fraction": 0.6, "topology": "pcie"}, "interconnect.nvls_bandwidth_fraction"),
    ({"custom_allreduce_latency_s": 5e-6}, "interconnect.sources"),
])
def test_interconnect_fields_are_checked(update, field):
    base = {"name": "x", "bytes_per_s_per_direction": 1e11, "latency_s": 1e-6, "max_gpus": 8}
    srcs = {"sources": {k: "test" for k in update if k != "custom_allreduce_latency_s"}}
    with pytest.raises((SpecError, ValueError), match=field.replace(".", r"\.")):
        rl.Interconnect.model_validate(base | update | srcs)


def test_every_shipped_profile_names_a_topology():
    names = rl.list_hardware()
    assert len(names) >= 15
    for name in names:
        hw = rl.load_hardware(name, analytical=True)
        assert "topology" in hw.interconnect.model_fields_set, name
