"""Invariants that must hold for every model, device and scenario (hypothesis explores the space)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import roofline as rl
from roofline import ops as O

MODELS = rl.list_models()
# chains of strictly fewer bits per weight (fp8 and int8 are both 8 bits, with different scales: not ordered)
WEIGHT_BIT_CHAINS = [["fp32", "bf16", "fp8", "fp4"], ["fp32", "fp16", "int8", "int4"], ["fp32", "bf16", "int8", "nf4"]]

@st.composite
def scenario(draw, max_extra_context: int = 0):
    """A model and a workload whose context (plus `max_extra_context`) stays within the model's maximum."""
    model = draw(st.sampled_from(MODELS))
    room = rl.load_model(model).max_context - max_extra_context
    prompt = draw(st.integers(1, min(4096, room - 1)))
    output = draw(st.integers(1, min(2048, room - prompt)))
    return {"model": model, "batch_size": draw(st.integers(1, 256)), "prompt_tokens": prompt, "output_tokens": output}


def _predict(s, hw="h100-sxm", **dep):
    return rl.predict(rl.load_model(s["model"]), rl.load_hardware(hw) if isinstance(hw, str) else hw,
                      rl.Workload(batch_size=s["batch_size"], prompt_tokens=s["prompt_tokens"], output_tokens=s["output_tokens"]),
                      rl.Deployment(**dep))


def _faster_memory(hw: rl.HardwareProfile, factor: float) -> rl.HardwareProfile:
    return rl.HardwareProfile.model_validate({**hw.model_dump(), "memory_bandwidth_bytes_per_s": hw.memory_bandwidth_bytes_per_s * factor})


@settings(max_examples=60, deadline=None)
@given(s=scenario(), factor=st.floats(1.0, 8.0))
def test_more_bandwidth_never_slows_decode(s, factor):
    hw = rl.load_hardware("h100-sxm")
    slow, fast = _predict(s, hw), _predict(s, _faster_memory(hw, factor))
    assert fast.tpot_s <= slow.tpot_s * (1 + 1e-12)
    assert fast.tpot_floor_s <= slow.tpot_floor_s * (1 + 1e-12)
    assert fast.ttft_s <= slow.ttft_s * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), group=st.sampled_from([None, 32, 64, 128]), chain=st.sampled_from(WEIGHT_BIT_CHAINS))
def test_fewer_weight_bits_never_add_weight_bytes(model, group, chain):
    spec = rl.load_model(model)
    sizes = []
    for dtype in chain:
        dep = rl.Deployment(weight_dtype=dtype, activation_dtype="fp32" if dtype == "fp32" else "bf16",
                            weight_group_size=group if dtype in ("int8", "int4", "nf4", "fp4") else None)
        sizes.append(O.weight_storage_bytes(spec, dep.resolved(spec)))
    assert sizes == sorted(sizes, reverse=True)


@settings(max_examples=60, deadline=None)
@given(s=scenario(max_extra_context=1024), extra=st.integers(1, 1024))
def test_tpot_grows_with_context(s, extra):
    p = _predict(s)
    assert p.tpot_last_step_s >= p.tpot_first_step_s
    longer = _predict({**s, "prompt_tokens": s["prompt_tokens"] + extra})
    assert longer.tpot_s >= p.tpot_s * (1 - 1e-12)


@settings(max_examples=80, deadline=None)
@given(s=scenario(), hw=st.sampled_from(rl.list_hardware()), tp=st.sampled_from([1, 2, 4, 8]))
def test_utilization_in_unit_interval_and_realistic_never_below_floor(s, hw, tp):
    model, profile = rl.load_model(s["model"]), rl.load_hardware(hw)
    if tp not in rl.valid_tps(model, profile):
        return
    p = _predict(s, profile, tp=tp)
    for frac in (p.mbu_prefill, p.mfu_prefill, p.mbu_decode, p.mfu_decode):
        assert 0 <= frac <= 1
    assert p.ttft_s >= p.ttft_floor_s and p.tpot_s >= p.tpot_floor_s and p.e2e_latency_s >= p.e2e_latency_floor_s
    ops = p.operators
    assert (ops["time_s"] >= ops["floor_s"] * (1 - 1e-12)).all()


@settings(max_examples=40, deadline=None)
@given(s=scenario())
def test_max_batch_size_is_the_largest_that_fits(s):
    p = _predict(s)
    n = p.max_batch_size_fits
    if n >= 1:
        assert _predict({**s, "batch_size": n}).fits
    assert not _predict({**s, "batch_size": n + 1}).fits


@pytest.mark.parametrize("model", MODELS)
def test_native_16_bit_storage_is_two_bytes_per_parameter(model):
    spec = rl.load_model(model)
    rd = rl.Deployment(weight_dtype="bf16").resolved(spec)
    assert O.weight_storage_bytes(spec, rd) == 2 * spec.param_count


@settings(max_examples=25, deadline=None)
@given(s=scenario(), hw=st.sampled_from(rl.list_hardware()))
def test_a_sweep_row_equals_predict(s, hw):
    """One derivation: the vectorized sweep and predict() agree to rounding."""
    df = rl.sweep(model=s["model"], hardware=hw, batch_size=[s["batch_size"], 3], prompt_tokens=s["prompt_tokens"],
                  output_tokens=s["output_tokens"], tp=1)
    row = df[df.batch_size == s["batch_size"]].iloc[0]
    p = _predict(s, hw)
    for k in ("ttft_s", "tpot_s", "e2e_latency_s", "mbu_decode", "mfu_prefill", "memory_required_bytes_per_gpu",
              "usd_per_million_output_tokens", "ttft_floor_s", "tpot_floor_s"):
        assert row[k] == pytest.approx(getattr(p, k), rel=1e-9, nan_ok=True), k
    assert row["fits"] == p.fits and row["max_batch_size_fits"] == p.max_batch_size_fits
    assert row["decode_bound"] == p.decode_bound and row["prefill_bound"] == p.prefill_bound


@pytest.mark.parametrize("hw", rl.list_hardware())
@pytest.mark.parametrize("weights", ["bf16", "int4"])
def test_batch_1_decode_is_memory_bound(hw, weights):
    """One sequence reads every weight to make one token: ~1 FLOP per byte at 16 bits, ~4 at 4 bits, far
    below any ridge point (hundreds of FLOP/byte), so decode is never compute-bound. Holds for every model up
    to 4k context; a tile
    granularity too coarse for small-token GEMMs (m64) would wrongly make W4A16 decode compute-bound."""
    profile = rl.load_hardware(hw)
    for model_id in MODELS:
        model = rl.load_model(model_id)
        wl = rl.Workload(batch_size=1, prompt_tokens=min(4000, model.max_context - 100), output_tokens=64)
        p = rl.predict_fitting(model, profile, wl, rl.Deployment(weight_dtype=weights, activation_dtype="bf16"))
        assert p.decode_bound != "compute", (model_id, p.gpus_per_replica)
        if p.gpus_per_replica == 1:  # with tp > 1, small all-reduces can dominate instead (latency-bound collectives)
            assert p.decode_bound == "memory", model_id
