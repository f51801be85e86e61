"""Fuzz corpus: malformed, adversarial and extreme inputs on every input surface (issue 14).

Nine surfaces: the CLI, model spec YAML, hardware profile YAML, Hugging Face config.json,
scenario YAML, calibration JSON (measured all-reduce points included), engine profile YAML (a variant
that extends: another), the Python API and the dashboard (AppTest). Inputs are
mutations of the shipped files (type swaps, non-finite and huge numbers, zeros, missing and
unknown keys, deep nesting, other encodings, broken syntax) and hypothesis-generated values,
drawn with fixed seeds (`derandomize=True`), so the corpus is the same on every run.

Every case must end in exactly one of:
* a clear error: `SpecError` (or a pydantic `ValidationError` from the API) whose message is one
  line and names the field (a key of the mutated path, or the file); for the CLI, exit status 2,
  one `error:` line on stderr and no traceback;
* a valid result: finite numbers (a cost is NaN only when the scenario does not fit), at least
  one GPU per deployment.
Never a traceback, a NaN, a 0-GPU plan or a hang: each case runs under a `CASE_TIMEOUT_S` alarm.
`test_counts` prints how many cases each surface ran.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import re
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import roofline as rl
from roofline import cli
from roofline.errors import SpecError
from roofline.hf_import import from_hf_config
from roofline.report import Scenario

ROOT = Path(__file__).resolve().parents[1]
CASE_TIMEOUT_S = 10.0
COUNTS: Counter = Counter()
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False, max_examples=60,
                suppress_health_check=list(HealthCheck))


def examples(n: int):
    """The corpus size of one generated test (the whole module runs in well under a minute)."""
    return settings(FUZZ, max_examples=n)


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float = CASE_TIMEOUT_S):
    """Fail a case that runs longer than `seconds` (a hang) instead of stalling the suite."""
    def on_alarm(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        # the field location, or for a check across fields (a model validator) the field its message starts with
        assert err["loc"] or re.match(r"^[\w.\[\]]+: ", msg), f"a ValidationError naming no field: {exc}"
        return ".".join(map(str, err["loc"])) + ": " + msg
    return str(exc)


def expect(fn, names, surface: str):
    """Run one case: its result, or None after a clear error naming one of `names`."""
    COUNTS[surface] += 1
    with time_limit():
        try:
            return fn()
        except (SpecError, ValidationError) as exc:
            text = _error_text(exc)
            assert "\n" not in text.strip(), f"error of more than one line: {text!r}"
            assert any(str(n).lower() in text.lower() for n in names), f"error does not name any of {names}: {text!r}"
            return None


def finite_prediction(p: rl.Prediction) -> None:
    assert p.gpus_per_replica >= 1
    for k, v in p.model_dump().items():
        if isinstance(v, float) and not (k == "usd_per_million_output_tokens" and not p.fits):
            if v is not None and k not in ("speculative_tokens_per_step", "tpot_without_speculation_s"):
                assert math.isfinite(v), f"{k} = {v}"
    assert p.ttft_s > 0 and p.tpot_s > 0 and p.memory_required_bytes_per_gpu > 0


# ------------------------------------------------------------ mutations of a document
KINDS = ("delete", "string", "list", "mapping", "bool", "null", "nan", "inf", "-inf", "huge", "hugeint", "zero",
         "negative", "unknown_key", "deep")
DEEP = 200


def _paths(doc, prefix=()):
    """Every (path) to a value in nested mappings and lists."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _nested(depth: int):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


def mutate(doc: dict, path: tuple, kind: str) -> dict:
    doc = copy.deepcopy(doc)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    value = {"string": "oops", "list": [parent[key]], "mapping": {"x": parent[key]}, "bool": True, "null": None,
             "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": 1e40, "hugeint": 10**30, "zero": 0,
             "negative": -1, "deep": _nested(DEEP)}.get(kind)
    if kind == "delete":
        del parent[key]
    elif kind == "unknown_key":
        if isinstance(parent, dict):
            parent["zzz_unknown"] = 1
        else:
            parent.append({"zzz_unknown": 1})
    else:
        parent[key] = value
    return doc


def names_for(path: tuple, kind: str, where: str) -> list[str]:
    """What an error about this mutation must name: a key on the mutated path (the file alone is not enough)."""
    names = [str(k) for k in path if isinstance(k, str)]
    if kind == "unknown_key":
        names.append("zzz_unknown")
    return names or [where]


ENCODINGS = ("utf-16", "utf-32", "latin-1", "utf-8-sig", "truncated", "empty", "binary", "scalar", "yaml-error",
             "huge-file", "deep-text")


