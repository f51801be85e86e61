"""The serving layer's typed inputs (issue 11): `Traffic`, `SLO`, `SearchSpace`, and the keyword façade over them."""

from __future__ import annotations

import pandas as pd
import pytest

import roofline as rl
from roofline.errors import SpecError


def test_keyword_plan_is_plan_fleet_on_records():
    kw = rl.plan("llama-3.1-8b", 4.0, "lognormal:1024:0.5", 200, 1.0, 0.05, hardware=["h100-sxm", "l40s"], tps=[1, 2], pps=[1])
    typed = rl.plan_fleet(rl.load_model("llama-3.1-8b"), rl.Traffic.of(4.0, "lognormal:1024:0.5", 200), rl.SLO(1.0, 0.05),
                          rl.SearchSpace(hardware=("h100-sxm", "l40s"), tps=(1, 2), pps=(1,)))
    pd.testing.assert_frame_equal(kw, typed)
    assert kw.attrs == typed.attrs


def test_traffic_of_parses_lengths_and_computes_the_memory_context():
    t = rl.Traffic.of(2, 1000, "uniform:100:300")
    assert t.prompt_tokens == rl.LengthDist.fixed(1000) and t.requests_per_s == 2
    # the memory context is the 99th-percentile prompt + output: 1000 + the 99th percentile of U{100..300}
    assert t.memory_context_tokens == 1000 + t.output_tokens.percentile(0.99)
    wl = t.memory_workload()
    assert (wl.prompt_tokens, wl.prompt_tokens + wl.output_tokens) == (1000, round(t.memory_context_tokens))


@pytest.mark.parametrize("make, field", [
    (lambda: rl.Traffic.of(-1, 100, 100), "requests_per_s"),
    (lambda: rl.Traffic.of(1, 100, 1), "output_tokens"),
    (lambda: rl.Traffic(100, rl.LengthDist.fixed(50)), "prompt_tokens"),
    (lambda: rl.SLO(0, 0.05), "ttft_slo_s"),
    (lambda: rl.SLO(1, 0.05, ttft_percentile=1.0), "ttft_percentile"),
    (lambda: rl.SearchSpace(tps=[0]), "tps"),
    (lambda: rl.SearchSpace(max_batch_size=0), "max_batch_size"),
    (lambda: rl.SearchSpace(network="token-ring"), "network"),
    (lambda: rl.SearchSpace(hardware=[]).devices(), "hardware"),
])
def test_records_reject_bad_values_naming_the_field(make, field):
    with pytest.raises(SpecError) as e:
        make()
    assert e.value.field == field and "\n" not in str(e.value)


def test_plan_fleet_needs_a_rate():
    m = rl.load_model("llama-3.1-8b")
    with pytest.raises(SpecError, match="^requests_per_s"):
        rl.plan_fleet(m, rl.Traffic.of(None, 100, 100), rl.SLO(1, 0.05), rl.SearchSpace(hardware="h100-sxm"))


def test_renamed_fields_keep_their_old_names_with_a_warning():
    """Issue 11, one spelling per quantity: the old names still read, warning with the new one."""
    p = rl.predict("llama-3.1-8b", "h100-sxm", rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16), rl.Deployment(tp=2))
    for old, new in (("num_gpus", "gpus_per_replica"), ("max_batch_size", "max_batch_size_fits"), ("cost_per_hour_usd", "usd_per_hour"),
                     ("cost_per_million_output_tokens_usd", "usd_per_million_output_tokens"),
                     ("memory_required_bytes", "memory_required_bytes_per_gpu"), ("memory_available_bytes", "memory_available_bytes_per_gpu")):
        with pytest.warns(DeprecationWarning, match=new):
            assert getattr(p, old) == getattr(p, new)
        assert old not in p.model_dump()
    assert p.gpus_per_replica == 2 and p.usd_per_hour == pytest.approx(2 * 3.95)  # 2 GPUs x $3.95
    with pytest.warns(DeprecationWarning, match="gpus_per_replica"):
        assert rl.Deployment(tp=2, pp=3).num_gpus == 6
    s = rl.steady_state("llama-3.1-8b", "h100-sxm", 1.0, 512, 128)
    with pytest.warns(DeprecationWarning, match="max_batch_size_fits"):
        assert s.batch_limit == s.max_batch_size_fits


def test_prediction_says_its_timing_once_mode_not_source_kind():
    p = rl.predict("llama-3.1-8b", rl.load_hardware("h100-sxm", analytical=True), rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16))
    assert (p.mode, p.calibration_id) == ("analytical", None) and "source_kind" not in p.model_dump()
    with pytest.warns(DeprecationWarning, match="mode"):
        assert p.source_kind == "default"
