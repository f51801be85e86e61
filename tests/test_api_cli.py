"""The public API contract and the CLI, including every bad-input path: one line naming the field, no traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pandas as pd
import pytest
from pydantic import ValidationError

import roofline as rl
from roofline.cli import main


def test_the_documented_api_runs_as_written():
    model = rl.load_model("llama-3.1-70b")
    assert (model.param_count, model.active_param_count) == (70_553_706_496, 70_553_706_496)
    assert model.kv_bytes_per_token("bf16") == 327_680
    hw = rl.load_hardware("h100-sxm")
    wl = rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=256)
    dep = rl.Deployment(tp=4, weight_dtype="fp8", activation_dtype="fp8", kv_dtype="fp8")
    dep4 = rl.Deployment(weight_dtype="int4", weight_group_size=128)
    p = rl.predict(model, hw, wl, dep)
    for name in ("ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "mbu_decode",
                 "mfu_prefill", "kv_cache_bytes", "weight_bytes", "memory_required_bytes_per_gpu", "ttft_floor_s", "tpot_floor_s",
                 "usd_per_million_output_tokens"):
        assert getattr(p, name) > 0, name
    assert p.fits and p.max_batch_size_fits > 8 and p.gpus_per_replica == 4
    assert p.output_tokens_per_s_per_gpu == pytest.approx(p.output_tokens_per_s / 4)
    # throughput is the whole batch's output over the end-to-end latency
    assert p.output_tokens_per_s == pytest.approx(8 * 256 / p.e2e_latency_s)
    # cost: 4 GPUs at the profile's price for as long as it takes to make 1M tokens
    assert p.usd_per_million_output_tokens == pytest.approx(4 * hw.price_usd_per_gpu_hour / 3600 * 1e6 / p.output_tokens_per_s)
    assert p.e2e_latency_s == pytest.approx(p.ttft_s + 255 * p.tpot_s)
    assert isinstance(p.operators, pd.DataFrame) and set(p.operators.phase) == {"prefill", "decode"}
    ops = p.operators  # HBM traffic = weights + activations read and written + KV read and written
    parts = ops.weight_bytes + ops.act_read_bytes + ops.act_write_bytes + ops.kv_read_bytes + ops.kv_write_bytes
    assert (ops.hbm_bytes - parts).abs().max() <= 1e-9 * parts.max()
    p4 = rl.predict(model, hw, wl, dep4)
    assert p4.compute_dtype == "bf16"  # W4A16: weight-only, computes at the bf16 peak
    # 4.125 bits per linear weight (+ a bf16 embedding table) vs 8 bits on 4 GPUs
    assert p4.weight_bytes < 0.6 * (4 * p.weight_bytes)
    df = rl.sweep(model=["llama-3.1-8b"], hardware=["h100-sxm", "h200"], batch_size=[1, 8], prompt_tokens=[512],
                  output_tokens=[128], tp=[1, 2], weight_dtype=["bf16", "int4"])
    assert len(df) == 2 * 2 * 2 * 2
    assert "llama-3.1-70b" in rl.list_models() and "h100-sxm" in rl.list_hardware()
    assert rl.Deployment() == rl.Deployment(tp=1)  # native dtypes everywhere


def test_the_readmes_python_blocks_run_as_written():
    """Every ```python block of README.md runs top to bottom as a newcomer pastes it (after `import roofline as rl`,
    which the later blocks take from the first), its placeholder config path pointed at a shipped config.json; the
    figures the Python API block quotes are what it computes: 70,553,706,496 parameters and 80 x 2 x 8 x 128 x 2 =
    327,680 KV bytes per token."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    config = str(root / "tests" / "hf_configs" / "llama-3.1-8b.json")
    for i, block in enumerate(blocks):
        ns = {"rl": rl}
        exec(compile(block.replace("path/to/config.json", config), f"README.md python block {i}", "exec"), ns)
        if "predict_fitting" in block:
            assert ns["model"].param_count == 70_553_706_496 == ns["model"].active_param_count
            assert ns["model"].kv_bytes_per_token("bf16") == 80 * 2 * 8 * 128 * 2 and ns["p"].fits


def _readme_block(after: str) -> list[str]:
    """The lines of README.md's first fenced block after the line holding `after`."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("```", text.index(after))
    body = text[text.index("\n", start) + 1:text.index("```", start + 3)]
    return [ln for ln in body.splitlines() if ln.strip() and ln.strip() != "..."]


