"""`extends:` in engine profiles: a variant names its base and holds only what differs (`registry.overlay`,
`registry.profile_mapping`, `EngineProfile.engine_base`).

The values here are written by hand; the shipped variants are checked against every engine profile as main 0cbb7ed
resolved it (tests/data/engine_profiles_0cbb7ed.json, `load_engine(id).model_dump()` before the variants were rewritten).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from roofline import registry
from roofline.cli import engines as engines_cli
from roofline.engines import EngineProfile, list_engines, load_engine
from roofline.errors import SpecError
from roofline.registry import overlay, profile_mapping

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "hardware_profiles" / "engines"
FROZEN = json.loads((ROOT / "tests" / "data" / "engine_profiles_0cbb7ed.json").read_text())


# ------------------------------------------------------------ overlay: the merge rule, by hand
def test_overlay_merges_nested_mappings_key_by_key():
    base = {"a": 1, "m": {"x": 1, "y": 2, "deep": {"p": 1, "q": 2}}, "sources": {"a": "A's source", "b": "B's source"}}
    variant = {"m": {"y": 3, "deep": {"q": 4}, "z": 5}, "sources": {"b": "the variant's B", "c": "C's source"}}
    assert overlay(base, variant) == {
        "a": 1,                                                    # only the base has it: kept
        "m": {"x": 1, "y": 3, "deep": {"p": 1, "q": 4}, "z": 5},   # merged at every depth; the variant's key added
        "sources": {"a": "A's source", "b": "the variant's B", "c": "C's source"},  # sources merge like any mapping
    }


def test_overlay_replaces_lists_scalars_and_null_whole():
    base = {"dims": [128, 256], "n": 2048, "limits": {"seqs": 1024, "tokens": 8192}, "kernel": None, "flag": True}
    variant = {"dims": [64], "n": 256, "limits": None, "kernel": {"dims": []}, "flag": False}
    # [64] is not [64, 256]: a list is one value; null drops the base's mapping; a mapping replaces a null
    assert overlay(base, variant) == {"dims": [64], "n": 256, "limits": None, "kernel": {"dims": []}, "flag": False}
    # an empty list replaces a full one (trtllm-cpp-0.5's head_dims: [] over a base without the key is the same rule)
    assert overlay({"k": {"dims": [128]}}, {"k": {"dims": []}}) == {"k": {"dims": []}}
    # a scalar replaces a mapping, and a mapping a scalar
    assert overlay({"k": {"x": 1}}, {"k": 7}) == {"k": 7}
    assert overlay({"k": 7}, {"k": {"x": 1}}) == {"k": {"x": 1}}


def test_overlay_drops_the_extends_key_and_changes_neither_input():
    base = {"a": 1, "m": {"x": 1}}
    variant = {"extends": "base", "m": {"x": 2}}
    before = (json.dumps(base), json.dumps(variant))
    assert overlay(base, variant) == {"a": 1, "m": {"x": 2}}
    assert (json.dumps(base), json.dumps(variant)) == before
    assert overlay(base, {}) == base and overlay(base, {}) is not base
    assert overlay({}, variant) == {"m": {"x": 2}}


# ------------------------------------------------------------ profile_mapping over a folder of hand-written files
def _folder(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """A profile folder `tmp_path/engines/` holding `files` (id -> YAML), read as the shipped one."""
    (tmp_path / "engines").mkdir()
    for name, text in files.items():
        (tmp_path / "engines" / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(registry, "data_dir", lambda kind: tmp_path)


def test_a_chain_of_two_resolves_from_the_root(tmp_path, monkeypatch):
    # c extends b, b extends a: a's figures, b's over them, c's over both; each file's sources travel with its figures
    _folder(tmp_path, monkeypatch, {
        "a": "n: 1\nm: 10\nk: 100\nsources: {n: from a, m: from a, k: from a}\n",
        "b": "extends: a\nm: 20\nsources: {m: from b}\n",
        "c": "extends: b\nk: 300\nlist: [1, 2]\nsources: {k: from c}\n",
    })
    assert profile_mapping("engines", "a", "engine") == {"n": 1, "m": 10, "k": 100,
                                                          "sources": {"n": "from a", "m": "from a", "k": "from a"}}
    assert profile_mapping("engines", "b", "engine") == {"n": 1, "m": 20, "k": 100,
                                                          "sources": {"n": "from a", "m": "from b", "k": "from a"}}
    assert profile_mapping("engines", "c", "engine") == {"n": 1, "m": 20, "k": 300, "list": [1, 2],
                                                          "sources": {"n": "from a", "m": "from b", "k": "from c"}}


def test_a_chain_of_two_engine_profiles_loads_with_its_base_id(tmp_path, monkeypatch):
    # the shipped trtllm-cpp as the root; mid: 64-sequence graphs; leaf: 128 sequences at most, on top of mid
    cpp = (ENGINES / "trtllm-cpp.yaml").read_text()
    _folder(tmp_path, monkeypatch, {
        "trtllm-cpp": cpp,
        "mid": 'extends: trtllm-cpp\nname: mid\ncuda_graph_max_batch: 64\nsources: {cuda_graph_max_batch: "a test figure"}\n',
        "leaf": 'extends: mid\nname: leaf\nmax_num_seqs: 128\nsources: {max_num_seqs: "another test figure"}\n',
    })
    load = lambda i: registry.load_profile("engines", i, EngineProfile, "engine", base_field="engine_base")  # noqa: E731
    root, mid, leaf = load("trtllm-cpp"), load("mid"), load("leaf")
    assert (root.engine_base, mid.engine_base, leaf.engine_base) == (None, "trtllm-cpp", "mid")  # the direct base
    assert (root.cuda_graph_max_batch, mid.cuda_graph_max_batch, leaf.cuda_graph_max_batch) == (0, 64, 64)
    assert (root.max_num_seqs, mid.max_num_seqs, leaf.max_num_seqs) == (2048, 2048, 128)
    assert leaf.sources["cuda_graph_max_batch"] == "a test figure" and leaf.sources["max_num_seqs"] == "another test figure"
    assert leaf.sources["step_overhead_s"] == root.sources["step_overhead_s"]
    skip = {"name", "cuda_graph_max_batch", "max_num_seqs", "sources", "engine_base"}
    assert leaf.model_dump(exclude=skip) == root.model_dump(exclude=skip)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("files, load, message", [
    ({"a": "extends: zz\nn: 1\n", "b": "n: 2\n"}, "a",
     "engines/a.yaml: extends: unknown engine 'zz'; choose one of a, b"),
    ({"a": "extends: bb\nn: 1\n", "b": "n: 2\n"}, "a",  # a near miss is suggested
     "engines/a.yaml: extends: unknown engine 'bb'; did you mean 'b'? choose one of a, b"),
    ({"a": "extends: a\nn: 1\n", "b": "n: 2\n"}, "a",
     "engines/a.yaml: extends: names the profile itself; extend another of a, b or remove the key"),
    ({"a": "extends: b\n", "b": "extends: a\n"}, "a",  # a -> b -> a, found at b
     "engines/b.yaml: extends: makes a cycle a -> b -> a; one profile of it must be a base, with no extends: key"),
    ({"a": "extends: b\n", "b": "extends: c\n", "c": "extends: b\n"}, "a",  # a -> b -> c -> b: the loop is b, c
     "engines/c.yaml: extends: makes a cycle b -> c -> b; one profile of it must be a base, with no extends: key"),
    ({"a": "extends: 7\nn: 1\n", "b": "n: 2\n"}, "a",
     "engines/a.yaml: extends: should be the id of another engine profile (a string), got 7; choose one of a, b"),
    ({"a": "extends: [b]\nn: 1\n", "b": "n: 2\n"}, "a",
     "engines/a.yaml: extends: should be the id of another engine profile (a string), got ['b']; choose one of a, b"),
    ({"a": "extends:\nn: 1\n", "b": "n: 2\n"}, "a",  # an empty value is null, not "no base"
     "engines/a.yaml: extends: should be the id of another engine profile (a string), got None; choose one of a, b"),
    ({"a": "extends: b\n", "b": "extends: zz\n"}, "a",  # a bad link further up names its own file
     "engines/b.yaml: extends: unknown engine 'zz'; choose one of a, b"),
])
def test_a_bad_extends_is_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch, files, load, message):
    _folder(tmp_path, monkeypatch, files)
    with pytest.raises(SpecError) as err:
        profile_mapping("engines", load, "engine")
    assert _one_line(err) == message
    with pytest.raises(SpecError) as err:  # and the same through load_profile, before any validation
        registry.load_profile("engines", load, EngineProfile, "engine", base_field="engine_base")
    assert _one_line(err) == message


@pytest.mark.parametrize("written, message", [
    ("gpu_memory_fraction: true\n", "gpu_memory_fraction: expected a number, got True"),  # lax pydantic: 1.0, the whole GPU
    ("max_num_seqs: false\n", "max_num_seqs: expected a number, got False"),
    ("gpu_memory_fraction_by_tp: {2: true}\n", "gpu_memory_fraction_by_tp: expected a number, got {2: True}"),
    ("custom_allreduce_max_bytes: true\n", "custom_allreduce_max_bytes: expected a number, got True"),
    ("large_gpu: {max_num_seqs: true}\n", "large_gpu: max_num_seqs: expected a number, got True"),
    ("grouped_decode_kernel: {head_dims: [true], group_sizes: [8]}\n",
     "grouped_decode_kernel: head_dims: expected a number, got [True]"),
])
def test_a_boolean_where_a_number_belongs_is_one_line_naming_it(tmp_path, monkeypatch, written, message):
    """YAML's true / false in a number's place (a variant over vllm, whose large_gpu limits it merges into): an error
    naming the field, never pydantic's 1 / 0; a boolean field still takes its booleans."""
    _folder(tmp_path, monkeypatch, {"vllm": (ENGINES / "vllm.yaml").read_text(), "mine": "extends: vllm\n" + written})
    with pytest.raises(SpecError) as err:
        registry.load_profile("engines", "mine", EngineProfile, "engine", base_field="engine_base")
    assert _one_line(err) == f"engines/mine.yaml: {message} (true / false is not a number)"
    (tmp_path / "ok").mkdir()
    _folder(tmp_path / "ok", monkeypatch, {"vllm": (ENGINES / "vllm.yaml").read_text(),
                                           "mine": "extends: vllm\nchunked_prefill: false\n"})
    assert not registry.load_profile("engines", "mine", EngineProfile, "engine", base_field="engine_base").chunked_prefill


