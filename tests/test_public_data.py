"""Calibrations fitted from public kernel tables (calibrate/public.py): the fit on hand-made tables, the
amounts each curve is fitted over (as roofline.ops counts them), the CLI, the schema, and the committed files.

The default suite needs neither aiconfigurator-core nor a GPU; the round trip on the real package skips
with a reason where it is not installed (pip install roofline[public-data]).
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import pytest

import roofline as rl
from calibrate import public
from calibrate.fit import padded_gemm_flops
from calibrate.public_check import kernel_errors
from roofline import ops as O
from roofline.calibration import CalibratedCurves, load_calibration
from roofline.cli import main
from roofline.errors import SpecError

pd = pytest.importorskip("pandas")

H100 = rl.load_hardware("h100-sxm")
BF16 = H100.peak_flops_per_s["bf16"]  # 989.4e12 FLOP/s
BW = H100.memory_bandwidth_bytes_per_s  # 3.35e12 B/s
LINK = H100.interconnect.bytes_per_s_per_direction  # 450e9 B/s
AITER = {"mi300x"}  # files fitted from AMD's aiter tuner rows (calibrate/public_aiter.py, tests/test_public_aiter.py)
COMMITTED = sorted(p for p in public.PUBLIC_DIR.glob("*.json") if p.stem not in AITER)  # aiconfigurator-core fits

# the lines the synthetic attention and all-reduce rows lie on
PRE_T0, PRE_R = 5e-6, 5e14  # prefill: 5 us + executed FLOPs (over the wave efficiency) / 500 TFLOP/s
DEC_T0, DEC_R, DEC_KVH = 4e-6, 3e12, 2e-8  # decode: 4 us + bytes / 3 TB/s + 20 ns per (sequence, KV head)


def _executed_x(batch, isl, heads, d, sms=132):
    """Causal 128 x 128 tiles: q = ceil(isl / 128) query tiles read 1, 2, ... q key tiles, q(q+1)/2 tile pairs of
    128² (query, key) pairs and 4d FLOPs each; batch · heads · q blocks in ceil(blocks / SMs) waves."""
    q = math.ceil(isl / 128)
    blocks = batch * heads * q
    busy = blocks / (math.ceil(blocks / sms) * sms)
    return batch * heads * 128 * 128 * q * (q + 1) / 2 * 4 * d / busy
AR_T0, AR_R = 6e-6, 3e11  # all-reduce: 6 us + message bytes / 300 GB/s


def _tables() -> dict[str, pd.DataFrame]:
    """Frames with the package's columns (latency in ms, message_size in elements)."""
    gemm = pd.DataFrame([
        # M, N, K, ms.  M = N = K = 4096 in 0.2 ms; M = 8 (padded to the 16-token tile) in 0.025 ms
        {"m": 4096, "n": 4096, "k": 4096, "latency": 0.2}, {"m": 8, "n": 4096, "k": 4096, "latency": 0.025},
        {"m": 4096, "n": 8192, "k": 8192, "latency": 0.7}, {"m": 8, "n": 8192, "k": 8192, "latency": 0.09},
    ]).assign(gemm_dtype="bfloat16", kernel_source="torch.nn.functional.linear", device="NVIDIA H100 80GB HBM3")
    ctx = []
    for batch, isl, heads, d in ((1, 128, 32, 128), (1, 1024, 32, 128), (4, 4096, 32, 128), (2, 16384, 64, 128)):
        x = _executed_x(batch, isl, heads, d)
        ctx.append({"batch_size": batch, "isl": isl, "num_heads": heads, "num_key_value_heads": 8, "head_dim": d,
                    "kv_cache_dtype": "bfloat16", "window_size": 0, "step": 0, "latency": (PRE_T0 + x / PRE_R) * 1e3})
    ctx.append({**ctx[-1], "kv_cache_dtype": "fp8", "latency": 1e3})  # fp8 KV and windowed rows are not fitted
    ctx.append({**ctx[-2], "window_size": 128, "latency": 1e3})
    gen = []
    for batch, context in ((1, 128), (8, 4096), (64, 8192), (16, 32768)):
        kv_token = 2 * 8 * 128 * 2
        nbytes = batch * context * kv_token + batch * kv_token + 2 * batch * 32 * 128 * 2
        gen.append({"batch_size": batch, "isl": 1, "step": context - 1, "num_heads": 32, "num_key_value_heads": 8,
                    "head_dim": 128, "kv_cache_dtype": "bfloat16", "window_size": 0,
                    "latency": (DEC_T0 + nbytes / DEC_R + batch * 8 * DEC_KVH) * 1e3})
    ar = []
    for p in (2, 8):
        for elements in (1024, 65536, 1 << 20, 1 << 24):
            t = AR_T0 + elements * 2 / AR_R
            ar.append({"num_gpus": p, "message_size": elements, "allreduce_dtype": "bfloat16", "backend": "vllm_graph", "latency": t * 1e3})
            ar.append({"num_gpus": p, "message_size": elements, "allreduce_dtype": "bfloat16", "backend": "vllm_eager", "latency": 3 * t * 1e3})
    return {"gemm": gemm, "context_attention": pd.DataFrame(ctx), "generation_attention": pd.DataFrame(gen),
            "allreduce": pd.DataFrame(ar)}