@pytest.mark.parametrize("intro, argv", [
    ("GPUs that hold the model, and the command prints:",
     "predict --model llama-3.1-70b --hardware h100-sxm,h200,a100-sxm-80gb,mi300x --batch-size 8 --prompt-tokens 2048 "
     "--output-tokens 256 --tp auto"),
    ("replica that serves 24.6/s (Llama-3.1-8B, H100, 1,000 + 200 tokens) reaches",
     "serve --model llama-3.1-8b --hardware h100-sxm --prompt-tokens 1000 --output-tokens 200 --requests-per-s 32 "
     "--requests 500"),
])
def test_the_readmes_quoted_output_is_what_the_cli_prints(capsys, intro, argv):
    """README.md quotes these two commands' output (the demo's rows abridged): every quoted line is a line the CLI
    prints today, so a change that moves a figure also updates the front door."""
    assert main(argv.split()) == 0
    printed = set(capsys.readouterr().out.splitlines())
    quoted = [ln for ln in _readme_block(intro) if not ln.startswith("$ ") and not ln.startswith("    --")]
    assert len(quoted) >= 15
    stale = [ln for ln in quoted if ln not in printed]
    assert not stale, stale


def test_memory_breakdown_adds_up():
    p = rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(batch_size=4, prompt_tokens=1000, output_tokens=24))
    assert p.memory_required_bytes_per_gpu == pytest.approx(p.weight_bytes + p.kv_cache_bytes + p.activation_workspace_bytes + p.runtime_reserve_bytes)
    assert p.kv_cache_bytes == 4 * 1024 * 131_072  # 4 sequences x 1,024 tokens x 32 layers x 2 x 8 x 128 x 2 bytes


