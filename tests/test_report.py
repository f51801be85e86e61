"""The procurement report: operating points derived by hand from rl.predict (static serving), the planner's
fleets (continuous serving, the default), binding constraints in constructed cases, ranking, atomic
self-contained files, one-line scenario errors, and the CLI."""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import roofline as rl
import roofline.report as R
from roofline.cli import main

# the hand-derived cases below are static batches; continuous serving has its own tests at the end
EIGHT_B = dict(models=["llama-3.1-8b"], hardware=["h100-sxm"], requests_per_s=20, prompt_tokens=512, output_tokens=128,
               serving="static")


def scenario(**kw) -> R.Scenario:
    return R.Scenario(**{**EIGHT_B, **kw})


def option(model: str, hardware: str, s: R.Scenario):
    """The report's row for one model on one hardware (the planner's best option there)."""
    return R.evaluate_scenario(s.with_overrides(models=[model], hardware=[hardware]), progress=False).iloc[0]


def wl(b, prompt=512, output=128):
    return rl.Workload(batch_size=b, prompt_tokens=prompt, output_tokens=output)


# ------------------------------------------------------------ hand-derived fleet arithmetic
def test_fleet_of_one_gpu_replicas_by_hand():
    # Llama-3.1-8B on one H100 (tp 1), batch capped at 16, no SLOs: the cap binds.
    # the datasheet model and the bare roofline (engine=None), whose figures the arithmetic below checks
    h100 = rl.load_hardware("h100-sxm", analytical=True)
    o = rl.plan("llama-3.1-8b", 20, 512, 128, R.NO_SLO_S, R.NO_SLO_S, hardware=[h100], tps=[1], max_batch_size=16,
                precisions={"native": rl.Deployment(engine=None)}, serving="static", engine=None).iloc[0]
    o = R.report_columns(o.to_frame().T.assign(model="Llama 3.1 8B", model_id="llama-3.1-8b"), scenario(max_batch_size=16)).iloc[0]
    p = rl.predict(rl.load_model("llama-3.1-8b"), h100, wl(16), rl.Deployment(engine=None))
    assert p.output_tokens_per_s == pytest.approx(2033, rel=0.01)  # 16 x 128 tokens / e2e ~1.01 s
    # demand 20 req/s x 128 = 2,560 tokens/s; 2,560 / 2,033 = 1.26 -> 2 replicas of 1 GPU
    assert (o.tp, o.batch_size, o.binding_constraint) == (1, 16, R.BATCH_CAP)
    assert o.output_tokens_per_s_per_replica == 2560 / 2  # each replica's share of the demand
    assert o.replicas == math.ceil(20 * 128 / p.output_tokens_per_s) == 2
    assert o.gpus == 2 * 1
    assert o.usd_per_hour == pytest.approx(2 * 3.95)  # the profile's $3.95 per GPU-hour
    assert o.usd_per_million_output_tokens == pytest.approx(7.90 / (2560 * 3600) * 1e6)  # $0.86
    assert o.usd_per_million_output_tokens_full_load == pytest.approx(p.usd_per_million_output_tokens)
    assert (o.ttft_s, o.tpot_s) == (p.ttft_s, p.tpot_s) and o.e2e_latency_s == pytest.approx(p.e2e_latency_s, rel=1e-12)
    # the report tries every tp: two GPUs as one tp-2 replica cost the same $7.90 (the tie goes to the faster TTFT)
    best = option("llama-3.1-8b", "h100-sxm", scenario(max_batch_size=16))
    assert best.usd_per_hour == pytest.approx(7.90) and best.gpus == 2