def _write_tree(root: Path, tables: dict[str, pd.DataFrame], system="h100_sxm", framework="vllm", version="0.24.0"):
    """Lay the frames out as the package does: <system>/<op>/<framework>/<version>/<table>.parquet."""
    pytest.importorskip("pyarrow")
    where = {"gemm": ("gemm", "gemm_perf.parquet"), "context_attention": ("attention", "context_attention_perf.parquet"),
             "generation_attention": ("attention", "generation_attention_perf.parquet"),
             "allreduce": ("comm", "custom_allreduce_perf.parquet")}
    for name, df in tables.items():
        op, file = where[name]
        folder = root / system / op / framework / version
        folder.mkdir(parents=True, exist_ok=True)
        df.to_parquet(folder / file)
        (folder / "collection_meta.yaml").write_text(  # a table not read (a later date) must not date the file
            f"tables:\n  {file[:-8]}:\n    collected_at: '2026-08-09'\n  moe_a2a_perf:\n    collected_at: '2026-09-30'\n")
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = _write_tree(tmp_path_factory.mktemp("aic") / "data", _tables())
    cal, tables = public.fit_public("h100_sxm", root=root)
    return root, cal, tables


def test_gemm_fraction_is_padded_flops_over_time_and_peak(synthetic):
    _, cal, _ = synthetic
    t = cal.gemm["bf16"]
    assert t.m_tokens == (8, 4096) and t.nk_elements == (2.0 ** 24, 2.0 ** 26)  # N·K = 4096² and 8192², half-octave centres
    # 2·M·N·K / (t · peak) = 2 · 4096³ / (0.2e-3 s · 989.4e12) = 137,438,953,472 / 1.9788e11 = 0.69456
    assert t.fraction[1][0] == pytest.approx(0.69456, rel=5e-4)  # 4 significant digits kept
    # M = 8 runs a 16-row tile: 2 · 16 · 4096² / (0.025e-3 · 989.4e12) = 536,870,912 / 2.4735e10 = 0.021705
    assert t.fraction[0][0] == pytest.approx(0.021705, rel=5e-4)  # 4 significant digits kept
    # 2 · 4096 · 8192² / (0.7e-3 · 989.4e12) = 549,755,813,888 / 6.9258e11 = 0.79378
    assert t.fraction[1][1] == pytest.approx(0.79378, rel=5e-4)  # 4 significant digits kept
    # the table-wide fraction is the GPU fit's padded-FLOPs formula, row by row
    row = _tables()["gemm"].iloc[[1]]  # M = 8, N = K = 4096, 0.025 ms
    assert public.gemm_fractions(row, BF16, 16)[0] == pytest.approx(padded_gemm_flops(8, 4096, 4096, 16) / (0.025e-3 * BF16), rel=1e-12)
    # so the calibrated compute term of a measured shape is its measured time (4 significant digits kept)
    assert 2 * 4096 ** 3 / (BF16 * t.at(4096, 4096 * 4096)) == pytest.approx(0.2e-3, rel=5e-4)