def encoded(text: str, how: str, fmt: str) -> bytes:
    if how in ("utf-16", "utf-32", "utf-8-sig"):
        return text.encode(how)
    if how == "latin-1":
        if fmt == "json":
            return text.replace('"', '"caf\u00e9 ', 1).encode("latin-1", errors="replace")
        return text.replace("\n", "\n# caf\u00e9 \u00e0 la cr\u00e8me\n", 1).encode("latin-1", errors="replace")
    if how == "truncated":
        return text[: len(text) * 2 // 3].encode()
    if how == "empty":
        return b""
    if how == "binary":
        return bytes(range(256)) * 4
    if how == "scalar":
        return b"42\n"
    if how == "yaml-error":
        return (b"{" if fmt == "json" else b"key: [unclosed\n  - : :\n") + text.encode()
    if how == "huge-file":
        return b" " * (9 * 1024 * 1024) + text.encode()
    assert how == "deep-text"
    return ("[" * 100_000 + "]" * 100_000).encode() if fmt == "json" else ("- " * 3000 + "1\n").encode()


class Files:
    """Unique file names per case (the loaders cache by path)."""

    def __init__(self, root: Path):
        self.root, self.n = root, itertools.count()

    def write(self, data: bytes, suffix: str) -> Path:
        p = self.root / f"case{next(self.n)}{suffix}"
        p.write_bytes(data)
        return p


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("fuzz"))


def _yaml(doc) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


def _doc_cases(base_docs: dict[str, dict]):
    """(document name, path, mutation kind) over every path of the given documents."""
    pairs = [(name, path) for name, doc in base_docs.items() for path in _paths(doc)]
    return st.tuples(st.sampled_from(pairs), st.sampled_from(KINDS))


SMALL_WL = rl.Workload(batch_size=2, prompt_tokens=64, output_tokens=8)
SPEC_DOCS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "model_specs").glob("*.yaml"))
             if p.stem in ("llama-3.1-8b", "mixtral-8x7b", "deepseek-v3", "gemma-2-9b", "gpt-oss-20b", "falcon-7b")}
HW_DOCS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "hardware_profiles").glob("*.yaml"))
           if p.stem in ("h100-sxm", "a100-sxm-80gb", "mi300x", "l4")}
HF_DOCS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "hf_configs").glob("*.json"))
           if p.stem in ("llama-3.1-8b", "deepseek-v3", "qwen3-30b-a3b", "gemma-2-9b", "falcon-7b", "gpt-oss-20b",
                         "mixtral-8x7b", "qwen2.5-7b")}
SCENARIO_DOC = yaml.safe_load((ROOT / "roofline" / "scenarios" / "default.yaml").read_text())


def _calibration_doc() -> dict:
    hw = rl.load_hardware("h100-sxm")
    e, bw, bf16 = hw.efficiency, hw.memory_bandwidth_bytes_per_s, hw.peak_flops_per_s["bf16"]
    return {
        "schema_version": 1, "id": "h100-fuzz",
        "provenance": {"device_name": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "base_profile": "h100-sxm",
                       "profile_match": True, "torch_version": "2.13.0", "date": "2026-05-10T12:00:00+00:00",
                       "command": "roofline calibrate", "clocks_hz": {"sm": 1.98e9}},
        "memory": {"x_unit": "bytes", "latency_s": 2e-6, "rate_per_s": bw * 0.85, "peak_per_s": bw,
                   "points_x": [1e6, 1e9], "points_s": [1e-5, 4e-4]},
        "gemm": {"bf16": {"dtype": "bf16", "peak_per_s": bf16, "m_tokens": [1, 8192], "nk_elements": [1e6, 1e9],
                          "fraction": [[0.3, 0.5], [0.6, 0.8]]}},
        "attention_decode": {"x_unit": "bytes", "latency_s": 3e-6, "rate_per_s": bw * 0.7, "peak_per_s": bw,
                             "points_x": [1e6, 1e9], "points_s": [1e-5, 5e-4]},
        "kernel_overhead_s": e.kernel_overhead_s, "interconnect_fraction": 0.8,
    }


CAL_DOC = _calibration_doc()


# ------------------------------------------------------------ surface: model spec YAML
@FUZZ
@given(case=_doc_cases(SPEC_DOCS))
def test_spec_yaml_mutations(files, case):
    (name, path), kind = case
    p = files.write(_yaml(mutate(SPEC_DOCS[name], path, kind)), ".yaml")

    def run():
        m = rl.load_model(p)
        assert m.param_count > 0
        finite_prediction(rl.predict(m, "h100-sxm", SMALL_WL))
    expect(run, names_for(path, kind, p.name), "model spec YAML")