def test_fleet_of_two_gpu_replicas_by_hand():
    # Llama-3.1-70B needs tp 2 on 80 GB H100s (README); batch 8 of 2,048 + 256 tokens gives ~232.5 tokens/s (the bare
    # roofline all-reduces with NCCL's ring, and an all-reduce pays no launch on top of its latency).
    h100 = rl.load_hardware("h100-sxm", analytical=True)  # the datasheet model and the bare roofline: the hand numbers
    p = rl.predict(rl.load_model("llama-3.1-70b"), h100, wl(8, 2048, 256), rl.Deployment(tp=2, engine=None))
    assert p.output_tokens_per_s == pytest.approx(232.5, rel=0.01)
    # 10 x 256 = 2,560 tokens/s / 232.5 = 11.01 -> 12 replicas x 2 GPUs = 24 GPUs x $3.95 = $94.80/hour
    df = rl.plan("llama-3.1-70b", 10, 2048, 256, R.NO_SLO_S, R.NO_SLO_S, hardware=[h100], tps=[2], max_batch_size=8,
                 precisions={"native": rl.Deployment(engine=None)}, serving="static", engine=None)
    o = df.iloc[0]
    assert (o.tp, o.batch_size) == (2, 8)
    assert o.replicas == math.ceil(2560 / p.output_tokens_per_s) == 12
    assert o.gpus == 24 and o.usd_per_hour == pytest.approx(24 * 3.95)
    assert o.usd_per_million_output_tokens == pytest.approx(94.80 / (2560 * 3600) * 1e6)
    # the report takes the cheapest tp: 4 x 80 GB hold batches of 8 too, and cost no more per token than tp 2
    s = R.Scenario(models=["llama-3.1-70b"], hardware=["h100-sxm"], requests_per_s=10, prompt_tokens=2048,
                   output_tokens=256, max_batch_size=8, serving="static")
    best = option("llama-3.1-70b", "h100-sxm", s)
    assert best.batch_size == 8


# ------------------------------------------------------------ binding constraints
def _meets(b, ttft=None, tpot=None):
    p = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), wl(b))
    return p.fits and (ttft is None or p.ttft_s <= ttft) and (tpot is None or p.tpot_s <= tpot)


def test_a_tight_tpot_slo_binds():
    # TPOT grows from 6.23 ms at batch 1 to 8.04 ms at batch 64: a 7.5 ms SLO stops in between
    o = option("llama-3.1-8b", "h100-sxm", scenario(tpot_slo_s=0.0075))
    assert o.feasible and o.binding_constraint == R.TPOT_SLO
    assert 1 < o.batch_size < 64
    assert _meets(o.batch_size, tpot=0.0075) and not _meets(o.batch_size + 1, tpot=0.0075)
    assert o.tpot_s <= 0.0075


def test_a_tight_ttft_slo_binds():
    # prefill of the whole static batch: ~10 ms per 512-token prompt, so 0.5 s holds about 50
    o = option("llama-3.1-8b", "h100-sxm", scenario(ttft_slo_s=0.5, tpot_slo_s=0.05))
    assert o.feasible and o.binding_constraint == R.TTFT_SLO
    assert 32 < o.batch_size < 64
    assert _meets(o.batch_size, ttft=0.5) and not _meets(o.batch_size + 1, ttft=0.5)


def test_memory_binds_without_slos():
    o = option("llama-3.1-8b", "h100-sxm", scenario())
    p1 = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), wl(1))
    n = p1.max_batch_size_fits  # 692 with vLLM's 90% of the H100 and the workspace of its 8,192-token step
    assert o.binding_constraint == R.MEMORY and o.max_batch_size_fits == n
    assert _meets(n) and not _meets(n + 1)
    # memory holds n = 692, but decode GEMMs of 692 rows pad to 704 (16-row tiles on an H100) and the measured GEMM
    # table of the calibrated H100 steps too: a smaller batch past the last step serves more tokens/s, and the
    # report runs it (the sawtooth, issue 14)
    m = int(o.batch_size)
    assert m < n and m % 16 == 0
    tok = {b: rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), wl(b)).output_tokens_per_s for b in (m, n)}
    assert tok[m] > tok[n] and "past a tile step" in o.note


def test_a_model_too_large_for_a_small_card_reports_memory():
    o = option("llama-3.1-405b", "l4", scenario(models=["llama-3.1-405b"]))
    # every tp is too small; the closest to fitting (the smallest shortfall) is the widest, tp 8
    assert not o.feasible and o.binding_constraint == R.MEMORY and "does not fit" in o.note
    # available: the default engine's (vLLM) 90% of the L4
    assert o.tp == 8 and o.memory_required_bytes_per_gpu > o.memory_available_bytes_per_gpu == pytest.approx(0.9 * rl.load_hardware("l4").memory_bytes)
    assert pd.isna(o.gpus) and math.isnan(o.usd_per_million_output_tokens)


def test_an_slo_no_tp_can_meet_is_infeasible_and_named():
    o = option("llama-3.1-8b", "h100-sxm", scenario(tpot_slo_s=1e-4))
    assert not o.feasible and o.binding_constraint == R.TPOT_SLO and math.isnan(o.usd_per_hour)