def test_attention_and_allreduce_lines_are_recovered(synthetic):
    _, cal, _ = synthetic
    pre, dec = cal.attention_prefill, cal.attention_decode
    assert (pre.x_unit, dec.x_unit) == ("executed_flops", "bytes")
    assert pre.latency_s == pytest.approx(PRE_T0, rel=1e-3) and pre.rate_per_s == pytest.approx(PRE_R, rel=1e-3)
    assert dec.latency_s == pytest.approx(DEC_T0, rel=1e-3) and dec.rate_per_s == pytest.approx(DEC_R, rel=1e-3)
    assert cal.attention_decode_kv_head_s == pytest.approx(DEC_KVH, rel=1e-3)
    assert len(pre.points_x) == 4  # the fp8-KV and windowed rows were left out
    assert set(cal.allreduce) == {"2", "8"}
    for p, c in cal.allreduce.items():  # the CUDA-graph rows; the eager ones (3x slower) were left out
        assert c.latency_s == pytest.approx(AR_T0, rel=1e-3) and c.rate_per_s == pytest.approx(AR_R, rel=1e-3)
        assert c.peak_per_s == pytest.approx(LINK * int(p) / (int(p) - 1))  # 450e9 · 8/7 = 514.3e9 at p = 8
    # largest message of the largest group: 2^24 · 2 B in 6 us + 33,554,432 / 3e11 = 117.85 us; bus bandwidth
    # 2·7/8 · 33,554,432 / 117.85e-6 = 498.2 GB/s > 450 GB/s link: the fraction is capped at 1
    assert cal.interconnect_fraction == 1.0
    assert cal.memory is None and cal.kernel_overhead_s == H100.efficiency.kernel_overhead_s


def test_allreduce_points_are_the_graph_rows_one_median_per_size(synthetic):
    """The stored points are the CUDA-graph rows (not the eager ones, 3x slower), message bytes = elements · 2,
    sorted: 1024 elements -> 2048 B in 6 us + 2048 / 3e11 = 6.0068 us (4 significant digits kept: 6.007 us)."""
    _, cal, _ = synthetic
    points = cal.allreduce_points
    assert "custom_allreduce_perf.parquet" in points.source and "vllm_graph" in points.source
    assert set(points.groups) == {"2", "8"}
    g = points.groups["8"]
    assert g.message_bytes == (2048.0, 131072.0, 2.0 ** 21, 2.0 ** 25)
    assert g.time_s[0] == pytest.approx(6.007e-6)
    assert g.time_s == tuple(pytest.approx(AR_T0 + x / AR_R, rel=5e-4) for x in g.message_bytes)
    assert g.peak_per_s == pytest.approx(LINK * 8 / 7)


def test_a_repeated_message_size_keeps_the_median_of_its_times():
    """Three rows of 4096 elements (8192 B) at 5, 7 and 30 us and one of 8192 elements at 9 us: the points are
    (8192 B, 7 us) and (16,384 B, 9 us), the median standing for the repeated size."""
    rows = pd.DataFrame({"num_gpus": [2, 2, 2, 2], "message_size": [4096, 4096, 4096, 8192],
                         "latency": [5e-3, 7e-3, 30e-3, 9e-3]})  # milliseconds
    points = public.allreduce_points_from_rows(rows, LINK, "hand")
    assert points.groups["2"].message_bytes == (8192.0, 16384.0)
    assert points.groups["2"].time_s == (7e-6, 9e-6)


def test_provenance_names_package_framework_tables_and_date(synthetic):
    _, cal, _ = synthetic
    pv = cal.provenance
    src = pv.public_source
    assert (pv.device_name, pv.base_profile, pv.profile_match) == ("NVIDIA H100 80GB HBM3", "h100-sxm", True)
    assert (src.package, src.license, src.system, src.framework, src.framework_version) == (
        "aiconfigurator-core", "Apache-2.0", "h100_sxm", "vllm", "0.24.0")
    assert src.collected_at == "2026-08-09" and "h100_sxm/gemm/vllm/0.24.0/gemm_perf.parquet" in src.tables
    assert pv.date and "--from-public h100_sxm" in pv.command


def test_curves_reproduce_the_synthetic_tables(synthetic):
    """The lines are exact, so their residual is rounding only; the GEMM table reproduces each measured shape."""
    _, cal, tables = synthetic
    df = kernel_errors(cal, H100, tables)
    assert set(df["family"]) >= {"gemm bf16", "attention prefill", "attention decode", "all-reduce"}
    assert df["error"].abs().max() < 1e-3