# ------------------------------------------------------------ surface: hardware YAML
@FUZZ
@given(case=_doc_cases(HW_DOCS))
def test_hardware_yaml_mutations(files, case):
    (name, path), kind = case
    p = files.write(_yaml(mutate(HW_DOCS[name], path, kind)), ".yaml")

    def run():
        hw = rl.load_hardware(p)
        finite_prediction(rl.predict("llama-3.2-1b", hw, SMALL_WL))
        finite_prediction(rl.predict_fitting("llama-3.1-8b", hw, SMALL_WL))
    expect(run, names_for(path, kind, p.name), "hardware YAML")


# ------------------------------------------------------------ surface: HF config.json
@FUZZ
@given(case=_doc_cases(HF_DOCS))
def test_hf_config_mutations(files, case):
    (name, path), kind = case
    p = files.write(json.dumps(mutate(HF_DOCS[name], path, kind), allow_nan=True).encode(), ".json")

    def run():
        spec = from_hf_config(p)
        assert spec.param_count > 0
        finite_prediction(rl.predict(spec, "h100-sxm", SMALL_WL))
    expect(run, names_for(path, kind, p.name), "HF config.json")


# non-core keys where a number, a list or a boolean belongs (issue 14, items 5 and 6)
HF_NON_CORE = [
    ("qwen3-30b-a3b", {"decoder_sparse_step": 0}), ("qwen3-30b-a3b", {"decoder_sparse_step": "2"}),
    ("qwen3-30b-a3b", {"mlp_only_layers": 5}), ("qwen3-30b-a3b", {"mlp_only_layers": ["1"]}),
    ("deepseek-v3", {"moe_layer_freq": 0}), ("deepseek-v3", {"first_k_dense_replace": "3"}),
    ("deepseek-v3", {"qk_rope_head_dim": "64"}), ("deepseek-v3", {"n_shared_experts": 1.5}),
    ("mistral-7b-v0.1", {"sliding_window": "4096"}), ("gemma-2-9b", {"layer_types": 5}),
    ("gemma-2-9b", {"layer_types": [1] * 42}), ("llama-3.1-8b", {"model_type": ["llama"]}),
    ("llama-3.1-8b", {"tie_word_embeddings": "false"}), ("llama-3.1-8b", {"tie_word_embeddings": "true"}),
    ("llama-3.1-8b", {"tie_word_embeddings": 0}), ("llama-3.1-8b", {"num_hidden_layers": 1_000_000_000}),
    ("llama-3.1-8b", {"num_hidden_layers": 1e9}), ("llama-3.1-8b", {"hidden_size": 1e40}),
    ("llama-3.1-8b", {"vocab_size": 10**40}), ("llama-3.1-8b", {"torch_dtype": ["bfloat16"]}),
    ("llama-3.1-8b", {"hidden_act": 3}), ("llama-3.1-8b", {"attention_bias": "false"}),
    ("qwen2.5-7b", {"use_sliding_window": "true"}), ("qwen2.5-7b", {"max_window_layers": "28", "use_sliding_window": True}),
    ("falcon-7b", {"multi_query": "false"}), ("falcon-7b", {"parallel_attn": 1}),
    ("deepseek-v3", {"num_nextn_predict_layers": "1"}), ("gpt-oss-20b", {"quantization_config": "mxfp4"}),
    ("llama-3.1-8b", {"head_dim": 0}), ("llama-3.1-8b", {"rope_scaling": {"a": _nested(40)}}),
]


@pytest.mark.parametrize("name, patch", HF_NON_CORE, ids=[f"{n}-{next(iter(p))}-{i}" for i, (n, p) in enumerate(HF_NON_CORE)])
def test_hf_non_core_keys_are_errors_naming_the_key(name, patch):
    """A string, zero, list or number where the config's schema has another type: an error naming the key."""
    cfg = json.loads((ROOT / "tests" / "hf_configs" / f"{name}.json").read_text()) | patch
    assert expect(lambda: from_hf_config(cfg), [next(iter(patch))], "HF config.json") is None, f"{patch} was accepted"


# ------------------------------------------------------------ surface: scenario YAML
@FUZZ
@given(case=_doc_cases({"default": SCENARIO_DOC}))
def test_scenario_yaml_mutations(files, case):
    (_, path), kind = case
    p = files.write(_yaml(mutate(SCENARIO_DOC, path, kind)), ".yaml")

    def run():
        s = Scenario.from_yaml(p)
        assert s.requests_per_s > 0 and math.isfinite(s.requests_per_s)
        for f in ("ttft_slo_s", "tpot_slo_s"):
            assert getattr(s, f) is None or math.isfinite(getattr(s, f))
        for m in s.models:
            rl.load_model(m)
        for h in s.hardware:
            rl.load_hardware(h)
    expect(run, names_for(path, kind, p.name) + ["model", "hardware"], "scenario YAML")


