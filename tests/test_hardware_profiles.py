"""Shipped hardware profiles: they load, their peaks are dense, and every figure is sourced."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import roofline as rl
from roofline.hardware import PEAK_KEYS

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"

# id -> nominal capacity as marketed ("GB" of HBM/GDDR is binary: 80 GB HBM3 = 80 GiB of DRAM)
NOMINAL_GB = {
    "h100-sxm": 80, "h100-pcie": 80, "h100-nvl": 94, "h200": 141,
    "a100-sxm-80gb": 80, "a100-sxm-40gb": 40, "a100-pcie-80gb": 80,
    "l40s": 48, "l4": 24, "a10g": 24, "rtx-4090": 24,
    "b200": 180, "gb200": 186, "mi300x": 192, "mi325x": 256,
}
IDS = sorted(NOMINAL_GB)

FP8_CAPABLE = {"h100-sxm", "h100-pcie", "h100-nvl", "h200", "l40s", "l4", "rtx-4090",
               "b200", "gb200", "mi300x", "mi325x"}
BLACKWELL = {"b200", "gb200"}


def raw(hw_id: str) -> dict:
    return yaml.safe_load((PROFILE_DIR / f"{hw_id}.yaml").read_text())


def close(a: float, b: float, rel: float = 1e-3) -> bool:
    return abs(a - b) <= rel * abs(b)


@pytest.mark.parametrize("hw_id", IDS)
def test_every_profile_loads(hw_id):
    hw = rl.load_hardware(hw_id)
    assert isinstance(hw, rl.HardwareProfile)
    assert hw.name and hw.vendor in {"NVIDIA", "AMD"}


def test_list_hardware_has_all_fifteen():
    listed = rl.list_hardware()
    assert set(IDS) <= set(listed)
    assert len(IDS) == 15


# Datasheet headline (with 2:4 sparsity) / 2 must equal the dense peak stored in the profile.
# (id, key, headline as printed on the datasheet, in FLOP/s or OP/s)
SPARSE_HEADLINES = [
    ("h100-sxm", "fp8", 3958e12),      # "3,958 TFLOPS*" H100 SXM
    ("h100-sxm", "bf16", 1979e12),     # "1,979 TFLOPS*"
    ("h100-sxm", "int8", 3958e12),
    ("h100-pcie", "fp8", 3026e12),     # "3,026 TFLOPS*"
    ("h100-nvl", "fp8", 3341e12),      # "3,341 TFLOPS*"
    ("h200", "fp8", 3958e12),
    ("a100-sxm-80gb", "bf16", 624e12),  # "312 | 624*"
    ("a100-sxm-80gb", "int8", 1248e12),
    ("a100-sxm-80gb", "int4", 2496e12),
    ("a100-sxm-40gb", "tf32", 312e12),
    ("a100-pcie-80gb", "fp16", 624e12),
    ("l40s", "fp8", 1466e12),          # "733 | 1,466*"
    ("l40s", "int8", 1466e12),
    ("l4", "fp8", 485e12),             # "485 teraFLOPS*"
    ("l4", "bf16", 242e12),
    ("a10g", "bf16", 140e12),          # AWS A10G datasheet "70 | 140*"
    ("rtx-4090", "int8", 1321.2e12),   # Ada whitepaper "660.6/1321.2"
    ("rtx-4090", "bf16", 330.4e12),    # FP32-accumulate "165.2/330.4"
    ("b200", "fp8", 9e15),             # HGX B200 per GPU "9 PFLOPS*"
    ("b200", "fp4", 18e15),            # "18 PFLOPS*"
    ("b200", "bf16", 4.5e15),
    ("gb200", "fp8", 10e15),           # GB200 NVL72 per GPU "10 PFLOPS*"
    ("gb200", "fp4", 20e15),
    ("mi300x", "fp8", 5229.8e12),      # AMD "5,229.8 TFLOPS with sparsity"
    ("mi300x", "bf16", 2614.9e12),
    ("mi325x", "fp8", 5229.8e12),
]


@pytest.mark.parametrize("hw_id,key,headline", SPARSE_HEADLINES)
def test_peaks_are_dense_half_of_sparse_headline(hw_id, key, headline):
    hw = rl.load_hardware(hw_id)
    assert hw.sparsity_2_4_speedup == 2.0
    assert close(headline / 2, hw.peak_flops(key)), (hw_id, key, hw.peak_flops(key))
    assert close(hw.peak_flops(key) * hw.sparsity_2_4_speedup, headline)


def test_h100_sxm_ridge_point():
    hw = rl.load_hardware("h100-sxm")
    bf16 = hw.ridge_point_flops_per_byte("bf16")
    assert bf16 == pytest.approx(989.4e12 / 3.35e12, rel=1e-9)
    assert bf16 == pytest.approx(295, abs=1)
    assert hw.ridge_point_flops_per_byte("fp8") == pytest.approx(2 * bf16, rel=1e-3)


@pytest.mark.parametrize("hw_id", IDS)
def test_efficiency_fractions_in_unit_interval(hw_id):
    eff = rl.load_hardware(hw_id, analytical=True).efficiency  # the profile's own block (a calibration summarises its curves)
    fractions = [eff.memory_bandwidth_fraction, eff.attention_flops_fraction,
                 eff.interconnect_bandwidth_fraction, *eff.flops_fraction.values()]
    for frac in fractions:
        assert 0 < frac <= 1
    assert 0 <= eff.kernel_overhead_s < 1e-4
    assert eff.source_kind == "default"


@pytest.mark.parametrize("hw_id", IDS)
def test_flops_fraction_covers_every_peak(hw_id):
    hw = rl.load_hardware(hw_id)
    assert set(hw.efficiency.flops_fraction) == set(hw.peak_flops_per_s)


@pytest.mark.parametrize("hw_id", IDS)
def test_memory_within_ten_percent_of_nominal(hw_id):
    gib = rl.load_hardware(hw_id).memory_bytes / 2**30
    assert abs(gib - NOMINAL_GB[hw_id]) <= 0.10 * NOMINAL_GB[hw_id]


@pytest.mark.parametrize("hw_id", IDS)
def test_dtype_support_matches_architecture(hw_id):
    peaks = rl.load_hardware(hw_id).peak_flops_per_s
    assert set(peaks) <= set(PEAK_KEYS)
    assert ("fp8" in peaks) == (hw_id in FP8_CAPABLE)
    assert ("fp4" in peaks) == (hw_id in BLACKWELL)
    # dense tensor rates: bf16 at least the fp32 vector rate, fp8 2x bf16 where present
    # (within datasheet rounding: L4 lists 485*/242*, L40S lists 733 dense FP8 but 362.05 dense BF16)
    assert peaks["bf16"] >= peaks["fp32"]
    if "fp8" in peaks:
        assert peaks["fp8"] == pytest.approx(2 * peaks["bf16"], rel=0.03)


@pytest.mark.parametrize("hw_id", IDS)
def test_sources_cover_every_figure_and_are_real(hw_id):
    data = raw(hw_id)
    figures = {"memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s", "l2_bytes",
               "interconnect", "host_link_bytes_per_s_per_direction", "tdp_w", "idle_power_w",
               "price_usd_per_gpu_hour", "gemm_tile_tokens", "sparsity_2_4_speedup"}
    assert figures <= set(data["sources"])
    assert set(data["efficiency"]["sources"]) >= {
        "memory_bandwidth_fraction", "flops_fraction", "attention_flops_fraction",
        "interconnect_bandwidth_fraction", "kernel_overhead_s"}
    for text in [*data["sources"].values(), *data["efficiency"]["sources"].values()]:
        assert isinstance(text, str) and len(text) > 20
        assert "placeholder" not in text.lower()


@pytest.mark.parametrize("field", ["memory_bandwidth_bytes_per_s", "tdp_w", "idle_power_w", "sparsity_2_4_speedup"])
def test_profile_missing_a_source_fails_naming_the_field(field):
    data = raw("h100-sxm")
    rl.HardwareProfile.model_validate(data)  # the unmodified dict is valid
    broken = copy.deepcopy(data)
    del broken["sources"][field]
    with pytest.raises(ValueError, match=field):
        rl.HardwareProfile.model_validate(broken)


def test_profile_missing_an_efficiency_source_fails_naming_the_field():
    broken = copy.deepcopy(raw("mi300x"))
    del broken["efficiency"]["sources"]["attention_flops_fraction"]
    with pytest.raises(ValueError, match="attention_flops_fraction"):
        rl.HardwareProfile.model_validate(broken)


def test_a100_has_no_fp8():
    for hw_id in ("a100-sxm-80gb", "a100-sxm-40gb", "a100-pcie-80gb", "a10g"):
        hw = rl.load_hardware(hw_id)
        assert "fp8" not in hw.peak_flops_per_s
        with pytest.raises(rl.SpecError, match=hw.name):
            hw.peak_flops("fp8")


@pytest.mark.parametrize("hw_id", IDS)
def test_interconnect_and_tiles(hw_id):
    hw = rl.load_hardware(hw_id)
    link = hw.interconnect
    assert 1e-7 < link.latency_s < 2e-5
    if hw_id == "gb200":
        assert link.max_gpus == 72 and link.bytes_per_s_per_direction == 900e9
        assert hw.host_link_bytes_per_s_per_direction == 450e9
    elif hw_id == "h100-nvl":
        assert link.max_gpus == 2 and link.bytes_per_s_per_direction == 300e9
    else:
        assert link.max_gpus == 8
    # decode-sized GEMMs run m16 mma.sync kernels, or swap operands so tokens sit on the MMA's N (multiples
    # of 8); Hopper's m64 wgmma / Blackwell's m64 tcgen05 tiles are not what a batch of a few tokens pays for
    assert hw.gemm_tile_tokens == 16


def test_per_direction_link_rates():
    assert rl.load_hardware("h100-sxm").interconnect.bytes_per_s_per_direction == 450e9
    assert rl.load_hardware("b200").interconnect.bytes_per_s_per_direction == 900e9
    assert rl.load_hardware("a100-sxm-80gb").interconnect.bytes_per_s_per_direction == 300e9
    assert rl.load_hardware("mi300x").interconnect.bytes_per_s_per_direction == 7 * 64e9
    for hw_id in ("l4", "l40s", "a10g", "rtx-4090", "a100-pcie-80gb"):
        hw = rl.load_hardware(hw_id)
        assert hw.interconnect.bytes_per_s_per_direction == 32e9
        assert hw.host_link_bytes_per_s_per_direction == 32e9


def test_a_price_override_changes_only_the_price_and_records_its_source():
    import math

    from roofline.hardware import parse_prices

    h100 = rl.load_hardware("h100-sxm")
    cheap = h100.with_price(1.25, "quote 2026-11")
    assert cheap.price_usd_per_gpu_hour == 1.25 and cheap.sources["price_usd_per_gpu_hour"] == "quote 2026-11"
    assert cheap.model_dump(exclude={"price_usd_per_gpu_hour", "sources", "price_kind"}) == h100.model_dump(
        exclude={"price_usd_per_gpu_hour", "sources", "price_kind"})
    assert (h100.price_kind, cheap.price_kind, cheap.price_note) == ("basis", "override", "price: override")
    wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
    a, b = (rl.predict(rl.load_model("llama-3.1-8b"), h, wl) for h in (h100, cheap))
    assert b.usd_per_hour == pytest.approx(1.25)  # one GPU x $1.25
    assert b.usd_per_million_output_tokens == pytest.approx(a.usd_per_million_output_tokens * 1.25 / h100.price_usd_per_gpu_hour)
    for bad in (0, -1.0, math.inf, math.nan, True, "2"):
        with pytest.raises(rl.SpecError, match="price_usd_per_gpu_hour"):
            h100.with_price(bad)
    assert parse_prices("h100-sxm=2.5, h200=3") == {"h100-sxm": 2.5, "h200": 3.0}
    assert parse_prices(["h100-sxm=2.5", "h200=3"]) == {"h100-sxm": 2.5, "h200": 3.0}
    assert parse_prices("") == {}
    for bad in ("h100-sxm", "h100-sxm=", "=2", "h100-sxm=-1", "h100-sxm=nan", "h100-sxm=two"):
        with pytest.raises(rl.SpecError, match=f"price: expected DEVICE=USD_PER_GPU_HOUR .*got '{bad}'"):
            parse_prices(bad)



def test_every_price_is_on_the_basis_or_says_what_it_is():
    """One stated basis (hardware.PRICE_BASIS); a profile off it says why in its price source, and an estimate says so."""
    from roofline.hardware import PRICE_BASIS

    assert "modal.com/pricing" in PRICE_BASIS
    for hw_id in IDS:
        hw = rl.load_hardware(hw_id)
        source = hw.sources["price_usd_per_gpu_hour"]
        want = {"basis": "BASIS:", "other": "OFF BASIS", "estimate": "ESTIMATE"}[hw.price_kind]
        assert source.startswith(want), (hw_id, source)
        assert (hw.price_note == "") == (hw.price_kind == "basis")
    assert rl.load_hardware("gb200").price_note == "price: ESTIMATE"