def test_kernel_amounts_are_what_the_roofline_charges():
    """The x of each line is the attention op's own FLOPs (prefill) and HBM bytes (decode), per layer."""
    model = rl.load_model("llama-3.1-8b")  # 32 heads, 8 KV heads, d = 128, bf16 KV
    rd = rl.Deployment().resolved(model)
    pre = next(op for op in O.forward_ops(model, rd, 2, 512, 0) if op.name == "attention")
    # 2 sequences · 32 heads · 512·513/2 pairs · (2·128 + 2·128) = 2 · 32 · 131,328 · 512 = 4,303,355,904 FLOPs
    assert public.prefill_attention_flops(2, 512, 32, 128) == 4_303_355_904
    assert pre.flops / pre.layers == pytest.approx(4_303_355_904, rel=1e-12)
    dec = next(op for op in O.forward_ops(model, rd, 8, 1, 4095) if op.name == "attention")
    # KV read 8 · 4096 · (2·8·128·2 = 4096 B) = 134,217,728; new KV 8 · 4096 = 32,768; Q and out 2·8·32·128·2 = 131,072
    assert public.decode_attention_bytes(8, 4096, 32, 8, 128, 2) == 134_381_568
    assert dec.bytes / dec.layers == pytest.approx(134_381_568, rel=1e-12)


def test_default_source_is_the_newest_vllm_else_trtllm(tmp_path):
    for fw, v in (("vllm", "0.19.0"), ("vllm", "0.24.0"), ("trtllm", "1.3.0rc20"), ("trtllm", "1.2.0")):
        folder = tmp_path / "h200_sxm" / "gemm" / fw / v
        folder.mkdir(parents=True)
        (folder / "gemm_perf.parquet").touch()
    assert public.choose_source(tmp_path, "h200_sxm") == ("vllm", "0.24.0")
    assert public.choose_source(tmp_path, "h200_sxm", "trtllm") == ("trtllm", "1.3.0rc20")  # rc20 of 1.3.0 > 1.2.0
    assert public.version_key("1.3.0rc20") < public.version_key("1.3.0") < public.version_key("1.3.1")
    assert public.version_key("0.5.6") < public.version_key("0.5.6.post2") < public.version_key("0.5.10")
    with pytest.raises(SpecError, match="--version"):
        public.choose_source(tmp_path, "h200_sxm", "vllm", "0.1.0")
    with pytest.raises(SpecError, match="no public tables mapped to 'mi300x'"):
        public.resolve_system("mi300x")
    assert public.resolve_system("h200") == public.resolve_system("h200_sxm") == ("h200_sxm", "h200")