# ------------------------------------------------------------ surface: calibration JSON
@FUZZ
@given(case=_doc_cases({"cal": CAL_DOC}))
def test_calibration_json_mutations(files, case):
    (_, path), kind = case
    p = files.write(json.dumps(mutate(CAL_DOC, path, kind), allow_nan=True).encode(), ".json")

    def run():
        hw = rl.load_hardware("h100-sxm", calibration=p)
        finite_prediction(rl.predict("llama-3.2-1b", hw, SMALL_WL))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("warnings.warn", lambda *a, **k: None)
        expect(run, names_for(path, kind, p.name) + ["calibration"], "calibration JSON")


# measured all-reduce points (`Calibration.allreduce_points`, `nccl_allreduce_points`): the mutations above and those
# only a list of points has (sizes out of order or repeated, one point too few), predicted at tp 2 and 4, whose
# all-reduces fall inside the points, and under sglang-0.4.0, which joins the two tables at its 8 MiB custom-kernel limit
def _points(x, t, peak):
    return {"message_bytes": x, "time_s": t, "peak_per_s": peak}


CAL_AR_DOC = CAL_DOC | {
    "allreduce_points": {"source": "hand", "groups": {
        "2": _points([1e3, 1e6, 1e8], [5e-6, 1e-5, 3e-4], 9e11), "4": _points([1e3, 1e6, 1e8], [6e-6, 1.2e-5, 4e-4], 6e11)}},
    "nccl_allreduce_points": {"source": "hand", "groups": {
        "2": _points([1e3, 1e6, 1e8], [1e-5, 2e-5, 4e-4], 9e11), "4": _points([1e3, 1e6, 1e8], [1.2e-5, 2.4e-5, 5e-4], 6e11)}},
}
POINT_KINDS = ("reversed", "repeated", "one_fewer", "swapped")


def mutate_points(doc: dict, path: tuple, kind: str) -> dict:
    """A list-only mutation of the list at `path`: reversed, its first value repeated, its last dropped, its first two
    swapped; other kinds as `mutate`."""
    if kind not in POINT_KINDS:
        return mutate(doc, path, kind)
    doc = copy.deepcopy(doc)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    values = parent[path[-1]]
    if isinstance(values, list) and len(values) >= 2:
        parent[path[-1]] = {"reversed": values[::-1], "repeated": [values[0], *values],
                            "one_fewer": values[:-1], "swapped": [values[1], values[0], *values[2:]]}[kind]
    return doc


POINT_PATHS = [p for p in _paths(CAL_AR_DOC) if p[0] in ("allreduce_points", "nccl_allreduce_points")]


@examples(80)
@given(path=st.sampled_from(POINT_PATHS), kind=st.sampled_from(KINDS + POINT_KINDS))
def test_calibration_allreduce_points_mutations(files, path, kind):
    p = files.write(json.dumps(mutate_points(CAL_AR_DOC, path, kind), allow_nan=True).encode(), ".json")
    wl = rl.Workload(batch_size=4, prompt_tokens=256, output_tokens=8)  # all-reduces of 4 x 256 x 2048 x 2 B = 4 MiB down to 16 KiB

    def run():
        hw = rl.load_hardware("h100-sxm", calibration=p)
        for dep in (rl.Deployment(tp=2), rl.Deployment(tp=4), rl.Deployment(tp=2, engine="sglang-0.4.0")):
            finite_prediction(rl.predict("llama-3.2-1b", hw, wl, dep))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("warnings.warn", lambda *a, **k: None)
        expect(run, names_for(path, kind, p.name) + ["custom_allreduce_max_bytes"], "calibration JSON")


def test_the_points_document_itself_loads_and_predicts(files):
    """The unmutated document is valid, so each mutation above is what an error answers."""
    hw = rl.load_hardware("h100-sxm", calibration=files.write(json.dumps(CAL_AR_DOC).encode(), ".json"))
    assert set(hw.calibration.allreduce_points.groups) == set(hw.calibration.nccl_allreduce_points.groups) == {"2", "4"}
    for dep in (rl.Deployment(tp=2), rl.Deployment(tp=4), rl.Deployment(tp=2, engine="sglang-0.4.0")):
        finite_prediction(rl.predict("llama-3.2-1b", hw, SMALL_WL, dep))


def test_a_boolean_among_the_points_is_an_error_naming_it(files):
    doc = copy.deepcopy(CAL_AR_DOC)
    doc["allreduce_points"]["groups"]["2"]["time_s"][2] = True
    p = files.write(json.dumps(doc).encode(), ".json")
    with pytest.raises(SpecError, match=r"allreduce_points\.groups\.2: time_s: expected a number, got \[.*True\]"):
        rl.load_hardware("h100-sxm", calibration=p)