def test_more_gpus_per_replica_when_batch_1_misses_the_slo_at_the_smallest_fit():
    s = R.Scenario.default().with_overrides(serving="static")
    o = option("llama-3.1-70b", "l40s", s)
    fit = rl.predict_fitting(rl.load_model("llama-3.1-70b"), rl.load_hardware("l40s"), wl(1, 2048, 256))
    assert fit.tpot_s > 0.05  # the smallest tp that fits misses the 50 ms TPOT SLO
    assert o.feasible and o.tp > fit.gpus_per_replica and o.tpot_s <= 0.05


def test_a_compute_format_the_hardware_lacks_is_an_infeasible_option_not_a_crash():
    o = option("llama-3.1-8b", "a100-sxm-80gb", scenario(weight_dtype="fp8", activation_dtype="fp8"))
    assert not o.feasible and o.binding_constraint == R.UNSUPPORTED and "fp8" in o.note


# ------------------------------------------------------------ ranking
def test_ranking_never_puts_an_infeasible_option_first():
    from roofline.plan import rank

    good = rl.plan("llama-3.1-8b", 20, 512, 128, 1.0, 0.05, hardware=["h100-sxm"], serving="static").drop(columns="rank")
    cheap_but_infeasible = good.assign(hardware_id="fake", feasible=False, usd_per_million_output_tokens=1e-6, usd_per_hour=1e-6, gpus=1)
    df = rank(pd.concat([cheap_but_infeasible, good], ignore_index=True))
    assert list(df["hardware_id"]) == ["h100-sxm", "fake"]
    assert df["rank"].iloc[0] == 1 and pd.isna(df["rank"].iloc[1])


def test_compare_ranks_by_cost_and_puts_non_fitting_last():
    s = scenario(models=["llama-3.1-70b"], hardware=["l4", "h100-sxm", "h200", "mi300x"], ttft_slo_s=2.0, tpot_slo_s=0.05)
    df = R.evaluate_scenario(s, progress=False)
    ranked = df[df["feasible"]]
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["usd_per_million_output_tokens"].is_monotonic_increasing
    assert df.iloc[-1]["hardware_id"] == "l4" and not df.iloc[-1]["feasible"]  # 70B on 8 x 24 GB does not fit
    assert df.iloc[0]["feasible"] and df.iloc[0]["rank"] == 1


def test_when_nothing_is_feasible_nothing_is_ranked():
    df = R.evaluate_scenario(scenario(hardware=["h100-sxm", "l4"], tpot_slo_s=1e-4), progress=False)
    assert df["rank"].isna().all()
    assert R.top_option_text(df).startswith("no option meets the scenario")


# ------------------------------------------------------------ files
def test_write_report_files_are_self_contained_and_state_their_assumptions(tmp_path):
    s = scenario(hardware=["h100-sxm", "mi300x", "l4"], ttft_slo_s=0.5, tpot_slo_s=0.0075, models=["llama-3.1-8b", "llama-3.1-405b"])
    w = R.write_report(s, tmp_path / "out", progress=False)
    page = w.html.read_text()
    assert "<svg" in page and page.count("<svg") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    md = w.markdown.read_text()
    for text in (page, md):
        assert "Static batching" in text and "2 GiB" in text and "calibrated" in text and "default" in text
        assert "2026-05" in text  # price dates
        assert "roofline 0.1.0" in text  # simulator version
        assert "requests_per_s: 20" in text and "tpot_slo_s: 0.0075" in text  # the scenario echoed
        assert "Serving engine: vllm (" in text and "attention layout: both attention layouts tried" in text
    assert "| rank |" in md and "```yaml" in md
    csv = pd.read_csv(w.csv)
    assert len(csv) == 2 * 3 and csv.columns[0] == "rank"
    for col in ("usd_per_hour", "usd_per_million_output_tokens", "ttft_s", "tpot_s", "memory_required_bytes_per_gpu",
                "output_tokens_per_s_per_replica", "binding_constraint"):
        assert col in csv.columns
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.csv", "report.html", "report.md"]