def test_cli_without_the_extra_is_one_line_naming_the_install(capsys, monkeypatch):
    monkeypatch.setattr(public, "MODULE", "aiconfigurator_core_not_installed_here")
    code = main(["calibrate", "--from-public", "h200"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install roofline[public-data]" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_writes_a_file_load_hardware_accepts(synthetic, capsys, monkeypatch, tmp_path):
    root, cal, _ = synthetic
    monkeypatch.setattr(public, "data_root", lambda: root)
    out = tmp_path / "h100.json"
    assert main(["calibrate", "--from-public", "h100_sxm", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    again = load_calibration(out)
    assert again.gemm == cal.gemm and again.allreduce == cal.allreduce
    hw = rl.load_hardware("h100-sxm", calibration=out)
    p = rl.predict(rl.load_model("llama-3.1-8b"), hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=128))
    assert (p.mode, p.calibration_id) == ("calibrated", "public-h100_sxm-vllm-0.24.0")
    assert main(["calibrate", "--framework", "vllm"]) == 2  # --framework without --from-public
    assert main(["calibrate", "--from-public", "h100_sxm", "--quick"]) == 2  # a flag of the GPU run
    assert "takes no --quick" in capsys.readouterr().err


def test_schema_accepts_no_memory_curve_and_keeps_the_datasheet_fraction(synthetic):
    _, cal, _ = synthetic
    curves = CalibratedCurves(cal, H100, "bf16")
    # no copy table: 3.35e12 · 0.89 = 2.9815e12 B/s with no latency, as the analytical profile
    assert curves.mem_latency_s == 0 and curves.mem_rate == pytest.approx(BW * 0.89)
    assert curves.att_dec_rate == pytest.approx(DEC_R, rel=1e-3)  # decode attention keeps its own line


@pytest.mark.parametrize(("patch", "field"), [
    (lambda d: d["allreduce"].update({"1": d["allreduce"]["2"]}), "allreduce.1"),
    (lambda d: d["allreduce"]["2"].update({"x_unit": "flops"}), "allreduce.2.x_unit"),
    (lambda d: d["allreduce"]["2"].update({"rate_per_s": 1e12}), "rate_per_s"),  # above link · 2/1 = 900 GB/s
    (lambda d: d["provenance"]["public_source"].pop("framework_version"), "framework_version"),
])
def test_bad_public_fields_are_one_line_errors(synthetic, tmp_path, patch, field):
    _, cal, _ = synthetic
    doc = json.loads(json.dumps(cal.model_dump(mode="json")))
    patch(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as exc:
        load_calibration(path)
    assert field in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_files_validate_and_attach_to_their_profile(path):
    cal = load_calibration(path)
    src = cal.provenance.public_source
    assert src is not None and src.package == "aiconfigurator-core" and src.package_version == "0.12.0"
    hw_id = cal.provenance.base_profile
    assert public.SYSTEMS[src.system] == hw_id and path.stem in (hw_id, f"{hw_id}-{src.framework}")  # <id>[-<framework>]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # measured against this very profile: no mismatch warning
        hw = rl.load_hardware(hw_id, calibration=path)
    p = rl.predict(rl.load_model("llama-3.1-8b"), hw, rl.Workload(batch_size=8, prompt_tokens=2048, output_tokens=128))
    assert p.mode == "calibrated" and math.isfinite(p.ttft_s) and p.ttft_s >= p.ttft_floor_s and p.tpot_s >= p.tpot_floor_s
    assert "bf16" in cal.gemm and cal.attention_prefill is not None and cal.attention_decode is not None


def test_the_covered_devices_are_committed():
    assert {p.stem for p in COMMITTED if p.stem in rl.list_hardware()} == set(public.SYSTEMS.values())
    assert {p.stem for p in public.PUBLIC_DIR.glob("*.json")} - {p.stem for p in COMMITTED} == AITER
    engines = {p.stem for p in COMMITTED if p.stem not in rl.list_hardware()}  # <id>-<framework>: another engine's tables
    assert engines == {"h100-sxm-trtllm", "h200-trtllm", "b200-trtllm", "gb200-trtllm", "h100-sxm-sglang", "h200-sglang"}
    assert all(p.stat().st_size < 100_000 for p in COMMITTED)  # small files: N·K pooled in half octaves, 4 digits


def test_trtllm_rows_on_blackwell_get_the_trtllm_tables():
    from roofline.registry import public_calibration_path

    for hw_id in ("b200", "gb200"):
        assert public_calibration_path(hw_id, "trtllm").name == f"{hw_id}-trtllm.json"
        src = rl.load_hardware(hw_id, framework="trtllm").calibration.provenance.public_source
        assert (src.framework, src.framework_version) == ("trtllm", "1.3.0rc20")
        assert public_calibration_path(hw_id).name == f"{hw_id}.json"  # the default stays vLLM's


@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator_core") is None,
                    reason="aiconfigurator-core is not installed (pip install roofline[public-data])")
def test_round_trip_on_the_real_package_reproduces_the_committed_file(tmp_path):
    cal, tables = public.fit_public("h200")
    out = public.write_calibration(cal, tmp_path / "h200.json")
    again = load_calibration(out)
    committed = load_calibration(public.PUBLIC_DIR / "h200.json")
    for field in ("gemm", "attention_prefill", "attention_decode", "allreduce", "interconnect_fraction"):
        assert getattr(again, field) == getattr(committed, field), field
    assert again.provenance.public_source == committed.provenance.public_source
    # and the fitted bf16 GEMM curves stay within 10% median of the tables they were fitted on, model-sized shapes
    df = kernel_errors(again, rl.load_hardware("h200", analytical=True), tables)
    assert df[df["family"] == "gemm bf16 N,K>=1024"]["error"].abs().median() < 0.10