# ------------------------------------------------------------ surface: engine profile YAML (a variant: extends:)
ENGINE_DIR = ROOT / "hardware_profiles" / "engines"
VARIANT_DOC = yaml.safe_load((ENGINE_DIR / "sglang-0.4.0.yaml").read_text())
H200 = rl.load_hardware("h200")  # loaded before any case points the registry at its own folder


def _engine_folder(root: Path, doc) -> None:
    """`root/engines/`: the shipped profiles, and `mine.yaml` holding `doc` (a variant of sglang, as sglang-0.4.0)."""
    (root / "engines").mkdir(parents=True)
    for f in ENGINE_DIR.glob("*.yaml"):
        (root / "engines" / f.name).write_bytes(f.read_bytes())
    (root / "engines" / "mine.yaml").write_bytes(_yaml(doc))


@FUZZ
@given(case=_doc_cases({"sglang-0.4.0": VARIANT_DOC}))
def test_engine_variant_yaml_mutations(files, case):
    """A variant profile mutated (its extends: key included): loaded through `registry.load_profile` as `load_engine`
    does, then its all-reduce limit joined to the H200's measured tables. Deleting extends: leaves a base missing the
    fields it inherited, an error naming one of them and the file."""
    from roofline import registry
    from roofline.engines import EngineProfile, with_custom_allreduce_limit

    (_, path), kind = case
    root = files.root / f"engines{next(files.n)}"
    _engine_folder(root, mutate(VARIANT_DOC, path, kind))

    def run():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(registry, "data_dir", lambda kind: root)
            e = registry.load_profile("engines", "mine", EngineProfile, "engine", base_field="engine_base")
        assert e.engine_base == "sglang" and e.max_num_batched_tokens >= 1
        if e.custom_allreduce_max_bytes is not None:
            g = with_custom_allreduce_limit(H200, e.custom_allreduce_max_bytes).calibration.allreduce_points.groups["8"]
            times = g.time_at_s(np.array([1e3, e.custom_allreduce_max_bytes, 2**30]))
            assert np.isfinite(times).all() and (times > 0).all(), times
    names = names_for(path, kind, "mine.yaml") + (["engines/mine.yaml: "] if path == ("extends",) and kind == "delete" else [])
    expect(run, names + ["custom_allreduce_max_bytes"], "engine profile YAML")


# ------------------------------------------------------------ every file surface: encodings and syntax
FILE_SURFACES = {
    "model spec YAML": (lambda p: rl.load_model(p), (ROOT / "model_specs" / "llama-3.1-8b.yaml").read_text(), ".yaml"),
    "hardware YAML": (lambda p: rl.load_hardware(p), (ROOT / "hardware_profiles" / "h100-sxm.yaml").read_text(), ".yaml"),
    "HF config.json": (from_hf_config, (ROOT / "tests" / "hf_configs" / "llama-3.1-8b.json").read_text(), ".json"),
    "scenario YAML": (Scenario.from_yaml, (ROOT / "roofline" / "scenarios" / "default.yaml").read_text(), ".yaml"),
    "calibration JSON": (lambda p: rl.load_hardware("h100-sxm", calibration=p), json.dumps(CAL_DOC), ".json"),
}


@pytest.mark.parametrize("surface", list(FILE_SURFACES))
@pytest.mark.parametrize("how", ENCODINGS)
def test_file_encodings_and_syntax(files, surface, how):
    load, text, suffix = FILE_SURFACES[surface]
    p = files.write(encoded(text, how, suffix[1:]), suffix)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("warnings.warn", lambda *a, **k: None)
        result = expect(lambda: load(p), [p.name], surface)
    assert (result is not None) == (how == "utf-8-sig"), f"{how}: {result!r}"


# ------------------------------------------------------------ surface: the CLI, in process
NASTY = ("", " ", "0", "-1", "nan", "inf", "-inf", "1e9", "1e400", "9" * 400, "abc", "\u00b2", "1.5", "3", "16", ",",
         "1,2", "/nonexistent/spec.yaml", "x\x00y", "1e-300")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def check_cli(argv: list[str]) -> None:
    COUNTS["CLI"] += 1
    with time_limit():
        rc, out, err = run_cli(argv)
    assert "Traceback" not in out + err, err
    if rc == 0:
        assert not re.search(r"\bnan\b|\binf\b", out, re.I), out
        assert not re.search(r"\b0 replicas\b|\b0 GPUs\b|\b1 replicas\b", out), out
        return
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and "error:" in lines[-1], err
    assert sum("error:" in ln for ln in lines) == 1, err


def _slot(good: list[str]):
    return st.sampled_from(good + list(NASTY))