def test_a_scenario_that_does_not_fit_says_so_with_bytes():
    p = rl.predict(rl.load_model("llama-3.1-405b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=100, output_tokens=10))
    assert not p.fits
    assert p.memory_required_bytes_per_gpu > 800e9 and p.memory_available_bytes_per_gpu == pytest.approx(0.9 * rl.load_hardware("h100-sxm").memory_bytes)  # vLLM's share
    assert "does NOT fit" in p.fit_message and "GB" in p.fit_message
    assert p.max_batch_size_fits == 0
    assert p.usd_per_million_output_tokens != p.usd_per_million_output_tokens  # NaN: not for sale
    df = rl.sweep(model="llama-3.1-405b", hardware="h100-sxm", tp=[8], batch_size=[1, 4096], prompt_tokens=4096,
                  weight_dtype="fp8")  # ~51 GB of weights per GPU: batch 1 fits, batch 4096 (~2 TB of KV) does not
    cheapest = df.sort_values("usd_per_million_output_tokens").iloc[0]
    assert cheapest.fits and cheapest.batch_size == 1  # batch 4096 does not fit: never ranked first


def test_predict_fitting_picks_the_fewest_gpus():
    model, hw = rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm")
    p = rl.predict_fitting(model, hw, rl.Workload(batch_size=1, prompt_tokens=1000, output_tokens=100))
    assert p.fits and p.gpus_per_replica == 2  # 141 GB of bf16 weights: 2 x 80 GB
    assert not rl.predict(model, hw, rl.Workload(batch_size=1, prompt_tokens=1000, output_tokens=100)).fits


@pytest.mark.parametrize(("call", "field"), [
    (lambda: rl.load_model("llama-4"), "model"),
    (lambda: rl.load_hardware("tpu-v9"), "hardware"),
    (lambda: rl.predict(rl.load_model("llama-3.1-70b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=10, output_tokens=10), rl.Deployment(tp=3)), "tp"),
    (lambda: rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("a100-sxm-80gb"), rl.Workload(prompt_tokens=10, output_tokens=10), rl.Deployment(weight_dtype="fp8", activation_dtype="fp8")), "activation_dtype"),
    (lambda: rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=10, output_tokens=10), rl.Deployment(tp=16, network="nope")), "network"),
    (lambda: rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=10, output_tokens=10), rl.Deployment(weight_dtype="bf16", activation_dtype="fp8")), "activation_dtype"),
    (lambda: rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), rl.Workload(prompt_tokens=10, output_tokens=10), rl.Deployment(weight_group_size=64)), "weight_group_size"),
])
def test_api_bad_input_names_the_field(call, field):
    with pytest.raises(rl.SpecError) as err:
        call()
    assert err.value.field == field and str(err.value).startswith(f"{field}:")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("build", "field"), [
    (lambda: rl.Workload(batch_size=0, prompt_tokens=1, output_tokens=1), "batch_size"),
    (lambda: rl.Workload(prompt_tokens=-5, output_tokens=1), "prompt_tokens"),
    (lambda: rl.Deployment(weight_dtype="int3"), "weight_dtype"),
    (lambda: rl.Deployment(tp=0), "tp"),
    (lambda: rl.ModelSpec.model_validate({**rl.load_model("llama-3.1-8b").model_dump(), "num_kv_heads": 7}), "num_kv_heads"),
    (lambda: rl.ModelSpec.model_validate({**rl.load_model("llama-3.1-8b").model_dump(), "num_layrs": 7}), "num_layrs"),
])
def test_api_validation_errors_name_the_field(build, field):
    with pytest.raises(ValidationError) as err:
        build()
    assert field in str(err.value)


def test_a_spec_file_with_a_typo_is_rejected(tmp_path):
    text = rl.registry._data_dir("model_specs").joinpath("llama-3.1-8b.yaml").read_text()
    bad = tmp_path / "typo.yaml"
    bad.write_text(text.replace("hidden_size:", "hiden_size:"))
    with pytest.raises(rl.SpecError, match="hiden_size: unknown field; did you mean 'hidden_size'"):
        rl.load_model(bad)


# ------------------------------------------------------------------ CLI
def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_predict_table(capsys):
    code, out, err = run_cli(capsys, "predict", "--model", "llama-3.1-70b", "--hardware", "h100-sxm,h200,mi300x",
                             "--batch-size", "8", "--prompt-tokens", "2048", "--output-tokens", "256", "--tp", "auto")
    assert code == 0 and err == ""
    for text in ("TTFT", "TPOT (mean)", "fits in memory", "cost per 1M output tokens", "NVIDIA H200", "MI300X"):
        assert text in out


def test_cli_json_is_the_full_prediction(capsys):
    code, out, _ = run_cli(capsys, "predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--json")
    (doc,) = json.loads(out)  # always a list, one object per (model, hardware), even for one
    assert code == 0 and doc["fits"] is True and doc["workload"]["prompt_tokens"] == 1024
    assert set(rl.Prediction.model_fields) <= set(doc)
    assert {row["op"] for row in doc["operators"]} >= {"qkv_proj", "attention", "mlp_up", "lm_head"}