def test_writes_are_atomic(tmp_path, monkeypatch):
    replaced = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append((Path(src), Path(dst))), real(src, dst))[1])
    R.write_report(scenario(max_batch_size=4), tmp_path, progress=False)
    assert sorted(d.name for _, d in replaced) == ["report.csv", "report.html", "report.md"]
    assert all(src.parent == dst.parent == tmp_path and src.name != dst.name for src, dst in replaced)

    # a failed rename leaves the old file whole and no temporary file behind
    (tmp_path / "report.html").write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        R.write_report(scenario(max_batch_size=4), tmp_path, progress=False)
    assert (tmp_path / "report.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.html", "report.md"]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_tty_lines_otherwise_and_silent_when_off():
    s = scenario(models=["llama-3.1-8b", "llama-3.2-1b"], hardware=["h100-sxm"], max_batch_size=2)
    tty, pipe, quiet = _Tty(), io.StringIO(), io.StringIO()
    R.evaluate_scenario(s, progress=True, stream=tty)
    R.evaluate_scenario(s, progress=True, stream=pipe)
    R.evaluate_scenario(s, progress=False, stream=quiet)
    assert "\r[##########..........] 1/2 llama-3.1-8b" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == "[1/2] llama-3.1-8b\n[2/2] llama-3.2-1b\n"
    assert quiet.getvalue() == ""


# ------------------------------------------------------------ the scenario file
def test_default_scenario_is_the_documented_one():
    s = R.Scenario.default()
    assert s.models == ["llama-3.1-70b"] and s.hardware == ["h100-sxm", "h200", "a100-sxm-80gb", "mi300x", "b200", "l40s"]
    assert (s.requests_per_s, s.prompt_tokens, s.output_tokens, s.ttft_slo_s, s.tpot_slo_s) == (10, 2048, 256, 2.0, 0.05)