@examples(70)
@given(model=_slot(["llama-3.2-1b", "llama-3.1-8b", "deepseek-v3"]), hw=_slot(["h100-sxm", "l4", "h100-sxm,h200"]),
       batch=_slot(["1", "8", "256"]), prompt=_slot(["16", "1024"]), output=_slot(["1", "8"]), tp=_slot(["1", "2", "auto"]),
       wdtype=st.sampled_from([None, "int4", "fp8", "nf4", "bogus", "", "tf32"]))
def test_cli_predict(model, hw, batch, prompt, output, tp, wdtype):
    argv = ["predict", "--model", model, "--hardware", hw, "--batch-size", batch, "--prompt-tokens", prompt,
            "--output-tokens", output, "--tp", tp]
    check_cli(argv + ([] if wdtype is None else ["--weight-dtype", wdtype]))


@examples(50)
@given(rate=_slot(["10", "1e-9", "0.5"]), prompt=_slot(["512", "uniform:100:200", "uniform:inf:inf", "lognormal:512:0.5"]),
       ttft=_slot(["2", "1e-6"]), tpot=_slot(["0.05"]), tp=st.sampled_from([None, "3", "16", "1,2", "0", "x", "1e9"]),
       chunk=st.sampled_from([None, "512", "1e9", "1000000000", "0", "nan"]),
       cap=st.sampled_from([None, "64", "0", "9" * 400]), hw=st.sampled_from(["h100-sxm", "l4", "h100-sxm,h100-sxm", ""]))
def test_cli_plan(rate, prompt, ttft, tpot, tp, chunk, cap, hw):
    argv = ["plan", "--model", "llama-3.2-1b", "--hardware", hw, "--requests-per-s", rate, "--prompt-tokens", prompt,
            "--output-tokens", "64", "--ttft-slo-s", ttft, "--tpot-slo-s", tpot]
    for flag, v in (("--tp", tp), ("--chunk-tokens", chunk), ("--max-batch-size", cap)):
        if v is not None:
            argv += [flag, v]
    check_cli(argv)


VARIANTS = ("int4:weight_dtype=int4", "x:tp=3", "x:pp=1000", "x:network=bogus", "x:speculative.draft=llama-3.1-70b",
            "x:bogus=1", "x", "x:tp=", "x:keep_layers=nan", "x:keep_layers=2", "x:tokens_per_text=inf", "fp8:weight_dtype=fp8,activation_dtype=fp8",
            "x:kv_dtype=int4", ":tp=1", "baseline:tp=1", "x:sliding_window=0")


@examples(40)
@given(variants=st.lists(st.sampled_from(VARIANTS), min_size=1, max_size=3), batch=_slot(["1", "4"]),
       hw=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "nope"]))
def test_cli_compare(variants, batch, hw):
    argv = ["compare", "--model", "llama-3.2-1b", "--hardware", hw, "--batch-size", batch, "--prompt-tokens", "128",
            "--output-tokens", "16"]
    for v in variants:
        argv += ["--variant", v]
    check_cli(argv)


@examples(20)
@given(rate=_slot(["5"]), adtype=st.sampled_from([None, "fp8", "int4", "bogus"]), serving=st.sampled_from([None, "static", "bogus"]),
       slo=st.sampled_from([None, "1e-6", "-1", "nan"]))
def test_cli_report(tmp_path_factory, rate, adtype, serving, slo):
    out = tmp_path_factory.mktemp("report")
    argv = ["report", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--requests-per-s", rate, "--prompt-tokens", "256",
            "--output-tokens", "32", "--out", str(out), "--no-progress"]
    for flag, v in (("--activation-dtype", adtype), ("--serving", serving), ("--tpot-slo-s", slo)):
        if v is not None:
            argv += [flag, v]
    check_cli(argv)


@examples(50)
@given(command=st.sampled_from(["predict", "serve"]), model=st.sampled_from(["qwen3-30b-a3b", "llama-3.2-1b", "deepseek-v3"]),
       tp=_slot(["2", "4", "8", "auto"]), ep=st.sampled_from([None, "1", "2", "0", "x"]), pp=st.sampled_from([None, "1", "2"]),
       engine=st.sampled_from([None, "sglang", "sglang-0.4.0", "none", "bogus", "vllm-v0-mla"]))
def test_cli_attention_dp(command, model, tp, ep, pp, engine):
    """--attention-dp on predict and serve with any tp / ep / pp / engine: a result, or one error line (exit 2)."""
    argv = [command, "--model", model, "--hardware", "h200", "--attention-dp", "--tp", tp, "--prompt-tokens", "256",
            "--output-tokens", "16"]
    argv += ["--requests-per-s", "2"] if command == "serve" else ["--batch-size", "3"]
    for flag, v in (("--ep", ep), ("--pp", pp), ("--engine", engine)):
        if v is not None:
            argv += [flag, v]
    check_cli(argv)