def test_engine_base_is_set_from_extends_not_written(tmp_path, monkeypatch):
    cpp = (ENGINES / "trtllm-cpp.yaml").read_text()
    _folder(tmp_path, monkeypatch, {"trtllm-cpp": cpp, "mine": "extends: trtllm-cpp\nengine_base: vllm\n",
                                    "plain": cpp + "engine_base: trtllm\n"})
    for name in ("mine", "plain"):
        with pytest.raises(SpecError) as err:
            registry.load_profile("engines", name, EngineProfile, "engine", base_field="engine_base")
        assert _one_line(err) == (f"engines/{name}.yaml: engine_base: is set from the extends: key; remove it "
                                  "(write `extends: <id>` to vary another profile)")


def test_the_cli_reports_a_bad_extends_in_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    # `roofline engines` loads every profile: a variant that extends itself stops it with exit status 2 and one line
    from roofline.cli import main

    cpp = (ENGINES / "trtllm-cpp.yaml").read_text()
    _folder(tmp_path, monkeypatch, {"trtllm-cpp": cpp, "mine": "extends: mine\n"})
    load_engine.cache_clear()  # the shipped profiles are cached by id
    try:
        assert main(["engines"]) == 2
    finally:
        load_engine.cache_clear()
    err = capsys.readouterr().err
    assert err == ("roofline: error: engines/mine.yaml: extends: names the profile itself; extend another of mine, "
                   "trtllm-cpp or remove the key\n")


