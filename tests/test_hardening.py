"""Issue 14, one test per fixed case: the loader, finite and bounded schemas, the HF import's typed reads,
device identity, the MLA sweep, the sweep's memory budget, API misuse, temp-file orphans.
(The generated corpus over every surface is tests/test_fuzz.py.)"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import roofline as rl
from roofline import files
from roofline.errors import SpecError
from roofline.hardware import hardware_labels
from roofline.hf_import import from_hf_config

ROOT = Path(__file__).resolve().parents[1]
H100_YAML = (ROOT / "hardware_profiles" / "h100-sxm.yaml").read_text()
LLAMA_YAML = (ROOT / "model_specs" / "llama-3.1-8b.yaml").read_text()
LLAMA_HF = json.loads((ROOT / "tests" / "hf_configs" / "llama-3.1-8b.json").read_text())
WL = rl.Workload(batch_size=1, prompt_tokens=128, output_tokens=16)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------ the loader
@pytest.mark.parametrize("encoding, says", [("utf-16", "UTF-16-encoded"), ("utf-32", "UTF-32-encoded")])
def test_utf16_and_utf32_files_are_one_line_errors_naming_the_path(tmp_path, encoding, says):
    p = tmp_path / "spec.yaml"
    p.write_bytes(LLAMA_YAML.encode(encoding))
    with pytest.raises(SpecError) as err:
        rl.load_model(p)
    assert _one_line(err).startswith(f"{p}: is {says}; save it as UTF-8")


def test_latin1_bytes_are_not_utf8(tmp_path):
    p = tmp_path / "h.yaml"
    p.write_bytes(H100_YAML.replace("name:", "# caf\u00e9\nname:", 1).encode("latin-1"))
    with pytest.raises(SpecError, match=r"is not UTF-8 text \(byte \d+: b'\\xe9'\)") as err:
        rl.load_hardware(p)
    assert _one_line(err).startswith(str(p))


def test_a_utf8_bom_is_fine(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_bytes(LLAMA_YAML.encode("utf-8-sig"))
    assert rl.load_model(p).param_count == rl.load_model("llama-3.1-8b").param_count


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)  # json's C parser: RecursionError
    with pytest.raises(SpecError, match="nested deeper than 32 levels"):
        from_hf_config(p)
    q = tmp_path / "deep.yaml"
    q.write_text("a: " + "[" * 40 + "]" * 40)  # parses; the walk refuses it and names the key
    with pytest.raises(SpecError) as err:
        rl.load_model(q)
    assert _one_line(err) == f"{q}: a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: is nested deeper than 32 levels"


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]  # 10^9 leaves when expanded
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines))
    with pytest.raises(SpecError, match="holds more than 200,000 values"):
        rl.load_hardware(p)


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_bytes(b"#" * (files.MAX_FILE_BYTES + 1))
    with pytest.raises(SpecError, match="larger than 8 MiB"):
        rl.load_model(p)


def test_syntax_errors_keep_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\n  bad: [\n")
    with pytest.raises(SpecError, match=r"is not valid YAML: .*\(line \d+, column \d+\)") as err:
        rl.load_model(p)
    _one_line(err)
    j = tmp_path / "bad.json"
    j.write_text('{"a": NaN}')
    with pytest.raises(SpecError, match=r"bad.json: a: NaN is not a JSON number"):
        from_hf_config(j)


def test_a_missing_file_is_not_an_unknown_id_and_an_empty_id_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"^model: no such file '.*nope\.yaml'$"):
        rl.load_model(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match=r"^hardware: is empty; choose one of"):
        rl.load_hardware("")
    with pytest.raises(SpecError, match=r"^hardware: unknown id 'h100-sx'; did you mean 'h100-sxm'\?"):
        rl.load_hardware("h100-sx")


# ------------------------------------------------------------ finite, bounded schemas
@pytest.mark.parametrize("line, value, field", [
    ("  bf16: 989.4e+12", "  bf16: .nan", "peak_flops_per_s.bf16"),
    ("memory_bandwidth_bytes_per_s: 3.35e+12", "memory_bandwidth_bytes_per_s: .inf", "memory_bandwidth_bytes_per_s"),
    ("memory_bandwidth_bytes_per_s: 3.35e+12", "memory_bandwidth_bytes_per_s: 3.35e+14", "memory_bandwidth_bytes_per_s"),
    ("price_usd_per_gpu_hour: 3.95", "price_usd_per_gpu_hour: .inf", "price_usd_per_gpu_hour"),
    ("price_usd_per_gpu_hour: 3.95", "price_usd_per_gpu_hour: 5000", "price_usd_per_gpu_hour"),
    ("  kernel_overhead_s: 4.0e-6", "  kernel_overhead_s: .nan", "efficiency.kernel_overhead_s"),
    ("  latency_s: 1.8e-6", "  latency_s: .inf", "interconnect.latency_s"),
    ("  max_gpus: 8", "  max_gpus: 1000000000", "interconnect.max_gpus"),
    ("memory_bytes: 85520809984", "memory_bytes: 1000", "l2_bytes"),
])
def test_non_finite_and_absurd_hardware_numbers_are_refused(tmp_path, line, value, field):
    assert line in H100_YAML, line
    p = tmp_path / "h.yaml"
    p.write_text(H100_YAML.replace(line, value, 1))
    with pytest.raises(SpecError) as err:
        rl.load_hardware(p)
    assert _one_line(err).startswith(f"{p}: {field}"), str(err.value)


def test_huge_structural_fields_are_refused_at_once(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(LLAMA_YAML.replace("num_layers: 32", "num_layers: 1000000000", 1))
    with pytest.raises(SpecError, match=r"num_layers: Input should be less than or equal to 4096"):
        rl.load_model(p)  # used to build a billion-entry layer list (> 40 s)


def test_native_dtype_int4_is_blamed_on_native_dtype(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(LLAMA_YAML.replace("native_dtype: bf16", "native_dtype: int4", 1))
    with pytest.raises(SpecError) as err:
        rl.load_model(p)
    assert _one_line(err).startswith(f"{p}: native_dtype: 'int4' is a storage format")


def test_calibration_rates_must_be_finite(tmp_path):
    from tests.test_fuzz import CAL_DOC

    doc = json.loads(json.dumps(CAL_DOC))
    doc["memory"]["latency_s"] = float("nan")
    p = tmp_path / "cal.yaml"  # YAML writes .nan, which YAML reads back as NaN
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=r"memory\.latency_s: Input should be a finite number"):
        rl.load_hardware("h100-sxm", calibration=p)


def test_workload_bounds_and_a_400_digit_batch():
    with pytest.raises(Exception) as err:
        rl.Workload(batch_size=10**400, prompt_tokens=1, output_tokens=1)
    assert err.value.errors()[0]["loc"] == ("batch_size",)
    with pytest.raises(Exception) as err:
        rl.Deployment(runtime_reserve_bytes=math.inf)
    assert err.value.errors()[0]["loc"] == ("runtime_reserve_bytes",)


@pytest.mark.parametrize("value, message", [
    ("-9.8e+12", "l2_read_bytes_per_s: Input should be greater than 0"),
    ("0", "l2_read_bytes_per_s: Input should be greater than 0"),
    ("fast", "l2_read_bytes_per_s: Input should be a valid number"),
    ("[9.8e+12]", "l2_read_bytes_per_s: Input should be a valid number"),
])
def test_a_malformed_l2_read_rate_is_one_line_naming_the_field(tmp_path, value, message):
    # the L2-hit read rate that times a generic GQA decode kernel's repeated KV streams (`ops.decode_kv_reads`)
    line = "l2_read_bytes_per_s: 9.8e+12"
    assert line in H100_YAML
    p = tmp_path / "h.yaml"
    p.write_text(H100_YAML.replace(line, f"l2_read_bytes_per_s: {value}", 1))
    with pytest.raises(SpecError) as err:
        rl.load_hardware(p)
    assert _one_line(err).startswith(f"{p}: {message}"), str(err.value)


def test_an_l2_read_rate_without_its_source_is_refused(tmp_path):
    lines = H100_YAML.splitlines()
    sourced = [i for i, x in enumerate(lines) if x.strip().startswith("l2_read_bytes_per_s:") and x.startswith(" ")]
    assert len(sourced) == 1  # the field's line is at the top level, its source indented under `sources:`
    p = tmp_path / "h.yaml"
    p.write_text("\n".join(x for i, x in enumerate(lines) if i != sourced[0]))
    with pytest.raises(SpecError) as err:
        rl.load_hardware(p)
    assert _one_line(err) == f"{p}: sources: no source for l2_read_bytes_per_s"


def test_a_misspelt_key_inside_a_nested_record_is_matched_against_that_records_fields(tmp_path):
    # `interconnect.latncy_s`: the suggestion comes from Interconnect's fields, not HardwareProfile's
    p = tmp_path / "h.yaml"
    p.write_text(H100_YAML.replace("  latency_s: 1.8e-6", "  latncy_s: 1.8e-6", 1))
    with pytest.raises(SpecError) as err:
        rl.load_hardware(p)
    assert _one_line(err) == f"{p}: interconnect.latncy_s: unknown field; did you mean 'latency_s'?"


TRTLLM_07_YAML = (ROOT / "hardware_profiles" / "engines" / "trtllm-cpp-0.7.yaml").read_text()
TRTLLM_CPP_YAML = (ROOT / "hardware_profiles" / "engines" / "trtllm-cpp.yaml").read_text()  # the profile 0.7 extends


@pytest.mark.parametrize("kernel, message", [
    ("{head_dims: [-128], group_sizes: [8]}", "grouped_decode_kernel.head_dims.0: Input should be greater than 0"),
    ("{head_dims: [128], group_sizes: [0]}", "grouped_decode_kernel.group_sizes.0: Input should be greater than 0"),
    ("{head_dims: 128, group_sizes: [8]}", "grouped_decode_kernel.head_dims: should be a list, e.g. [a, b]"),
    ("{head_dims: [128.5], group_sizes: [8]}", "grouped_decode_kernel.head_dims.0: Input should be a valid integer"),
    ("xqa", "grouped_decode_kernel: should be a mapping of head_dims, group_sizes"),
    ("{head_dim: [128], group_sizes: [8]}", "grouped_decode_kernel.head_dim: unknown field; did you mean 'head_dims'?"),
])
def test_a_malformed_grouped_decode_kernel_is_one_line_naming_the_field(tmp_path, monkeypatch, kernel, message):
    # an engine profile written beside the shipped ones (hardware_profiles/engines/), loaded the way `load_engine` does
    from roofline import registry
    from roofline.engines import EngineProfile

    block = "grouped_decode_kernel:                  # XQA: head 128 or 256, 8 query heads per KV head; other GQA layouts run masked MHA\n  head_dims: [128, 256]\n  group_sizes: [8]\n"
    assert block in TRTLLM_07_YAML
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "trtllm-cpp.yaml").write_text(TRTLLM_CPP_YAML)
    (tmp_path / "engines" / "mine.yaml").write_text(TRTLLM_07_YAML.replace(block, f"grouped_decode_kernel: {kernel}\n", 1))
    monkeypatch.setattr(registry, "data_dir", lambda kind: tmp_path)
    with pytest.raises(SpecError) as err:
        registry.load_profile("engines", "mine", EngineProfile, "engine")
    assert _one_line(err).startswith(f"engines/mine.yaml: {message}"), str(err.value)


def test_a_grouped_decode_kernel_without_its_source_is_refused(tmp_path, monkeypatch):
    from roofline import registry
    from roofline.engines import EngineProfile

    # the variant's only source is the kernel's, so its `sources:` key goes with it (an empty `sources:` would be null,
    # which replaces the base's whole mapping: `registry.overlay`); the base's sources have none for the kernel
    lines = [x for x in TRTLLM_07_YAML.splitlines() if not x.startswith(("  grouped_decode_kernel:", "sources:"))]
    assert len(lines) == len(TRTLLM_07_YAML.splitlines()) - 2
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "trtllm-cpp.yaml").write_text(TRTLLM_CPP_YAML)
    (tmp_path / "engines" / "mine.yaml").write_text("\n".join(lines))
    monkeypatch.setattr(registry, "data_dir", lambda kind: tmp_path)
    with pytest.raises(SpecError) as err:
        registry.load_profile("engines", "mine", EngineProfile, "engine")
    assert _one_line(err) == "engines/mine.yaml: sources: no source for grouped_decode_kernel"


# ------------------------------------------------------------ HF import
@pytest.mark.parametrize("patch, key", [
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings"),
    ({"num_hidden_layers": 1_000_000_000}, "num_hidden_layers"),
    ({"hidden_size": 1e40}, "hidden_size"),
    ({"model_type": ["llama"]}, "model_type"),
])
def test_hf_strings_and_huge_values_name_the_key(patch, key):
    with pytest.raises(SpecError) as err:
        from_hf_config(LLAMA_HF | patch)
    assert _one_line(err).startswith(f"{key}: ")


def test_hf_tie_word_embeddings_false_is_read_as_false():
    """A JSON false keeps the 8.03B of Llama-3.1-8B (tied, it would be 7.50B: 128,256 x 4,096 less)."""
    spec = from_hf_config(LLAMA_HF | {"tie_word_embeddings": False})
    assert spec.tied_embeddings is False and spec.param_count == 8_030_261_248
    assert from_hf_config(LLAMA_HF | {"tie_word_embeddings": True}).param_count == 8_030_261_248 - 128_256 * 4_096


def test_hf_integral_floats_are_integers():
    assert from_hf_config(LLAMA_HF | {"num_hidden_layers": 32.0}).num_layers == 32


# ------------------------------------------------------------ device identity
def test_two_profiles_of_one_name_stay_apart(tmp_path):
    copy = tmp_path / "my-h100.yaml"
    copy.write_text(H100_YAML.replace("price_usd_per_gpu_hour: 3.95", "price_usd_per_gpu_hour: 1.0", 1))
    shipped, mine = rl.load_hardware("h100-sxm"), rl.load_hardware(copy)
    assert shipped.name == mine.name and (shipped.id, mine.id) == ("h100-sxm", str(copy))
    assert hardware_labels([shipped, mine]) == [f"{shipped.name} [h100-sxm]", f"{shipped.name} [{copy}]"]
    assert hardware_labels([shipped, rl.load_hardware("h200")]) == [shipped.name, rl.load_hardware("h200").name]
    df = rl.sweep("llama-3.1-8b", [shipped, mine], batch_size=1, prompt_tokens=128, output_tokens=16)
    assert list(df["hardware"]) == hardware_labels([shipped, mine])
    assert df["usd_per_hour"].tolist() == [3.95, 1.0]


# ------------------------------------------------------------ sweep
def test_mla_sweep_over_several_prompts_equals_predict():
    """DeepSeek-V3 (MLA) at prompts 1 and 2048: prefill of one token runs absorbed, of 2048 decompressed."""
    df = rl.sweep(model="deepseek-v3", hardware="h200", prompt_tokens=[1, 128, 2048], tp=8)
    assert len(df) == 3
    for row in df.itertuples():
        p = rl.predict("deepseek-v3", "h200", rl.Workload(batch_size=1, prompt_tokens=row.prompt_tokens, output_tokens=256),
                       rl.Deployment(tp=8))
        assert math.isclose(row.ttft_s, p.ttft_s, rel_tol=1e-12) and math.isclose(row.tpot_s, p.tpot_s, rel_tol=1e-12)


def test_sweep_refuses_a_grid_over_its_memory_budget():
    """1,000,000 batch sizes x 11 operators x 1 kB = 11 GB > 2 GiB."""
    with pytest.raises(SpecError, match=r"^sweep: a grid of 1,000,000 scenarios needs about 11\.0 GB"):
        rl.sweep("llama-3.1-8b", "h100-sxm", batch_size=range(1, 1_000_001))


def test_sweep_axes_are_bounded_and_an_empty_result_has_every_column():
    with pytest.raises(SpecError, match="^batch_size: needs integers from 1 to 16,777,216"):
        rl.sweep("llama-3.1-8b", "h100-sxm", batch_size=10**30)
    df = rl.sweep("llama-3.1-70b", "h100-sxm", tp=16)  # wider than an 8-GPU node: skipped, with the reason
    assert df.empty and {"decode_bound", "prefill_bound", "tpot_s"} <= set(df.columns)
    assert df.attrs["skipped"][0]["reason"] == "tp exceeds the interconnect domain"


# ------------------------------------------------------------ API misuse
def test_predict_takes_ids_or_raises_a_type_error_naming_the_argument():
    by_id = rl.predict(rl.load_model("llama-3.1-8b"), "h100-sxm", WL)
    assert by_id.model_dump() == rl.predict(rl.load_model("llama-3.1-8b"), rl.load_hardware("h100-sxm"), WL).model_dump()
    assert rl.predict_fitting("llama-3.1-70b", "h100-sxm", WL).gpus_per_replica == 2
    with pytest.raises(TypeError, match=r"^model: expected a ModelSpec, a model id or a spec \.yaml path, got int$"):
        rl.predict(7, "h100-sxm", WL)
    with pytest.raises(TypeError, match=r"^deployment: expected a roofline.Deployment or None, got dict$"):
        rl.predict("llama-3.1-8b", "h100-sxm", WL, {"tp": 2})


# ------------------------------------------------------------ orphaned temp files
def test_a_killed_writer_leaves_a_temp_file_the_next_write_removes(tmp_path):
    """A child process is SIGKILLed between writing its temp file and the rename; the next write cleans up."""
    code = ("import os, signal, tempfile, sys; from roofline import files; "
            "tempfile.mkstemp(dir=sys.argv[1], prefix=f'.report.html.roofline-{os.getpid()}.', suffix='.tmp'); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    orphans = list(tmp_path.glob(".report.html.roofline-*.tmp"))
    assert len(orphans) == 1
    foreign = tmp_path / ".notes.2024.tmp"  # not ours: never touched
    foreign.write_text("keep")
    files.write_atomic(tmp_path / "report.md", "x")
    assert not orphans[0].exists() and foreign.exists() and (tmp_path / "report.md").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.2024.tmp", "report.md"]
    assert oct(os.stat(tmp_path / "report.md").st_mode & 0o777) != "0o600"


# ------------------------------------------------------------ the command line, the planner, compare, report
def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from roofline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, message", [
    (("predict", "--model", "", "--hardware", "h100-sxm"), "roofline: error: model: needs at least one id or file path, got ''"),
    (("predict", "--model", "llama-3.1-8b", "--hardware", " , "), "roofline: error: hardware: needs at least one id or file path"),
    (("predict", "--model", "nope/spec.yaml", "--hardware", "h100-sxm"), "roofline: error: model: no such file 'nope/spec.yaml'"),
    (("predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "9" * 400),
     "roofline: error: batch_size: must be a finite number of sensible size"),
    (("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--requests-per-s", "1", "--prompt-tokens", "uniform:inf:inf",
      "--output-tokens", "64", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05"), "roofline: error: prompt_tokens: Input should be a finite number"),
    (("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--requests-per-s", "1", "--prompt-tokens", "512",
      "--output-tokens", "64", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05", "--chunk-tokens", "1000000000"),
     "roofline: error: chunk_tokens: 1,000,000,000 tokens per step exceeds max_context=131,072 of Llama 3.2 1B"),
    (("compare", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--variant", "x:tp=3"),
     "roofline: error: --variant x: tp: 3 does not divide num_attention_heads=32"),
    (("compare", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--variant", "x:network=bogus"),
     "roofline: error: --variant x: network: unknown network 'bogus'"),
    (("compare", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--variant", "x:speculative.draft=llama-3.1-70b"),
     "roofline: error: --variant x: speculative.draft: Llama 3.1 70B (70.6B parameters) is not smaller than the target"),
    (("compare", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--variant", "a:tp=2", "--variant", "a:tp=4"),
     "roofline: error: --variant: name 'a' is given twice"),
    (("report", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--activation-dtype", "fp8", "--out", "/nonexistent/x"),
     "roofline: error: activation_dtype: fp8_e4m3 activations with bf16 weights would need the weights re-quantized"),
    (("calibrate", "--out", __file__, "--quick"), "roofline: error: --out: "),
])
def test_cli_errors_are_one_line_exit_2(argv, message):
    rc, out, err = _cli(*argv)
    assert rc == 2 and not out and "Traceback" not in err, (rc, out, err)
    assert err.startswith(message) and err.count("\n") == 1, err


def test_cli_validate_reps_must_be_positive():
    rc, _, err = _cli("validate", "--reps", "-1", "--quick")
    assert rc == 2 and err.strip().splitlines()[-1].endswith("argument --reps: must be from 1 to 1,000,000, got -1")


def test_cli_a_comma_inside_a_path_is_one_path(tmp_path):
    p = tmp_path / "my,llama.yaml"
    p.write_text(LLAMA_YAML)
    rc, out, err = _cli("predict", "--model", str(p), "--hardware", "h100-sxm", "--prompt-tokens", "128", "--output-tokens", "16")
    assert rc == 0 and "Llama 3.1 8B" in out, err


def test_plan_at_a_tiny_rate_still_buys_one_replica():
    """1e-8 requests/s: the fleet is one replica, never 0 GPUs at $0: 1 x H100 at $3.95/hour."""
    df = rl.plan("llama-3.2-1b", 1e-8, 512, 64, 2.0, 0.05, hardware="h100-sxm")
    r = df.iloc[0]
    assert r.feasible and (r.replicas, r.gpus, r.tp) == (1, 1, 1) and r.usd_per_hour == 3.95
    # $/M output tokens = 3.95 / (1e-8 requests/s x 64 tokens x 3600 s) x 1e6
    assert math.isclose(r.usd_per_million_output_tokens, 3.95 / (1e-8 * 64 * 3600) * 1e6)


def test_plan_keeps_two_profiles_of_one_name_apart(tmp_path):
    copy = tmp_path / "cheap-h100.yaml"
    copy.write_text(H100_YAML.replace("price_usd_per_gpu_hour: 3.95", "price_usd_per_gpu_hour: 1.0", 1))
    df = rl.plan("llama-3.2-1b", 10, 512, 64, 2.0, 0.05, hardware=["h100-sxm", str(copy)])
    assert sorted(df["hardware_id"]) == sorted(["h100-sxm", str(copy)])
    rows = df.set_index("hardware_id")
    assert rows.loc[str(copy), "price_usd_per_gpu_hour"] == 1.0 and rows.loc["h100-sxm", "price_usd_per_gpu_hour"] == 3.95
    assert rows.loc["h100-sxm", "hardware"] == "NVIDIA H100 SXM5 80GB [h100-sxm]"
    assert len(rl.plan("llama-3.2-1b", 10, 512, 64, 2.0, 0.05, hardware=["h100-sxm", "h100-sxm"])) == 1  # the same file twice: once


@pytest.mark.parametrize("tp, reason", [
    (3, "no replica shape: tp 3 does not divide num_attention_heads=64, intermediate_size=28672; valid tp on this device: 1, 2, 4, 8"),
    (16, "no replica shape: tp 16 exceeds the 8-GPU NVLink domain"),
])
def test_plan_with_no_valid_shape_says_why(tp, reason):
    df = rl.plan("llama-3.1-70b", 5, 1024, 256, 5.0, 0.1, hardware="h100-sxm", tps=[tp])
    assert len(df) == 1 and not df.iloc[0].feasible and df.iloc[0].binding_constraint == "parallelism"
    assert df.iloc[0].reason.startswith(reason)


@pytest.mark.parametrize("tps, pps, names", [([4, 8], None, "tps=[4, 8]"), (None, [2, 4], "pps=[2, 4]"),
                                              ([8], [1, 2], "tps=[8] / pps=[1, 2]")])
def test_plan_says_which_given_degrees_leave_expert_parallelism_out(tps, pps, names):
    """Expert parallelism runs at tp = pp = 1 (`plan.parallelisms`), so eps without 1 next to tps or pps without 1 leave
    no shape; the reason names the lists given (an unset one is every degree, not an empty list)."""
    df = rl.plan("qwen3-30b-a3b", 5, 1024, 256, 5.0, 0.1, hardware="h100-sxm", tps=tps, pps=pps, eps=[8, 16],
                 precisions={"native": rl.Deployment()})
    (row,) = df.itertuples()
    assert not row.feasible and row.binding_constraint == "parallelism"
    assert row.reason == ("no replica shape: ep 8, 16 runs with tp = pp = 1 (attention data-parallel over the ep GPUs), "
                          f"which {names} leave out; valid tp on this device: 1, 2, 4, 8")


def test_plan_prints_small_slos_in_their_unit():
    df = rl.plan("llama-3.2-1b", 1, 512, 64, 2.0, 1e-6, hardware="h100-sxm")
    assert "(SLO 1 us)" in df.iloc[0].reason and "0.0 ms" not in df.iloc[0].reason


def test_report_says_one_replica_not_one_replicas():
    import roofline.report as R

    s = R.Scenario(models=["llama-3.2-1b"], hardware=["h100-sxm"], requests_per_s=0.5, prompt_tokens=256, output_tokens=32)
    text = R.top_option_text(R.evaluate_scenario(s, progress=False))
    assert "1 GPU (1 replica x tp1" in text, text


def test_report_picks_the_batch_before_a_tile_step():
    """llama-2-13b, int4, B200: 64 sequences dequantize each weight once per 64-row tile, 65 twice, so
    tokens/s falls 16% from 64 to 65 (16 + 64 tokens) on the bare roofline, 12.5% with vLLM's CPU time per step
    (h(B) = 160 us + B · 21 us, the same for both batches to within 21 us): with a cap of 70 the report runs 64."""
    import roofline.report as R

    s = R.Scenario(models=["llama-2-13b"], hardware=["b200"], requests_per_s=10, prompt_tokens=16, output_tokens=64,
                   weight_dtype="int4", serving="static", max_batch_size=70)
    tok = {b: rl.predict("llama-2-13b", "b200", rl.Workload(batch_size=b, prompt_tokens=16, output_tokens=64),
                         rl.Deployment(weight_dtype="int4")).output_tokens_per_s for b in (64, 65, 70)}
    assert tok[65] < 0.9 * tok[64] and tok[70] < tok[64]
    o = R.evaluate_scenario(s, progress=False).iloc[0]
    assert o.tp == 1 and o.batch_size == 64 and "64-row tile" in o.note
    assert o.usd_per_million_output_tokens_full_load == pytest.approx(3600 ** -1 * o.price_usd_per_gpu_hour / tok[64] * 1e6)


def test_report_removes_a_killed_runs_temp_file(tmp_path):
    import roofline.report as R

    orphan = tmp_path / ".report.html.roofline-999999999.abcd1234.tmp"  # no such process
    orphan.write_text("half a report")
    s = R.Scenario(models=["llama-3.2-1b"], hardware=["h100-sxm"], requests_per_s=1, prompt_tokens=256, output_tokens=32,
                   serving="static")
    R.write_report(s, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.html", "report.md"]


def test_the_serving_curve_never_runs_a_rate_on_a_batch_past_a_step():
    """llama-2-13b int4 on a B200 (short prompts): λ(B) falls where B crosses a 64-row dequantization tile.
    The envelope keeps the rising part; a rate on a flat run of it is served by the smaller batch before the
    step, whose step time is the lower one."""
    import numpy as np

    from roofline import serving as S

    dep = rl.Deployment(weight_dtype="int4")
    cv = S.curves_for(rl.load_model("llama-2-13b"), rl.load_hardware("b200"), dep, S.Traffic.of(None, 16, 64), None)
    lam, env = cv.lam[0], cv.lam_env[0]
    drops = [j for j in range(1, len(lam)) if cv.ok[0, j] and lam[j] < env[j - 1]]
    assert drops, "this scenario has a sawtooth on the grid"
    for j in drops:
        first = int(np.argmax(env >= env[j]))  # the batch that reached the envelope's value first
        assert cv.grid[first] < cv.grid[j] and cv.t0[0, first] < cv.t0[0, j]
        st = cv.state(np.array([env[j]]))
        assert st.t0_s[0] <= cv.t0[0, first] * (1 + 1e-12), (cv.grid[j], st.t0_s[0], cv.t0[0, first], cv.t0[0, j])


# ------------------------------------------------------------ the finite runs' bad input (overload, offline waves, block queue)
M8, L4, TURBOMIND = "llama-3.1-8b", "l4", rl.Deployment(engine="lmdeploy-turbomind")


@pytest.mark.parametrize("fn", ["finite_overload", "overload_run"])
@pytest.mark.parametrize("kw, field", [({"requests": 2.5}, "requests"), ({"requests": True}, "requests"),
                                       ({"requests_per_s": math.nan}, "requests_per_s"),
                                       ({"max_batch_size": 0}, "max_batch_size"), ({"max_batch_size": 2.5}, "max_batch_size"),
                                       ({"chunk_tokens": 0}, "chunk_tokens"), ({"prompt_tokens": 0}, "prompt_tokens")])
def test_a_finite_overload_names_the_bad_field(fn, kw, field):
    # max_batch_size=0 used to read "deployment: does not fit" (a cap of 0 fits nothing), 2.5 was taken as given
    args = {"requests": 300, "requests_per_s": 5.0, "prompt_tokens": 280, "output_tokens": 310, **kw}
    with pytest.raises(SpecError, match=f"^{field}:") as e:
        getattr(rl, fn)(M8, L4, deployment=rl.Deployment(engine="vllm"), **args)
    _one_line(e)


@pytest.mark.parametrize("kw, field", [({"requests": 1.5}, "requests"), ({"requests": 0}, "requests"),
                                       ({"prompt_tokens": 128.5}, "prompt_tokens"),
                                       ({"output_tokens": "lognormal:128:0.5"}, "output_tokens")])
def test_an_offline_run_names_the_bad_field(kw, field):
    # 1.5 requests were rounded to 2 and a fractional prompt truncated; requests=0 was reported as "concurrency"
    args = {"requests": 100, "prompt_tokens": 128, "output_tokens": 128, **kw}
    with pytest.raises(SpecError, match=f"^{field}:") as e:
        rl.offline_run_s(M8, "h100-sxm", **args)
    _one_line(e)


@pytest.mark.parametrize("kw, field", [({"prefill_s": math.nan}, "prefill_s"), ({"prefill_s": -1.0}, "prefill_s"),
                                       ({"prefill_s": None, "prompt_tokens": 10, "chunk_tokens": 0,
                                         "chunk_step_s": lambda b: 1.0}, "chunk_tokens"),
                                       ({"decode_step_s": lambda b: math.nan}, "decode_step_s")])
def test_overload_schedule_refuses_what_would_stall_its_clock(kw, field):
    # a NaN prefill pass or a zero chunk budget never advanced the clock past the next arrival: the loop hung
    from roofline.serving import overload_schedule
    args = {"requests": 3, "requests_per_s": 2.0, "output_tokens": 2, "max_running": 1, "decode_step_s": lambda b: 0.5,
            "prefill_s": 1.0, **kw}
    with pytest.raises(SpecError, match=f"^{field}:") as e:
        overload_schedule(**args)
    _one_line(e)


@pytest.mark.parametrize("kw, field", [({"capacity_requests_per_s": math.nan}, "capacity_requests_per_s"),
                                       ({"slots": 0}, "slots"), ({"requests_per_s": -2.0}, "requests_per_s")])
def test_overload_start_names_the_bad_field(kw, field):
    from roofline.serving import overload_start_s
    args = {"requests": 3, "requests_per_s": 2.0, "capacity_requests_per_s": 1.0, "slots": 1, **kw}
    with pytest.raises(SpecError, match=f"^{field}:"):
        overload_start_s(**args)


@pytest.mark.parametrize("kw, field", [({"clients": 1.5}, "clients"), ({"rounds": math.nan}, "rounds"), ({"rounds": 1.5}, "rounds"),
                                       ({"kv_blocks": 0}, "kv_blocks"), ({"kv_blocks": 2.5}, "kv_blocks"),
                                       ({"prompt_tokens": "uniform:100:200"}, "prompt_tokens")])
def test_the_block_queue_names_the_bad_field(kw, field):
    # rounds=nan was a ValueError traceback; 1.5 clients or rounds and 2.5 blocks were silently rounded or truncated;
    # kv_blocks=0 was reported as "clients"
    from roofline import block_queue
    args = {"clients": 4, "rounds": 1, "prompt_tokens": 128, "output_tokens": 16, **kw}
    with pytest.raises(SpecError, match=f"^{field}:") as e:
        block_queue.run("llama-2-7b", "a100-sxm-80gb", deployment=TURBOMIND, **args)
    _one_line(e)


@pytest.mark.parametrize("kw, field", [({"pool_blocks": 0}, "pool_blocks"), ({"budget_tokens": 0}, "budget_tokens"),
                                       ({"clients": math.nan}, "clients"), ({"max_requests": 1.5}, "max_requests")])
def test_the_block_schedule_names_the_bad_field(kw, field):
    from roofline import block_queue
    args = {"clients": 2, "rounds": 1, "prompt_tokens": 10, "output_tokens": 3, "pool_blocks": 4, "block_tokens": 16,
            "budget_tokens": 64, **kw}
    with pytest.raises(SpecError, match=f"^{field}:"):
        block_queue.schedule(**args)


@pytest.mark.parametrize("call", [
    lambda mb: rl.steady_state("llama-3.1-8b", "h100-sxm", 1.0, 512, 128, max_batch_size=mb),
    lambda mb: rl.closed_loop("llama-3.1-8b", "h100-sxm", 4, 512, 128, max_batch_size=mb),
    lambda mb: rl.frontier("llama-3.1-8b", "h100-sxm", 512, 128, max_batch_size=mb),
    lambda mb: rl.capacity_requests_per_s("llama-3.1-8b", "h100-sxm", 512, 128, max_batch_size=mb),
])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_serving_entry_points_name_a_bad_max_batch_size(call, bad):
    # a cap of 0 used to read "deployment: does not fit" (no sequence fits a cap of 0) and 2.5 was taken as given
    with pytest.raises(SpecError, match="max_batch_size"):
        call(bad)


def test_a_nested_records_own_check_names_its_field_once(tmp_path):
    # Interconnect's own check (nvls_capable needs an NVSwitch) runs inside the hardware record: the error names the
    # file and interconnect.nvls_capable once, not "interconnect: interconnect.nvls_capable"
    data = yaml.safe_load((ROOT / "hardware_profiles" / "l40s.yaml").read_text())
    data["interconnect"]["nvls_capable"] = True
    data["interconnect"]["sources"]["nvls_capable"] = "a test"
    p = tmp_path / "l40s-nvls.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as exc:
        rl.load_hardware(str(p))
    assert _one_line(exc) == f"{p}: interconnect.nvls_capable: NVLS reduces inside an NVSwitch: topology must be switch"
    rc = subprocess.run([sys.executable, "-m", "roofline", "predict", "--model", "llama-3.1-8b", "--hardware", str(p)],
                        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert rc.returncode != 0 and "Traceback" not in rc.stderr and rc.stderr.count("\n") == 1


@pytest.mark.parametrize("build, field", [
    (lambda: rl.Deployment(tp=True), "tp"),
    (lambda: rl.Workload(batch_size=True, prompt_tokens=128, output_tokens=16), "batch_size"),
    (lambda: type(rl.load_model("llama-3.1-8b")).model_validate(
        {**rl.load_model("llama-3.1-8b").model_dump(), "num_layers": True}), "num_layers"),
    (lambda: type(rl.load_hardware("h100-sxm", analytical=True)).model_validate(
        {**rl.load_hardware("h100-sxm", analytical=True).model_dump(), "memory_bandwidth_bytes_per_s": True}),
     "memory_bandwidth_bytes_per_s"),
])
def test_a_boolean_where_a_number_belongs_is_one_line_naming_the_field(build, field):
    # pydantic's lax mode would read true as 1: one layer, one byte per second, a tp of 1, all silently
    with pytest.raises(ValueError, match=rf"{field}: expected a number, got True \(true / false is not a number\)"):
        build()