@examples(30)
@given(layouts=st.sampled_from(["both", "on", "off", "yes", "", "ON"]), model=st.sampled_from(["qwen3-30b-a3b", "llama-3.2-1b"]),
       tp=st.sampled_from([None, "1", "2,4", "3", "x"]), ep=st.sampled_from([None, "1", "2,4", "3"]))
def test_cli_plan_attention_dp(layouts, model, tp, ep):
    """plan --attention-dp both|on|off (anything else: argparse's one error line), with the degrees to try."""
    argv = ["plan", "--model", model, "--hardware", "h200", "--requests-per-s", "2", "--prompt-tokens", "256",
            "--output-tokens", "16", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05", "--precision", "native",
            "--attention-dp", layouts]
    for flag, v in (("--tp", tp), ("--ep", ep)):
        if v is not None:
            argv += [flag, v]
    check_cli(argv)


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "", "--hardware", "h100-sxm"], ["predict", "--model", "llama-3.1-8b", "--hardware", ""],
    ["predict", "--model", "missing/spec.yaml", "--hardware", "h100-sxm"],
    ["predict", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "9" * 400],
    ["predict", "--model", "deepseek-v3", "--hardware", "h200", "--tp", "8", "--prompt-tokens", "1"],
    ["plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--requests-per-s", "1e-8", "--prompt-tokens", "512",
     "--output-tokens", "64", "--ttft-slo-s", "2", "--tpot-slo-s", "0.05"],
    ["validate", "--reps", "-1", "--quick"], ["calibrate", "--out", __file__, "--quick"],
    ["models"], ["hardware"],
])
def test_cli_named_cases(argv):
    check_cli(argv)


# ------------------------------------------------------------ surface: the Python API
API_VALUES = (0, -1, 1.5, math.nan, math.inf, 10**30, "8", None, True, [8], "h100-sxm")


@examples(30)
@given(field=st.sampled_from(["batch_size", "prompt_tokens", "output_tokens"]), value=st.sampled_from(API_VALUES))
def test_api_workload(field, value):
    def run():
        wl = rl.Workload(**{"batch_size": 1, "prompt_tokens": 64, "output_tokens": 8, field: value})
        finite_prediction(rl.predict("llama-3.2-1b", "h100-sxm", wl))
    expect(run, [field], "Python API")


@examples(50)
@given(field=st.sampled_from(["tp", "pp", "ep", "weight_group_size", "runtime_reserve_bytes", "prefix_hit_rate",
                              "sparsity_fraction", "kv_block_tokens", "weight_offload_fraction", "weight_dtype", "kv_dtype"]),
       value=st.sampled_from(API_VALUES + ("int4", "fp8", "bogus")))
def test_api_deployment(field, value):
    def run():
        dep = rl.Deployment(**{field: value})
        finite_prediction(rl.predict("llama-3.2-1b", "h100-sxm", SMALL_WL, dep))
    expect(run, [field, "prefix_tokens", "activation_dtype", "tp", "ep"], "Python API")


@examples(40)
@given(model=st.sampled_from(["llama-3.2-1b", "deepseek-v3", "", "nope", 5, None]),
       hw=st.sampled_from(["h100-sxm", "h200", "", 3.5, ["h100-sxm"]]),
       prompts=st.lists(st.integers(min_value=-2, max_value=4096), min_size=1, max_size=3),
       batch=st.sampled_from([1, [1, 4], 0, 10**30, [True]]))
def test_api_sweep(model, hw, prompts, batch):
    def run():
        df = rl.sweep(model, hw, batch_size=batch, prompt_tokens=prompts, output_tokens=4, tp=1)
        num = df.select_dtypes("number")
        assert num.notna().all().all() or not df["fits"].all()
    COUNTS["Python API"] += 0
    try:
        expect(run, ["model", "hardware", "prompt_tokens", "batch_size"], "Python API")
    except TypeError as exc:  # a wrong type is a TypeError naming the argument
        assert str(exc).split(":")[0] in ("model", "hardware"), exc


@examples(12)
@given(rate=st.sampled_from([1e-12, 1e-8, 0.3, 50.0, 1e6]), prompt=st.sampled_from([1, 64, "uniform:1:4000", 10**6]),
       tpot=st.sampled_from([1e-6, 0.05, 10.0]), hw=st.sampled_from(["h100-sxm", "l4", ("h100-sxm", "l4")]))
def test_api_plan_never_a_zero_gpu_fleet(rate, prompt, tpot, hw):
    def run():
        df = rl.plan("llama-3.2-1b", rate, prompt, 32, 5.0, tpot, hardware=hw, tps=[1, 2], pps=[1])
        ok = df[df["feasible"]]
        assert (ok["replicas"] >= 1).all() and (ok["gpus"] >= 1).all() and (ok["usd_per_hour"] > 0).all(), ok
        assert ok["usd_per_million_output_tokens"].map(math.isfinite).all()
        assert df["reason"].where(~df["feasible"], "x").astype(bool).all()  # every infeasible row says why
    expect(run, ["prompt_tokens", "requests_per_s"], "Python API")