# ------------------------------------------------------------ the shipped variants
VARIANTS = {"trtllm-cpp-0.5": "trtllm-cpp", "trtllm-cpp-0.7": "trtllm-cpp", "trtllm-eager": "trtllm",
            "vllm-v0-mla": "vllm", "sglang-0.4.0": "sglang"}


def test_every_shipped_profile_names_its_base():
    assert {i: load_engine(i).engine_base for i in list_engines()} == {i: VARIANTS.get(i) for i in list_engines()}
    for variant, base in VARIANTS.items():
        assert yaml.safe_load((ENGINES / f"{variant}.yaml").read_text())["extends"] == base
        assert load_engine(base).engine_base is None  # one level: every base is a whole profile


def test_each_variant_file_holds_only_what_differs_from_its_base():
    # the top-level keys each variant writes: its identity (name, versions, notes), the figures that differ from its
    # base, and the figures its base shares but whose evidence for these versions is the variant's own (sglang-0.4.0's
    # read from the 0.4.0 wheels, vllm-v0-mla's from V0's defaults, trtllm-eager's overlap scheduler from 0.17's
    # trtllm-serve), each with its source; everything else (framework, CPU times, ...) comes from the base
    own = {"extends", "name", "versions", "sources", "notes"}
    written = {
        "trtllm-cpp-0.5": {"grouped_decode_kernel"},
        "trtllm-cpp-0.7": {"grouped_decode_kernel"},
        "trtllm-eager": {"cuda_graph_max_batch", "seqs_per_attention_rank", "overlap_scheduler"},
        "vllm-v0-mla": {"cuda_graph_max_batch", "max_num_batched_tokens", "large_gpu", "chunked_prefill",
                        "mixed_prefill_decode", "max_num_seqs", "multi_prompt_prefill", "overlap_scheduler",
                        "gpu_memory_fraction", "kv_block_tokens", "custom_allreduce_max_bytes"},
        "sglang-0.4.0": {"gpu_memory_fraction_by_tp", "admission", "cuda_graph_max_batch", "max_num_seqs",
                         "max_num_batched_tokens", "chunked_prefill", "multi_prompt_prefill", "overlap_scheduler",
                         "mixed_prefill_decode", "custom_allreduce", "gpu_memory_fraction", "memory_fraction_of",
                         "kv_block_tokens", "custom_allreduce_max_bytes"},
    }
    for variant, base_id in VARIANTS.items():
        raw = yaml.safe_load((ENGINES / f"{variant}.yaml").read_text())
        assert set(raw) == own | written[variant], variant
        e, base = load_engine(variant), load_engine(base_id)
        differs = {k for k in EngineProfile.model_fields if k not in ("name", "versions", "notes", "sources", "engine_base")
                   and getattr(e, k) != getattr(base, k)}
        assert differs <= written[variant], variant  # every figure that differs is written in the variant
        assert set(raw["sources"]) <= written[variant], variant  # a source only beside its own figure
        for k in EngineProfile.model_fields:  # every field it does not write is the base's, and so is its source
            if k not in raw and k not in ("engine_base",):
                assert getattr(e, k) == getattr(base, k), (variant, k)
        for k in set(base.sources) - set(raw["sources"]):
            assert e.sources[k] == base.sources[k], (variant, k)


