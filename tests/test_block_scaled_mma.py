"""Block-scaled MMA (issue 12): Blackwell multiplies MXFP4 weights by MXFP8 activations as stored.

tcgen05.mma `kind::mxf8f6f4` takes A, B in {MXFP4, MXFP6, MXFP8}, UE8M0 scales per 32 elements, at the FP8 rate
(CUTLASS media/docs/cpp/blackwell_functionality.md), so gpt-oss's W4A8 experts on B200 / GB200 dequantize nothing;
Hopper's wgmma has no block-scaled kind, so there the same GEMM stays weight-only. Figures used (shipped YAML):
gpt-oss-120b 36 layers (18 full + 18 sliding), hidden 2880, 128 experts of width 2880, top-4; B200 FP8 dense
4.5e15 FLOP/s.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import roofline as rl
from roofline import ops as O
from roofline.parallelism import check
from roofline.roofline import Ceilings, OpTable, time_ops

GPT = rl.load_model("gpt-oss-120b")
B200 = rl.load_hardware("b200", analytical=True)
H100 = rl.load_hardware("h100-sxm", analytical=True)
B200_YAML = Path(__file__).resolve().parent.parent / "hardware_profiles" / "b200.yaml"
W4A8 = rl.Deployment(tp=1, activation_dtype="fp8")  # the checkpoint's MXFP4 experts, MXFP8 activations


def experts_up(hw, tokens, dep=W4A8):
    rd = check(GPT, hw, rl.Workload(batch_size=1, prompt_tokens=tokens, output_tokens=1), dep)
    ups = [op for op in O.forward_ops(GPT, rd, 1, tokens, 0) if op.name == "experts_up"]
    return rd, ups


@pytest.mark.parametrize("tokens", [4096, 8192])
def test_gpt_oss_up_gemm_on_b200_has_no_vector_work_and_runs_at_the_fp8_peak(tokens):
    rd, ups = experts_up(B200, tokens)
    assert not rd.weight_only and rd.dequant_ops_per_weight == 0 and rd.compute_key == "fp8"
    assert rd.native_mma.weight_dtype == "fp4" and rd.native_mma.activation_dtype == "fp8_e4m3"
    # T tokens x top-4 = 4T token-expert rows through the fused gate+up weight: N = 2 x 2880, K = 2880, 36 layers
    assert sum(op.flops for op in ups) == 36 * 2 * (4 * tokens) * (2 * 2880) * 2880
    assert sum(op.vector_flops for op in ups) == 0
    # at the datasheet floor the GEMM's compute is its FLOPs at the FP8 peak: 4T / 128 = 32 or 64 rows per expert
    # (multiples of B200's 16-token tile granularity), N = 45 x 128, so no padding
    floor = Ceilings.of(B200, rd.compute_key, floor=True)
    assert floor.gemm_flops_per_s == 4.5e15
    timing = time_ops(OpTable.of(ups), floor, 1)
    assert timing.compute_s.sum() == pytest.approx(36 * 2 * 4 * tokens * 5760 * 2880 / 4.5e15, rel=1e-9)


def test_gpt_oss_up_gemm_on_h100_keeps_its_dequantization():
    # Hopper: no block-scaled MMA. Every touched expert's weights are dequantized once per 64-row tile, 3 ops each:
    # 8,192 tokens -> 32,768 rows over all 128 experts = 256 rows each = 4 tiles; 36 layers
    rd, ups = experts_up(H100, 8192)
    assert rd.weight_only and rd.dequant_ops_per_weight == 3 and rd.native_mma is None
    assert sum(op.vector_flops for op in ups) == 36 * 3 * 128 * (2 * 2880) * 2880 * 4
    assert sum(op.flops for op in ups) == 36 * 2 * (4 * 8192) * (2 * 2880) * 2880


def test_the_same_gemm_keeps_its_flops_and_weight_bytes_on_both():
    # native or dequantized, the multiply-adds and the packed 4-bit weights with their scales are the same
    (_, on_b200), (_, on_h100) = experts_up(B200, 4096), experts_up(H100, 4096)
    assert sum(op.flops for op in on_b200) == sum(op.flops for op in on_h100)
    assert sum(op.weight_bytes for op in on_b200) == sum(op.weight_bytes for op in on_h100)


@pytest.mark.parametrize("dep", [
    rl.Deployment(tp=1, weight_dtype="fp4"),  # W4A16: bf16 activations are no mxf8f6f4 operand
    rl.Deployment(tp=1, weight_dtype="fp4", activation_dtype="fp8", weight_group_size=16, weight_scale_dtype="fp8"),  # NVFP4 x FP8
    rl.Deployment(tp=1, weight_dtype="int4", activation_dtype="fp8"),  # integers: no MX kind
])
def test_pairs_the_tensor_cores_do_not_take_stay_weight_only_on_b200(dep):
    llama = rl.load_model("llama-3.1-8b")
    rd = check(llama, B200, rl.Workload(batch_size=1, prompt_tokens=256, output_tokens=1), dep)
    assert rd.weight_only and rd.dequant_ops_per_weight == 3 and rd.native_mma is None
    assert rd is dep.resolved(llama)  # the resolution as it was, not a copy


def test_the_native_pair_is_part_of_the_resolutions_key():
    # the op lists are kept per key: the B200 and H100 tables of one deployment must not share one
    rd = W4A8.resolved(GPT)
    assert rd.on(B200).key() != rd.on(H100).key() == rd.key()
    assert rd.on(B200) is rd.on(B200)  # kept


def test_only_blackwell_profiles_declare_it():
    for hw_id in ("b200", "gb200"):
        assert {p.activation_dtype for p in rl.load_hardware(hw_id).block_scaled_mma} == {"fp8_e4m3", "fp8_e5m2"}
    for hw_id in ("h100-sxm", "h200", "a100-sxm-80gb", "mi300x", "l40s"):
        assert rl.load_hardware(hw_id).block_scaled_mma == ()


def test_sweep_times_each_device_with_its_own_table():
    df = rl.sweep("gpt-oss-120b", ["h100-sxm", "b200"], batch_size=[64], prompt_tokens=[1024], output_tokens=[64], tp=[2],
                  activation_dtype="fp8")
    assert list(df["hardware"]) == ["NVIDIA H100 SXM5 80GB", "NVIDIA B200 180GB"]  # the frame's order kept
    wl = rl.Workload(batch_size=64, prompt_tokens=1024, output_tokens=64)
    for row, hw_id in zip(df.itertuples(), ("h100-sxm", "b200")):
        p = rl.predict("gpt-oss-120b", hw_id, wl, rl.Deployment(tp=2, activation_dtype="fp8"))
        assert row.ttft_s == pytest.approx(p.ttft_s, rel=1e-9)


@pytest.mark.parametrize("field, value, match", [
    ("weight_dtype", "fp5", r"block_scaled_mma\.weight_dtype: unknown dtype 'fp5'"),
    ("activation_dtype", "bf16", r"block_scaled_mma\.activation_dtype: bf16 is not a block-scaled format"),
    ("peak_key", "fp6", r"block_scaled_mma\.peak_key: unknown dtype key 'fp6'"),
])
def test_a_malformed_entry_is_one_line_naming_the_field(tmp_path, field, value, match):
    data = yaml.safe_load(B200_YAML.read_text())
    broken = copy.deepcopy(data)
    broken["block_scaled_mma"][0][field] = value
    path = tmp_path / "b200-broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(rl.SpecError, match=match) as err:
        rl.load_hardware(path)
    assert "\n" not in str(err.value)


def test_an_entry_without_a_source_or_a_peak_is_refused(tmp_path):
    data = yaml.safe_load(B200_YAML.read_text())
    no_source = copy.deepcopy(data)
    del no_source["sources"]["block_scaled_mma"]
    with pytest.raises(ValueError, match="no source for block_scaled_mma"):
        rl.HardwareProfile.model_validate(no_source)
    no_peak = copy.deepcopy(data)
    no_peak["block_scaled_mma"][0]["peak_key"] = "int4"  # a known key B200 has no peak for
    with pytest.raises(ValueError, match=r"block_scaled_mma\[0\]\.peak_key: int4 has no peak_flops_per_s entry"):
        rl.HardwareProfile.model_validate(no_peak)