def test_api_predict_takes_ids_or_raises_a_clear_type_error():
    p = rl.predict(rl.load_model("llama-3.2-1b"), "h100-sxm", SMALL_WL)
    assert p.model_dump() == rl.predict("llama-3.2-1b", rl.load_hardware("h100-sxm"), SMALL_WL).model_dump()
    with pytest.raises(TypeError, match="^hardware: expected a HardwareProfile"):
        rl.predict("llama-3.2-1b", 42, SMALL_WL)
    with pytest.raises(TypeError, match="^workload: expected a roofline.Workload"):
        rl.predict("llama-3.2-1b", "h100-sxm", {"batch_size": 1})
    COUNTS["Python API"] += 3


# ------------------------------------------------------------ surface: the dashboard (AppTest)
DASHBOARD_QUERIES = [
    {"tp": "16", "model": "llama-3.1-70b", "hw": "h100-sxm"},  # wider than a node: no sweep, said so (was a KeyError)
    {"model": "deepseek-v3", "hw": "h200", "tp": "8", "batch": "1"},  # MLA sweep over prompts (was a ValueError)
    {"tp": "\u00b2", "batch": "1e9", "prompt": "999999999", "output": "-1", "gs": "\u0661"},  # URL values refused with warnings
    {"tp": "0", "hw": "h100-sxm,h100-sxm,bogus"}, {"tp": "9" * 40}, {"tp": "3"},
    {"wdtype": "int4", "adtype": "fp8"}, {"adtype": "fp8", "hw": "a100-sxm-80gb", "tp": "1"},
]
SIDEBAR_TP = ["\u00b2", "-2", "1e3", " 4 ", "99999999999999999999"]
DASHBOARD_CONFIGS = [
    '{"model_type": "llama", "num_hidden_layers": 1e9, "hidden_size": 4096, "num_attention_heads": 32, '
    '"intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192}',
    '{"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 1e40, "num_attention_heads": 32, '
    '"intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192}',
    '{"model_type": "llama", "num_hidden_layers": "32", "hidden_size": 4096}', '[1, 2]', '{"model_type": ["llama"]}',
    '{' * 5000, 'NaN', json.dumps(HF_DOCS["llama-3.1-8b"] | {"tie_word_embeddings": "false"}),
]


@pytest.fixture(scope="module")
def app_test():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    def make(query=None, state=None):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        for k, v in (state or {}).items():
            at.session_state[k] = v
        return at.run()
    return make


def _dashboard_ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    for e in [*at.error, *at.warning]:
        assert "\n" not in e.value.strip() and "Traceback" not in e.value, e.value
        assert "not supported between" not in e.value and "object has no attribute" not in e.value, e.value
    shown = " ".join(m.value for m in at.metric)
    assert not re.search(r"\bnan\b|\binf\b", shown, re.I), shown


@pytest.mark.parametrize("query", DASHBOARD_QUERIES, ids=[",".join(f"{k}={v[:8]}" for k, v in q.items()) for q in DASHBOARD_QUERIES])
def test_dashboard_queries(app_test, query):
    COUNTS["dashboard (AppTest)"] += 1
    _dashboard_ok(app_test(query))


def test_dashboard_sidebar_tp_text(app_test):
    at = app_test({"tp": "3", "model": "llama-3.2-1b"})  # an error path: fast reruns
    for text in SIDEBAR_TP:
        COUNTS["dashboard (AppTest)"] += 1
        at.text_input(key="tp").input(text).run()
        _dashboard_ok(at)
        assert [e.value for e in at.error] == [f"tp: expected a positive integer or auto, got {text!r}"] or text == " 4 ", text


@pytest.mark.parametrize("config", DASHBOARD_CONFIGS, ids=range(len(DASHBOARD_CONFIGS)))
def test_dashboard_pasted_configs(app_test, config):
    COUNTS["dashboard (AppTest)"] += 1
    at = app_test(state={"hf_text": config})
    _dashboard_ok(at)
    (err,) = at.error  # a broken config.json is one error line naming the key (or the document)
    assert err.value.startswith("config.json"), err.value


# ------------------------------------------------------------ the tally
def test_counts():
    """At least 300 generated cases in all (run with -s to see the tally per surface)."""
    print("\nfuzz cases per surface:", dict(sorted(COUNTS.items())), "total", sum(COUNTS.values()))
    if len(COUNTS) == 9:  # the whole module ran
        assert sum(COUNTS.values()) >= 300, COUNTS
