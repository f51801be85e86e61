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
    ("price_usd_per_gpu_hour: 3.78", "price_usd_per_gpu_hour: .inf", "price_usd_per_gpu_hour"),
    ("price_usd_per_gpu_hour: 3.78", "price_usd_per_gpu_hour: 5000", "price_usd_per_gpu_hour"),
    ("  kernel_overhead_s: 4.0e-6", "  kernel_overhead_s: .nan", "efficiency.kernel_overhead_s"),
    ("  latency_s: 1.8e-6", "  latency_s: .inf", "interconnect.latency_s"),
    ("  max_gpus: 8", "  max_gpus: 1000000000", "interconnect.max_gpus"),
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
    copy.write_text(H100_YAML.replace("price_usd_per_gpu_hour: 3.78", "price_usd_per_gpu_hour: 1.0", 1))
    shipped, mine = rl.load_hardware("h100-sxm"), rl.load_hardware(copy)
    assert shipped.name == mine.name and (shipped.id, mine.id) == ("h100-sxm", str(copy))
    assert hardware_labels([shipped, mine]) == [f"{shipped.name} [h100-sxm]", f"{shipped.name} [{copy}]"]
    assert hardware_labels([shipped, rl.load_hardware("h200")]) == [shipped.name, rl.load_hardware("h200").name]
    df = rl.sweep("llama-3.1-8b", [shipped, mine], batch_size=1, prompt_tokens=128, output_tokens=16)
    assert list(df["hardware"]) == hardware_labels([shipped, mine])
    assert df["cost_per_hour_usd"].tolist() == [3.78, 1.0]


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
    assert rl.predict_fitting("llama-3.1-70b", "h100-sxm", WL).num_gpus == 2
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