# The sources that changed when the variants were rewritten: at 0cbb7ed each of these read "as `<base>` ..." (a pointer
# to the base's source), or, for trtllm-eager's request overhead, an older copy of `trtllm`'s text (the same finding,
# before trtllm's was extended); now the base's own source travels with the inherited figure. trtllm-eager gains one:
# its seqs_per_attention_rank (false, the default, against trtllm's true) was unsourced, and the base's source would
# otherwise describe trtllm's true.
INHERITED_SOURCES = {
    "trtllm-cpp-0.5": {"cuda_graph_max_batch", "custom_allreduce", "gpu_memory_fraction", "kv_block_tokens",
                       "max_num_batched_tokens", "max_num_seqs", "memory_fraction_of", "mixed_prefill_decode",
                       "multi_prompt_prefill", "overlap_scheduler", "request_overhead_s", "slot_bytes_fixed",
                       "slot_bytes_per_context_token", "slot_bytes_per_vocab_entry", "step_overhead_per_sequence_s",
                       "step_overhead_s", "tokenize_s_per_token", "windowed_kv_cache"},
    "trtllm-eager": {"request_overhead_s", "windowed_kv_cache"},
    "vllm-v0-mla": {"custom_allreduce", "memory_fraction_of", "request_overhead_s", "step_overhead_per_sequence_s",
                    "step_overhead_s", "tokenize_s_per_token"},
    "sglang-0.4.0": {"request_overhead_s", "step_overhead_s", "tokenize_s_per_token"},
}
INHERITED_SOURCES["trtllm-cpp-0.7"] = INHERITED_SOURCES["trtllm-cpp-0.5"]
ADDED_SOURCES = {"trtllm-eager": {"seqs_per_attention_rank"}}
# sources extended after 0cbb7ed with no figure moving: the base profiles' custom all-reduce now also says whose dispatch
# it times (the kernel table's release) and which variant carries the 8 MiB switch of older releases; the old text is
# kept whole at its start
EXTENDED_SOURCES = {"vllm": {"custom_allreduce"}, "sglang": {"custom_allreduce"}}
# fields EngineProfile gained after 0cbb7ed (attention data parallelism, `Deployment.attention_dp`; the custom
# all-reduce's size limit of a release older than the kernel tables): not in the frozen file; each set where listed,
# every other engine at the field's default
ADDED_FIELDS = {"attention_dp_combine": {"sglang": "all_reduce", "sglang-0.4.0": "all_reduce", None: "reduce_scatter"},
                "attention_dp_budget_divisor": {"sglang": 2, "sglang-0.4.0": 2, None: 1},
                "custom_allreduce_max_bytes": {"sglang-0.4.0": 8 * 2**20, "vllm-v0-mla": 8 * 2**20, None: None}}