def test_cli_lists(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "deepseek-v3" in out and "70.6B" in out
    code, out, _ = run_cli(capsys, "hardware")
    assert code == 0 and "h100-sxm" in out and "3.35 TB/s" in out
    code, out, _ = run_cli(capsys, "hardware", "--json")
    assert {d["id"] for d in json.loads(out)} == set(rl.list_hardware())


def test_cli_does_not_fit_is_reported(capsys):
    code, out, _ = run_cli(capsys, "predict", "--model", "llama-3.1-405b", "--hardware", "h100-sxm")
    assert code == 0 and "does NOT fit: needs" in out and "NO" in out and "n/a (does not fit)" in out


def test_past_max_context_is_predicted_with_a_note():
    """Engines run a model past its trained context when told to; the physics holds, so it is predicted."""
    m, hw = rl.load_model("llama-2-7b"), rl.load_hardware("h100-sxm")
    past = rl.predict(m, hw, rl.Workload(prompt_tokens=4000, output_tokens=200))
    assert any("4,200 tokens runs past max_context=4,096" in n for n in past.notes)
    inside = rl.predict(m, hw, rl.Workload(prompt_tokens=3000, output_tokens=200))
    assert not any("max_context" in n for n in inside.notes)
    # the same physics either side of the limit: a longer prompt only adds attention and KV
    assert past.ttft_s > inside.ttft_s and past.tpot_s > inside.tpot_s and past.fits


@pytest.mark.parametrize(("args", "field"), [
    (["--model", "llama-9"], "model: unknown id 'llama-9'"),
    (["--hardware", "h900"], "hardware: unknown id 'h900'"),
    (["--tp", "3"], "tp: 3 does not divide num_attention_heads=64"),
    (["--weight-dtype", "int3"], "weight_dtype"),
    (["--hardware", "a100-sxm-80gb", "--activation-dtype", "fp8", "--weight-dtype", "fp8"], "activation_dtype"),
    (["--kv-dtype", "int3"], "kv_dtype"),
])
def test_cli_bad_input_is_one_line(capsys, args, field):
    base = {"--model": "llama-3.1-70b", "--hardware": "h100-sxm"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    code, out, err = run_cli(capsys, "predict", *[x for kv in base.items() for x in kv])
    assert code == 2 and out == ""
    assert err.startswith("roofline: error: ") and field in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_rejects_a_spec_whose_heads_do_not_divide(capsys, tmp_path):
    text = rl.registry._data_dir("model_specs").joinpath("llama-3.1-8b.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("num_kv_heads: 8", "num_kv_heads: 5"))
    code, _, err = run_cli(capsys, "predict", "--model", str(bad), "--hardware", "h100-sxm")
    assert code == 2 and "num_kv_heads" in err and "not divisible" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", [["predict"], ["compare", "--variant", "x:tp=2"]])
@pytest.mark.parametrize("flag, value, field", [("--output-tokens", "-4", "output_tokens"), ("--batch-size", "0", "batch_size"),
                                                ("--prompt-tokens", "many", "prompt_tokens")])
def test_cli_workload_flags_are_checked_alike(capsys, command, flag, value, field):
    # predict and compare read --batch-size, --prompt-tokens and --output-tokens with the one converter (cli.args.workload)
    code = main([*command, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", flag, value])
    err = capsys.readouterr().err
    assert code == 2
    expected = f"expected an integer, got {value!r}" if value == "many" else f"must be at least 1, got {value}"
    assert err == f"roofline: error: {field}: {expected}\n"


def test_cli_as_a_process_prints_no_traceback():
    r = subprocess.run([sys.executable, "-m", "roofline", "predict", "--model", "nope", "--hardware", "h100-sxm"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("roofline: error: model: unknown id 'nope'; choose one of")


# ------------------------------------------------------------ --help: every option documented, its default stated
HELP_SUBCOMMANDS = ("predict", "report", "plan", "serve", "compare", "calibrate", "validate")


def _options(name: str) -> dict[str, argparse.Action]:
    """flag -> argparse action of one subcommand, --help left out."""
    from roofline.cli import build_parser
    sub = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
    return {a.option_strings[0]: a for a in sub.choices[name]._actions if not isinstance(a, argparse._HelpAction)}


def _in_required_group(name: str, flag: str) -> bool:
    """A flag of a required either-or group (--requests-per-s | --concurrency): one of them must be given."""
    from roofline.cli import build_parser
    sub = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
    return any(g.required and flag in {o for a in g._group_actions for o in a.option_strings}
               for g in sub.choices[name]._mutually_exclusive_groups)


@pytest.mark.parametrize("name", HELP_SUBCOMMANDS)
def test_every_option_has_help_and_an_optional_value_states_its_default(name):
    """`roofline NAME --help`: each option says what it is; each optional one that takes a value (or switches a
    behaviour on) says what happens without it, as 'default'. Required options and the either-or load flags have
    no default to state."""
    for flag, action in _options(name).items():
        assert action.help and len(action.help) > 10, f"{name} {flag}: no help"
        if action.required or _in_required_group(name, flag) or isinstance(action, (argparse._StoreTrueAction,
                                                                                     argparse._StoreFalseAction)):
            continue
        assert "default" in action.help, f"{name} {flag}: the help does not state the default: {action.help!r}"


def test_options_in_seconds_name_their_unit():
    """Units in names: a flag holding seconds ends in -s (--ttft-slo-s), a price names USD_PER_HOUR."""
    for name in HELP_SUBCOMMANDS:
        for flag, action in _options(name).items():
            if "seconds" in (action.help or "") and "slo" in flag:
                assert flag.endswith("-s"), (name, flag)
            if flag == "--price":
                assert action.metavar == "DEVICE=USD_PER_HOUR", (name, action.metavar)


def test_the_recent_options_read_alike_across_subcommands():
    """--engine, --analytical and --attention-dp: one help text (and one converter) wherever a subcommand takes them;
    plan's and report's --attention-dp choose the layouts to try (both, on, off), predict's and serve's switch one on."""
    from roofline.cli import args as cli_args
    for name in ("predict", "serve", "plan"):
        assert _options(name)["--engine"].help == cli_args.ENGINE_HELP, name
    analytical = {_options(name)["--analytical"].help for name in ("predict", "report", "plan", "serve", "compare")}
    assert len(analytical) == 1, analytical
    for name in ("predict", "serve"):
        action = _options(name)["--attention-dp"]
        assert isinstance(action, argparse._StoreTrueAction) and "--ep 1" in action.help, name
    assert "auto" in _options("predict")["--attention-dp"].help and "auto" not in _options("serve")["--attention-dp"].help
    plan = _options("plan")["--attention-dp"]
    assert tuple(plan.choices) == ("both", "on", "off") and plan.default == "both"
    # report takes both through its scenario (whose values it defaults to): the same engines, the same layouts
    report = _options("report")
    assert report["--engine"].help == cli_args.ENGINE_HELP.replace("; default vllm)", "; default: the scenario's, else vllm)")
    assert report["--attention-dp"].metavar == "{both,on,off}" and "as plan --attention-dp" in report["--attention-dp"].help


def test_serve_and_plan_state_the_chunked_prefill_default_they_run():
    """Without --chunk-tokens, serve and plan chunk at the engine's token budget where the engine chunks prefill (vLLM:
    8,192 tokens a step on an H100, `roofline engines`), as their help says: the same steady state as
    --chunk-tokens 8192, and another than 2048."""
    for name in ("serve", "plan"):
        assert "the engine's budget when it chunks prefill" in _options(name)["--chunk-tokens"].help, name
    points = [rl.steady_state("llama-3.1-8b", "h100-sxm", 10, 1000, 200, chunk_tokens=c) for c in (None, 8192, 2048)]
    assert points[0].ttft_mean_s == points[1].ttft_mean_s != points[2].ttft_mean_s


def test_validate_time_budget_carries_its_unit_and_keeps_the_old_spelling():
    import argparse

    from calibrate.cli import add_validate_arguments

    p = argparse.ArgumentParser()
    add_validate_arguments(p)
    assert p.parse_args(["--time-budget-s", "400"]).time_budget == 400.0
    assert p.parse_args(["--time-budget", "400"]).time_budget == 400.0  # the older spelling, kept as an alias
    assert "--time-budget-s SECONDS" in p.format_help()