def test_hardware_defaults_to_every_shipped_profile(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("models: [llama-3.1-8b]\nrequests_per_s: 1\nprompt_tokens: 100\noutput_tokens: 10\n")
    assert R.Scenario.from_yaml(f).hardware == rl.list_hardware()


@pytest.mark.parametrize("body, field", [
    ("models: [llama-3.1-8b]\nrequest_per_s: 3\nprompt_tokens: 10\noutput_tokens: 5\n", "request_per_s"),
    ("models: [llama-3.1-8b]\nrequests_per_s: 0\nprompt_tokens: 10\noutput_tokens: 5\n", "requests_per_s"),
    ("requests_per_s: 1\nprompt_tokens: 10\noutput_tokens: 5\n", "models"),
    ("models: [llama-3.1-8b]\nrequests_per_s: 1\nprompt_tokens: 10\noutput_tokens: 5\nkv_dtype: fp9\n", "kv_dtype"),
    ("models: [llama-3.1-8b]\nrequests_per_s: 1\nprompt_tokens: 10\noutput_tokens: 5\ntpot_slo_s: -1\n", "tpot_slo_s"),
    ("models: [llama-3.1-8b]\nrequests_per_s: 1\nprompt_tokens: 10\noutput_tokens: 5\nmax_batch_size: 0\n", "max_batch_size"),
    ("- just a list\n", "s.yaml"),
    ("models: [unclosed\n", "s.yaml"),
])
def test_yaml_errors_are_one_line_naming_the_field(tmp_path, body, field):
    f = tmp_path / "s.yaml"
    f.write_text(body)
    with pytest.raises(rl.SpecError) as err:
        R.Scenario.from_yaml(f)
    msg = str(err.value)
    assert field in msg and str(f) in msg and "\n" not in msg
    if field == "request_per_s":
        assert "did you mean 'requests_per_s'" in msg


def test_a_missing_scenario_file_is_one_line():
    with pytest.raises(rl.SpecError, match=r"^scenario: no such file"):
        R.Scenario.from_yaml("/no/such/scenario.yaml")


# ------------------------------------------------------------ CLI
def test_cli_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["report", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,l4", "--requests-per-s", "5",
                 "--prompt-tokens", "512", "--output-tokens", "128", "--ttft-slo-s", "0.5", "--tpot-slo-s", "0.02",
                 "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert code == 0 and cap.err == ""
    assert str(out / "report.html") in cap.out and "top option: Llama 3.1 8B on " in cap.out
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.html", "report.md"]
    assert len(pd.read_csv(out / "report.csv")) == 2


def test_cli_flags_override_the_scenario_file(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("models: [llama-3.1-8b]\nhardware: [h100-sxm]\nrequests_per_s: 1\nprompt_tokens: 100\noutput_tokens: 10\n")
    assert main(["report", "--scenario", str(f), "--requests-per-s", "7", "--max-batch-size", "4",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "requests_per_s: 7.0" in md and "max_batch_size: 4" in md and "prompt_tokens: 100" in md
    capsys.readouterr()


@pytest.mark.parametrize("args, field", [
    (["--requests-per-s", "-1"], "requests_per_s"),
    (["--prompt-tokens", "many"], "prompt_tokens"),
    (["--tpot-slo-s", "0"], "tpot_slo_s"),
    (["--hardware", "h100-sxm,nope"], "hardware"),
    (["--weight-dtype", "fp9"], "weight_dtype"),
    (["--engine", "vlm"], "engine: unknown engine 'vlm'"),
    (["--attention-dp", "maybe"], "attention_dp"),
])
def test_cli_report_bad_value_is_one_line_exit_2(tmp_path, capsys, args, field):
    code = main(["report", *args, "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("roofline: error: ") and field in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing is written for a bad scenario


def test_the_report_runs_the_engine_and_attention_layouts_plan_does(tmp_path, capsys):
    """report --engine / --attention-dp (a scenario's `engine`, `attention_dp`) are the planner's: Qwen3-30B-A3B on the
    H200 under SGLang with attention data-parallel only is plan's fleet for the same (engine="sglang",
    attention_dp=[True]), a tp-2 dp-attention replica; the default is vLLM and both layouts, as plan's; 'none' is the
    bare roofline. The scenario YAML states both fields (an unquoted YAML `on` is the layout 'on', not true)."""
    base = dict(models=["qwen3-30b-a3b"], hardware=["h200"], requests_per_s=5, prompt_tokens=512, output_tokens=64)
    assert (R.Scenario(**base).engine, R.Scenario(**base).attention_dp) == ("vllm", "both")
    for engine, name, flags in (("sglang", "on", ["--engine", "sglang", "--attention-dp", "on"]),
                                (None, "both", ["--engine", "none"]), ("vllm", "off", ["--attention-dp", "off"])):
        layouts = {"both": (False, True), "on": (True,), "off": (False,)}[name]
        out = tmp_path / "-".join(flags)
        assert main(["report", "--model", "qwen3-30b-a3b", "--hardware", "h200", "--requests-per-s", "5", "--prompt-tokens",
                     "512", "--output-tokens", "64", *flags, "--out", str(out), "--no-progress"]) == 0
        capsys.readouterr()
        row = pd.read_csv(out / "report.csv").iloc[0]
        ref = rl.plan("qwen3-30b-a3b", 5, 512, 64, R.NO_SLO_S, R.NO_SLO_S, hardware="h200", engine=engine,
                      attention_dp=layouts, precisions={"scenario": rl.Deployment()}).iloc[0]
        assert (row["tp"], bool(row["attention_dp"]), row["gpus"]) == (ref["tp"], ref["attention_dp"], ref["gpus"])
        assert row["usd_per_million_output_tokens"] == pytest.approx(ref["usd_per_million_output_tokens"])
        md = (out / "report.md").read_text()
        assert f"engine: {engine or 'null'}\n" in md and f"attention_dp: {name}\n" in md.replace("'", "")
    f = tmp_path / "s.yaml"
    f.write_text("models: [qwen3-30b-a3b]\nrequests_per_s: 5\nprompt_tokens: 512\noutput_tokens: 64\nattention_dp: on\n"
                 "engine: None\n")
    s2 = R.Scenario.from_yaml(f)
    assert (s2.attention_dp, s2.engine) == ("on", None)


# ------------------------------------------------------------ continuous serving (the default): the planner's answer
def test_default_report_is_the_planner_answer():
    s = R.Scenario.default()
    assert s.serving == "continuous" and s.ttft_percentile == 0.9
    df = R.evaluate_scenario(s, progress=False)
    plan = rl.plan(s.models[0], s.requests_per_s, s.prompt_tokens, s.output_tokens, s.ttft_slo_s, s.tpot_slo_s,
                   hardware=s.hardware, precisions={"scenario": s.deployment()})
    for _, row in df[df["feasible"]].iterrows():
        mine = plan[plan["hardware_id"] == row["hardware_id"]].iloc[0]
        assert row["usd_per_hour"] == pytest.approx(mine["usd_per_hour"]) and row["gpus"] == mine["gpus"]
        assert (row["tp"], row["pp"], row["ep"]) == (mine["tp"], mine["pp"], mine["ep"])
        assert row["ttft_s"] == pytest.approx(mine["ttft_p90_s"]) and row["tpot_s"] == pytest.approx(mine["tpot_s"])
        # e2e = mean TTFT + TPOT x (256 - 1); full load = one replica at its largest stable rate
        assert row["e2e_latency_s"] == pytest.approx(mine["ttft_mean_s"] + mine["tpot_s"] * 255)
        full = mine["gpus_per_replica"] * mine["price_usd_per_gpu_hour"] / (mine["capacity_requests_per_s_per_replica"] * 256 * 3600) * 1e6
        assert row["usd_per_million_output_tokens_full_load"] == pytest.approx(full)
        assert row["usd_per_million_output_tokens_full_load"] <= row["usd_per_million_output_tokens"] * (1 + 1e-9)
    assert list(df["rank"].dropna()) == list(range(1, int(df["feasible"].sum()) + 1))


def test_continuous_report_plans_across_nodes_and_says_so(tmp_path):
    s = R.Scenario(models=["llama-3.1-405b"], hardware=["h100-sxm"], requests_per_s=2, prompt_tokens=2048, output_tokens=256,
                   ttft_slo_s=3.0, tpot_slo_s=0.1)
    w = R.write_report(s, tmp_path, progress=False)
    row = w.table.iloc[0]
    assert row["feasible"] and row["pp"] == 2 and row["nodes_per_replica"] == 2 and row["gpus"] == 16
    md = w.markdown.read_text()
    assert "tp8 pp2, 2 nodes" in md and "Continuous batching in steady state" in md and "p90 3 s" in md
    assert "Static batching" not in md


def test_continuous_report_without_slos_is_bound_by_capacity():
    df = R.evaluate_scenario(R.Scenario(**{**EIGHT_B, "serving": "continuous"}), progress=False)
    row = df.iloc[0]
    assert row["feasible"] and row["binding_constraint"] == "capacity" and row["replicas"] >= 1


def test_continuous_progress_steps_per_model():
    tty = _Tty()
    R.evaluate_scenario(R.Scenario(**{**EIGHT_B, "serving": "continuous", "hardware": ["h100-sxm", "h200"], "tpot_slo_s": 0.05}),
              progress=True, stream=tty)
    assert "\r[####################] 1/1 llama-3.1-8b" in tty.getvalue()


def test_serving_field_is_validated():
    with pytest.raises(rl.SpecError) as e:
        R.Scenario.from_mapping({**EIGHT_B, "serving": "dynamic"})
    assert "serving" in str(e.value) and "\n" not in str(e.value)


def test_simulator_version_names_the_checked_out_commit():
    """The report and the accuracy report stamp the commit; the report package sits two levels below the checkout."""
    import subprocess
    from pathlib import Path

    from roofline.report import simulator_version

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    if not (root / ".git").is_dir():
        pytest.skip("a worktree or submodule: .git is a file")
    assert f", commit {head[:12]}" in simulator_version()


# ------------------------------------------------- price basis and the swap price
def test_swap_price_worked_number():
    """$/M is linear in the price: $3.95 at $0.50/M vs $1.95 at $0.60/M swap when the top device costs
    3.95 x 0.60 / 0.50 = $4.74, or the runner-up 1.95 x 0.50 / 0.60 = $1.625."""
    t = pd.DataFrame({"rank": pd.array([1, 2, pd.NA], dtype="Int64"), "hardware_id": ["a", "b", "c"],
                      "usd_per_million_output_tokens": [0.50, 0.60, math.nan], "price_usd_per_gpu_hour": [3.95, 1.95, 9.0]})
    sp = R.swap_price(t)
    assert (sp.top_hardware_id, sp.runner_hardware_id) == ("a", "b")
    assert sp.top_swap_price_usd_per_gpu_hour == pytest.approx(4.74)
    assert sp.runner_swap_price_usd_per_gpu_hour == pytest.approx(1.625)
    assert R.swap_price(t.assign(hardware_id=["a", "a", "c"])) is None  # one device: its price moves both
    assert R.swap_price(t.head(1)) is None


def test_swap_price_swaps_the_ranking():
    """Re-rank with the runner-up just below and just above its swap price (and the top just above its own)."""
    s = scenario(hardware=["h100-sxm", "l40s", "gb200"])
    t = R.evaluate_scenario(s, progress=False)
    sp = R.swap_price(t)
    top, runner = sp.top_hardware_id, sp.runner_hardware_id
    m = dict(zip(t["hardware_id"], t["usd_per_million_output_tokens"]))
    price = dict(zip(t["hardware_id"], t["price_usd_per_gpu_hour"]))
    assert sp.runner_swap_price_usd_per_gpu_hour == pytest.approx(price[runner] * m[top] / m[runner])

    def first(**prices):
        ranked = R.evaluate_scenario(scenario(hardware=["h100-sxm", "l40s", "gb200"], prices=prices), progress=False)
        return ranked.loc[ranked["rank"] == 1, "hardware_id"].item()

    assert first(**{runner: sp.runner_swap_price_usd_per_gpu_hour * 0.999}) == runner
    assert first(**{runner: sp.runner_swap_price_usd_per_gpu_hour * 1.001}) == top
    assert first(**{top: sp.top_swap_price_usd_per_gpu_hour * 1.001}) == runner
    md = R.render_markdown(s, t)
    assert "The top two options swap rank" in md and "Price basis: Modal" in md
    assert "gb200 (price: ESTIMATE)" in md  # the estimate is said beside the device in the options table
def test_one_name_one_thing():
    """Issue 11's name clashes: `roofline.compare` is the what-if table; the report's table is `evaluate_scenario`
    (its old name `report.compare` warns); the dashboard's page inputs are not a second `Scenario`."""
    import roofline.views as views

    assert rl.compare.__module__ == "roofline.compare" and "compare" not in R.__all__
    with pytest.warns(DeprecationWarning, match="evaluate_scenario"):
        assert R.compare is R.evaluate_scenario
    assert not hasattr(views, "frontier") and rl.frontier.__module__ == "roofline.serving"
    app = Path(__file__).resolve().parents[1] / "app.py"
    assert "class Scenario" not in app.read_text() and "class PredictInputs" in app.read_text()


def test_a_scenario_loaded_by_a_closed_loop_is_the_planner_at_that_concurrency(tmp_path):
    s = R.Scenario.from_mapping({"models": ["llama-3.1-8b"], "hardware": ["h100-sxm", "l40s"], "concurrency": 256, "prompt_tokens": 1024,
                                 "output_tokens": 128, "ttft_slo_s": 2.0, "tpot_slo_s": 0.05})
    df = R.evaluate_scenario(s, progress=False)
    plan = rl.plan("llama-3.1-8b", None, 1024, 128, 2.0, 0.05, hardware=["h100-sxm", "l40s"], concurrency=256,
                   precisions={"scenario": s.deployment()})
    for _, row in df.iterrows():
        mine = plan[plan["hardware_id"] == row["hardware_id"]].iloc[0]
        assert row["usd_per_hour"] == pytest.approx(mine["usd_per_hour"]) and row["replicas"] == mine["replicas"]
    md = R.write_report(s, tmp_path, progress=False).markdown.read_text()
    assert "256 concurrent clients (closed loop)" in md and "response-time law" in md
    with pytest.raises(rl.SpecError, match="requests_per_s"):
        R.Scenario.from_mapping({"models": ["llama-3.1-8b"], "requests_per_s": 1, "concurrency": 8, "prompt_tokens": 10, "output_tokens": 5})
    with pytest.raises(rl.SpecError, match="concurrency"):
        R.Scenario.from_mapping({"models": ["llama-3.1-8b"], "concurrency": 8, "prompt_tokens": 10, "output_tokens": 5, "serving": "static"})
    assert s.with_overrides(requests_per_s=3).concurrency is None  # a new rate replaces the concurrency


@pytest.mark.parametrize("engine, layout, engine_text, layout_text", [
    (None, "off", "Serving engine: none: the bare roofline", "attention layout: attention tensor-parallel only."),
    ("sglang", "on", "Serving engine: sglang (", "attention layout: attention data-parallel over the tp GPUs"),
])
def test_the_assumptions_name_the_engine_and_the_attention_layouts(engine, layout, engine_text, layout_text):
    s = scenario(engine=engine, attention_dp=layout)
    lines = R.render.assumptions(s, pd.DataFrame({"hardware_id": []}))["general"]
    line = next(t for t in lines if t.startswith("Serving engine:"))
    assert engine_text in line and layout_text in line