# where set, the source is SGLang's (the variant inheriting it), except for these fields, which each variant sources
# from its own release (the file's own `sources:` entry)
ADDED_FIELDS_SOURCED_BY_VARIANT = {"custom_allreduce_max_bytes"}


@pytest.mark.parametrize("engine_id", list_engines())
def test_every_engine_resolves_to_its_profile_at_0cbb7ed(engine_id):
    # every figure, name, versions and notes exactly as main 0cbb7ed loaded it (JSON round trip: the frozen file's
    # tuples are lists and its dict keys strings); the sources as there, but for the pointers now resolved
    e = load_engine(engine_id)
    now, then = json.loads(json.dumps(e.model_dump(exclude={"engine_base", *ADDED_FIELDS}))), FROZEN[engine_id]
    for field, values in ADDED_FIELDS.items():
        assert getattr(e, field) == values.get(engine_id, values[None]), (engine_id, field)
        if engine_id in values:  # sourced where set: by the file itself, or the variant inherits its base's source
            own = yaml.safe_load((ENGINES / f"{engine_id}.yaml").read_text())["sources"].get(field)
            want = own if field in ADDED_FIELDS_SOURCED_BY_VARIANT else load_engine("sglang").sources[field]
            assert want and now["sources"].pop(field) == want
    assert set(FROZEN) == set(list_engines())
    assert {k: v for k, v in now.items() if k != "sources"} == {k: v for k, v in then.items() if k != "sources"}
    src_now, src_then = now["sources"], then["sources"]
    changed = {k for k in set(src_now) | set(src_then) if src_now.get(k) != src_then.get(k)}
    assert changed == INHERITED_SOURCES.get(engine_id, set()) | ADDED_SOURCES.get(engine_id, set()) | \
        EXTENDED_SOURCES.get(engine_id, set())
    for k in EXTENDED_SOURCES.get(engine_id, ()):
        assert src_now[k].startswith(src_then[k]) and "custom_allreduce_max_bytes" in src_now[k]
    for k in INHERITED_SOURCES.get(engine_id, ()):
        assert src_now[k] == load_engine(e.engine_base).sources[k]
        if (engine_id, k) == ("trtllm-eager", "request_overhead_s"):
            first = "no public kernel-level measurement of the HTTP/IPC/detokenization latency of one request; 0 used"
            assert src_then[k].startswith(first) and src_now[k].startswith(first)
        else:
            assert src_then[k].startswith("as "), (engine_id, k)


def test_roofline_engines_shows_the_base_in_a_column_and_in_json():
    out = engines_cli.run(argparse.Namespace(json=False))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "extends", "engine"]
    extends = {line.split()[0]: line.split()[1] if line.split()[1] != "(default)" else line.split()[2]
               for line in lines[2:]}
    assert extends == {i: VARIANTS.get(i, "-") for i in list_engines()}
    data = json.loads(engines_cli.run(argparse.Namespace(json=True)))
    assert {row["id"]: row["engine_base"] for row in data} == {i: VARIANTS.get(i) for i in list_engines()}


def test_a_dumped_variant_validates_back_to_itself():
    # model_dump -> model_validate keeps engine_base (it is an ordinary field once loaded)
    for variant in VARIANTS:
        e = load_engine(variant)
        assert EngineProfile.model_validate(e.model_dump()) == e
